"""JobRunner: jobs checked before they are taken, recorded at once, and always ended with a
record, also when the runner closes under them."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopworks.errors import ConflictError, InputError
from loopworks.processing import JobRunner, ProcessingConfig
from loopworks.settings import load_settings


def test_a_job_that_cannot_run_is_refused_before_it_is_recorded(tmp_path: Path) -> None:
    runner = JobRunner(load_settings(home=str(tmp_path / "home")))
    with pytest.raises(InputError, match="missing.csv' does not exist"):
        runner.submit(ProcessingConfig(inputs=str(tmp_path / "missing.csv"),
                                       out=str(tmp_path / "out")))
    runner.close()
    assert runner.records.list() == [] and not (tmp_path / "out").exists()


def test_closing_ends_every_job_it_took_with_a_record(sample_csv: Path, tmp_path: Path) -> None:
    runner = JobRunner(load_settings(home=str(tmp_path / "home")), at_once=1)
    first, second = (runner.submit(ProcessingConfig(inputs=str(sample_csv),
                                                    out=str(tmp_path / out), workers=1))
                     for out in ("first", "second"))
    assert second.status == "queued" == runner.records.get(second.job_id).status
    runner.close()
    stopped, never_started = (runner.records.get(r.job_id) for r in (first, second))
    assert stopped.status == "failed" and stopped.error.startswith("the server stopped")
    assert never_started.status == "failed" and never_started.finished_at
    assert never_started.error == "the server stopped before the job started; start it again"
    assert not (tmp_path / "first").exists() and not list(tmp_path.glob(".first.tmp-*"))
    with pytest.raises(ConflictError, match="starts no more jobs"):
        runner.submit(ProcessingConfig(inputs=str(sample_csv), out=str(tmp_path / "third")))
