"""Custom labeling jobs: a Liquid task template with crowd-html elements (Ground Truth's
custom workflows). The template is checked when the job is made; an answer is the form's
JSON object; the output manifest carries the answer most workers gave, with theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.errors import ConfigurationError, InputError
from loopworks.labeling.jobs import JobSpec, LabelingJobs, TaskType
from loopworks.labeling.output import write_output

TEMPLATE = """<crowd-form>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']" header="Sentiment?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier>
  <crowd-input name="why" label="Why?"></crowd-input>
</crowd-form>
"""


def _spec(**extra) -> JobSpec:
    return JobSpec("custom-reviews", "nlp", [], TaskType.CUSTOM, template=TEMPLATE, **extra)


def test_a_custom_job_needs_a_template_that_parses() -> None:
    assert _spec().labels == []
    with pytest.raises(ConfigurationError) as caught:
        JobSpec("custom-bad", "nlp", [], TaskType.CUSTOM,
                template="<crowd-form>\n<p>{{ task.input.taskObject | escape </p>\n</crowd-form>")
    assert caught.value.fields["setting"] == "template"
    assert "line 2" in str(caught.value)
    with pytest.raises(ConfigurationError):
        JobSpec("custom-none", "nlp", [], TaskType.CUSTOM)
    with pytest.raises(ConfigurationError) as caught:  # a built-in type's template is checked
        JobSpec("text", "nlp", ["a", "b"], template="{% if %}")
    assert caught.value.fields["setting"] == "template"
    with pytest.raises(ConfigurationError):  # and it still needs its labels
        JobSpec("text", "nlp", [], template=TEMPLATE)


def test_answers_are_the_forms_json_and_the_output_keeps_them(
        labeling_jobs: LabelingJobs, tmp_path: Path) -> None:
    jobs = labeling_jobs
    jobs.create_job(_spec(workers_per_item=3), ["Great fit", "Fell apart"])
    workers = [jobs.workforce.add_worker(f"w{i}", teams_=["nlp"]) for i in range(3)]
    answers = {"Great fit": [{"sentiment": {"label": "1"}, "why": "fits"},
                             {"sentiment": {"label": "1"}, "why": "fits"},
                             {"sentiment": {"label": "0"}, "why": ""}],
               "Fell apart": [{"sentiment": {"label": "-1"}, "why": "broke"}] * 3}
    for i, worker in enumerate(workers):
        while (task := jobs.next_task("custom-reviews", worker)) is not None:
            assert task.task_type == "custom"
            with pytest.raises(ConfigurationError):
                jobs.submit("custom-reviews", task.item_id, worker, "1")  # not an object
            jobs.submit("custom-reviews", task.item_id, worker, answers[task.source][i])
    summary = write_output(jobs, "custom-reviews", tmp_path / "out", method="majority-vote")
    lines = [json.loads(line) for line in Path(summary["manifest"]).read_text().splitlines()]
    by_source = {line["source"]: line for line in lines}
    great = by_source["Great fit"]
    assert great["custom-reviews"] == {"sentiment": {"label": "1"}, "why": "fits"}
    meta = great["custom-reviews-metadata"]
    extras = meta["loopworks"]
    assert meta["type"] == "groundtruth/custom"
    assert extras["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert sorted(json.dumps(a, sort_keys=True) for a in extras["worker-answers"]) == sorted(
        json.dumps(a, sort_keys=True) for a in answers["Great fit"])
    assert by_source["Fell apart"]["custom-reviews"]["sentiment"] == {"label": "-1"}


def test_a_custom_manifest_keeps_source_refs_as_they_are(labeling_jobs: LabelingJobs,
                                                         tmp_path: Path) -> None:
    manifest = tmp_path / "input.manifest"
    manifest.write_text(json.dumps({"source-ref": "s3://photos/cat.jpg", "shop": "A"}) + "\n"
                        + json.dumps({"other": 1}) + "\n")
    with pytest.raises(InputError) as caught:
        labeling_jobs.create_job(_spec(), manifest)
    assert "line 2" in str(caught.value)
    manifest.write_text(json.dumps({"source-ref": "s3://photos/cat.jpg", "shop": "A"}) + "\n")
    labeling_jobs.create_job(_spec(), manifest)
    worker = labeling_jobs.workforce.add_worker("ana", teams_=["nlp"])
    task = labeling_jobs.next_task("custom-reviews", worker)
    assert task.source == "s3://photos/cat.jpg" and task.data["shop"] == "A"


def test_the_cli_makes_a_custom_job(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    template = tmp_path / "form.liquid.html"
    template.write_text(TEMPLATE)
    items = tmp_path / "items.manifest"
    items.write_text(json.dumps({"source": "Nice"}) + "\n")
    runner = CliRunner()
    assert runner.invoke(main, ["team", "add", "nlp", "--home", home]).exit_code == 0
    made = runner.invoke(main, ["label", "create-job", "custom-cli", "--manifest", str(items),
                                "--team", "nlp", "--task-type", "custom", "--template",
                                str(template), "--home", home])
    assert made.exit_code == 0, made.output
    refused = runner.invoke(main, ["label", "create-job", "custom-cli-2", "--manifest",
                                   str(items), "--team", "nlp", "--task-type", "custom",
                                   "--home", home])
    assert refused.exit_code != 0 and "--template" in refused.output


BUILT_IN_TEMPLATES = {
    TaskType.TEXT_CLASSIFICATION: ("""<crowd-form><crowd-classifier name="sentiment"
        categories="{{ task.input.labels | to_json | escape }}" header="Sentiment?">
        <classification-target>{{ task.input.taskObject }}</classification-target>
        </crowd-classifier><crowd-input name="note"></crowd-input></crowd-form>""",
        {"sentiment": {"label": "pos"}, "note": "clear"}, "pos"),
    TaskType.TEXT_CLASSIFICATION_MULTILABEL: ("""<crowd-form><crowd-classifier-multi-select
        name="topics" categories="{{ task.input.labels | to_json | escape }}">
        <classification-target>{{ task.input.taskObject }}</classification-target>
        </crowd-classifier-multi-select></crowd-form>""",
        {"topics": {"labels": ["pos", "neg"]}}, ["pos", "neg"]),
    TaskType.NAMED_ENTITY_RECOGNITION: ("""<crowd-form><crowd-entity-annotation name="spans"
        labels="[{'label': 'pos'}, {'label': 'neg'}]" text="{{ task.input.taskObject }}">
        </crowd-entity-annotation></crowd-form>""",
        {"spans": {"entities": [{"label": "pos", "startOffset": 0, "endOffset": 5}]}},
        {"entities": [{"start": 0, "end": 5, "label": "pos"}]}),
}


@pytest.mark.parametrize("task_type", list(BUILT_IN_TEMPLATES))
def test_a_built_in_job_with_a_template_reads_its_answer_from_the_form(
        labeling_jobs: LabelingJobs, task_type: TaskType) -> None:
    """Ground Truth's built-in task types are templates too: the element of the type's kind
    gives the answer in loopworks' shape, and the form is kept as the worker sent it."""
    template, form, expected = BUILT_IN_TEMPLATES[task_type]
    jobs = labeling_jobs
    jobs.create_job(JobSpec("built-in", "nlp", ["pos", "neg"], task_type, template=template),
                    ["Great fit, lovely"])
    worker = jobs.workforce.add_worker("ann", teams_=["nlp"])
    task = jobs.next_task("built-in", worker)
    assert task is not None
    with pytest.raises(ConfigurationError) as caught:  # no element of the type's kind
        jobs.submit("built-in", task.item_id, worker, {"note": {"text": "x"}})
    assert "exactly one" in str(caught.value)
    jobs.submit("built-in", task.item_id, worker, form)
    [answer] = jobs.answers("built-in")
    assert answer["answer"] == expected and answer["form"] == form
