"""Processing benchmark: reviews per second end to end, loopworks against the usual ways.

Generates sample reviews once as CSV, then runs every variant on it in one run:

  (a)  loopworks ``run_processing_job`` (the job's own timings are reported too)
  (b)  the course lab's way: pandas ``df.apply`` + slow ``RobertaTokenizer.encode_plus``
       (transformers 4.x, in a virtual environment created on first use)
  (b') the same per-review loop with today's fast tokenizer (transformers 5)
  (c)  Hugging Face ``datasets``: ``from_csv`` + ``map(batched=True, num_proc=N)``
  (d)  the bare limit: ``tokenizers.Tokenizer.encode_batch`` on texts already in memory

and the peak memory of (a). Results go to ``benchmarks/results/processing.{md,json}``.
See ``benchmarks/README.md``. Nothing is loaded from the Hugging Face hub.

    python benchmarks/processing.py [--rows 200000] [--slow-rows 20000] [--workers 2]
                                    [--skip b,bprime] [--memory-rows 2000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import fresh_dir, log, machine_busy_seconds, own_cpu_seconds

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_TOKENIZER = REPO.parent / "shared" / "data" / "tokenizers" / "roberta-base"
DEFAULT_RESULTS = HERE / "results"
MAX_LENGTH = 128
SEED = 0
VARIANTS = ("a", "b", "bprime", "c", "d")
LABELS = {"a": "(a)", "b": "(b)", "bprime": "(b')", "c": "(c)", "d": "(d)"}
#: (a) must be at least this many times as fast as the variant.
TARGETS = {"b": 10.0, "bprime": 2.0, "c": 1.5, "d": 0.7}
TF4_REQUIREMENTS = ("transformers>=4.40,<5", "pandas", "pyarrow")
#: pip fails rather than install any of these into the transformers 4.x environment.
TF4_FORBIDDEN = ("torch", "tensorflow", "jax", "flax")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_TELEMETRY": "1"}


@dataclass
class Result:
    """One variant's measurement."""

    key: str
    title: str
    rows: int
    seconds: float
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float | None = None  # user + system, this process and its children
    others_busy: float | None = None  # share of the machine's CPU used by other processes

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------- helpers


def child_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: offline, and loopworks importable."""
    import loopworks

    env = {**os.environ, **OFFLINE_ENV, **extra}
    src = str(Path(loopworks.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def run_json(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a helper script and parse the JSON line it prints last."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])




def parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.rglob("*.parquet")
               if p.name != "rejects.parquet")


@contextlib.contextmanager
def env_var(name: str, value: str | None) -> Iterator[None]:
    """Set (or, with None, remove) an environment variable for the block."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old






class CpuMeter:
    """CPU seconds used by this process and its children since it was made, and the share
    of the machine's CPU that other processes used meanwhile."""

    def __init__(self) -> None:
        self.cpu, self.busy = own_cpu_seconds(), machine_busy_seconds()
        self.start = time.perf_counter()

    def read(self) -> tuple[float, float | None]:
        wall = time.perf_counter() - self.start
        cpu = own_cpu_seconds() - self.cpu
        busy = machine_busy_seconds()
        if self.busy is None or busy is None or wall <= 0:
            return cpu, None
        others = max(0.0, busy - self.busy - cpu)
        return cpu, min(1.0, others / (wall * (os.cpu_count() or 1)))


def measured(run: Callable[[], Result | None]) -> Result | None:
    """Run a variant and add its CPU seconds and how busy other processes kept the CPU."""
    meter = CpuMeter()
    result = run()
    if result is not None:
        result.cpu_seconds, result.others_busy = meter.read()
    return result


