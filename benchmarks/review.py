"""Human-review benchmark: how much goes to people, how accurate the final labels are, and how
fast loops start.

One run, on generated sample reviews:

1. the reviews (``--rows``, seed 0, with the ~0.5% broken rows) go through a processing job
   (``run_processing_job``: broken rows dropped, ``label_id`` from the star rating, a
   train/validation/test split of ``--split``) unless ``--raw`` (then labels come from the
   star rating and rows are split at random by ``loopworks.models``);
2. the baseline model (``loopworks.models.train_model``: word+char TF-IDF + logistic
   regression, temperature-calibrated on the validation split) is trained on the train split;
   if ``loopworks.models`` cannot be imported, a plain scikit-learn TF-IDF + logistic
   regression stands in and the report says so;
3. it predicts the test split (held out, truth known), written as a predictions Parquet file
   like ``loopworks predict`` writes;
4. for each threshold t in 0.50, 0.55, ..., 0.95, a flow with one
   ``ClassificationConfidenceCheck`` (``ClassificationLabel: "*"``, ``ConfidenceLessThan: t``)
   takes the whole file through ``loopworks.review.batch.start_from_predictions`` (what
   ``loopworks review run`` does): the share of predictions sent to people is counted from
   the loops that really started;
5. simulated reviewers of accuracy ``--reviewer-accuracy`` (``--task-count`` per loop, their
   answers consolidated by majority vote) answer the loops of the 0.95 flow through
   ``LabelingJobs.next_task`` / ``submit``, and the loops complete (output documents written).
   A simulated reviewer's answer to a review is fixed by a hash of the review id and the
   reviewer's number, and every lower threshold's loops are a subset of the 0.95 flow's
   (checked), so the other thresholds reuse those answers instead of answering the same
   reviews again. The final label of a prediction is the reviewers' where a loop started,
   the model's elsewhere; its accuracy against the truth is reported beside the expectation
   computed directly (model accuracy where confident, reviewer accuracy elsewhere);
6. start_human_loop throughput for ``--throughput`` (10,000) predictions that all go to
   people (a flow without conditions, the worst case): one batched ``start_human_loops``
   call, then one ``start_human_loop`` call per prediction in a fresh flow.

Everything runs on the default embedded SQLite metadata database in a scratch home. Results
go to ``benchmarks/results/review.{md,json,png}``.

    python benchmarks/review.py [--rows 25000] [--split 40,10,50] [--raw]
                                [--reviewer-accuracy 0.95] [--task-count 1]
                                [--throughput 10000] [--single 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import fresh_dir, log  # noqa: E402

DEFAULT_RESULTS = HERE / "results"
LABELS = ["negative", "neutral", "positive"]
THRESHOLDS = [round(0.5 + 0.05 * i, 2) for i in range(10)]


# ----------------------------------------------------------------------------- data
def make_data(work: Path, rows: int, split: tuple[float, float, float], raw: bool,
              home: Path) -> tuple[Any, dict[str, Any]]:
    """Generated reviews, processed (or not), as ``loopworks.models`` labeled data."""
    from loopworks.samples import generate_reviews, write_reviews

    started = time.perf_counter()
    csv = work / "reviews.csv"
    write_reviews(generate_reviews(rows, seed=0), csv)
    info: dict[str, Any] = {"rows_generated": rows, "processed": not raw}
    try:
        from loopworks.models import read_labeled_data
    except ImportError:
        read_labeled_data = None  # the stand-in model below reads the files itself
    if raw:
        frame = pd.read_csv(csv)
        frame = frame[frame["review_body"].fillna("").str.strip().ne("")
                      & frame["star_rating"].isin([1, 2, 3, 4, 5])]
        info["rows_usable"] = len(frame)
        if read_labeled_data is not None:
            from loopworks.models import labeled_data_from_frame

            data = labeled_data_from_frame(frame, source=str(csv), text_column="review_body",
                                           rating_column="star_rating",
                                           split=tuple(s / 100 for s in split))
        else:
            data = _plain_data(frame, split)
    else:
        from loopworks.processing import ProcessingConfig, run_processing_job

        out = work / "processed"
        report = run_processing_job(ProcessingConfig(inputs=str(csv), out=str(out),
                                                     split=split, workers=1,
                                                     overwrite=True), home=home)
        info["processing"] = {"rows_out": getattr(report, "rows_out", None),
                              "seconds": round(time.perf_counter() - started, 1)}
        if read_labeled_data is not None:
            data = read_labeled_data(str(out), text_column="review_body",
                                     label_column="label_id")
        else:
            frames = []
            for part in ("train", "validation", "test"):
                f = pd.read_parquet(out / part, columns=["review_id", "review_body",
                                                         "label_id"])
                f["split_type"] = part
                frames.append(f)
            data = _plain_data(pd.concat(frames, ignore_index=True), split)
    info["seconds"] = round(time.perf_counter() - started, 1)
    return data, info


class _Plain:
    """The few fields of ``loopworks.models.LabeledData`` the benchmark uses."""

    def __init__(self, texts: np.ndarray, labels: np.ndarray, split: np.ndarray) -> None:
        self.texts, self.labels, self.split = texts, labels, split

    def part(self, name: str) -> tuple[list[str], np.ndarray]:
        mask = self.split == name
        return list(self.texts[mask]), self.labels[mask]


def _plain_data(frame: pd.DataFrame, split: tuple[float, float, float]) -> _Plain:
    if "label_id" in frame:
        labels = frame["label_id"].to_numpy(int)
    else:
        labels = np.select([frame["star_rating"] <= 2, frame["star_rating"] == 3], [0, 1], 2)
    if "split_type" in frame:
        parts = frame["split_type"].to_numpy(str)
    else:
        rng = np.random.default_rng(0)
        draw = rng.random(len(frame)) * 100
        parts = np.where(draw < split[0], "train",
                         np.where(draw < split[0] + split[1], "validation", "test"))
    return _Plain(frame["review_body"].to_numpy(object), labels, parts)


# ---------------------------------------------------------------------------- model
def train(data: Any, home: Path) -> tuple[Any, dict[str, Any]]:
    """The baseline model, or a stand-in when loopworks.models is missing."""
    started = time.perf_counter()
    try:
        from loopworks.models import train_model
    except ImportError:
        train_model = None
    if train_model is not None:
        result = train_model("bench-sentiment", data, save=False, home=home)
        metrics = result.evaluation.metrics()
        return result.model.predict_proba, {
            "model": "loopworks.models baseline (word+char TF-IDF + logistic regression, "
                     "temperature-calibrated)", "seconds": round(time.perf_counter() - started, 1),
            "test_metrics": metrics}
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = data.part("train")
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(C=4.0, max_iter=1000))
    pipe.fit(texts, labels)
    return pipe.predict_proba, {
        "model": "STAND-IN: scikit-learn TF-IDF (1-2 grams) + LogisticRegression inside the "
                 "benchmark, uncalibrated (loopworks.models was not importable)",
        "seconds": round(time.perf_counter() - started, 1)}


def write_predictions(data: Any, predict: Any, path: Path) -> pd.DataFrame:
    """The test split with prediction columns, as ``loopworks predict`` writes them; the
    truth stays out of the file (reviewers must not see it)."""
    texts, truth = data.part("test")
    probs = np.asarray(predict(texts), dtype=np.float64)
    frame = pd.DataFrame({"review_id": [f"t{i:06d}" for i in range(len(texts))],
                          "review_body": texts,
                          "prediction": np.array(LABELS)[probs.argmax(axis=1)],
                          "confidence": probs.max(axis=1)})
    for j, label in enumerate(LABELS):
        frame[f"prob_{label}"] = probs[:, j]
    frame.to_parquet(path, index=False)
    frame["truth"] = np.array(LABELS)[truth]
    return frame


# --------------------------------------------------------------------------- review
def reviewer_answer(review_id: str, reviewer: int, truth: str, accuracy: float) -> str:
    """A simulated reviewer's fixed answer to one review: right with ``accuracy``."""
    digest = hashlib.sha256(f"{review_id}/{reviewer}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw < accuracy:
        return truth
    others = [label for label in LABELS if label != truth]
    return others[digest[8] % len(others)]


def open_review(home: Path) -> Any:
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata import open_engine
    from loopworks.review.flows import HumanReview

    engine = open_engine(f"sqlite:///{home / 'metadata.db'}")
    return HumanReview(engine, LabelingJobs(engine))


def flow_for(review: Any, name: str, output: Path, threshold: float | None,
             task_count: int) -> None:
    from loopworks.review.flows import FlowDefinition

    conditions = None if threshold is None else {"Conditions": [{
        "ConditionType": "ClassificationConfidenceCheck",
        "ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": threshold}}]}
    review.create_flow(FlowDefinition(name, "reviewers", LABELS, str(output),
                                      task_count=task_count,
                                      activation_conditions=conditions))


