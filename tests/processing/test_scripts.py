"""Script processing jobs: the user's own script run per instance with SageMaker's container
contract (inputs, sharding, resourceconfig.json, outputs, failures, stops), and
``loopworks processing`` on the command line. The scripts are tiny ones written here.

Jobs' records are in the metadata database: two ScriptJobs with roots of their own stand for
two machines sharing it (on SQLite and PostgreSQL), and a job whose process is SIGKILLed is
Failed once its heartbeat is stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import loopworks
from loopworks.cli import main
from loopworks.cli.processing import parse_input, parse_output
from loopworks.errors import ConfigurationError, ConflictError, InputError
from loopworks.metadata import open_engine
from loopworks.processing.scripts import (
    ScriptInput,
    ScriptJobs,
    ScriptJobSpec,
    ScriptOutput,
    namespaces_available,
)

NO_NAMESPACES = namespaces_available()
#: Skip where instances cannot have their own /opt/ml (a private mount namespace).
needs_namespaces = pytest.mark.skipif(
    NO_NAMESPACES is not None,
    reason=f"no private mount namespace for /opt/ml here: {NO_NAMESPACES}")
#: Tests not about isolation run in a container where they can, in place elsewhere; their
#: scripts take /opt/ml as the argument --ml, which isolation "none" rewrites.
ISOLATION = "namespace" if NO_NAMESPACES is None else "none"
CODE = "/opt/ml/processing/input/code"
DATA = "/opt/ml/processing/input/data"
OUTPUT = "/opt/ml/processing/output"

# Reports what its instance sees, in <ml>/processing/output/<host>.json.
PROBE = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--ml", default="/opt/ml")
parser.add_argument("--flag", default=None)
args = parser.parse_args()
with open(os.path.join(args.ml, "config", "resourceconfig.json")) as fh:
    config = json.load(fh)
data = os.path.join(args.ml, "processing", "input", "data")
files = sorted(os.listdir(data)) if os.path.isdir(data) else []
out = os.path.join(args.ml, "processing", "output")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, config["current_host"] + ".json"), "w") as fh:
    json.dump({"host": config["current_host"], "hosts": config["hosts"], "files": files,
               "flag": args.flag, "argv": sys.argv[1:], "data": data,
               "executable": sys.executable}, fh)
print(config["current_host"], "read", len(files), "files", flush=True)
"""
# algo-2 fails with code 3 after a line on each stream.
FAIL_ON_ALGO_2 = """
import json, os, sys
with open(os.path.join(sys.argv[-1], "config", "resourceconfig.json")) as fh:
    host = json.load(fh)["current_host"]
print("hello from", host, flush=True)
if host == "algo-2":
    print("boom", file=sys.stderr)
    sys.exit(3)
"""
SLEEP = """
import time
print("started", flush=True)
time.sleep(60)
"""


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    return path


def data_folder(folder: Path, files: int = 7) -> Path:
    data = folder / "data"
    data.mkdir()
    for i in range(files):
        (data / f"part-{i}.txt").write_text(f"row {i}\n")
    return data


def make_spec(name: str, script: Path, *, data: str | Path | None = None,
              distribution: str = "FullyReplicated", out: str | Path | None = None,
              args: list[str] | None = None, **fields) -> ScriptJobSpec:
    """The script downloaded to /opt/ml/processing/input/code and run with python3 (as
    SageMaker's SKLearnProcessor does), ``data`` as its input data, ``out`` its output."""
    inputs = [ScriptInput("code", str(script), CODE)]
    if data is not None:
        inputs.append(ScriptInput("data", str(data), DATA, distribution=distribution))
    outputs = [ScriptOutput("out", OUTPUT, str(out))] if out is not None else []
    return ScriptJobSpec(name, ["python3", f"{CODE}/{script.name}"],
                         ["--ml", "/opt/ml"] if args is None else args, inputs=inputs,
                         outputs=outputs, **{"isolation": ISOLATION, **fields})


