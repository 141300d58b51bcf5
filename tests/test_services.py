"""`loopworks.open`: one object graph for the CLI, the server and SDK users, and the
domain's own follow-ups of an answer (a human loop completed, an automated-labeling round
started) for whoever answers — here an SDK caller, with no server running."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

import loopworks
from loopworks.cli import main
from loopworks.labeling.jobs import JobSpec, JobStatus
from loopworks.metadata.tables import review_loops
from loopworks.review.flows import FlowDefinition
from loopworks.samples import generate_reviews

LABELS = ["negative", "neutral", "positive"]


def test_one_graph_on_one_engine(tmp_path: Path) -> None:
    with loopworks.open(tmp_path / "home") as lw:
        assert lw.home == tmp_path / "home"
        engines = {id(lw.engine), id(lw.features.registry.engine), id(lw.labeling.engine),
                   id(lw.review.engine), id(lw.workforce.engine)}
        assert len(engines) == 1
        assert lw.review.jobs is lw.labeling and lw.auto_label.jobs is lw.labeling
        assert lw.models.root == lw.home / "models"
        assert "secret" not in repr(lw) and str(tmp_path) in repr(lw)
        # What the SDK does is what the CLI sees: same home, same database.
        lw.workforce.add_team("nlp")
    listed = CliRunner().invoke(main, ["team", "list", "--json", "--home",
                                       str(tmp_path / "home")])
    assert [t["name"] for t in json.loads(listed.output)] == ["nlp"]


def test_an_sdk_answer_completes_the_human_loop(tmp_path: Path) -> None:
    """No server and no read in between: the answer's follow-up settles the loop, writes
    its output document and its label into the flow's feature group."""
    with loopworks.open(tmp_path / "home") as lw:
        lw.workforce.add_team("reviewers")
        rita = lw.workforce.add_worker("rita", role="reviewer", teams_=["reviewers"])
        out = tmp_path / "out"
        flow = lw.review.create_flow(FlowDefinition(
            name="check", team="reviewers", labels=LABELS, output=str(out),
            feature_group="reviewed", id_field="review_id"))
        started = lw.review.start_human_loop("loop-1", "check", {
            "text": "fine, I guess", "review_id": "r1",
            "probabilities": {"negative": 0.2, "neutral": 0.5, "positive": 0.3}})
        assert started.started
        task = lw.labeling.next_task(flow.job_name, rita)
        assert task is not None
        lw.labeling.submit(flow.job_name, task.item_id, rita, "neutral")
        with lw.engine.connect() as conn:  # the stored status, not a read that settles
            status = conn.execute(sa.select(review_loops.c.status).where(
                review_loops.c.name == "loop-1")).scalar_one()
        assert status == "Completed"
        documents = list(out.rglob("output.json"))
        assert len(documents) == 1
        assert json.loads(documents[0].read_text())["humanAnswers"][0]["answerContent"]
        record = lw.features.feature_group("reviewed").get_record("r1")
        assert record is not None and record["label"] == "neutral"


def test_an_sdk_answer_that_closes_a_round_starts_the_next(tmp_path: Path) -> None:
    table = generate_reviews(1250, seed=2, broken=False).to_pandas()
    truth = {text: LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]
             for text, stars in zip(table.review_body, table.star_rating, strict=True)}
    with loopworks.open(tmp_path / "home") as lw:
        lw.workforce.add_team("crowd")
        ana = lw.workforce.add_worker("ana", teams_=["crowd"])
        lw.labeling.create_job(JobSpec("auto", "crowd", LABELS,
                                       auto_label={"batch_size": 100}),
                               list(table.review_body))
        task = lw.labeling.next_task("auto", ana)
        while task is not None:
            lw.labeling.submit("auto", task.item_id, ana, truth[task.source])
            task = lw.labeling.next_task("auto", ana)
        # The last answer closed the first round: it runs on the services' own thread.
        deadline = time.monotonic() + 120
        while not lw.auto_label.labeler.rounds("auto"):
            assert time.monotonic() < deadline, "no round after two minutes"
            time.sleep(0.1)
        report = lw.auto_label.labeler.rounds("auto")[0]
        assert report.sent_to_people == 100
        assert lw.labeling.job("auto").status is JobStatus.IN_PROGRESS
        assert lw.labeling.next_task("auto", ana) is not None  # the next batch is open


def test_a_one_shot_command_starts_no_thread(tmp_path: Path) -> None:
    """`label status` opens the services, reads and ends: no webhook or round thread."""
    import threading

    home = str(tmp_path / "home")
    with loopworks.open(home) as lw:
        lw.workforce.add_team("nlp")
        lw.labeling.create_job(JobSpec("j", "nlp", LABELS), ["a", "b"])
    before = {t.name for t in threading.enumerate()}
    shown = CliRunner().invoke(main, ["label", "status", "j", "--home", home])
    assert shown.exit_code == 0, shown.output
    started = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("loopworks-") for name in started), started
