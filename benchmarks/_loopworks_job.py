"""Run one loopworks processing job and print its timings and peak memory as one JSON line.

A helper of ``benchmarks/processing.py``, which runs it as a subprocess so that the job's
memory is measured alone (not the benchmark's own tables) and its worker processes are this
process's children: ``getrusage(RUSAGE_CHILDREN)`` then gives the largest worker's peak.
The job's workers are started with ``spawn``, hence the ``__main__`` guard.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", required=True, help="loopworks home for the job record")
    args = parser.parse_args()

    from loopworks.processing import ProcessingConfig, run_processing_job

    start = time.perf_counter()
    config = ProcessingConfig(inputs=args.inputs, out=args.out, tokenizer=args.tokenizer,
                              workers=args.workers, overwrite=True)
    report = run_processing_job(config, home=args.home)
    seconds = time.perf_counter() - start
    kib = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "seconds": round(seconds, 4),
        "rows": report.counts["rows_in"],
        "rows_out": report.counts["rows_out"],
        "timings": {k: round(v, 4) for k, v in report.timings.items()},
        "counts": report.counts,
        "tokens": report.tokens,
        "driver_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
        "largest_child_max_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
    }))


if __name__ == "__main__":
    main()
