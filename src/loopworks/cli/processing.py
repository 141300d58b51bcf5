"""``loopworks processing``: run your own script as a SageMaker Processing job."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services
from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError, ConflictError, NotFoundError
from loopworks.processing.scripts import (
    JOB_NAME,
    OPT_ML,
    PROCESSING_ROOT,
    ScriptInput,
    ScriptJobSpec,
    ScriptOutput,
)

if TYPE_CHECKING:
    from loopworks.processing.scripts import ScriptJob, ScriptJobs

DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
ENDED = ("Completed", "Failed", "Stopped")
#: Where the script itself is downloaded, as SageMaker's SKLearnProcessor puts it.
CODE_PATH = f"{PROCESSING_ROOT}/input/code"


def _jobs(home: str | None) -> ScriptJobs:
    return services(home).processing_jobs


@click.group()
def processing() -> None:
    """Processing jobs that run your own script, as SageMaker Processing runs a container.

    Each instance (algo-1, algo-2...) runs the script with SageMaker's container contract:
    its inputs downloaded under /opt/ml/processing/, /opt/ml/config/resourceconfig.json
    naming current_host and hosts, and what it leaves under an output's folder uploaded when
    every instance exited 0. /opt/ml is the instance's own folder (a private mount
    namespace; --no-container runs without one).
    """


def _job_name(script: Path) -> str:
    """The script's stem and the time (UTC, as the records), as a valid ProcessingJobName."""
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", script.stem).strip("-")[:47].strip("-") or "script"
    return f"{stem}-{utcnow():%Y%m%d-%H%M%S}"


