"""Engines run a list of independent tasks: a local process pool or Ray Data.

Both call the same task functions, so the output is the same whichever engine and worker
count ran it. Results arrive as they finish; the caller sorts what needs sorting.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from loopworks.errors import LoopworksError, MissingDependencyError

__all__ = ["Engine", "run_tasks", "start_ray"]

T = TypeVar("T")
R = TypeVar("R")


def _worker_init() -> None:
    # One worker per core: the Rust tokenizer must not start its own thread pool per worker
    # (and after a fork it would deadlock).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


class Engine:
    """Runs tasks on a local process pool or on Ray, keeping one pool (or one Ray session)
    for every stage of a job so workers start once.

    Args:
        kind: ``local`` or ``ray``.
        workers: Worker processes, or concurrent Ray tasks.
        ray_address: Ray cluster address; empty starts a local Ray with ``workers`` CPUs.
    """

    def __init__(self, kind: str = "local", workers: int = 1, ray_address: str = "") -> None:
        self.kind, self.workers, self.ray_address = kind, workers, ray_address
        self._pool: ProcessPoolExecutor | None = None
        self._ray_started = False
        #: The Ray nodes that ran tasks (their ids), for the job's record.
        self.nodes: set[str] = set()

    def __enter__(self) -> Engine:
        if self.kind == "ray":
            self._ray_started = start_ray(self.workers, self.ray_address)
        elif self.workers > 1:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        """Run ``fn`` (module-level, picklable) on every task; yield results as they finish."""
        if not tasks:
            return
        if self.kind == "ray":
            yield from _run_ray(fn, tasks, self.workers, self.nodes)
        elif self._pool is None:
            for task in tasks:
                yield fn(task)
        else:
            futures = [self._pool.submit(fn, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BrokenProcessPool:
                raise LoopworksError(
                    "a worker process died. Workers are started with 'spawn': a script that "
                    "runs a job must guard its entry point with `if __name__ == \"__main__\":`"
                    "; otherwise the worker ran out of memory or crashed (try --workers 1)."
                ) from None
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], *, engine: str = "local",
              workers: int = 1, ray_address: str = "") -> Iterator[R]:
    """Run ``fn`` on every task with a one-off :class:`Engine`."""
    with Engine(engine, workers, ray_address) as running:
        yield from running.map(fn, tasks)


def _ray_apply(row: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    import ray

    return {"result": pickle.dumps(fn(pickle.loads(row["task"]))),
            "node": ray.get_runtime_context().get_node_id()}


def start_ray(workers: int, address: str) -> bool:
    """Connect to (or start) Ray; True when this call started it. Without an address, the
    ``RAY_ADDRESS`` environment variable names the cluster, as for Ray itself; without
    either, a local Ray with ``workers`` CPUs starts."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("ray", "ray", "the Ray engine (--engine ray)") from None
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS", "")
    ray.init(
        address=address or None,
        num_cpus=None if address else workers,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    return True


def _run_ray(fn: Callable[[T], R], tasks: Sequence[T], workers: int,
             nodes: set[str]) -> Iterator[R]:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Tasks travel pickled so Ray Data never reinterprets the arrays inside them.
    items = [{"task": pickle.dumps(task)} for task in tasks]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    mapped = dataset.map(functools.partial(_ray_apply, fn=fn), num_cpus=1,
                         concurrency=max(1, min(workers, len(items))))
    for row in mapped.iter_rows():
        nodes.add(row["node"])
        yield pickle.loads(row["result"])