def thresholds_benchmark(review: Any, frame: pd.DataFrame, predictions: Path, output: Path,
                         accuracy: float, task_count: int) -> dict[str, Any]:
    from loopworks.review.batch import start_from_predictions

    started_by: dict[float, set[str]] = {}
    runs: dict[float, dict[str, Any]] = {}
    for t in THRESHOLDS:
        name = f"conf-{int(round(t * 100))}"
        flow_for(review, name, output, t, task_count)
        report = start_from_predictions(review, name, str(predictions))
        loops, token = [], None
        while True:
            page, token = review.list_human_loops(name, max_results=1000, next_token=token)
            loops += [loop.name for loop in page]
            if not token:
                break
        started_by[t] = set(loops)
        runs[t] = {"sent": report.sent_to_people, "evaluated": report.evaluated,
                   "seconds": round(report.seconds, 2)}
        log(f"t={t:.2f}: {report.sent_to_people:,} of {report.evaluated:,} to people "
            f"({report.human_share:.1%}) in {report.seconds:.2f} s")
    top = THRESHOLDS[-1]
    for t in THRESHOLDS:
        assert started_by[t] <= started_by[top], f"loops of t={t} are not all in t={top}'s"

    # People answer the largest flow's loops through the labeling machinery.
    truth = dict(zip(frame["review_id"], frame["truth"], strict=True))
    jobs = review.jobs
    reviewers = [jobs.workforce.worker(f"reviewer-{k}") for k in range(task_count)]
    job = f"review-conf-{int(round(top * 100))}"
    started = time.perf_counter()
    answered = 0
    for k, me in enumerate(reviewers):
        while (task := jobs.next_task(job, me)) is not None:
            review_id = task.data["input"]["review_id"]
            jobs.submit(job, task.item_id, me,
                        reviewer_answer(review_id, k, truth[review_id], accuracy))
            answered += 1
    answer_seconds = time.perf_counter() - started
    started = time.perf_counter()
    settled = review.settle(f"conf-{int(round(top * 100))}")
    settle_seconds = time.perf_counter() - started
    human: dict[str, str] = {}
    token = None
    while True:
        page, token = review.list_human_loops(f"conf-{int(round(top * 100))}",
                                              status="Completed", max_results=1000,
                                              next_token=token)
        human.update({loop.name: loop.result["label"] for loop in page})
        if not token:
            break
    assert len(human) == len(started_by[top]), (len(human), len(started_by[top]))
    log(f"people: {answered:,} answers in {answer_seconds:.1f} s "
        f"({answered / max(answer_seconds, 1e-9):,.0f}/s); {settled['completed']:,} loops "
        f"completed with output documents in {settle_seconds:.1f} s")

    model_right = (frame["prediction"] == frame["truth"]).to_numpy()
    n = len(frame)
    ids = frame["review_id"].to_numpy()
    rows = []
    for t in THRESHOLDS:
        sent = np.array([i in started_by[t] for i in ids])
        final = np.where(sent, [human.get(i, "") for i in ids], frame["prediction"])
        measured = float((final == frame["truth"].to_numpy()).mean())
        human_right = float((final[sent] == frame["truth"].to_numpy()[sent]).mean()) \
            if sent.any() else None
        expected = float((model_right[~sent].sum() + sent.sum() * _vote_accuracy(
            accuracy, task_count)) / n)
        rows.append({
            "threshold": t, "sent_to_people": int(sent.sum()), "share": float(sent.mean()),
            "final_accuracy": measured, "expected_accuracy": expected,
            "model_accuracy_on_sent": float(model_right[sent].mean()) if sent.any() else None,
            "people_accuracy_on_sent": human_right,
            "model_accuracy_on_kept": float(model_right[~sent].mean()) if (~sent).any()
            else None, "start_seconds": runs[t]["seconds"]})
    return {"rows": rows, "model_accuracy": float(model_right.mean()), "n": n,
            "people": {"answers": answered, "answer_seconds": round(answer_seconds, 1),
                       "answers_per_second": round(answered / max(answer_seconds, 1e-9), 1),
                       "loops_completed": settled["completed"],
                       "settle_seconds": round(settle_seconds, 1)}}


