"""A Ray cluster of several nodes on one machine, each node a `ray start --block` process:
what two machines would run, for trying a multi-node setup, testing and benchmarks.

    with LocalRayCluster(nodes=2) as cluster:
        run_processing_job(ProcessingConfig(..., engine="ray", ray_address=cluster.address))

Every process of the cluster runs with ``RAY_AUTH_MODE=disabled`` (no token files) and no
usage reports; a driver connecting to it needs the same (:data:`RAY_ENV`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["RAY_ENV", "LocalRayCluster"]

#: The environment of the cluster's processes and of its drivers.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class LocalRayCluster:
    """A head and ``nodes - 1`` more nodes of ``cpus`` CPUs each, started at once.

    Each node runs in a session of its own, so :meth:`kill_node` takes a whole node down;
    :meth:`stop` ends them all and removes the cluster's temp folder (kept short: Ray's
    socket paths must be).

    Raises:
        RuntimeError: The cluster did not come up within ``timeout`` seconds (with the end
            of the nodes' logs).
    """

    def __init__(self, nodes: int = 2, *, cpus: int = 1, timeout: float = 120) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="lw-ray-", dir="/tmp"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus
        self.env = {**os.environ, **RAY_ENV}
        self.env.pop("RAY_ADDRESS", None)
        self.ray = str(Path(sys.executable).parent / "ray")
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start(["--head", f"--port={self.port}", f"--temp-dir={self.temp}",
                         "--include-dashboard=false", "--disable-usage-stats"])
            self._wait(self._listening, "the head to listen", timeout)
            for _ in range(nodes - 1):
                self._start([f"--address={self.address}"])
            self._wait(lambda: self.alive_nodes() == nodes, f"{nodes} nodes", timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str]) -> None:
        log = open(self.temp / f"node-{len(self.processes)}.log", "wb")  # noqa: SIM115
        with log:
            self.processes.append(subprocess.Popen(
                [self.ray, "start", "--block", f"--num-cpus={self.cpus}",
                 "--node-ip-address=127.0.0.1", *args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def alive_nodes(self) -> int:
        """How many nodes the head counts as active."""
        done = subprocess.run([self.ray, "status", f"--address={self.address}"], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text(errors="replace")[-2000:]
                                 for p in sorted(self.temp.glob("node-*.log")))
                raise RuntimeError(f"the Ray cluster never had {what}:\n{logs}")
            time.sleep(0.5)

    def kill_node(self, index: int = -1) -> None:
        """SIGKILL to a node's whole process group (default: the last one started)."""
        os.killpg(self.processes[index].pid, signal.SIGKILL)

    def stop(self) -> None:
        """End every node (SIGTERM, then SIGKILL), newest first; remove the temp folder."""
        for process in reversed(self.processes):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    process.wait(20)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.processes = []
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