def _free_name(jobs: ScriptJobs, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... when a job has it already."""
    candidate, n = name, 1
    while True:
        try:
            jobs.get(candidate)
        except NotFoundError:
            return candidate
        n += 1
        candidate = f"{name}-{n}"


def parse_input(value: str, distribution: str) -> tuple[str, str, str]:
    """``SRC:DEST[:DISTRIBUTION]`` as (source, local path, distribution).

    SRC may hold colons (``s3://...``): DEST starts at the last ``:`` followed by /opt/ml.

    Raises:
        ConfigurationError: No DEST under /opt/ml, or an unknown distribution.
    """
    cuts = [i for i in range(len(value)) if value[i] == ":"
            and value.startswith(OPT_ML, i + 1)]
    if not cuts or cuts[-1] == 0:
        raise ConfigurationError(
            f"--input {value!r} must be SRC:DEST, DEST a folder under {PROCESSING_ROOT}/ "
            f"(e.g. data/:{PROCESSING_ROOT}/input/data)", setting="input")
    source, dest = value[:cuts[-1]], value[cuts[-1] + 1:]
    if ":" in dest:
        dest, distribution = dest.rsplit(":", 1)
        if distribution not in DISTRIBUTIONS:
            raise ConfigurationError(
                f"--input {value!r}: the distribution {distribution!r} must be one of "
                f"{', '.join(DISTRIBUTIONS)}", setting="input")
    if not source.startswith("s3://"):
        source = str(Path(source).expanduser().resolve())
    return source, dest, distribution


def parse_output(value: str) -> tuple[str, str]:
    """``SRC:DEST`` as (local path under /opt/ml/processing, destination).

    Raises:
        ConfigurationError: SRC is not under /opt/ml or DEST is missing.
    """
    local, _, dest = value.partition(":")
    if not local.startswith(OPT_ML) or not dest:
        raise ConfigurationError(
            f"--output {value!r} must be SRC:DEST, SRC a folder under {PROCESSING_ROOT}/ and "
            f"DEST a local folder or s3://bucket/prefix (e.g. {PROCESSING_ROOT}/output:out/)",
            setting="output")
    if not dest.startswith("s3://"):
        dest = str(Path(dest).expanduser().resolve())
    return local, dest


def _environment(pairs: tuple[str, ...]) -> dict[str, str]:
    environment = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--env {pair!r} must be KEY=VALUE", setting="env")
        environment[key] = value
    return environment


def _ended(jobs: ScriptJobs, name: str, poll: float = 0.1) -> ScriptJob:
    """The job's record once it has ended. Polls the record: a thread's join() interrupted
    by Ctrl-C may return at once afterwards (Python 3.11), and the job must end first."""
    while True:
        job = jobs.get(name)
        if job.status in ENDED:
            return job
        time.sleep(poll)


def _report(job: ScriptJob) -> None:
    """The end of a run: status, each instance's exit code, timings, reason, logs."""
    click.echo(f"processing job {job.spec.name}: {job.status} "
               f"({sum(job.timings.values()):.1f} s)")
    for host in job.hosts:
        code = job.exit_codes.get(host)
        click.echo(f"  {host}: " + ("not run" if host not in job.exit_codes else
                                    f"stopped (exit {code})" if job.status == "Stopped" else
                                    f"exit {code}"))
    if job.timings:
        click.echo("  timings: " + ", ".join(f"{key.removesuffix('_s')} {value:.2f} s"
                                             for key, value in job.timings.items()))
    if job.status == "Completed":
        for output in job.spec.outputs:
            click.echo(f"  output {output.local_path} -> {output.destination}")
    if job.failure_reason:
        click.secho(f"failure reason: {job.failure_reason}", fg="red", err=True)
    click.echo(f"logs: loopworks processing logs {job.spec.name} --host algo-N "
               f"(N: 1-{job.spec.instance_count})")


@processing.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", default=None,
              help="The job's name: 1-63 letters, digits and inner hyphens (default: the "
                   "script's name and the time).")
@click.option("--input", "inputs", multiple=True, metavar="SRC:DEST[:DISTRIBUTION]",
              help="Download SRC (a local file or folder, or s3://bucket/prefix in loopworks' "
                   "object store) to folder DEST under /opt/ml/processing/ of each instance; "
                   "a third part ShardedByS3Key or FullyReplicated overrides --distribution "
                   "(repeatable).")
@click.option("--output", "outputs", multiple=True, metavar="SRC:DEST",
              help="Upload what the instances leave in folder SRC under /opt/ml/processing/ "
                   "to DEST (a local folder or s3://bucket/prefix) when every instance "
                   "exited 0 (repeatable).")
@click.option("--instance-count", type=int, default=1, show_default=True,
              help="How many instances run the script (algo-1, algo-2...), 1-100.")
@click.option("--distribution", type=click.Choice(DISTRIBUTIONS), default="FullyReplicated",
              show_default=True,
              help="Inputs' S3DataDistributionType: every file on every instance, or each "
                   "instance a disjoint share (together all of them).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="Run the instances as processes here, or as Ray tasks (the ray extra).")
@click.option("--python", "python", default=None, metavar="PATH",
              help="The interpreter that python and python3 run: an interpreter or a virtual "
                   "environment's folder (default: loopworks' own).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="An environment variable of the script (repeatable).")
@click.option("--max-runtime", type=int, default=86_400, show_default=True,
              metavar="SECONDS",
              help="Stop every instance after this many seconds (MaxRuntimeInSeconds).")
@click.option("--no-container", is_flag=True,
              help="Run without a private /opt/ml (where mount namespaces are not "
                   "available): /opt/ml in the entrypoint and arguments becomes each "
                   "instance's folder, so give the script its paths as arguments.")
@home_option
@handle_errors
def run(script: Path, args: tuple[str, ...], name: str | None, inputs: tuple[str, ...],
        outputs: tuple[str, ...], instance_count: int, distribution: str, engine: str,
        python: str | None, env: tuple[str, ...], max_runtime: int, no_container: bool,
        home: str | None) -> None:
    """Run SCRIPT with ARGS on each instance and wait for the job to end.

    SCRIPT is downloaded to /opt/ml/processing/input/code/ and run as `python3
    /opt/ml/processing/input/code/SCRIPT ARGS`, as SageMaker's SKLearnProcessor does. Put
    the options of `run` before SCRIPT; after it, options `run` does not know go to the
    script, and so does everything after `--`:

    \b
      loopworks processing run --instance-count 2 \\
        --input data/:/opt/ml/processing/input/data:ShardedByS3Key \\
        --output /opt/ml/processing/output:out/ features.py -- --max-seq-length 128

    Each instance sees SageMaker's container contract: its inputs under
    /opt/ml/processing/, /opt/ml/config/resourceconfig.json naming current_host and hosts,
    and its output folders uploaded when every instance exited 0. Exits 1 when the job
    fails or is stopped (Ctrl-C stops it).
    """
    jobs = _jobs(home)
    job_inputs = []
    for i, value in enumerate(inputs):
        source, local, dist = parse_input(value, distribution)
        job_inputs.append(ScriptInput(f"input-{i + 1}", source, local, distribution=dist))
    # Last, as the SageMaker SDK adds it: --input N stays ProcessingInputs[N-1] in errors.
    job_inputs.append(ScriptInput("code", str(script.resolve()), CODE_PATH))
    job_outputs = [ScriptOutput(f"output-{i + 1}", *parse_output(value))
                   for i, value in enumerate(outputs)]
    if name is None:
        name = _free_name(jobs, _job_name(script))
    elif not JOB_NAME.fullmatch(name):
        raise ConfigurationError(f"--name {name!r} must be 1-63 letters, digits and inner "
                                 "hyphens", setting="name")
    spec = ScriptJobSpec(
        name, ["python3", f"{CODE_PATH}/{script.name}"], list(args), inputs=job_inputs,
        outputs=job_outputs, instance_count=instance_count, environment=_environment(env),
        max_runtime_seconds=max_runtime, python=python or "", engine=engine,
        isolation="none" if no_container else "namespace")
    job = jobs.start(spec)
    click.echo(f"processing job {name}: {instance_count} instance"
               f"{'s' if instance_count > 1 else ''} ({', '.join(job.hosts)}), engine "
               f"{engine}{', no container' if no_container else ''}")
    for item in job_inputs:
        click.echo(f"  input {item.source} -> {item.local_path}"
                   + (" (ShardedByS3Key)" if item.distribution == "ShardedByS3Key" else ""))
    click.echo(f"  follow: loopworks processing logs {name} --host algo-1 --follow")
    try:
        job = _ended(jobs, name)
    except KeyboardInterrupt:
        # The instances run in sessions of their own: leaving now would orphan them.
        click.echo(f"stopping {name}...", err=True)
        try:
            jobs.stop(name)
        except ConflictError:  # it ended meanwhile
            pass
        job = _ended(jobs, name)
    _report(job)
    if job.status != "Completed":
        sys.exit(1)


def _row(job: ScriptJob) -> dict[str, Any]:
    return {"name": job.spec.name, "status": job.status, "instances": job.spec.instance_count,
            "engine": job.spec.engine, "created_at": job.created_at, "ended_at": job.ended_at,
            "failure_reason": job.failure_reason}


@processing.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_jobs(as_json: bool, home: str | None) -> None:
    """List processing jobs, newest first."""
    rows = [_row(job) for job in _jobs(home).list()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    # Names whole (to copy into the other commands); times wrap at the T if they must.
    table.add_column("job", no_wrap=True, min_width=max((len(r["name"]) for r in rows),
                                                        default=3))
    for col in ("status", "instances", "engine", "created", "ended"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["status"], str(row["instances"]), row["engine"],
                      row["created_at"][:19].replace("T", " "),
                      (row["ended_at"] or "")[:19].replace("T", " "))
    plain_console().print(table if rows else "no processing jobs yet: loopworks processing "
                                             "run SCRIPT")


@processing.command("describe")
@click.argument("name")
@home_option
@handle_errors
def describe(name: str, home: str | None) -> None:
    """Print job NAME's record as JSON: spec, status, exit codes, timings, failure reason."""
    click.echo(json.dumps(_jobs(home).get(name).to_dict(), indent=2, default=str))


@processing.command("logs")
@click.argument("name")
@click.option("--host", default="algo-1", show_default=True,
              help="The instance whose log to print.")
@click.option("--follow", is_flag=True, help="Keep printing as the log grows, until the job "
                                             "ends.")
@home_option
@handle_errors
def logs(name: str, host: str, follow: bool, home: str | None) -> None:
    """Print what an instance of job NAME wrote (its stdout and stderr, as they came)."""
    jobs = _jobs(home)
    if follow:
        try:
            for chunk in jobs.follow(name, host):
                click.echo(chunk, nl=False)
        except KeyboardInterrupt:
            pass
        return
    path = jobs.log_path(name, host)
    if not path.is_file():
        click.echo(f"{host} of {name} has written nothing yet", err=True)
        return
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), ""):
            click.echo(chunk, nl=False)


@processing.command("stop")
@click.argument("name")
@home_option
@handle_errors
def stop(name: str, home: str | None) -> None:
    """Stop every instance of job NAME (it ends Stopped; nothing is uploaded)."""
    job = _jobs(home).stop(name)
    click.echo(f"stopping processing job {name!r} ({job.status})")
