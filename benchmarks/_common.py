"""Helpers shared by the benchmark scripts: logging, scratch folders, CPU accounting."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["RunMeter", "fresh_dir", "log", "machine_busy_seconds", "own_cpu_seconds"]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished (waited-for) children."""
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (Linux /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class RunMeter:
    """A run's clock and how busy other processes kept the machine while it ran."""

    def __init__(self) -> None:
        self.busy, self.own, self.wall = machine_busy_seconds(), own_cpu_seconds(), \
            time.monotonic()

    def meta(self, **extra: Any) -> dict[str, Any]:
        """When the run finished, on what, and the share of the machine others used."""
        elapsed = time.monotonic() - self.wall
        cpus = os.cpu_count() or 1
        others = ((machine_busy_seconds() or 0) - (self.busy or 0)
                  - (own_cpu_seconds() - self.own))
        return {"finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": platform.machine(), "cpus": cpus,
                "others_busy": max(0.0, others / (elapsed * cpus)), **extra}
