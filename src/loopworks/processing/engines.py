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

__all__ = ["run_tasks"]

T = TypeVar("T")
R = TypeVar("R")


def _worker_init() -> None:
    # One worker per core: the Rust tokenizer must not start its own thread pool per worker
    # (and after a fork it would deadlock).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    engine: str = "local",
    workers: int = 1,
    ray_address: str = "",
) -> Iterator[R]:
    """Run ``fn`` on every task and yield results as they complete.

    Args:
        fn: A module-level (picklable) function.
        tasks: Picklable task descriptions.
        engine: ``local`` or ``ray``.
        workers: Worker processes, or concurrent Ray tasks.
        ray_address: Ray cluster address; empty starts a local Ray with ``workers`` CPUs.
    """
    if not tasks:
        return
    if engine == "ray":
        yield from _run_ray(fn, tasks, workers, ray_address)
    elif workers == 1:
        for task in tasks:
            yield fn(task)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                 initializer=_worker_init) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
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


def _ray_apply(row: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    return {"result": pickle.dumps(fn(pickle.loads(row["task"])))}


def _run_ray(fn: Callable[[T], R], tasks: Sequence[T], workers: int, address: str) -> Iterator[R]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray", "ray", "the Ray engine (--engine ray)") from None
    started_here = False
    if not ray.is_initialized():
        ray.init(
            address=address or None,
            num_cpus=None if address else workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
        )
        started_here = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Tasks travel pickled so Ray Data never reinterprets the arrays inside them.
        items = [{"task": pickle.dumps(task)} for task in tasks]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        mapped = dataset.map(functools.partial(_ray_apply, fn=fn), num_cpus=1,
                             concurrency=max(1, min(workers, len(items))))
        for row in mapped.iter_rows():
            yield pickle.loads(row["result"])
    finally:
        if started_here:
            ray.shutdown()
