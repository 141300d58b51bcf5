"""Run one loopworks processing job and print its timings and peak memory as one JSON line.

A helper of ``benchmarks/processing.py``, which runs it as a subprocess so that the job's
memory is measured alone (not the benchmark's own tables) while it samples the memory of
this process and its workers. The job's workers are started with ``spawn``, hence the
``__main__`` guard.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


def peak_rss() -> int | None:
    """This process's peak resident memory in bytes (VmHWM), or None off Linux.

    Not ``getrusage().ru_maxrss``: Linux carries that over ``exec``, so a subprocess reports
    at least the resident size its parent had when it started it.
    """
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


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
    print(json.dumps({
        "seconds": round(seconds, 4),
        "rows": report.counts["rows_in"],
        "rows_out": report.counts["rows_out"],
        "timings": {k: round(v, 4) for k, v in report.timings.items()},
        "counts": report.counts,
        "tokens": report.tokens,
        "driver_peak_rss": peak_rss(),
    }))


if __name__ == "__main__":
    main()
