"""Ray across nodes (issue 17): a head and a second node started as separate processes
(`ray start --head --block`, `ray start --address ... --block`, one CPU each), as a cluster
of two machines would run them. `loopworks process` gives the same output bytes there as on
the local engine with work on both nodes; a processing job's instances land on both nodes;
a node killed mid-job makes the job retry its shards or fail cleanly, never leave a partial
output."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopworks.processing import ProcessingConfig, run_processing_job
from loopworks.processing.raycluster import RAY_ENV, LocalRayCluster
from loopworks.processing.scripts import ScriptInput, ScriptJobs, ScriptJobSpec
from loopworks.samples import generate_reviews, write_reviews

from conftest import EVENT_TIME

pytestmark = pytest.mark.ray
pytest.importorskip("ray")


@contextlib.contextmanager
def _running_cluster() -> Iterator[LocalRayCluster]:
    with pytest.MonkeyPatch.context() as patch:  # this process is a driver of it too
        for key, value in RAY_ENV.items():
            patch.setenv(key, value)
        with LocalRayCluster(nodes=2) as running:
            yield running


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    """Two nodes for the tests that keep both alive."""
    with _running_cluster() as running:
        yield running


@pytest.fixture
def doomed_cluster() -> Iterator[LocalRayCluster]:
    """Two nodes of a test's own, which kills one."""
    with _running_cluster() as running:
        yield running


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def test_loopworks_process_across_two_nodes_gives_the_local_output(
        cluster: LocalRayCluster, tmp_path: Path) -> None:
    csv = tmp_path / "reviews.csv"
    write_reviews(generate_reviews(6000, seed=11), csv)
    common = {"inputs": str(csv), "event_time": EVENT_TIME, "workers": 2, "shard_rows": 500}
    # One job id for both: the files name the job that wrote them, and nothing else differs.
    local = run_processing_job(ProcessingConfig(out=str(tmp_path / "local"), **common),
                               job_id="across-nodes")
    spread = run_processing_job(ProcessingConfig(out=str(tmp_path / "ray"), engine="ray",
                                                 ray_address=cluster.address, **common),
                                job_id="across-nodes")
    assert spread.counts["ray_nodes"] == 2  # both nodes ran tasks
    assert spread.counts["rows_out"] == local.counts["rows_out"]
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # byte for byte


def test_a_processing_job_places_its_instances_on_both_nodes(
        cluster: LocalRayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "where.py"
    script.write_text("import json\nprint(json.load(open('config/resourceconfig.json'))"
                      "['current_host'])\n")
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    jobs = ScriptJobs(tmp_path / "jobs")
    job = jobs.run(ScriptJobSpec(
        "where", ["python3", "/opt/ml/processing/input/code/where.py"],
        inputs=[ScriptInput("code", str(script), "/opt/ml/processing/input/code")],
        instance_count=2, engine="ray", isolation="none"))
    try:
        assert job.status == "Completed", job.failure_reason
        assert len(set(job.nodes.values())) == 2  # one CPU per node: one instance on each
        assert jobs.log_path("where", "algo-2").read_text().strip() == "algo-2"
    finally:
        import ray

        ray.shutdown()


def test_a_node_killed_mid_job_never_leaves_a_partial_output(
        doomed_cluster: LocalRayCluster, tmp_path: Path) -> None:
    cluster = doomed_cluster
    csv = tmp_path / "reviews.csv"
    write_reviews(generate_reviews(20000, seed=5), csv)
    common = {"inputs": str(csv), "event_time": EVENT_TIME, "workers": 2, "shard_rows": 500}
    killed: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "encode" and not killed:  # shards are running on both nodes now
            cluster.kill_node()
            killed.append(stage)

    out = tmp_path / "ray"
    try:
        report = run_processing_job(ProcessingConfig(out=str(out), engine="ray",
                                                     ray_address=cluster.address, **common),
                                    progress=progress, job_id="node-killed")
    except Exception as exc:  # failed cleanly: no output that looks complete
        assert killed, exc
        assert not (out / "report.json").exists()
        assert not _files(out) if out.exists() else True
        return
    assert killed and report.status == "succeeded"  # its shards were retried: all there
    local = run_processing_job(ProcessingConfig(out=str(tmp_path / "local"), **common),
                               job_id="node-killed")
    assert _files(out) == _files(tmp_path / "local")
    assert report.counts["rows_out"] == local.counts["rows_out"]
