"""Ray across nodes (issue 17): a head and a second node started as separate processes
(`ray start --head --block`, `ray start --address ... --block`, one CPU each), as a cluster
of two machines would run them. `loopworks process` gives the same output bytes there as on
the local engine with work on both nodes; a processing job's instances land on both nodes;
a node killed mid-job makes the job retry its shards or fail cleanly, never leave a partial
output."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopworks.metadata import open_engine
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


# A driver of its own per job, as `loopworks process` is: a process that joined another Ray
# session before cannot start Ray Data on a new cluster.
DRIVER = """
import json, os, signal, sys
from datetime import datetime
from loopworks.metadata import open_engine
from loopworks.processing import ProcessingConfig, run_processing_job

args = json.loads(sys.argv[1])
killed = []

def progress(stage, done, total):
    if args.get("kill") and stage == "encode" and not killed:  # shards run on both nodes
        os.killpg(args["kill"], signal.SIGKILL)
        killed.append(stage)

if __name__ == "__main__":
    config = dict(args["config"], event_time=datetime.fromisoformat(args["event_time"]))
    try:
        report = run_processing_job(ProcessingConfig(**config), job_id=args["job_id"],
                                    progress=progress)
        print(json.dumps({"status": report.status, "counts": report.counts,
                          "killed": bool(killed)}))
    except Exception as exc:
        print(json.dumps({"status": "failed", "error": str(exc), "killed": bool(killed)}))
"""


def _drive(tmp_path: Path, config: dict, job_id: str, kill: int | None = None) -> dict:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run(
        [sys.executable, str(driver), json.dumps({
            "config": config, "job_id": job_id, "kill": kill,
            "event_time": EVENT_TIME.isoformat()})],
        env={**os.environ, **RAY_ENV, "LOOPWORKS_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _common(tmp_path: Path, rows: int, seed: int) -> dict:
    csv = tmp_path / "reviews.csv"
    write_reviews(generate_reviews(rows, seed=seed), csv)
    return {"inputs": str(csv), "workers": 2, "shard_rows": 500}


def test_loopworks_process_across_two_nodes_gives_the_local_output(
        cluster: LocalRayCluster, tmp_path: Path) -> None:
    common = _common(tmp_path, 6000, 11)
    # One job id for both: the files name the job that wrote them, and nothing else differs.
    local = run_processing_job(ProcessingConfig(out=str(tmp_path / "local"),
                                                event_time=EVENT_TIME, **common),
                               job_id="across-nodes")
    spread = _drive(tmp_path, {"out": str(tmp_path / "ray"), "engine": "ray",
                               "ray_address": cluster.address, **common}, "across-nodes")
    assert spread["status"] == "succeeded", spread
    assert spread["counts"]["ray_nodes"] == 2  # both nodes ran tasks
    assert spread["counts"]["rows_out"] == local.counts["rows_out"]
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # byte for byte


def test_a_processing_job_places_its_instances_on_both_nodes(
        cluster: LocalRayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "where.py"
    script.write_text("import json\nprint(json.load(open('config/resourceconfig.json'))"
                      "['current_host'])\n")
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    jobs = ScriptJobs(open_engine(f"sqlite:///{tmp_path / 'meta.db'}"), tmp_path / "jobs")
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


@pytest.mark.slow  # ~90 s with its own three-node cluster; the two-node run stays in make test
def test_a_node_killed_mid_job_never_leaves_a_partial_output(
        doomed_cluster: LocalRayCluster, tmp_path: Path) -> None:
    common = _common(tmp_path, 20000, 5)
    out = tmp_path / "ray"
    result = _drive(tmp_path, {"out": str(out), "engine": "ray",
                               "ray_address": doomed_cluster.address, **common},
                    "node-killed", kill=doomed_cluster.processes[-1].pid)
    assert result["killed"], result
    if result["status"] == "failed":  # failed cleanly: no output that looks complete
        assert not (out / "report.json").exists()
        assert not out.exists() or not _files(out)
        return
    assert result["status"] == "succeeded"  # its shards were retried: all there
    local = run_processing_job(ProcessingConfig(out=str(tmp_path / "local"),
                                                event_time=EVENT_TIME, **common),
                               job_id="node-killed")
    assert _files(out) == _files(tmp_path / "local")
    assert result["counts"]["rows_out"] == local.counts["rows_out"]


EMBED = """
import json, sys
import numpy as np
from loopworks.embeddings import embed_texts

args = json.loads(sys.argv[1])
if __name__ == "__main__":
    vectors = embed_texts(args["texts"], batch_size=4, engine="ray", workers=2,
                          ray_address=args["address"], min_rows_per_worker=1)
    np.save(args["out"], vectors)
"""


@pytest.mark.slow
def test_embeddings_across_two_nodes_equal_the_local_ones(cluster: LocalRayCluster,
                                                          tmp_path: Path) -> None:
    """`loopworks embed`'s encoder on the cluster: the same vectors as in one process."""
    pytest.importorskip("torch", reason="the embeddings extra is not installed")
    import numpy as np

    from loopworks.embeddings import embed_texts

    texts = [t[:60] for t in generate_reviews(16, seed=3, broken=False)
             .column("review_body").to_pylist()]
    driver, out = tmp_path / "embed.py", tmp_path / "vectors.npy"
    driver.write_text(EMBED)
    done = subprocess.run(
        [sys.executable, str(driver), json.dumps({"texts": texts, "out": str(out),
                                                  "address": cluster.address})],
        env={**os.environ, **RAY_ENV}, capture_output=True, text=True, timeout=540,
        check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), embed_texts(texts, batch_size=32), atol=1e-5)
