"""Processing jobs that run the user's own script, as SageMaker Processing runs a container.

A job is an entrypoint (``python3 /opt/ml/processing/input/code/features.py``) with its
arguments, run once per instance (``algo-1``, ``algo-2``...) as a process of its own, on this
machine or as Ray tasks. Each instance sees SageMaker's container contract unchanged:

* every input downloaded to its ``LocalPath`` under ``/opt/ml/processing/`` (all objects,
  or with ``ShardedByS3Key`` a disjoint share: together the instances cover them all);
* ``/opt/ml/config/resourceconfig.json`` (``current_host``, ``hosts``) and
  ``/opt/ml/config/processingjobconfig.json`` (the job's request);
* the job's Environment, ``python``/``python3`` on the PATH (the server's interpreter or the
  job's virtual environment), and whatever the caller adds (the server adds
  ``AWS_ENDPOINT_URL`` and a key of the job's owner, revoked when the job ends).

``/opt/ml`` is the instance's own folder, mounted there in a private mount namespace
(``unshare``; no root needed where user namespaces are allowed). Where that is impossible the
job is refused with a message saying how to run instead: ``isolation="none"``, which runs the
script in its instance folder and rewrites ``/opt/ml`` in the entrypoint and arguments to it.

Outputs under each ``LocalPath`` are uploaded at the end (``EndOfJob``) when every instance
exited 0. A non-zero exit fails the job with the last lines of that instance's stderr;
:meth:`ScriptJobs.stop` and ``max_runtime_seconds`` stop every instance. Logs of each
instance are kept (:meth:`ScriptJobs.log_path`).

Job records live in the metadata database (:mod:`loopworks.processing.records`), so every
process sharing it (servers on several machines, the CLI) lists, describes and stops every
job. A job runs in the process that started it: its instance folders and logs stay under
that machine's root (``$LOOPWORKS_HOME/processing-jobs/<job>/``), and its record names that
host and process. The process refreshes a heartbeat in the record and polls it for a stop
asked from anywhere; a job whose process was killed is Failed by the next reader once its
heartbeat is stale. Records older releases kept in ``<job>/job.json`` are not carried over.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loopworks.clock import as_utc, utcnow
from loopworks.errors import ConfigurationError, ConflictError, InputError, NotFoundError
from loopworks.processing.instances import (
    namespaces_available,
    ray_instance,
    rewrite_opt_ml,
    run_instance,
    unshare_command,
)
from loopworks.processing.records import (
    HEARTBEAT_SECONDS,
    STALE_AFTER_SECONDS,
    JobRecord,
    ScriptJobRecords,
    this_runner,
)
from loopworks.processing.scriptspec import (
    JOB_NAME,
    OPT_ML,
    PROCESSING_ROOT,
    ScriptInput,
    ScriptJob,
    ScriptJobSpec,
    ScriptOutput,
    interpreter,
)

if TYPE_CHECKING:
    from loopworks.objectstore import ObjectStore

__all__ = ["JOB_NAME", "OPT_ML", "PROCESSING_ROOT", "ScriptInput", "ScriptJob", "ScriptJobSpec",
           "ScriptJobs", "ScriptOutput", "namespaces_available"]

_ENDED = ("Completed", "Failed", "Stopped")
#: How often the process running jobs polls their records for a stop.
_POLL_SECONDS = 0.5

class ScriptJobs:
    """Run, record, stop and read the logs of script processing jobs.

    Records are in the metadata database, shared by every process using it; the jobs this
    object runs keep their instance folders and logs under ``root``, on this machine.

    Args:
        engine: The metadata database (the records).
        root: Where the jobs run here keep their instance folders and logs.
        objects: loopworks' object store, for ``s3://`` inputs and outputs.
        stale_after: Seconds without a heartbeat after which a running job read here is
            taken for one whose process died, and Failed.
        heartbeat_every: How often the jobs run here refresh their heartbeats (well under
            every reader's ``stale_after``).
    """

    def __init__(self, engine: sa.Engine, root: str | os.PathLike[str],
                 objects: ObjectStore | None = None, *,
                 stale_after: float = STALE_AFTER_SECONDS,
                 heartbeat_every: float = HEARTBEAT_SECONDS) -> None:
        if not heartbeat_every > 0:
            raise ConfigurationError("heartbeat_every must be a positive number of seconds",
                                     setting="heartbeat_every")
        self.records = ScriptJobRecords(engine, stale_after=stale_after)
        self.root = Path(root)
        self.objects = objects
        self.heartbeat_every = heartbeat_every
        self.runner = this_runner()
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._running: set[str] = set()  # the jobs this object runs, watched by _watcher
        self._watcher: threading.Thread | None = None

    # ----------------------------------------------------------------- records
    def _folder(self, name: str) -> Path:
        if not JOB_NAME.fullmatch(name or ""):
            raise NotFoundError(f"no processing job {name!r}", job=name)
        return self.root / name

    def _save(self, job: ScriptJob, *, ended: bool = False) -> bool:
        """Write the record of a job run here (its status too when ``ended``); False when
        the record ended meanwhile, taken over by a reader who thought this process dead."""
        return self.records.save(job.spec.name, job.to_dict(),
                                 status=job.status if ended else None)

    def get(self, name: str) -> ScriptJob:
        """A job's record, run here or by another process sharing the database; a running
        job whose process has stopped (its heartbeat stale) is Failed first.

        Raises:
            NotFoundError: There is no such job.
        """
        self._folder(name)  # a name no job can have is simply not found
        return _job(self.records.get(name))

    def list(self) -> builtins.list[ScriptJob]:
        """Every job, wherever it runs, newest first."""
        return [_job(record) for record in self.records.list()]

    def log_path(self, name: str, host: str = "algo-1") -> Path:
        """Where an instance's log (its stdout and stderr, as they came) is written: under
        this object's root, so only for jobs run on this machine."""
        job = self.get(name)
        if host not in job.hosts:
            raise NotFoundError(f"job {name!r} has no host {host!r}; its hosts are "
                                f"{', '.join(job.hosts)}", job=name, host=host)
        return self._folder(name) / "logs" / f"{host}.log"

    def follow(self, name: str, host: str = "algo-1", poll: float = 0.5) -> Iterator[str]:
        """An instance's log as it grows, until the job has ended."""
        path = self.log_path(name, host)
        offset = 0
        while True:
            ended = self.get(name).status in _ENDED
            if path.is_file():
                with path.open("r", encoding="utf-8", errors="replace") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
                if chunk:
                    yield chunk
            if ended:
                return
            time.sleep(poll)

    # -------------------------------------------------------------------- runs
    def start(self, spec: ScriptJobSpec, *, env: dict[str, str] | None = None,
              on_end: Callable[[ScriptJob], None] | None = None) -> ScriptJob:
        """Check and record a job, then run it on a thread of this process.

        Raises:
            ConfigurationError: The spec cannot run (names the field).
            InputError: An input has nothing to download.
            ConflictError: A job of that name exists.
        """
        job = self._record(spec)
        thread = threading.Thread(target=self._run, args=(job, env or {}, on_end),
                                  name=f"processing-{spec.name}", daemon=True)
        with self._lock:
            self._threads[spec.name] = thread
        thread.start()
        return job

    def run(self, spec: ScriptJobSpec, *, env: dict[str, str] | None = None,
            on_end: Callable[[ScriptJob], None] | None = None) -> ScriptJob:
        """Check, record and run a job here, until it ends; returns its final record."""
        job = self._record(spec)
        self._run(job, env or {}, on_end)
        return self.get(spec.name)

    def wait(self, name: str, timeout: float | None = None) -> ScriptJob:
        """The job's record once its thread (of :meth:`start`) is done."""
        with self._lock:
            thread = self._threads.get(name)
        if thread is not None:
            thread.join(timeout)
        return self.get(name)

    def stop(self, name: str) -> ScriptJob:
        """Stop every instance of a running job (Stopping, then Stopped), from any process
        sharing the database.

        Raises:
            NotFoundError: There is no such job.
            ConflictError: The job has ended.
        """
        self._folder(name)
        # A flag in the record: the process running the job, wherever, polls it and stops
        # the instances; the job's own thread then records it Stopped.
        return _job(self.records.request_stop(name))

    def _record(self, spec: ScriptJobSpec) -> ScriptJob:
        spec.check()
        if spec.isolation == "namespace":
            reason = namespaces_available()
            if reason is not None:
                raise ConfigurationError(
                    f"instances cannot have their own {OPT_ML} here (a private mount namespace "
                    f"is not available: {reason}); run the job with isolation none "
                    "(`loopworks processing run --no-container`), and give the script its "
                    "paths as arguments: /opt/ml in the entrypoint and arguments then names "
                    "each instance's folder", setting="isolation")
        for i, item in enumerate(spec.inputs):
            self._sources(item, f"ProcessingInputs[{i}].S3Input.S3Uri")  # refuse missing data
        folder = self._folder(spec.name)
        created = utcnow()
        job = ScriptJob(spec, created_at=created.isoformat(), runner=self.runner)
        self.records.create(spec.name, job.to_dict(), created_at=created, runner=self.runner)
        self._watch(spec.name)
        try:
            # The name is new to the database: a folder of that name is an older release's
            # or a reset database's, and its files must not mix with this job's (outputs!).
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        except OSError as exc:
            job.status, job.failure_reason = "Failed", f"{type(exc).__name__}: {exc}"
            job.ended_at = utcnow().isoformat()
            self._save(job, ended=True)
            self._unwatch(spec.name)
            raise
        return job

    # -------------------------------------------------------- heartbeat, stops
    def _watch(self, name: str) -> None:
        """Keep the job's heartbeat and poll its stop flag (a thread of its own, shared by
        every job run here, so a busy job never misses a beat)."""
        with self._lock:
            self._running.add(name)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watching,
                                                 name="processing-heartbeat", daemon=True)
                self._watcher.start()

    def _unwatch(self, name: str) -> None:
        with self._lock:
            self._running.discard(name)

    def _watching(self) -> None:
        """Until no job runs here: refresh heartbeats every ``heartbeat_every`` seconds and
        poll for stops; a job to stop gets its STOP file, which its instances watch (on
        this machine, or on Ray nodes sharing the folder)."""
        beat_due = 0.0
        while True:
            with self._lock:
                names = set(self._running)
                if not names:
                    self._watcher = None
                    return
            refresh = time.monotonic() >= beat_due
            try:
                stop = self.records.beat(names, refresh=refresh)
            except sa.exc.SQLAlchemyError:
                stop = set()  # the database is away for now: the next round tries again
            else:
                if refresh:
                    beat_due = time.monotonic() + self.heartbeat_every
            for name in stop:
                folder = self.root / name
                if folder.is_dir():
                    (folder / "STOP").touch()
            time.sleep(min(_POLL_SECONDS, self.heartbeat_every))

    def _run(self, job: ScriptJob, env: dict[str, str],
             on_end: Callable[[ScriptJob], None] | None) -> None:
        try:
            self._execute(job, env)
        finally:
            self._unwatch(job.spec.name)
        if on_end is not None:
            on_end(job)

    def _execute(self, job: ScriptJob, env: dict[str, str]) -> None:
        """Run the job to its end and record it; a record that ended meanwhile (failed by
        a reader who took this process for dead) stays as it is and is what ``job``
        becomes."""
        spec = job.spec
        folder = self._folder(spec.name)
        began = time.monotonic()
        try:
            instances = self._prepare(job, folder)
            job.timings["download_s"] = round(time.monotonic() - began, 3)
            job.started_at = utcnow().isoformat()
            if not self._save(job):
                self._taken_over(job)
                return
            deadline = time.time() + spec.max_runtime_seconds
            results = self._launch(job, folder, instances, env, deadline)
            job.timings["run_s"] = round(time.monotonic() - began
                                         - job.timings["download_s"], 3)
            ordered = [(host, *results[host]) for host in job.hosts]  # algo-1 first
            job.exit_codes = {host: code for host, code, _, _ in ordered}
            stopped = [why for _, _, _, why in ordered if why]
            failed = [(host, code, tail) for host, code, tail, why in ordered
                      if code != 0 and not why]
            if stopped:
                job.status, job.failure_reason = "Stopped", stopped[0]
            elif failed:
                host, code, tail = failed[0]
                job.status = "Failed"
                job.failure_reason = (f"AlgorithmError: {host} exited with code {code}"
                                      + (f": {tail}" if tail else ""))
            else:
                uploaded = time.monotonic()
                self._upload(job, instances)
                job.timings["upload_s"] = round(time.monotonic() - uploaded, 3)
                job.status = "Completed"
        except Exception as exc:  # a bad input met while downloading, a lost store...
            job.status, job.failure_reason = "Failed", f"{type(exc).__name__}: {exc}"
        job.ended_at = utcnow().isoformat()
        if not self._save(job, ended=True):
            self._taken_over(job)

    def _taken_over(self, job: ScriptJob) -> None:
        """``job`` as its record ended without this process (see :meth:`_execute`)."""
        ended = self.get(job.spec.name)
        job.status, job.failure_reason = ended.status, ended.failure_reason
        job.ended_at = ended.ended_at

    # ----------------------------------------------------------- inputs/outputs
    def _sources(self, item: ScriptInput, where: str) -> builtins.list[tuple[str, Any]]:
        """(relative path, source) of every file an input names, sorted by key."""
        if item.source.startswith("s3://"):
            if self.objects is None:
                raise InputError(f"{where}: s3:// inputs need loopworks' object store",
                                 field=where)
            bucket, _, prefix = item.source[5:].partition("/")
            if item.data_type == "ManifestFile":
                return self._manifest(bucket, prefix, where)
            found = []
            try:
                after = ""
                while True:
                    listing = self.objects.list(bucket, prefix=prefix, after=after)
                    found += [(o.key[len(prefix):].lstrip("/") or o.key.rsplit("/", 1)[-1], o)
                              for o in listing.objects if not o.key.endswith("/")]
                    if not listing.truncated or listing.next_after is None:
                        break
                    after = listing.next_after
            except NotFoundError:
                raise InputError(f"{where}: bucket {bucket!r} does not exist",
                                 field=where) from None
            if not found:
                raise InputError(f"{where}: no objects under {item.source}", field=where)
            return found
        path = Path(item.source).expanduser()
        if path.is_file():
            return [(path.name, path)]
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            if files:
                return [(str(p.relative_to(path)), p) for p in files]
        raise InputError(f"{where}: {item.source} is not a file or a folder with files",
                         field=where)

    def _manifest(self, bucket: str, key: str, where: str) -> builtins.list[tuple[str, Any]]:
        """A manifest file's objects: ``[{"prefix": "s3://bucket/p/"}, "rel/key", ...]``."""
        assert self.objects is not None
        try:
            info = self.objects.head(bucket, key)
            document = json.loads(b"".join(self.objects.read(info)))
            base = document[0]["prefix"]
            base_bucket, _, base_prefix = base[5:].partition("/")
            found = [(rel, self.objects.head(base_bucket, base_prefix + rel))
                     for rel in document[1:]]
        except NotFoundError as exc:
            raise InputError(f"{where}: {exc}", field=where) from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise InputError(f"{where}: a manifest file is a JSON list: "
                             '[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]',
                             field=where) from None
        return found

    def _prepare(self, job: ScriptJob, folder: Path) -> dict[str, Path]:
        """Each instance's /opt/ml: configs, its inputs, empty output folders; the python
        shims."""
        spec = job.spec
        shims = folder / "bin"
        shims.mkdir(exist_ok=True)
        python = interpreter(spec.python) if spec.python else sys.executable
        for name in ("python", "python3"):
            shim = shims / name
            shim.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
            shim.chmod(0o755)
        hosts = job.hosts
        sources = [self._sources(item, f"ProcessingInputs[{i}].S3Input.S3Uri")
                   for i, item in enumerate(spec.inputs)]
        instances = {}
        for index, host in enumerate(hosts):
            root = folder / "instances" / host
            (root / "config").mkdir(parents=True, exist_ok=True)
            (root / "config" / "resourceconfig.json").write_text(json.dumps(
                {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}))
            (root / "config" / "processingjobconfig.json").write_text(json.dumps(
                spec.request or {"ProcessingJobName": spec.name}, default=str))
            for item, files in zip(spec.inputs, sources, strict=True):
                share = files[index::len(hosts)] if item.distribution == "ShardedByS3Key" \
                    else files
                target = root / item.local_path[len(OPT_ML) + 1:]
                target.mkdir(parents=True, exist_ok=True)
                for relative, source in share:
                    self._download(source, target / relative)
            for output in spec.outputs:
                (root / output.local_path[len(OPT_ML) + 1:]).mkdir(parents=True, exist_ok=True)
            instances[host] = root
        return instances

    def _download(self, source: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, path)
            return
        assert self.objects is not None
        with open(path, "wb") as out:
            for chunk in self.objects.read(source):
                out.write(chunk)

    def _upload(self, job: ScriptJob, instances: dict[str, Path]) -> None:
        for output in job.spec.outputs:
            for root in instances.values():
                base = root / output.local_path[len(OPT_ML) + 1:]
                for path in sorted(p for p in base.rglob("*") if p.is_file()):
                    relative = str(path.relative_to(base))
                    if output.destination.startswith("s3://"):
                        assert self.objects is not None
                        bucket, _, prefix = output.destination[5:].partition("/")
                        key = f"{prefix.rstrip('/')}/{relative}" if prefix.strip("/") \
                            else relative
                        try:
                            self.objects.create_bucket(bucket)
                        except ConflictError:
                            pass
                        self.objects.put_file(bucket, key, path)
                    else:
                        target = Path(output.destination).expanduser() / relative
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, target)

    # -------------------------------------------------------------- instances
    def _launch(self, job: ScriptJob, folder: Path, instances: dict[str, Path],
                env: dict[str, str], deadline: float
                ) -> dict[str, tuple[int | None, str, str | None]]:
        spec = job.spec
        base = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWORKS_")}
        base.update(spec.environment)
        base.update(env)
        # python/python3 are the job's interpreter; its environment's other programs
        # (``loopworks`` itself: ``loopworks process`` as an entrypoint) come next.
        python = Path(interpreter(spec.python) if spec.python else sys.executable)
        path = os.pathsep.join([str(folder / "bin"), str(python.parent),
                                os.environ.get("PATH", "")])
        base.update({"PATH": path, "PYTHONUNBUFFERED": "1",
                     "TOKENIZERS_PARALLELISM": "false"})
        (folder / "logs").mkdir(exist_ok=True)
        plans = []
        for host, root in instances.items():
            argv = [*spec.entrypoint, *spec.arguments]
            if spec.isolation == "namespace":
                command = [*unshare_command(), str(root), *argv]
            else:
                command = [rewrite_opt_ml(a, str(root)) for a in argv]
            plans.append((host, command, str(root), base,
                          str(folder / "logs" / f"{host}.log"), str(folder / "STOP"),
                          deadline, spec.max_runtime_seconds))
        if spec.engine == "ray":
            return self._launch_ray(job, plans)
        results: dict[str, tuple[int | None, str, str | None]] = {}
        threads = [threading.Thread(target=lambda p=plan: results.__setitem__(
            p[0], run_instance(*p[1:])), daemon=True) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    @staticmethod
    def _launch_ray(job: ScriptJob, plans: builtins.list[tuple[Any, ...]]
                    ) -> dict[str, tuple[int | None, str, str | None]]:
        """Each instance a Ray task of one CPU, on whichever node has one (the cluster of
        ``RAY_ADDRESS``, else a local Ray); logs go to the job's folder, which the nodes
        must share."""
        import ray

        from loopworks.processing.engines import start_ray

        start_ray(len(plans), "")
        remote = ray.remote(num_cpus=1)(ray_instance)
        pending = {plan[0]: remote.remote(*plan[1:]) for plan in plans}
        results = {}
        for host, ref in pending.items():
            code, tail, why, node = ray.get(ref)
            results[host] = (code, tail, why)
            job.nodes[host] = node
        return results


def _job(record: JobRecord) -> ScriptJob:
    """The job a record holds, with the status, runner and heartbeat of its row."""
    job = ScriptJob.from_dict(record.document)
    job.status, job.runner = record.status, record.runner
    job.last_seen = None if record.heartbeat_at is None else \
        as_utc(record.heartbeat_at).isoformat()
    return job
