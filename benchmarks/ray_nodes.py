"""`loopworks process` on a Ray cluster of 1 and 2 nodes of one CPU each, against the local
engine with 2 workers, on the same reviews, in one run.

The nodes are separate `ray start --block` processes on this machine (a head, then a second
node joining it), as two machines would run them; the driver connects with
``--ray-address``. On a 2-core machine two one-CPU nodes and the local engine's two workers
have the same cores: the figures show what the cluster costs, not more hardware.

    python benchmarks/ray_nodes.py [--rows 100000]

Results: ``benchmarks/results/ray_nodes.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from loopworks.processing.raycluster import RAY_ENV, LocalRayCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processing import make_csv  # noqa: E402

from _common import RunMeter, fresh_dir, log  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
def run(csv: Path, out: Path, home: Path, **options: Any) -> dict[str, Any]:
    from loopworks.processing import ProcessingConfig, run_processing_job

    started = time.perf_counter()
    report = run_processing_job(ProcessingConfig(inputs=str(csv), out=str(out),
                                                 overwrite=True, **options), home=home)
    seconds = time.perf_counter() - started
    return {"rows": report.counts["rows_in"], "seconds": round(seconds, 3),
            "rows_per_s": round(report.counts["rows_in"] / seconds, 1),
            "ray_nodes": report.counts.get("ray_nodes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/loopworks-bench-ray-nodes"))
    args = parser.parse_args()
    os.environ.update(RAY_ENV)
    work = fresh_dir(args.workdir)
    csv, home = work / "reviews.csv", work / "home"
    log(f"making {args.rows:,} reviews")
    make_csv(args.rows, csv)
    meter = RunMeter()
    out: dict[str, Any] = {}
    log("local engine, 2 workers")
    out["local_2_workers"] = run(csv, work / "local", home, workers=2)
    for nodes in (1, 2):
        log(f"Ray, {nodes} node(s) of one CPU")
        with LocalRayCluster(nodes) as cluster:
            try:
                out[f"ray_{nodes}_nodes"] = run(csv, work / f"ray{nodes}", home, engine="ray",
                                                workers=nodes, ray_address=cluster.address)
            finally:
                import ray

                ray.shutdown()
    meta = meter.meta(rows=args.rows)
    cpus = meta["cpus"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_nodes.json").write_text(json.dumps({"meta": meta, **out}, indent=2))
    local = out["local_2_workers"]["rows_per_s"]
    rows = [f"| {label} | {out[key]['rows_per_s']:,} | {out[key]['rows_per_s'] / local:.2f}x |"
            for key, label in (("local_2_workers", "local engine, 2 workers"),
                               ("ray_1_nodes", "Ray, 1 node of 1 CPU"),
                               ("ray_2_nodes", "Ray, 2 nodes of 1 CPU each"))]
    text = "\n".join([
        "# `loopworks process` on Ray nodes", "",
        f"Run {meta['finished']} on {meta['machine']} ({cpus} CPUs), {args.rows:,} reviews; "
        f"other processes kept the machine {meta['others_busy']:.0%} busy. Each time is the "
        "whole job (reading, tokenizing, writing; connecting to Ray included).", "",
        "| engine | reviews/s | vs local |", "| --- | ---: | ---: |", *rows, ""])
    (RESULTS / "ray_nodes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
