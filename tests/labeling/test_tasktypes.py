"""Named entities, image classification and bounding boxes: manifests, answers, output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError, InputError
from loopworks.labeling.jobs import JobSpec, LabelingJobs, TaskType
from loopworks.labeling.output import write_output
from loopworks.labeling.tasktypes import consolidate_boxes, consolidate_spans, validate_answer

NER = ["PER", "ORG"]
TEXT = "Ada Lovelace met Charles Babbage at the Royal Society."


@pytest.fixture
def labeling(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

def _workers(jobs: LabelingJobs, n: int) -> list:
    return [jobs.workforce.add_worker(f"w{i}", teams_=["nlp"]) for i in range(n)]


def _answer_all(jobs: LabelingJobs, job: str, workers: list, answer_for) -> None:
    for worker in workers:
        while (task := jobs.next_task(job, worker)) is not None:
            jobs.submit(job, task.item_id, worker, answer_for(worker, task))


def _output(tmp_path: Path, jobs: LabelingJobs, job: str) -> list[dict]:
    summary = write_output(jobs, job, tmp_path / "out", method="majority-vote")
    return [json.loads(line) for line in Path(summary["manifest"]).read_text().splitlines()]


def test_ner_answers_are_checked_and_naming_the_field() -> None:
    ok = validate_answer(TaskType.NAMED_ENTITY_RECOGNITION, NER, {"entities": [
        {"start": 17, "end": 32, "label": "PER"}, {"start": 0, "end": 12, "label": "PER"}]},
        TEXT)
    assert [e["start"] for e in ok["entities"]] == [0, 17]  # sorted by start
    cases = [
        ({"entities": [{"start": 5, "end": 5, "label": "PER"}]}, "answer.entities[0].end"),
        ({"entities": [{"start": 0, "end": 999, "label": "PER"}]}, "answer.entities[0].end"),
        ({"entities": [{"start": -1, "end": 3, "label": "PER"}]}, "answer.entities[0].start"),
        ({"entities": [{"start": 0, "end": 3, "label": "LOC"}]}, "answer.entities[0].label"),
        ({"entities": [{"start": "0", "end": 3, "label": "PER"}]},
         "answer.entities[0].start"),
        ({"entities": [{"start": 0, "end": 12, "label": "PER"},
                       {"start": 4, "end": 20, "label": "ORG"}]}, "answer.entities"),
        ({"spans": []}, "answer.entities"),
        ("PER", "answer.entities"),
    ]
    for answer, setting in cases:
        with pytest.raises(ConfigurationError) as err:
            validate_answer(TaskType.NAMED_ENTITY_RECOGNITION, NER, answer, TEXT)
        assert err.value.setting == setting, (answer, err.value.setting)
    assert validate_answer(TaskType.NAMED_ENTITY_RECOGNITION, NER, {"entities": []},
                           TEXT) == {"entities": []}


def test_ner_job_majority_spans_in_ground_truth_shape(labeling: LabelingJobs,
                                                      tmp_path: Path) -> None:
    labeling.create_job(JobSpec("ner", "nlp", NER, TaskType.NAMED_ENTITY_RECOGNITION,
                                workers_per_item=3, examples=[{"source": "Bob",
                                                               "answer": "PER"}]),
                        [TEXT, "Nothing to see here."])
    workers = _workers(labeling, 3)
    ada = {"start": 0, "end": 12, "label": "PER"}
    babbage = {"start": 17, "end": 32, "label": "PER"}
    society = {"start": 40, "end": 53, "label": "ORG"}

    def answer(worker, task):
        assert task.task_type == "named-entity-recognition" and task.examples
        if task.source != TEXT:
            return {"entities": []}
        if worker.name == "w0":
            return {"entities": [ada, babbage, society]}
        if worker.name == "w1":
            return {"entities": [ada, {**babbage, "label": "ORG"}]}
        return {"entities": [ada, babbage]}

    task = labeling.next_task("ner", workers[0])
    with pytest.raises(ConfigurationError, match="must satisfy 0 <= start < end"):
        labeling.submit("ner", task.item_id, workers[0],
                        {"entities": [{"start": 0, "end": len(task.source) + 1,
                                       "label": "PER"}]})
    labeling.submit("ner", task.item_id, workers[0], answer(workers[0], task))
    _answer_all(labeling, "ner", workers, answer)
    lines = _output(tmp_path, labeling, "ner")
    value, meta = lines[0]["ner"], lines[0]["ner-metadata"]
    assert value["annotations"]["entities"] == [
        {"startOffset": 0, "endOffset": 12, "label": "PER"},
        {"startOffset": 17, "endOffset": 32, "label": "PER"}]  # 3/3 and 2/3; ORG 1/3
    assert value["annotations"]["labels"] == [{"label": "PER"}, {"label": "ORG"}]
    assert meta["entities"] == [{"confidence": 1.0}, {"confidence": 0.6667}]
    assert meta["type"] == "groundtruth/named-entity-recognition"
    assert meta["loopworks"]["worker-count"] == 3 and meta["human-annotated"] == "yes"
    assert lines[1]["ner"]["annotations"]["entities"] == []


def _png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def test_image_manifest_checks_files_and_keeps_absolute_paths(labeling: LabelingJobs,
                                                               tmp_path: Path) -> None:
    _png(tmp_path / "img" / "cat.png")
    _png(tmp_path / "img" / "dog.jpg")
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    manifest = tmp_path / "images.manifest"
    manifest.write_text(json.dumps({"source-ref": "img/cat.png", "truth": "cat"}) + "\n"
                        + json.dumps({"source-ref": str(tmp_path / "img" / "dog.jpg")}) + "\n")
    spec = JobSpec("pets", "nlp", ["cat", "dog"], TaskType.IMAGE_CLASSIFICATION)
    assert labeling.create_job(spec, manifest).counts["items"] == 2
    bad = tmp_path / "bad.manifest"
    for line, message in [({"source-ref": "img/missing.png"}, "does not exist"),
                          ({"source-ref": "img/notes.txt"}, "is not an image file"),
                          ({"source": "a text"}, "needs a 'source-ref'")]:
        bad.write_text(json.dumps({"source-ref": "img/cat.png"}) + "\n" + json.dumps(line)
                       + "\n")
        with pytest.raises(InputError, match=f"bad.manifest, line 2: .*{message}") as err:
            labeling.create_job(JobSpec("bad", "nlp", ["cat", "dog"],
                                        TaskType.IMAGE_CLASSIFICATION), bad)
        assert err.value.line == 2
    with pytest.raises(Exception, match="no labeling job"):
        labeling.job("bad")  # nothing half-made
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    task = labeling.next_task("pets", ana)
    assert task.source == str((tmp_path / "img" / "cat.png").resolve())
    assert labeling.image_path("pets", task.item_id, ana) == Path(task.source)
    assert task.data["source-ref"] == "img/cat.png"  # the line's fields, as written
    with pytest.raises(ConfigurationError, match="not one of the job's labels"):
        labeling.submit("pets", task.item_id, ana, "bird")
    labeling.submit("pets", task.item_id, ana, "cat")
    lines = _output(tmp_path, labeling, "pets")
    assert lines[0]["pets"] == 0 and lines[0]["pets-metadata"]["class-name"] == "cat"
    assert lines[0]["pets-metadata"]["type"] == "groundtruth/image-classification"
    assert "pets" not in lines[1]


def test_boxes_checked_consolidated_by_iou_and_written_as_object_detection(
        labeling: LabelingJobs, tmp_path: Path) -> None:
    _png(tmp_path / "street.png", (640, 480))
    labeling.create_job(JobSpec("boxes", "nlp", ["car", "person"], TaskType.BOUNDING_BOX,
                                workers_per_item=3), [str(tmp_path / "street.png")])
    for answer, setting in [({"boundingBoxes": [{"label": "car", "left": 1, "top": 1,
                                                 "width": 0, "height": 5}]},
                             "answer.boundingBoxes[0].width"),
                            ({"boundingBoxes": [{"label": "bus", "left": 1, "top": 1,
                                                 "width": 3, "height": 5}]},
                             "answer.boundingBoxes[0].label"),
                            ({"boundingBoxes": [{"label": "car", "left": 1, "top": True,
                                                 "width": 3, "height": 5}]},
                             "answer.boundingBoxes[0].top")]:
        with pytest.raises(ConfigurationError) as err:
            validate_answer(TaskType.BOUNDING_BOX, ["car", "person"], answer)
        assert err.value.setting == setting
    car = {"label": "car", "left": 100, "top": 200, "width": 120, "height": 60}
    person = {"label": "person", "left": 400, "top": 100, "width": 40, "height": 120}
    answers = {
        "w0": [car, person],
        "w1": [{**car, "left": 104, "width": 118}],  # the same car, a little to the right
        "w2": [{**car, "left": 96, "top": 204}, {**person, "left": 300}],  # person elsewhere
    }
    workers = _workers(labeling, 3)
    _answer_all(labeling, "boxes", workers,
                lambda w, task: {"boundingBoxes": answers[w.name]})
    line = _output(tmp_path, labeling, "boxes")[0]
    assert line["boxes"]["annotations"] == [
        {"class_id": 0, "left": 100.0, "top": 201.33, "width": 119.33, "height": 60.0}]
    assert line["boxes"]["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    meta = line["boxes-metadata"]
    assert meta["type"] == "groundtruth/object-detection"
    assert meta["objects"] == [{"confidence": 1.0}]
    assert meta["class-map"] == {"0": "car", "1": "person"}
    empty = consolidate_boxes([{"boundingBoxes": []}, {"boundingBoxes": []}])
    assert empty == []


def test_span_and_box_consolidation_need_a_strict_majority() -> None:
    span = {"start": 0, "end": 3, "label": "PER"}
    assert consolidate_spans([{"entities": [span]}, {"entities": []}]) == []
    assert consolidate_spans([{"entities": [span]}] * 2 + [{"entities": []}])[0][
        "confidence"] == 0.6667
    box = {"label": "car", "left": 0, "top": 0, "width": 10, "height": 10}
    far = {**box, "left": 6}  # IoU 4/16 = 0.25 with box: another object
    assert consolidate_boxes([{"boundingBoxes": [box]}, {"boundingBoxes": [far]}]) == []
    two = consolidate_boxes([{"boundingBoxes": [box, far]}, {"boundingBoxes": [box, far]}])
    assert [b["left"] for b in two] == [0, 6] and all(b["confidence"] == 1 for b in two)


def test_multilabel_output_has_class_and_confidence_maps(labeling: LabelingJobs,
                                                        tmp_path: Path) -> None:
    labels = ["fit", "price", "quality"]
    labeling.create_job(JobSpec("ml", "nlp", labels, TaskType.TEXT_CLASSIFICATION_MULTILABEL,
                                workers_per_item=3), ["too tight and too dear"])
    chosen = {"w0": ["fit", "price"], "w1": ["fit"], "w2": ["price", "fit", "quality"]}
    _answer_all(labeling, "ml", _workers(labeling, 3), lambda w, task: chosen[w.name])
    line = _output(tmp_path, labeling, "ml")[0]
    assert line["ml"] == [0, 1]  # fit 3/3, price 2/3; quality 1/3 is left out
    meta = line["ml-metadata"]
    assert meta["class-map"] == {"0": "fit", "1": "price"}
    assert meta["confidence-map"] == {"0": 1.0, "1": 0.6667}
    assert meta["type"] == "groundtruth/text-classification-multilabel"
    with pytest.raises(ConfigurationError, match="names a label twice"):
        validate_answer(TaskType.TEXT_CLASSIFICATION_MULTILABEL, labels, ["fit", "fit"])
