"""Processing jobs that run a user's script: what the job machinery costs, in one run.

* start-up per instance: from the call that starts a 2-instance job to each instance's
  first line (the script prints a clock reading first), on the local engine (each instance
  in its own mount namespace) and on a running Ray (``ray.init`` done before); the goals are
  < 2 s local and < 5 s on Ray;
* throughput: the same reviews tokenized (RoBERTa, max_seq_length 128) by a user's script
  run as a 2-instance job, ShardedByS3Key over the CSV shards, against ``loopworks
  process`` with 2 workers on the same rows; the goal is >= 0.8x.

    python benchmarks/processing_jobs.py [--rows 200000] [--shards 8] [--repeats 3]

Results: ``benchmarks/results/processing_jobs.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processing import DEFAULT_TOKENIZER, make_csv, run_loopworks_job  # noqa: E402

from _common import RunMeter, fresh_dir, log  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

FIRST_LINE = """
import json, time
print(json.dumps({"first_line": time.time()}), flush=True)
"""

# A user's feature script: tokenize its share of the CSV files, write Parquet.
TOKENIZE = """
import argparse, os, time
import pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
from loopworks.processing.tokenize import TextEncoder, load_tokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--tokenizer", required=True)
args = parser.parse_args()
encoder = TextEncoder(load_tokenizer(args.tokenizer).tokenizer.to_str(), 128)
folder, out = "/opt/ml/processing/input/reviews", "/opt/ml/processing/output/tokens"
rows = 0
for name in sorted(os.listdir(folder)):
    table = pacsv.read_csv(os.path.join(folder, name),
                           parse_options=pacsv.ParseOptions(newlines_in_values=True))
    texts = [t or "" for t in table.column("review_body").to_pylist()]
    for start in range(0, len(texts), 4096):
        batch = encoder.encode(texts[start:start + 4096])
        ids = pa.FixedSizeListArray.from_arrays(pa.array(batch.input_ids.ravel()), 128)
        mask = pa.FixedSizeListArray.from_arrays(pa.array(batch.attention_mask.ravel()), 128)
        pq.write_table(pa.table({"input_ids": ids, "attention_mask": mask}),
                       os.path.join(out, f"{name}-{start}.parquet"))
    rows += len(texts)
print("rows", rows)
"""


def split_csv(csv: Path, folder: Path, shards: int) -> None:
    """The CSV as ``shards`` files of about equal rows (what ShardedByS3Key spreads)."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(csv, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    per = -(-table.num_rows // shards)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        pacsv.write_csv(table.slice(i * per, per), folder / f"part-{i:03d}.csv")


def start_up(jobs: Any, work: Path, engine: str, repeats: int) -> list[float]:
    """Seconds from starting a 2-instance job to each instance's first line."""
    from loopworks.processing.scripts import ScriptInput, ScriptJobSpec

    script = work / "first_line.py"
    script.write_text(FIRST_LINE)
    samples = []
    for r in range(repeats):
        name = f"startup-{engine}-{r}"
        began = time.time()
        job = jobs.run(ScriptJobSpec(
            name, ["python3", "/opt/ml/processing/input/code/first_line.py"],
            inputs=[ScriptInput("code", str(script), "/opt/ml/processing/input/code")],
            instance_count=2, engine=engine))
        if job.status != "Completed":
            raise RuntimeError(f"{name}: {job.status} {job.failure_reason}")
        for host in job.hosts:
            line = jobs.log_path(name, host).read_text().splitlines()[0]
            samples.append(round(json.loads(line)["first_line"] - began, 3))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/loopworks-bench-procjobs"))
    args = parser.parse_args()
    from loopworks.processing.scripts import ScriptInput, ScriptJobs, ScriptJobSpec, ScriptOutput

    work = fresh_dir(args.workdir)
    csv = work / "reviews.csv"
    log(f"making {args.rows:,} reviews")
    make_csv(args.rows, csv)
    split_csv(csv, work / "shards", args.shards)
    jobs = ScriptJobs(work / "jobs")
    meter = RunMeter()
    out: dict[str, Any] = {}

    log("start-up, local engine")
    out["startup_local_s"] = start_up(jobs, work, "local", args.repeats)
    log("start-up, Ray (started first)")
    from loopworks.processing.engines import start_ray

    start_ray(2, "")
    out["startup_ray_s"] = start_up(jobs, work, "ray", args.repeats)

    log("loopworks process, 2 workers")
    home = work / "home"
    process = run_loopworks_job(csv, work / "process-out", args.tokenizer, 2, home)
    out["process"] = {"rows": process["rows"], "seconds": process["seconds"],
                      "rows_per_s": round(process["rows"] / process["seconds"], 1)}
    log("the tokenizing script as a 2-instance job")
    script = work / "tokenize_reviews.py"
    script.write_text(TOKENIZE)
    env_path = os.environ.get("PYTHONPATH", "")
    began = time.perf_counter()
    job = jobs.run(ScriptJobSpec(
        "tokenize", ["python3", "/opt/ml/processing/input/code/tokenize_reviews.py"],
        ["--tokenizer", str(args.tokenizer)],
        inputs=[ScriptInput("code", str(script), "/opt/ml/processing/input/code"),
                ScriptInput("reviews", str(work / "shards"), "/opt/ml/processing/input/reviews",
                            distribution="ShardedByS3Key")],
        outputs=[ScriptOutput("tokens", "/opt/ml/processing/output/tokens",
                              str(work / "job-out"))],
        instance_count=2, environment={"PYTHONPATH": env_path} if env_path else {}))
    seconds = time.perf_counter() - began
    if job.status != "Completed":
        raise RuntimeError(f"tokenize job: {job.status} {job.failure_reason}")
    out["script_job"] = {"rows": args.rows, "seconds": round(seconds, 3),
                         "rows_per_s": round(args.rows / seconds, 1), "timings": job.timings}
    ratio = out["script_job"]["rows_per_s"] / out["process"]["rows_per_s"]
    out["ratio"] = round(ratio, 3)

    meta = meter.meta(rows=args.rows)
    cpus = meta["cpus"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "processing_jobs.json").write_text(json.dumps({"meta": meta, **out}, indent=2))
    local, ray = out["startup_local_s"], out["startup_ray_s"]
    text = "\n".join([
        "# Processing jobs running a user's script", "",
        f"Run {meta['finished']} on {meta['machine']} ({cpus} CPUs), {args.rows:,} reviews; "
        f"other processes kept the machine {meta['others_busy']:.0%} busy.", "",
        "| measure | value | goal |", "| --- | ---: | ---: |",
        f"| start-up per instance, local (s, median / max of {len(local)}) | "
        f"{statistics.median(local):.3f} / {max(local):.3f} | < 2 |",
        f"| start-up per instance, running Ray (s, median / max of {len(ray)}) | "
        f"{statistics.median(ray):.3f} / {max(ray):.3f} | < 5 |",
        f"| `loopworks process`, 2 workers (reviews/s) | {out['process']['rows_per_s']:,} | |",
        f"| tokenizing script, 2-instance job, ShardedByS3Key (reviews/s) | "
        f"{out['script_job']['rows_per_s']:,} | |",
        f"| script job / `loopworks process` | {ratio:.2f}x | >= 0.8x |", "",
        "`loopworks process` also cleans the text, derives sentiment and labels and writes "
        "the feature table; the script only tokenizes: the ratio bounds what the job "
        "machinery (downloads, namespaces, uploads) costs a user's script.", ""])
    (RESULTS / "processing_jobs.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
