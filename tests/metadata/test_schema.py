"""The metadata database's versioned schema: created at the head, upgraded from the last
release with its data intact, refused when a newer loopworks wrote it, on SQLite and
PostgreSQL.

``data/release-0.1.0.sql`` is ``sqlite3 .dump`` of a home made by loopworks 0.1.0 (d637d00,
the last release before migrations): a feature group, two teams, four workers (``ann`` with
the password ``secret-pass-1``), a labeling job of 30 items with 60 simulated answers, and a
review flow with one human loop.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.metadata import build_engine, dispose_engine, open_engine
from loopworks.metadata.schema import HEAD, SchemaTooNew, status, upgrade
from loopworks.metadata.tables import metadata

RELEASE_DUMP = Path(__file__).with_name("data") / "release-0.1.0.sql"


def _release_database(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.executescript(RELEASE_DUMP.read_text())
    conn.close()
    return f"sqlite:///{path}"


def _differences(engine: sa.Engine) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    if engine.dialect.name == "sqlite":  # SQLite ignores a VARCHAR's length: 0002 leaves it
        found = [d for d in found if not (isinstance(d, list) and d[0][0] == "modify_type"
                                          and isinstance(d[0][5], sa.String))]
    return found


def _assert_release_data_readable(engine: sa.Engine) -> None:
    """What 0.1.0 stored reads back through today's code."""
    from loopworks.featurestore.registry import Registry
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.review.flows import HumanReview

    jobs = LabelingJobs(engine)
    try:
        assert jobs.job("sentiment").labels == ["neg", "neu", "pos"]
        assert len(jobs.answers("sentiment")) == 60
        assert jobs.workforce.authenticate_password("ann", "secret-pass-1").name == "ann"
        assert {t.name for t in jobs.workforce.teams()} == {"annotators", "reviewers"}
        review = HumanReview(engine, jobs)
        loop = review.describe_human_loop("loop-1", "check")
        assert loop.status == "InProgress"
        assert Registry(engine).get("reviews").record_id == "review_id"
    finally:
        jobs.webhooks.close()


def test_head_is_the_last_migration() -> None:
    from alembic.script import ScriptDirectory

    from loopworks.metadata import schema

    scripts = ScriptDirectory(str(Path(schema.__file__).with_name("migrations")))
    assert scripts.get_current_head() == HEAD


def test_a_new_database_is_created_at_the_head_matching_the_tables(metadata_url: str) -> None:
    engine = open_engine(metadata_url)
    state = status(engine)
    assert state.up_to_date and state.current == HEAD
    assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())
    # The migrations build exactly what tables.py declares: no column, index or type apart.
    assert _differences(engine) == []


def test_the_release_database_upgrades_with_its_data(tmp_path: Path) -> None:
    url = _release_database(tmp_path / "loopworks.db")
    probe = build_engine(url)
    before = status(probe)
    probe.dispose()
    assert before.current is None and before.has_tables
    engine = open_engine(url)
    assert status(engine).current == HEAD
    assert _differences(engine) == []
    _assert_release_data_readable(engine)
    # New tables work on the upgraded database (issue 12's idempotency keys).
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM label_idempotency")).scalar() == 0
    dispose_engine(url)


def test_the_release_data_upgrades_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """0.1.0's tables on PostgreSQL (the baseline revision, then unversioned as 0.1.0 left
    them), filled with the release's rows, come up to the head with the rows intact."""
    source = build_engine(_release_database(tmp_path / "release.db"))
    target = build_engine(postgres_url)
    with target.begin() as conn:
        from alembic import command

        from loopworks.metadata.schema import _config

        command.upgrade(_config(conn), "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
    old, new = sa.MetaData(), sa.MetaData()
    old.reflect(source)
    new.reflect(target)
    with source.connect() as read, target.begin() as write:
        for table in old.sorted_tables:
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:
                write.execute(new.tables[table.name].insert(), rows)
        for table in new.sorted_tables:  # serial ids continue after the copied rows
            if "id" in table.c and isinstance(table.c.id.type, sa.Integer):
                write.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"coalesce(max(id), 1)) FROM {table.name}"))
    assert status(target).current is None
    engine = open_engine(postgres_url)
    assert status(engine).current == HEAD
    assert _differences(engine) == []
    _assert_release_data_readable(engine)
    source.dispose()
    target.dispose()


def test_processes_starting_together_upgrade_once(tmp_path: Path) -> None:
    url = _release_database(tmp_path / "loopworks.db")
    results: list[tuple[str | None, str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        engine = build_engine(url)
        try:
            results.append(upgrade(engine))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results.count((None, HEAD)) == 1 and results.count((HEAD, HEAD)) == 3


def test_a_database_from_a_newer_loopworks_is_refused(metadata_url: str) -> None:
    engine = open_engine(metadata_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    dispose_engine(metadata_url)
    with pytest.raises(SchemaTooNew, match="'0999'.*newer loopworks") as caught:
        open_engine(metadata_url)
    assert caught.value.revision == "0999"
    engine = build_engine(metadata_url)
    try:
        with pytest.raises(SchemaTooNew):
            upgrade(engine)
        # Nothing was touched: the newer release's revision stays.
        assert status(engine).current == "0999"
    finally:
        engine.dispose()


def test_db_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _release_database(home / "loopworks.db")
    runner = CliRunner()
    shown = runner.invoke(main, ["db", "status", "--home", str(home)])
    assert shown.exit_code == 1, shown.output
    assert "revision:  (none)" in shown.output
    assert "older: run `loopworks db upgrade`" in shown.output
    done = runner.invoke(main, ["db", "upgrade", "--home", str(home)])
    assert done.exit_code == 0, done.output
    assert f"upgraded from (unversioned) to {HEAD}" in done.output
    again = runner.invoke(main, ["db", "upgrade", "--home", str(home)])
    assert f"already at revision {HEAD}" in again.output
    shown = runner.invoke(main, ["db", "status", "--json", "--home", str(home)])
    assert shown.exit_code == 0
    assert '"state": "up to date"' in shown.output
    history = runner.invoke(main, ["db", "history"])
    assert history.output.splitlines()[0].startswith("0001  ")
    assert history.output.splitlines()[-1].startswith(f"{HEAD}  ")

    with sqlite3.connect(home / "loopworks.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    dispose_engine(f"sqlite:///{home / 'loopworks.db'}")
    shown = runner.invoke(main, ["db", "status", "--home", str(home)])
    assert shown.exit_code == 2 and "newer than this loopworks" in shown.output
    refused = runner.invoke(main, ["team", "list", "--home", str(home)])
    assert refused.exit_code == 2
    assert "newer loopworks upgraded it" in refused.output


def test_an_empty_home_is_reported_then_created(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(main, ["db", "status", "--home", str(tmp_path)])
    assert shown.exit_code == 1 and "empty" in shown.output
    assert runner.invoke(main, ["team", "add", "nlp", "--home", str(tmp_path)]).exit_code == 0
    assert runner.invoke(main, ["db", "status", "--home", str(tmp_path)]).exit_code == 0


def test_serve_refuses_a_newer_database_before_starting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loopworks.db'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    dispose_engine(url)
    refused = CliRunner().invoke(main, ["serve", "--home", str(tmp_path), "--port", "1"])
    assert refused.exit_code == 2
    assert "newer loopworks upgraded it" in refused.output
    assert "serving on" not in refused.output