def wait_for(check: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    """``check()`` once it is truthy; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def reports(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("algo-*.json"))}


@pytest.fixture
def jobs(tmp_path: Path) -> ScriptJobs:
    return ScriptJobs(open_engine(f"sqlite:///{tmp_path / 'meta.db'}"),
                      tmp_path / "processing-jobs")


# ------------------------------------------------------------------ the contract
@needs_namespaces
@pytest.mark.parametrize("distribution", ["ShardedByS3Key", "FullyReplicated"])
def test_each_instance_sees_the_container_contract_at_opt_ml(
        jobs: ScriptJobs, tmp_path: Path, distribution: str) -> None:
    opt_ml_before = Path("/opt/ml").exists()
    script = write_script(tmp_path, "probe.py", PROBE)
    spec = make_spec("probe", script, data=data_folder(tmp_path), distribution=distribution,
                     out=tmp_path / "out", args=["--flag", "1"], instance_count=2,
                     isolation="namespace")
    job = jobs.run(spec)
    assert job.status == "Completed", job.failure_reason
    assert job.exit_codes == {"algo-1": 0, "algo-2": 0}
    seen = reports(tmp_path / "out")
    assert set(seen) == {"algo-1", "algo-2"}
    everything = {f"part-{i}.txt" for i in range(7)}
    first, second = (set(seen[h]["files"]) for h in ("algo-1", "algo-2"))
    if distribution == "ShardedByS3Key":
        assert first and second and not first & second and first | second == everything
    else:
        assert first == second == everything
    for host, report in seen.items():
        assert report["host"] == host and report["hosts"] == ["algo-1", "algo-2"]
        assert report["flag"] == "1" and report["data"] == DATA
    if not opt_ml_before:
        assert not Path("/opt/ml").exists()


def test_s3_inputs_and_outputs_go_through_the_object_store(tmp_path: Path) -> None:
    script = write_script(tmp_path, "probe.py", PROBE)
    with loopworks.open(tmp_path / "home") as lw:
        lw.objects.create_bucket("raw")
        for i in range(4):
            lw.objects.put_bytes("raw", f"reviews/part-{i}.txt", f"row {i}\n".encode())
        jobs = ScriptJobs(lw.engine, lw.home / "processing-jobs", lw.objects)
        job = jobs.run(make_spec("s3-job", script, data="s3://raw/reviews/",
                                 distribution="ShardedByS3Key", out="s3://results/probe/",
                                 instance_count=2))
        assert job.status == "Completed", job.failure_reason
        for host in ("algo-1", "algo-2"):
            info = lw.objects.head("results", f"probe/{host}.json")
            report = json.loads(b"".join(lw.objects.read(info)))
            assert len(report["files"]) == 2 and report["host"] == host


# -------------------------------------------------------------- ends that are not
def test_a_failing_instance_fails_the_job_with_its_stderr(jobs: ScriptJobs,
                                                         tmp_path: Path) -> None:
    script = write_script(tmp_path, "fail.py", FAIL_ON_ALGO_2)
    job = jobs.run(make_spec("fails", script, out=tmp_path / "out", args=["/opt/ml"],
                             instance_count=2))
    assert job.status == "Failed"
    assert job.exit_codes == {"algo-1": 0, "algo-2": 3}
    assert "algo-2" in job.failure_reason and "code 3" in job.failure_reason
    assert "boom" in job.failure_reason
    log = jobs.log_path("fails", "algo-2").read_text()
    assert "hello from algo-2" in log and "boom" in log
    assert not (tmp_path / "out").exists()  # nothing is uploaded from a failed job


@pytest.mark.timeout(30)
def test_max_runtime_stops_every_instance(jobs: ScriptJobs, tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep.py", SLEEP)
    job = jobs.run(make_spec("too-long", script, max_runtime_seconds=1, instance_count=2))
    assert job.status == "Stopped"
    assert "MaxRuntimeInSeconds" in job.failure_reason


@pytest.mark.timeout(30)
def test_stop_ends_a_running_job_stopped(jobs: ScriptJobs, tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep.py", SLEEP)
    jobs.start(make_spec("sleeper", script))
    log = jobs.log_path("sleeper")
    deadline = time.monotonic() + 20
    while not (log.is_file() and "started" in log.read_text()):
        assert time.monotonic() < deadline, "the script did not start"
        time.sleep(0.05)
    assert jobs.stop("sleeper").status == "Stopping"
    job = jobs.wait("sleeper")
    assert job.status == "Stopped" and job.failure_reason == "stopped by StopProcessingJob"
    with pytest.raises(ConflictError, match="is Stopped"):
        jobs.stop("sleeper")


# ----------------------------------------------------------------- refused specs
@pytest.mark.parametrize(("what", "value", "setting"), [
    ("input", "/tmp/x", "ProcessingInputs[1].LocalPath"),
    ("input", "/opt/ml/processing/../etc", "ProcessingInputs[1].LocalPath"),
    ("distribution", "ByRow", "ProcessingInputs[1].S3Input.S3DataDistributionType"),
    ("instance_count", 0, "ProcessingResources.ClusterConfig.InstanceCount"),
    ("output", "/opt/ml/model", "ProcessingOutputConfig.Outputs[0].LocalPath"),
])
def test_a_spec_that_cannot_run_is_refused_naming_the_field(
        jobs: ScriptJobs, tmp_path: Path, what: str, value: object, setting: str) -> None:
    script = write_script(tmp_path, "probe.py", PROBE)
    spec = make_spec("refused", script, data=data_folder(tmp_path), out=tmp_path / "out")
    if what == "input":
        spec.inputs[1] = replace(spec.inputs[1], local_path=value)
    elif what == "distribution":
        spec.inputs[1] = replace(spec.inputs[1], distribution=value)
    elif what == "output":
        spec.outputs[0] = replace(spec.outputs[0], local_path=value)
    else:
        setattr(spec, what, value)
    with pytest.raises(ConfigurationError) as refused:
        jobs.run(spec)
    assert refused.value.setting == setting
    assert setting.rsplit(".", 1)[-1] in str(refused.value)  # the message names it too
    assert jobs.list() == []


def test_missing_input_and_a_taken_name_are_refused(jobs: ScriptJobs,
                                                    tmp_path: Path) -> None:
    script = write_script(tmp_path, "probe.py", PROBE)
    with pytest.raises(InputError, match="is not a file or a folder") as missing:
        jobs.run(make_spec("missing", script, data=tmp_path / "nowhere"))
    assert missing.value.field == "ProcessingInputs[1].S3Input.S3Uri"
    assert jobs.list() == []
    assert jobs.run(make_spec("taken", script)).status == "Completed"
    with pytest.raises(ConflictError, match="exists already"):
        jobs.run(make_spec("taken", script))


# ---------------------------------------------------------- isolation and python
def test_without_a_container_opt_ml_in_arguments_becomes_the_instance_folder(
        jobs: ScriptJobs, tmp_path: Path) -> None:
    opt_ml_before = Path("/opt/ml").exists()
    script = write_script(tmp_path, "probe.py", PROBE)
    job = jobs.run(make_spec("in-place", script, data=data_folder(tmp_path, 3),
                             out=tmp_path / "out", isolation="none", instance_count=2))
    assert job.status == "Completed", job.failure_reason
    for host, report in reports(tmp_path / "out").items():
        folder = jobs.root / "in-place" / "instances" / host
        assert report["argv"] == ["--ml", str(folder)]
        assert report["data"] == str(folder / "processing" / "input" / "data")
        assert report["files"] == ["part-0.txt", "part-1.txt", "part-2.txt"]
    if not opt_ml_before:
        assert not Path("/opt/ml").exists()


def test_python_may_name_a_virtual_environment(jobs: ScriptJobs, tmp_path: Path) -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment")
    script = write_script(tmp_path, "probe.py", PROBE)
    job = jobs.run(make_spec("venv", script, out=tmp_path / "out", python=sys.prefix))
    assert job.status == "Completed", job.failure_reason
    assert reports(tmp_path / "out")["algo-1"]["executable"].startswith(sys.prefix)
    with pytest.raises(ConfigurationError, match="neither an interpreter") as refused:
        jobs.run(make_spec("no-venv", script, python=str(tmp_path)))
    assert refused.value.setting == "python"


# ------------------------------------------------------------------ command line
def invoke(home: Path, *args: str):
    return CliRunner().invoke(main, [*args[:2], "--home", str(home), *args[2:]],
                              catch_exceptions=False)


#: Where mount namespaces are missing the CLI runs without a container (see ISOLATION).
CONTAINER = [] if NO_NAMESPACES is None else ["--no-container"]


def test_cli_runs_a_sharded_job_lists_it_and_shows_its_logs(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    script = write_script(tmp_path, "probe.py", PROBE)
    data = data_folder(tmp_path)
    ran = invoke(home, "processing", "run", *CONTAINER, "--name", "cli-job", str(script),
                 "--input", f"{data}:{DATA}", "--output", f"{OUTPUT}:{out}",
                 "--instance-count", "2", "--distribution", "ShardedByS3Key",
                 "--", "--flag", "1", "--ml", "/opt/ml")
    assert ran.exit_code == 0, ran.output
    assert "cli-job: Completed" in ran.output and "algo-2: exit 0" in ran.output
    seen = reports(out)
    assert seen["algo-1"]["flag"] == "1"
    assert sorted(seen["algo-1"]["files"] + seen["algo-2"]["files"]) == sorted(
        p.name for p in data.iterdir())
    listed = json.loads(invoke(home, "processing", "list", "--json").output)
    assert [(j["name"], j["status"], j["instances"]) for j in listed] == [
        ("cli-job", "Completed", 2)]
    logs = invoke(home, "processing", "logs", "cli-job", "--host", "algo-2")
    assert logs.exit_code == 0 and "algo-2 read" in logs.output
    described = json.loads(invoke(home, "processing", "describe", "cli-job").output)
    assert described["spec"]["arguments"] == ["--flag", "1", "--ml", "/opt/ml"]
    assert described["spec"]["inputs"][-1]["name"] == "code"


def test_cli_exits_1_with_the_reason_when_the_job_fails(tmp_path: Path) -> None:
    script = write_script(tmp_path, "fail.py", FAIL_ON_ALGO_2)
    ran = invoke(tmp_path / "home", "processing", "run", *CONTAINER, "--instance-count", "2",
                 str(script), "/opt/ml")
    assert ran.exit_code == 1
    assert "Failed" in ran.output and "algo-2: exit 3" in ran.output
    assert "AlgorithmError: algo-2 exited with code 3: boom" in ran.output
    assert "loopworks processing logs fail-" in ran.output  # the default name: stem + time
    missing = invoke(tmp_path / "home", "processing", "describe", "nope")
    assert missing.exit_code == 2 and "no processing job 'nope'" in missing.output


def test_input_and_output_options_split_at_the_container_path() -> None:
    assert parse_input(f"s3://bucket/pre:fix:{DATA}:ShardedByS3Key", "FullyReplicated") == (
        "s3://bucket/pre:fix", DATA, "ShardedByS3Key")
    assert parse_input(f"s3://bucket/data:{DATA}", "ShardedByS3Key") == (
        "s3://bucket/data", DATA, "ShardedByS3Key")
    assert parse_output(f"{OUTPUT}:s3://bucket/out/") == (OUTPUT, "s3://bucket/out/")
    for bad in ("data", "data:/tmp/x", f"data:{DATA}:ByRow"):
        with pytest.raises(ConfigurationError, match="--input"):
            parse_input(bad, "FullyReplicated")
    with pytest.raises(ConfigurationError, match="--output"):
        parse_output("out:/opt/ml/processing/output")


# ------------------------------------------------ several processes, one database
@pytest.fixture
def engine(metadata_url: str):
    """The metadata database two "machines" share: SQLite, then PostgreSQL."""
    return open_engine(metadata_url)


@pytest.mark.timeout(120)
def test_a_job_run_on_one_machine_is_listed_described_and_stopped_from_another(
        engine, tmp_path: Path) -> None:
    here = ScriptJobs(engine, tmp_path / "machine-a")
    there = ScriptJobs(engine, tmp_path / "machine-b")
    probe = write_script(tmp_path, "probe.py", PROBE)
    assert here.run(make_spec("quick", probe, out=tmp_path / "out")).status == "Completed"
    done = there.get("quick")
    assert done.status == "Completed" and done.exit_codes == {"algo-1": 0}

    here.start(make_spec("sleeper", write_script(tmp_path, "sleep.py", SLEEP),
                         instance_count=2))
    log = here.log_path("sleeper")
    wait_for(lambda: log.is_file() and "started" in log.read_text(), "the script did not start")
    assert [job.spec.name for job in there.list()] == ["sleeper", "quick"]
    running = there.get("sleeper")
    assert running.status == "InProgress" and running.last_seen
    assert running.runner == here.runner and running.runner.endswith(f" pid {os.getpid()}")
    assert not (tmp_path / "machine-b" / "sleeper").exists()  # folders stay with the runner
    assert there.stop("sleeper").status == "Stopping"
    assert here.get("sleeper").status == "Stopping"
    job = here.wait("sleeper", timeout=60)
    assert job.status == "Stopped" and job.failure_reason == "stopped by StopProcessingJob"
    assert there.get("sleeper").status == "Stopped"
    with pytest.raises(ConflictError, match="is Stopped"):
        there.stop("sleeper")


# Runs one job whose instance is a long sleep (its pid written to argv[3]), then waits to be
# killed: the "server process" of the next test.
RUNNER = """
import sys, time
from loopworks.metadata import open_engine
from loopworks.processing.scripts import ScriptJobs, ScriptJobSpec
url, root, pidfile = sys.argv[1:]
jobs = ScriptJobs(open_engine(url), root, heartbeat_every=0.2)
jobs.start(ScriptJobSpec("orphaned", ["sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" '
                                      '&& exec sleep 600'], [pidfile], isolation="none"))
time.sleep(600)
"""


@pytest.mark.timeout(180)
def test_a_job_whose_process_was_killed_fails_once_its_heartbeat_is_stale(
        metadata_url: str, engine, tmp_path: Path) -> None:
    pidfile, output = tmp_path / "instance.pid", tmp_path / "runner.log"
    with output.open("w") as out:
        runner = subprocess.Popen([sys.executable, "-c", RUNNER, metadata_url,
                                   str(tmp_path / "machine-a"), str(pidfile)],
                                  stdout=out, stderr=subprocess.STDOUT)
    instance = 0
    try:
        patient = ScriptJobs(engine, tmp_path / "machine-b")  # the default bound, 30 s
        readers = [ScriptJobs(engine, tmp_path / "machine-c", stale_after=2)
                   for _ in range(4)]

        def started() -> int:
            assert runner.poll() is None, output.read_text()
            return int(pidfile.read_text()) if pidfile.is_file() else 0

        instance = int(wait_for(started, "the runner did not start its job"))
        job = patient.get("orphaned")
        assert job.status == "InProgress" and job.runner.endswith(f" pid {runner.pid}")
        runner.send_signal(signal.SIGKILL)  # no chance to record anything
        runner.wait()
        assert patient.get("orphaned").status == "InProgress"  # not 30 s yet

        def failed(jobs: ScriptJobs) -> object:
            return wait_for(lambda: (job := jobs.get("orphaned")).status == "Failed" and job,
                            "the job was not failed after its heartbeat went stale")

        with ThreadPoolExecutor(len(readers)) as pool:  # readers racing to fail it
            seen = list(pool.map(failed, readers))
        assert len({(job.failure_reason, job.ended_at) for job in seen}) == 1  # written once
        reason = seen[0].failure_reason
        assert reason.startswith(f"the server process running it ({job.runner}) stopped: "
                                 "last seen at ")
        assert patient.get("orphaned").failure_reason == reason  # for everyone, from now on
        with pytest.raises(ConflictError, match="is Failed"):
            patient.stop("orphaned")
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.wait()
        if instance:  # the orphaned instance: nobody is left to stop it
            os.kill(instance, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_a_job_failed_by_a_reader_stays_failed_and_its_instances_stop(
        engine, tmp_path: Path) -> None:
    here = ScriptJobs(engine, tmp_path / "machine-a")
    hasty = ScriptJobs(engine, tmp_path / "machine-b", stale_after=0.001)
    ended: list = []
    done = threading.Event()
    here.start(make_spec("slow-heart", write_script(tmp_path, "sleep.py", SLEEP)),
               on_end=lambda job: (ended.append(job), done.set()))
    log = here.log_path("slow-heart")
    wait_for(lambda: log.is_file() and "started" in log.read_text(), "the script did not start")
    failed = wait_for(lambda: (job := hasty.get("slow-heart")).status == "Failed" and job,
                      "the reader did not fail the job")
    assert done.wait(30), "the instance was not stopped"  # it sleeps for 60 s
    assert ended[0].status == "Failed" and ended[0].failure_reason == failed.failure_reason
    assert here.wait("slow-heart").failure_reason == failed.failure_reason