def _vote_accuracy(p: float, k: int) -> float:
    """Chance that a majority vote of k reviewers of accuracy p is right (3 classes, wrong
    answers split evenly; ties go to the model's label, counted as wrong here)."""
    if k == 1:
        return p
    from itertools import product

    total = 0.0
    for answers in product(range(3), repeat=k):  # 0 = right, 1/2 = the two wrong labels
        prob = float(np.prod([p if a == 0 else (1 - p) / 2 for a in answers]))
        counts = [answers.count(c) for c in range(3)]
        if counts[0] > max(counts[1], counts[2]):
            total += prob
    return total


def throughput_benchmark(review: Any, output: Path, n: int, single: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1.0, 1.0, 1.0], n)
    inputs = [(f"p{i:06d}", {"text": f"generated review number {i}", "review_id": f"p{i}",
                             "probabilities": dict(zip(LABELS, row.tolist(), strict=True))})
              for i, row in enumerate(probs)]
    flow_for(review, "all-batched", output, None, 1)
    started = time.perf_counter()
    results = review.start_human_loops("all-batched", inputs)
    batched = time.perf_counter() - started
    assert sum(r.reason == "started" for r in results) == n
    log(f"batched: {n:,} loops in {batched:.2f} s ({n / batched:,.0f} loops/s)")
    started = time.perf_counter()
    again = review.start_human_loops("all-batched", inputs)
    repeat = time.perf_counter() - started
    assert all(r.reason == "exists" for r in again)
    log(f"batched repeat (all exist): {repeat:.2f} s")
    flow_for(review, "all-single", output, None, 1)
    count = min(single, n)
    started = time.perf_counter()
    for name, content in inputs[:count]:
        review.start_human_loop(name, "all-single", content)
    one = time.perf_counter() - started
    log(f"one at a time: {count:,} loops in {one:.1f} s ({count / one:,.0f} loops/s)")
    return {"predictions": n, "batched_seconds": round(batched, 3),
            "batched_loops_per_second": round(n / batched, 1),
            "batched_repeat_seconds": round(repeat, 3),
            "single_calls": count, "single_seconds": round(one, 2),
            "single_loops_per_second": round(count / one, 1)}


