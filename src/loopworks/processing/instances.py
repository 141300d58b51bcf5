"""Running one instance of a script processing job (:mod:`loopworks.processing.scripts`):
its own ``/opt/ml`` in a private mount namespace (or ``/opt/ml`` rewritten in its arguments),
its output streamed to a log, stopped with its whole process group when asked or when the
job's time is up; as a local process or a Ray task."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any

__all__ = ["namespaces_available", "ray_instance", "rewrite_opt_ml", "run_instance",
           "unshare_command"]

#: /opt/ml as a path of its own (not /opt/mlflow, not a/opt/ml), for isolation "none".
_OPT_ML_PATH = re.compile(r"(?<![\w/.])/opt/ml(?=/|$)")
#: Lines of a failing instance's stderr kept for the failure reason.
_TAIL_LINES = 20

# Inside a private mount namespace: a tmpfs over /opt with its entries bound back, then the
# instance's folder at /opt/ml; nothing outside the namespace changes.
_MOUNT_SCRIPT = r"""
set -e
inst="$1"; shift
[ -d /opt ] || mkdir /opt
orig=$(mktemp -d)
mount --bind /opt "$orig"
mount -t tmpfs -o mode=755 loopworks-opt /opt
for e in "$orig"/* "$orig"/.[!.]*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  n=${e##*/}
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" "/opt/$n"
  elif [ -d "$e" ]; then mkdir "/opt/$n"; mount --rbind "$e" "/opt/$n"
  else touch "/opt/$n"; mount --bind "$e" "/opt/$n"; fi
done
umount "$orig" && rmdir "$orig"
mkdir /opt/ml
mount --bind "$inst" /opt/ml
cd /opt/ml
exec "$@"
"""

_NAMESPACES: list[str | None] = []


def unshare_command() -> list[str]:
    """The command that runs ``sh -c`` in a private mount namespace with an instance's
    folder at /opt/ml (its arguments: the folder, then the instance's command)."""
    flags = ["--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        flags = ["--user", "--map-root-user", *flags]
    return ["unshare", *flags, "--", "sh", "-c", _MOUNT_SCRIPT, "loopworks-instance"]


def namespaces_available() -> str | None:
    """None when instances can have their own /opt/ml (a private mount namespace), else
    why not (checked once per process)."""
    if not _NAMESPACES:
        import tempfile

        reason = None
        if shutil.which("unshare") is None:
            reason = "the unshare command (util-linux) is not installed"
        else:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    done = subprocess.run([*unshare_command(), folder, "true"], capture_output=True,
                                          text=True, timeout=30, check=False)
                    if done.returncode != 0:
                        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
                except (OSError, subprocess.TimeoutExpired) as exc:
                    reason = str(exc)
        _NAMESPACES.append(reason)
    return _NAMESPACES[0]


def rewrite_opt_ml(argument: str, root: str) -> str:
    """``/opt/ml`` in an argument as the instance's folder (isolation none)."""
    return _OPT_ML_PATH.sub(lambda _: root, argument)


def run_instance(command: list[str], cwd: str, env: dict[str, str], log: str, stop_file: str,
                 deadline: float, max_runtime: int) -> tuple[int | None, str, str | None]:
    """Run one instance to its end: its output and errors to ``log`` as they come; stopped
    (its whole process group) when ``stop_file`` appears or at ``deadline``.

    Returns:
        (exit code, the last lines of its stderr, why it was stopped or None).
    """
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    lock = threading.Lock()
    with open(log, "a", encoding="utf-8") as out:
        try:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            out.write(f"cannot start {command[0]!r}: {exc}\n")
            return 127, str(exc), None

        def pump(stream: Any, keep: bool) -> None:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                with lock:
                    out.write(line)
                    out.flush()
                if keep:
                    tail.append(line.rstrip("\n"))

        readers = [threading.Thread(target=pump, args=(process.stdout, False), daemon=True),
                   threading.Thread(target=pump, args=(process.stderr, True), daemon=True)]
        for reader in readers:
            reader.start()
        why = None
        while process.poll() is None:
            if os.path.exists(stop_file):
                why = "stopped by StopProcessingJob"
            elif time.time() > deadline:
                why = f"MaxRuntimeInSeconds ({max_runtime}) exceeded: every instance was stopped"
            if why:
                _kill(process)
                break
            time.sleep(0.1)
        code = process.wait()
        for reader in readers:
            reader.join(5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    return code, "\n".join(tail), why


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the instance's process group, SIGKILL 5 s later if it is still there."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def ray_instance(*args: Any) -> tuple[int | None, str, str | None, str]:
    """:func:`run_instance` as a Ray task, with the id of the node it ran on."""
    import ray

    return (*run_instance(*args), ray.get_runtime_context().get_node_id())
