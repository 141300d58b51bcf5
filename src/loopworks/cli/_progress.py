"""A terminal progress bar (rows/s) for long jobs, shown only on a terminal."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["RowsProgress"]

_LABELS = {"read": "reading + deriving", "encode": "tokenizing + writing"}


class RowsProgress:
    """Adapts the domain's ``progress(stage, done_now, total)`` callback to rich bars."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10} rows/s"), TimeElapsedColumn(),
            console=Console(stderr=True), disable=not self.enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RowsProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, stage: str, advance: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(_LABELS.get(stage, stage),
                                                         total=total or None, rate="")
        task_id = self._tasks[stage]
        self._progress.update(task_id, advance=advance, total=total or None)
        task = self._progress.tasks[task_id]
        if task.elapsed:
            self._progress.update(task_id, rate=f"{task.completed / task.elapsed:,.0f}")