# --------------------------------------------------------------------------- report
def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["thresholds"]["rows"]
    t = [r["threshold"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(t, [100 * r["share"] for r in rows], "o-", color="tab:orange",
              label="sent to people (%)")
    left.set_xlabel("ConfidenceLessThan threshold")
    left.set_ylabel("predictions sent to people (%)", color="tab:orange")
    acc = left.twinx()
    acc.plot(t, [100 * r["final_accuracy"] for r in rows], "s-", color="tab:blue",
             label="final labels, measured")
    acc.plot(t, [100 * r["expected_accuracy"] for r in rows], ":", color="tab:blue",
             label="final labels, expected")
    acc.axhline(100 * results["thresholds"]["model_accuracy"], color="grey", ls="--",
                label="model alone")
    acc.set_ylabel("accuracy of the final labels (%)", color="tab:blue")
    acc.legend(loc="lower right", fontsize=8)
    left.set_title("share to people and final accuracy by threshold")
    right.plot([100 * r["share"] for r in rows], [100 * r["final_accuracy"] for r in rows],
               "o-")
    for r in rows:
        right.annotate(f"{r['threshold']:.2f}", (100 * r["share"], 100 * r["final_accuracy"]),
                       textcoords="offset points", xytext=(4, -10), fontsize=7)
    right.set_xlabel("predictions sent to people (%)")
    right.set_ylabel("accuracy of the final labels (%)")
    right.set_title("what each point of accuracy costs in reviews")
    right.grid(alpha=0.3)
    fig.suptitle(f"{results['thresholds']['n']:,} held-out predictions; reviewers "
                 f"{results['config']['reviewer_accuracy']:.0%} accurate, "
                 f"{results['config']['task_count']} per loop", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict[str, Any]) -> str:
    m, c, th, tp = (results["machine"], results["config"], results["thresholds"],
                    results["throughput"])
    lines = [
        "# Human-review benchmark", "",
        f"{m['when']}, {m['cpus']} CPUs (shared), Python {m['python']}; embedded SQLite "
        "metadata. Command: `" + results["command"] + "`", "",
        f"Data: {c['rows']:,} generated sample reviews, "
        + ("processed by `run_processing_job` (broken rows dropped, label_id from the star "
           f"rating), split {c['split']}" if not c["raw"] else
           "not processed (labels from the star rating, random split)")
        + f"; held-out (test) predictions: {th['n']:,}.",
        f"Model: {results['model']['model']}; trained in {results['model']['seconds']} s; "
        f"accuracy on the held-out predictions {th['model_accuracy']:.4f}.",
        f"Reviewers: simulated, {c['reviewer_accuracy']:.0%} accurate, {c['task_count']} per "
        "loop, answering through `LabelingJobs.next_task`/`submit` (the 0.95 flow's "
        f"{th['people']['answers']:,} tasks, {th['people']['answers_per_second']:,.0f} "
        f"answers/s; {th['people']['loops_completed']:,} loops completed with their output "
        f"documents in {th['people']['settle_seconds']} s); lower thresholds reuse those "
        "answers (each review's simulated answer is fixed, and their loops are a subset).", "",
        "## Share sent to people and accuracy of the final labels", "",
        "Flow: one `ClassificationConfidenceCheck` (`ClassificationLabel: \"*\"`, "
        "`ConfidenceLessThan: t`), the whole file through `review run`'s code path. Final "
        "label: the reviewers' where a loop started, the model's elsewhere. *Expected* is "
        "computed directly: model accuracy on the kept predictions + reviewer accuracy on "
        "the sent ones.", "",
        "| threshold | sent to people | share | final accuracy (measured) | expected | "
        "model accuracy on sent | people on sent | model accuracy on kept | start s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def f(x: float | None, spec: str = ".4f") -> str:
        return "-" if x is None else format(x, spec)

    for r in th["rows"]:
        lines.append(
            f"| {r['threshold']:.2f} | {r['sent_to_people']:,} | {r['share']:.1%} | "
            f"{r['final_accuracy']:.4f} | {r['expected_accuracy']:.4f} | "
            f"{f(r['model_accuracy_on_sent'])} | {f(r['people_accuracy_on_sent'])} | "
            f"{f(r['model_accuracy_on_kept'])} | {r['start_seconds']:.2f} |")
    lines += [
        "", f"Model alone: {th['model_accuracy']:.4f}. Chart: `review.png`.", "",
        f"## start_human_loop throughput ({tp['predictions']:,} predictions, all to people)",
        "", "| how | loops | seconds | loops/s |", "| --- | ---: | ---: | ---: |",
        f"| one batched `start_human_loops` call | {tp['predictions']:,} | "
        f"{tp['batched_seconds']:.2f} | {tp['batched_loops_per_second']:,.0f} |",
        f"| the same call again (all exist: idempotent) | {tp['predictions']:,} | "
        f"{tp['batched_repeat_seconds']:.2f} | "
        f"{tp['predictions'] / tp['batched_repeat_seconds']:,.0f} |",
        f"| one `start_human_loop` call per prediction | {tp['single_calls']:,} | "
        f"{tp['single_seconds']:.1f} | {tp['single_loops_per_second']:,.0f} |", "",
        f"Whole run: {results['seconds']:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=25_000, help="reviews to generate")
    parser.add_argument("--split", default="40,10,50",
                        help="train,validation,test percentages (the test split is reviewed)")
    parser.add_argument("--raw", action="store_true", help="skip the processing job")
    parser.add_argument("--reviewer-accuracy", type=float, default=0.95)
    parser.add_argument("--task-count", type=int, default=1, help="reviewers per loop")
    parser.add_argument("--throughput", type=int, default=10_000,
                        help="predictions for the start_human_loop throughput")
    parser.add_argument("--single", type=int, default=10_000,
                        help="one-at-a-time calls (at most --throughput)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_RESULTS / "work" / "review")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    split = tuple(float(x) for x in args.split.split(","))
    assert len(split) == 3 and abs(sum(split) - 100) < 1e-6, "--split needs three percentages"

    begun = time.perf_counter()
    work = fresh_dir(args.workdir)
    home = work / "home"
    home.mkdir()
    os.environ["LOOPWORKS_HOME"] = str(home)
    os.environ.pop("LOOPWORKS_DATABASE_URL", None)
    results: dict[str, Any] = {
        "machine": {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "command": "python benchmarks/review.py " + " ".join(sys.argv[1:]),
        "config": {"rows": args.rows, "split": args.split, "raw": args.raw,
                   "reviewer_accuracy": args.reviewer_accuracy, "task_count": args.task_count,
                   "thresholds": THRESHOLDS}}
    log(f"generating {args.rows:,} reviews" + ("" if args.raw else " and processing them"))
    data, results["data"] = make_data(work, args.rows, split, args.raw, home)
    log("training the model")
    predict, results["model"] = train(data, home)
    log(results["model"]["model"])
    predictions = work / "predictions.parquet"
    frame = write_predictions(data, predict, predictions)
    log(f"{len(frame):,} held-out predictions; model accuracy "
        f"{(frame['prediction'] == frame['truth']).mean():.4f}")

    review = open_review(home)
    review.jobs.workforce.add_team("reviewers")
    for k in range(args.task_count):
        review.jobs.workforce.add_worker(f"reviewer-{k}", "reviewer", teams_=["reviewers"])
    results["thresholds"] = thresholds_benchmark(review, frame, predictions, work / "a2i",
                                                 args.reviewer_accuracy, args.task_count)
    results["throughput"] = throughput_benchmark(open_review(home), work / "a2i",
                                                 args.throughput, args.single)
    results["seconds"] = round(time.perf_counter() - begun, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    chart(results, args.results / "review.png")
    text = report(results)
    (args.results / "review.md").write_text(text + "\n", encoding="utf-8")
    (args.results / "review.json").write_text(json.dumps(results, indent=2, default=str)
                                              + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