def make_csv(rows: int, path: Path) -> dict[str, Any]:
    """Generate ``rows`` sample reviews (with the usual ~0.5% broken rows) as CSV."""
    from loopworks.samples.reviews import generate_reviews, write_reviews

    start = time.perf_counter()
    write_reviews(generate_reviews(rows, seed=SEED), path)
    return {"path": str(path), "rows": rows, "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2)}


class TreeMemorySampler:
    """Samples the memory of a process and all its descendants from /proc (Linux).

    Every ``interval`` seconds it adds up VmRSS (resident memory; pages shared between the
    processes count once per process) and Pss (shared pages split between their sharers)
    over the tree and keeps the largest sums; and it keeps each process's VmHWM, the
    kernel's own peak RSS of that process. (Not ``getrusage().ru_maxrss``: Linux carries it
    over ``exec``, so every subprocess would report at least its parent's size.)
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def available() -> bool:
        return Path("/proc/self/smaps_rollup").is_file()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(stat.parent.name))
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    @staticmethod
    def _kib(path: str, *keys: str) -> dict[str, int]:
        found = {}
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key in keys:
                found[key] = int(value.split()[0]) * 1024
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            for pid in self._tree():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    status = self._kib(f"/proc/{pid}/status", "VmRSS", "VmHWM")
                    pss += self._kib(f"/proc/{pid}/smaps_rollup", "Pss").get("Pss", 0)
                    rss += status.get("VmRSS", 0)
                    self.hwm[pid] = max(self.hwm.get(pid, 0), status.get("VmHWM", 0))
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, int | None]:
        self._stop.set()
        self._thread.join()
        workers = [v for pid, v in self.hwm.items() if pid != self.root]
        return {"tree_peak_rss": self.peak_rss, "tree_peak_pss": self.peak_pss,
                "driver_peak_rss": self.hwm.get(self.root),
                "largest_worker_peak_rss": max(workers, default=None)}


def run_loopworks_job(csv: Path, out: Path, tokenizer: Path, workers: int,
                      home: Path) -> dict[str, Any]:
    """Run the job in a subprocess (helper ``_loopworks_job.py``) and measure its memory."""
    command = [sys.executable, str(HERE / "_loopworks_job.py"), "--inputs", str(csv),
               "--out", str(out), "--tokenizer", str(tokenizer), "--workers", str(workers),
               "--home", str(home)]
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = TreeMemorySampler(proc.pid) if TreeMemorySampler.available() else None
    stdout, stderr = proc.communicate()
    memory = sampler.stop() if sampler else {}
    if proc.returncode != 0:
        raise RuntimeError(f"loopworks job failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    driver = [v for v in (result.get("driver_peak_rss"), memory.get("driver_peak_rss")) if v]
    result["memory"] = {**memory, "driver_peak_rss": max(driver, default=None)}
    return result


# --------------------------------------------------------------------------------- variants
def variant_loopworks(csv: Path, out: Path, tokenizer: Path, workers: int,
                      home: Path) -> Result:
    """(a) ``run_processing_job(ProcessingConfig(inputs=csv, ..., workers=N))``."""
    job = run_loopworks_job(csv, out, tokenizer, workers, home)
    return Result("a", f"loopworks run_processing_job, {workers} workers", job["rows"],
                  job["seconds"], details=job)


def ensure_tf4_venv(venv: Path) -> Path:
    """A virtual environment with transformers 4.x (slow tokenizers), made on first use."""
    python = venv / "bin" / "python"
    check = "import transformers, sys; sys.exit(transformers.__version__.startswith('4.') == 0)"
    if python.exists() and subprocess.run([str(python), "-c", check], env=child_env(),
                                          capture_output=True).returncode == 0:
        return python
    log(f"creating {venv} with {', '.join(TF4_REQUIREMENTS)} (once; needs PyPI) ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "no-frameworks.txt"
    constraints.write_text("".join(f"{name}<0\n" for name in TF4_FORBIDDEN), encoding="utf-8")
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", "-c", str(constraints),
                          *TF4_REQUIREMENTS], capture_output=True, text=True, check=False)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed:\n{pip.stderr[-3000:]}")
    return python


def variant_lab_way(csv: Path, out: Path, tokenizer: Path, slow_rows: int, total_rows: int,
                    python: Path) -> Result:
    """(b) the lab: pandas apply + slow ``RobertaTokenizer.encode_plus``, transformers 4.x."""
    lab = run_json([str(python), str(HERE / "_lab_way.py"), "--csv", str(csv), "--out",
                    str(fresh_dir(out)), "--tokenizer", str(tokenizer), "--kind", "slow",
                    "--rows", str(slow_rows)], child_env())
    note = ""
    if lab["rows"] < total_rows:
        note = (f"measured on the first {lab['rows']:,} of {total_rows:,} rows; all rows would "
                f"take ~{total_rows / lab['rows'] * lab['seconds']:,.0f} s")
    return Result("b", f"lab way: pandas apply + slow {lab['tokenizer_class']}.encode_plus "
                  f"(transformers {lab['transformers']})", lab["rows"], lab["seconds"], note,
                  lab)


def variant_lab_way_fast(csv: Path, out: Path, tokenizer: Path) -> Result:
    """(b') the same per-review pandas apply loop with the fast tokenizer, main environment."""
    lab = run_json([sys.executable, str(HERE / "_lab_way.py"), "--csv", str(csv), "--out",
                    str(fresh_dir(out)), "--tokenizer", str(tokenizer), "--kind", "fast"],
                   child_env())
    return Result("bprime", f"lab way, fast {lab['tokenizer_class']}(text) per review "
                  f"(transformers {lab['transformers']})", lab["rows"], lab["seconds"],
                  details=lab)


class _DatasetsPrep:
    """Batched map function of variant (c): sentiment, label id and token ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        encoded = self.tokenizer(batch["review_body"], max_length=MAX_LENGTH,
                                 padding="max_length", truncation=True)
        sentiment = [(r > 3) - (r < 3) for r in batch["star_rating"]]
        return {"sentiment": sentiment, "label_id": [s + 1 for s in sentiment],
                "input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def _usable(batch: dict[str, list]) -> list[bool]:
    return [r is not None and 1 <= r <= 5 and bool(t and t.strip())
            for r, t in zip(batch["star_rating"], batch["review_body"], strict=True)]


def variant_datasets(csv: Path, out: Path, tokenizer: Path, workers: int,
                     cache_root: Path) -> Result | None:
    """(c) ``datasets.Dataset.from_csv`` + ``map(batched=True, num_proc=N)`` + to_parquet."""
    try:
        import datasets
    except ImportError:
        log("(c) skipped: the `datasets` package is not installed (pip install datasets)")
        return None
    from transformers import RobertaTokenizerFast

    datasets.disable_progress_bars()
    cache = Path(tempfile.mkdtemp(prefix="hf-cache-", dir=cache_root))  # nothing reused
    out = fresh_dir(out)
    steps: dict[str, float] = {}
    # num_proc processes already use every core: one tokenizer thread each, as HF advises.
    with env_var("TOKENIZERS_PARALLELISM", "false"):
        start = clock = time.perf_counter()
        tok = RobertaTokenizerFast.from_pretrained(str(tokenizer))
        ds = datasets.Dataset.from_csv(str(csv), cache_dir=str(cache))
        rows = ds.num_rows
        steps["read_csv"] = time.perf_counter() - clock
        clock = time.perf_counter()
        ds = ds.filter(_usable, batched=True)
        ds = ds.map(_DatasetsPrep(tok), batched=True, num_proc=workers)
        steps["filter_map"] = time.perf_counter() - clock
        clock = time.perf_counter()
        first = ds.train_test_split(test_size=0.10, seed=SEED)
        rest = first["test"].train_test_split(test_size=0.50, seed=SEED)
        parts = {"train": first["train"], "validation": rest["train"], "test": rest["test"]}
        for name, part in parts.items():
            part.to_parquet(str(out / f"{name}.parquet"))
        steps["split_write"] = time.perf_counter() - clock
        seconds = time.perf_counter() - start
    shutil.rmtree(cache, ignore_errors=True)
    return Result("c", f"datasets from_csv + map(batched, num_proc={workers}) "
                  f"(datasets {datasets.__version__})", rows, seconds,
                  details={"rows_out": ds.num_rows, "datasets": datasets.__version__,
                           "steps": {k: round(v, 4) for k, v in steps.items()}})


def variant_bare(csv: Path, tokenizer: Path) -> Result:
    """(d) ``Tokenizer.encode_batch`` (truncation + padding on) over texts already in memory."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from loopworks.processing import load_tokenizer

    table = pacsv.read_csv(csv, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                           convert_options=pacsv.ConvertOptions(include_columns=["review_body"]))
    body = table.column("review_body")
    texts = body.filter(pc.not_equal(pc.utf8_trim_whitespace(body), "")).to_pylist()
    del table, body
    tok = load_tokenizer(str(tokenizer)).tokenizer
    tok.enable_truncation(max_length=MAX_LENGTH)
    tok.enable_padding(length=MAX_LENGTH, pad_id=tok.token_to_id("<pad>"), pad_token="<pad>")
    chunk = 10_000  # results are dropped chunk by chunk: 200k Encoding objects would take GBs
    with env_var("TOKENIZERS_PARALLELISM", None):  # the library's default: every core
        start = time.perf_counter()
        for begin in range(0, len(texts), chunk):
            tok.encode_batch(texts[begin : begin + chunk])
        seconds = time.perf_counter() - start
    return Result("d", "bare tokenizers Tokenizer.encode_batch, texts in memory",
                  len(texts), seconds, note="tokenizing only: no reading, splitting or writing",
                  details={"chunk": chunk, "threads": "tokenizers default (all cores)"})


# ---------------------------------------------------------------------------------- memory
def memory_run(rows: int, workdir: Path, tokenizer: Path, workers: int) -> dict[str, Any]:
    """(a) alone on ``rows`` generated rows: peak memory, to show it stays flat."""
    csv = workdir / f"reviews-{rows}.csv"
    log(f"memory run: generating {rows:,} rows ...")
    made = make_csv(rows, csv)
    log(f"memory run: loopworks job on {rows:,} rows ({made['bytes'] / 2**20:,.0f} MiB CSV) ...")
    out = workdir / "out" / f"memory-{rows}"
    meter = CpuMeter()
    job = run_loopworks_job(csv, out, tokenizer, workers, workdir / "loopworks-home")
    cpu, others = meter.read()
    shutil.rmtree(out, ignore_errors=True)
    csv.unlink()
    return memory_row(job, made["bytes"], cpu, others)


def memory_row(job: dict[str, Any], csv_bytes: int, cpu: float | None,
               others: float | None) -> dict[str, Any]:
    memory = job["memory"]
    return {"rows": job["rows"], "csv_bytes": csv_bytes, "seconds": job["seconds"],
            "reviews_per_second": round(job["rows"] / job["seconds"], 1),
            "cpu_seconds": None if cpu is None else round(cpu, 2),
            "others_busy": None if others is None else round(others, 3),
            **{key: memory.get(key) for key in ("tree_peak_rss", "tree_peak_pss",
                                                "driver_peak_rss", "largest_worker_peak_rss")}}


# --------------------------------------------------------------------------------- reports
def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("loopworks", "tokenizers", "transformers", "pyarrow", "pandas", "numpy",
                 "datasets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def table_rows(results: list[Result]) -> list[dict[str, Any]]:
    base = next((r for r in results if r.key == "a"), None)
    rows = []
    for r in results:
        ratio = base.rate / r.rate if base and r.rate else None
        target = TARGETS.get(r.key)
        rows.append({
            "variant": r.key, "label": LABELS[r.key], "title": r.title, "rows": r.rows,
            "seconds": round(r.seconds, 3), "reviews_per_second": round(r.rate, 1),
            "cpu_seconds": None if r.cpu_seconds is None else round(r.cpu_seconds, 2),
            "others_busy": None if r.others_busy is None else round(r.others_busy, 3),
            "ratio_a_to_this": None if ratio is None else round(ratio, 2),
            "target": target,
            "met": None if ratio is None or target is None else ratio >= target,
            "note": r.note, "details": r.details,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | rows | seconds | reviews/s | (a) ÷ it | target | met | CPU s |"
             " others' CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for row in rows:
        ratio = "—" if row["ratio_a_to_this"] is None else f"{row['ratio_a_to_this']:.2f}×"
        target = "—" if row["target"] is None else f"≥ {row['target']:g}×"
        met = {None: "", True: "yes", False: "**NO**"}[row["met"]]
        cpu = "—" if row["cpu_seconds"] is None else f"{row['cpu_seconds']:.1f}"
        others = "—" if row["others_busy"] is None else f"{row['others_busy']:.0%}"
        lines.append(f"| {row['label']} {row['title']} | {row['rows']:,} | {row['seconds']:.1f}"
                     f" | {row['reviews_per_second']:,.0f} | {ratio} | {target} | {met} | {cpu}"
                     f" | {others} |")
    return lines


def format_job(job: dict[str, Any], workers: int) -> list[str]:
    t = job["timings"]
    lines = ["| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.2f} |" for name, value in t.items()]
    work = sum(t.get(f"encode.{s}_worker_seconds", 0.0) for s in ("read", "tokenize", "write"))
    if work:
        lines.append("")
        lines.append(f"Worker time in encode ({workers} workers, {work:.1f} worker-seconds in "
                     "all): " + ", ".join(
                         f"{s} {t.get(f'encode.{s}_worker_seconds', 0.0) / work:.0%}"
                         for s in ("read", "tokenize", "write")) + ".")
        tokenize = t.get("encode.tokenize_worker_seconds", 0.0)
        if tokenize:
            lines.append(f"Tokenizing alone: {job['rows_out'] / tokenize:,.0f} reviews per "
                         "worker-second.")
    return lines


def format_memory(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| rows | CSV | seconds | reviews/s | CPU s | others' CPU | peak RSS, all processes"
             " | peak PSS, all processes | driver peak RSS | largest worker peak RSS |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        others = "—" if row["others_busy"] is None else f"{row['others_busy']:.0%}"
        cpu = "—" if row["cpu_seconds"] is None else f"{row['cpu_seconds']:.1f}"
        lines.append(f"| {row['rows']:,} | {mib(row['csv_bytes'])} | {row['seconds']:.1f} | "
                     f"{row['reviews_per_second']:,.0f} | {cpu} | {others} | "
                     f"{mib(row['tree_peak_rss'])} | "
                     f"{mib(row['tree_peak_pss'])} | {mib(row['driver_peak_rss'])} | "
                     f"{mib(row['largest_worker_peak_rss'])} |")
    lines.append("")
    lines.append("All processes: the job's process and its workers, sampled from /proc every "
                 "50 ms; the largest sum of their RSS (shared pages counted in every process "
                 "that maps them) and of their PSS (shared pages split between them). Driver "
                 "and largest worker: each process's own peak RSS (the kernel's VmHWM).")
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    lines = [
        "# Processing benchmark",
        "",
        f"Generated {data['generated_at']} by `{data['command']}`.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), Python {m['python']}, "
        f"{m['platform']}; load average (1, 5, 15 min) {m['load_average_at_start']} at start, "
        f"{m.get('load_average_at_end')} at end.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
    ]
    if data.get("tf4"):
        lines.append(f"Variant (b) environment: transformers {data['tf4']['transformers']}, "
                     f"tokenizers {data['tf4']['tokenizers']}, pandas {data['tf4']['pandas']}.")
    lines += [
        "",
        f"Input: {data['csv']['rows']:,} generated reviews (seed {SEED}, ~0.5% deliberately "
        f"broken rows), {mib(data['csv']['bytes'])} CSV. Tokenizer: roberta-base "
        f"(vocab.json + merges.txt), max_length {MAX_LENGTH}, padding to max_length, "
        "truncation. Every variant but (d) reads the CSV, derives sentiment and label_id, "
        "tokenizes, splits 90/5/5 and writes Parquet. reviews/s = input rows / seconds.",
        "",
        "## Throughput",
        "",
        *format_table(data["variants"]),
        "",
        "(a) ÷ it: (a)'s reviews/s divided by this variant's; target: what (a) should reach. "
        "CPU s: user + system CPU seconds of the variant's processes. Others' CPU: the share "
        "of the machine's CPU that other processes used meanwhile; when it is high, the "
        "wall-clock figures are inflated."
        + (f" Each variant ran {data['options']['repeat']} times; the fastest run is shown."
           if data["options"]["repeat"] > 1 else ""),
        "",
    ]
    notes = [f"- {row['label']}: {row['note']}" for row in data["variants"] if row["note"]]
    notes += [f"- {LABELS[k]}: skipped ({why})" for k, why in data["skipped"].items()]
    if notes:
        lines += [*notes, ""]
    steps = [row for row in data["variants"] if row["details"].get("steps")]
    if steps:
        lines += ["Steps of (b), (b') and (c), seconds: " + "; ".join(
            f"{row['label']} " + ", ".join(f"{k} {s:.1f}" for k, s in
                                          row["details"]["steps"].items()) for row in steps)
            + ".", ""]
    if data.get("job"):
        lines += ["## Where (a) spends its time (the job report's timings)", "",
                  *format_job(data["job"], data["options"]["workers"]), ""]
    if data["memory"]:
        lines += ["## Peak memory of (a)", "", *format_memory(data["memory"]), ""]
    return "\n".join(lines)


def print_summary(data: dict[str, Any]) -> None:
    print()
    print("\n".join(format_table(data["variants"])))
    for row in data["variants"]:
        if row["note"]:
            print(f"  {row['label']}: {row['note']}")
    for key, why in data["skipped"].items():
        print(f"  {LABELS[key]}: skipped ({why})")
    if data.get("job"):
        print()
        print("\n".join(format_job(data["job"], data["options"]["workers"])))
    if data["memory"]:
        print()
        print("\n".join(format_memory(data["memory"])))


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reviews per second end to end: loopworks against the usual ways.")
    parser.add_argument("--rows", type=int, default=200_000, help="generated reviews")
    parser.add_argument("--slow-rows", type=int, default=20_000,
                        help="rows for the slow variant (b); 0 means all rows")
    parser.add_argument("--workers", type=int, default=2,
                        help="workers of (a) and num_proc of (c)")
    parser.add_argument("--skip", default="",
                        help="comma-separated variants to skip: a, b, bprime (or b'), c, d")
    parser.add_argument("--memory-rows", type=int, default=0,
                        help="also measure (a)'s peak memory on this many rows (off: 0)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every variant this many times and keep its fastest run")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_RESULTS / "work",
                        help="scratch folder: CSV, outputs, the transformers 4.x venv")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="where processing.md and processing.json are written")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER,
                        help="roberta-base folder with vocab.json and merges.txt")
    args = parser.parse_args(argv)
    skip = {s.strip().replace("b'", "bprime") for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(VARIANTS)
    if unknown:
        parser.error(f"--skip: unknown variant(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(VARIANTS)}")
    args.skip = skip
    if min(args.rows, args.workers, args.repeat) < 1 or min(args.slow_rows,
                                                             args.memory_rows) < 0:
        parser.error("--rows, --workers and --repeat must be at least 1; --slow-rows and "
                     "--memory-rows 0 or more")
    if not (args.tokenizer / "vocab.json").is_file():
        parser.error(f"--tokenizer {args.tokenizer}: no vocab.json there")
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.update(OFFLINE_ENV)  # before transformers or datasets is imported
    args = parse_args(argv)
    try:
        import loopworks  # noqa: F401
    except ImportError:  # run from a checkout without PYTHONPATH or an install
        sys.path.insert(0, str(REPO / "src"))
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer.resolve()
    out = workdir / "out"
    data: dict[str, Any] = {
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": "python benchmarks/processing.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
        "options": {"rows": args.rows, "slow_rows": args.slow_rows, "workers": args.workers,
                    "skip": sorted(args.skip), "memory_rows": args.memory_rows,
                    "repeat": args.repeat,
                    "max_length": MAX_LENGTH, "tokenizer": str(tokenizer)},
        "machine": machine_info(), "skipped": {}, "memory": [], "job": None, "tf4": None,
    }

    csv = workdir / f"reviews-{args.rows}.csv"
    log(f"generating {args.rows:,} reviews -> {csv}")
    data["csv"] = make_csv(args.rows, csv)
    tf4_python = None if "b" in args.skip else ensure_tf4_venv(workdir / "venv-tf4")

    slow_rows = min(args.slow_rows or args.rows, args.rows)
    variants: dict[str, Callable[[], Result | None]] = {
        "a": lambda: variant_loopworks(csv, out / "a", tokenizer, args.workers,
                                       workdir / "loopworks-home"),
        "b": lambda: variant_lab_way(csv, out / "b", tokenizer, slow_rows, args.rows,
                                     tf4_python),
        "bprime": lambda: variant_lab_way_fast(csv, out / "bprime", tokenizer),
        "c": lambda: variant_datasets(csv, out / "c", tokenizer, args.workers, workdir),
        "d": lambda: variant_bare(csv, tokenizer),
    }
    best: dict[str, Result] = {}
    for round_ in range(1, args.repeat + 1):
        for key, run in variants.items():
            if key in args.skip:
                data["skipped"][key] = "--skip"
                continue
            log(f"{LABELS[key]} running" + (f" (round {round_})" if args.repeat > 1 else ""))
            result = measured(run)
            if result is None:
                data["skipped"][key] = "`datasets` is not installed"
                continue
            if key != "d":
                result.details["rows_written"] = parquet_rows(out / key)
            log(f"{LABELS[key]} {result.rows:,} rows in {result.seconds:.1f} s = "
                f"{result.rate:,.0f} reviews/s")
            if key not in best or result.seconds < best[key].seconds:
                best[key] = result
    results = [best[key] for key in VARIANTS if key in best]
    if "a" in best:
        data["job"] = best["a"].details
        data["memory"].append(memory_row(best["a"].details, data["csv"]["bytes"],
                                         best["a"].cpu_seconds, best["a"].others_busy))
    if "b" in best:
        data["tf4"] = {k: best["b"].details[k] for k in ("transformers", "tokenizers", "pandas")}
    if args.memory_rows:
        data["memory"].append(memory_run(args.memory_rows, workdir, tokenizer, args.workers))

    data["variants"] = table_rows(results)
    data["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "processing.json").write_text(json.dumps(data, indent=2) + "\n",
                                                  encoding="utf-8")
    (args.results / "processing.md").write_text(render_markdown(data) + "\n", encoding="utf-8")
    print_summary(data)
    print(f"\nwritten: {args.results / 'processing.md'}, {args.results / 'processing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
