"""Augmented AI over boto3: StartHumanLoop throughput, and a reviewer's next task with the
crowd-html template rendered, against a fresh `loopworks serve`.

* StartHumanLoop loops/s from 1 and 8 threads (a boto3 client per thread, unmodified,
  SigV4-signed), each loop a product review with the model's prediction as InputContent;
* the reviewer's cycle as the browser does it: submit the crowd-form's answer (POST of the
  task form) and receive the next task's page, whose Liquid task UI is rendered with the
  loop's input, paced one answer every ``--think`` seconds; p50 / p99 of that round trip
  (the issue's goal: p99 < 50 ms);
* the same cycle for an annotator of a Ground Truth labeling job made with boto3's
  CreateLabelingJob (built-in text classification, its template read from S3), and of a
  loopworks job without a template (its task type's built-in template).

    python benchmarks/a2i.py [--loops 2000] [--answers 300] [--think 0.2]

Results: ``benchmarks/results/a2i.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aws_featurestore import free_port, percentiles, server  # noqa: E402

from _common import RunMeter, fresh_dir, log  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REGION = "us-east-1"
TASK_UI = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']"
                    header="Is the model right about this review?">
    <classification-target>{{ task.input.review.body }}</classification-target>
    <full-instructions header="Sentiment">Negative, neutral or positive.</full-instructions>
    <short-instructions>The model said {{ task.input.model.label }}
      ({{ task.input.model.confidence }}).</short-instructions>
  </crowd-classifier>
</crowd-form>
"""


def clients(url: str, key: tuple[str, str]) -> tuple[Any, Any]:
    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    config = Config(retries={"max_attempts": 1}, max_pool_connections=16)
    return (session.client("sagemaker", endpoint_url=f"{url}/aws", config=config),
            session.client("sagemaker-a2i-runtime", endpoint_url=f"{url}/aws", config=config))


def review_text(i: int) -> str:
    return f"Review {i}: the strap broke after a week. " * 3


def review_input(i: int) -> str:
    return json.dumps({"review": {"id": f"r{i:07d}",
                                  "body": f"Review {i}: the strap broke after a week. " * 3},
                       "model": {"label": str(i % 3 - 1), "confidence": 0.55}})


def start_rate(make: Any, flow_arn: str, loops: int, threads: int, offset: int
               ) -> dict[str, float]:
    runtimes = [make() for _ in range(threads)]
    share = loops // threads

    def work(t: int) -> None:
        for i in range(share):
            n = offset + t * share + i
            runtimes[t].start_human_loop(HumanLoopName=f"loop-{n}", FlowDefinitionArn=flow_arn,
                                         HumanLoopInput={"InputContent": review_input(n)})

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    seconds = time.perf_counter() - start
    return {"loops": share * threads, "seconds": round(seconds, 3),
            "loops_per_s": round(share * threads / seconds, 1)}


def reviewer_cycle(url: str, link: str, answers: int, think: float,
                   job: str = "review-bench-flow", element: str = "sentiment",
                   label: str = "1") -> dict[str, Any]:
    """Sign in with the link, then answer task after task as the page does, timing each
    submit-and-next-page round trip."""
    samples: list[float] = []
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as browser:
        page = browser.get(f"/login/{link}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert browser.post(f"/login/{link}", data={"csrf_token": token}).status_code == 303
        page = browser.get(f"/jobs/{job}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        browser.post(f"/jobs/{job}/next", data={"csrf_token": token})
        page = browser.get(f"/jobs/{job}")
        for _ in range(answers):
            found = re.search(r'action="/jobs/[^"]+/tasks/(\d+)"', page.text)
            if found is None or "<crowd-classifier" not in page.text:
                raise RuntimeError("the task page did not show the task UI")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
            answer = json.dumps({element: {"label": label}})
            time.sleep(think)
            start = time.perf_counter()
            posted = browser.post(f"/jobs/{job}/tasks/{found.group(1)}",
                                  data={"csrf_token": token, "idempotency_key": key,
                                        "answer_json": answer})
            page = browser.get(posted.headers["location"])
            samples.append(time.perf_counter() - start)
            if "Saved." not in page.text:
                raise RuntimeError(f"the answer was not saved: {page.text[:300]}")
    return percentiles(samples)


GT_TEMPLATE = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="crowd-classifier" categories="{{ task.input.labels | to_json }}"
                    header="What does the review say about the product?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier>
</crowd-form>
"""


def labeling_job(url: str, key: tuple[str, str], team: str, answers: int) -> None:
    """A Ground Truth text-classification job made the boto3 way: manifest, label
    categories and template in S3, the built-in PRE-/ACS- functions."""
    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    s3 = session.client("s3", endpoint_url=f"{url}/aws",
                        config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="bench-gt")
    s3.put_object(Bucket="bench-gt", Key="in.manifest", Body="".join(
        json.dumps({"source": review_text(i)}) + "\n" for i in range(answers + 50)))
    s3.put_object(Bucket="bench-gt", Key="labels.json", Body=json.dumps(
        {"document-version": "2018-11-28",
         "labels": [{"label": x} for x in ("negative", "neutral", "positive")]}))
    s3.put_object(Bucket="bench-gt", Key="template.html", Body=GT_TEMPLATE)
    gt = "arn:aws:lambda:us-east-1:432418664414:function:"
    clients(url, key)[0].create_labeling_job(
        LabelingJobName="bench-gt", LabelAttributeName="sentiment",
        InputConfig={"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://bench-gt/in.manifest"}}},
        OutputConfig={"S3OutputPath": "s3://bench-gt/out"},
        RoleArn="arn:aws:iam::000000000000:role/bench",
        LabelCategoryConfigS3Uri="s3://bench-gt/labels.json",
        HumanTaskConfig={"WorkteamArn": team,
                         "UiConfig": {"UiTemplateS3Uri": "s3://bench-gt/template.html"},
                         "PreHumanTaskLambdaArn": gt + "PRE-TextMultiClass",
                         "TaskTitle": "Sentiment", "TaskDescription": "Pick one",
                         "NumberOfHumanWorkersPerDataObject": 1,
                         "TaskTimeLimitInSeconds": 300,
                         "AnnotationConsolidationConfig": {
                             "AnnotationConsolidationLambdaArn": gt + "ACS-TextMultiClass"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--think", type=float, default=0.2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/loopworks-bench-a2i"))
    args = parser.parse_args()
    import loopworks

    home = fresh_dir(args.workdir) / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_team("raters")
        lw.workforce.add_worker("bench", role="admin")
        lw.workforce.add_worker("rita", role="reviewer", teams_=["raters"])
        key = lw.access_keys.issue("bench")
        link = lw.workforce.issue_login_link("rita")
        links = {}
        for name in ("ann", "ben"):
            lw.workforce.add_worker(name, role="annotator", teams_=["raters"])
            links[name] = lw.workforce.issue_login_link(name)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LOOPWORKS_HOME=str(home), LOOPWORKS_API_TOKEN="bench-token")
    command = [sys.executable, "-m", "loopworks.cli", "serve", "--port", str(port)]
    meter = RunMeter()
    out: dict[str, Any] = {}
    with server(command, url, env, "/healthz"):
        sagemaker, _ = clients(url, key)
        team = sagemaker.create_workteam(
            WorkteamName="raters", Description="bench", MemberDefinitions=[
                {"CognitoMemberDefinition": {"UserPool": "p", "UserGroup": "raters",
                                             "ClientId": "c"}}])["WorkteamArn"]
        ui = sagemaker.create_human_task_ui(HumanTaskUiName="bench-ui",
                                            UiTemplate={"Content": TASK_UI})["HumanTaskUiArn"]
        flow = sagemaker.create_flow_definition(
            FlowDefinitionName="bench-flow", RoleArn="arn:aws:iam::000000000000:role/bench",
            HumanLoopConfig={"WorkteamArn": team, "HumanTaskUiArn": ui, "TaskCount": 1,
                             "TaskTitle": "Check", "TaskDescription": "Check the model"},
            OutputConfig={"S3OutputPath": "s3://bench-a2i/out"})["FlowDefinitionArn"]
        log("StartHumanLoop from 1 thread")
        out["start_1_thread"] = start_rate(lambda: clients(url, key)[1], flow,
                                           args.loops // 4, 1, 0)
        log("StartHumanLoop from 8 threads")
        out["start_8_threads"] = start_rate(lambda: clients(url, key)[1], flow, args.loops, 8,
                                            args.loops)
        log(f"a reviewer answers {args.answers} tasks, one every {args.think} s")
        out["reviewer_cycle"] = reviewer_cycle(url, link, args.answers, args.think)
        labeling_job(url, key, team, args.answers)
        log(f"an annotator answers {args.answers} tasks of a CreateLabelingJob job")
        out["annotator_gt_cycle"] = reviewer_cycle(
            url, links["ann"], args.answers, args.think, job="bench-gt",
            element="crowd-classifier", label="positive")
        with loopworks.open(home) as lw:
            lw.labeling.create_job(loopworks.labeling.JobSpec(
                "bench-built-in", "raters", ["negative", "neutral", "positive"]),
                [review_text(i) for i in range(args.answers + 50)])
        log(f"an annotator answers {args.answers} tasks of a job without a template")
        out["annotator_builtin_cycle"] = reviewer_cycle(
            url, links["ben"], args.answers, args.think, job="bench-built-in",
            element="label", label="positive")
    meta = meter.meta(think_s=args.think)
    cpus = meta["cpus"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "a2i.json").write_text(json.dumps({"meta": meta, **out}, indent=2))
    cycle = out["reviewer_cycle"]
    gt_cycle, builtin_cycle = out["annotator_gt_cycle"], out["annotator_builtin_cycle"]
    text = "\n".join([
        "# Augmented AI over boto3: StartHumanLoop and the reviewer's next task", "",
        f"Run {meta['finished']} on {meta['machine']} ({cpus} CPUs); other processes kept the "
        f"machine {meta['others_busy']:.0%} busy during the run.", "",
        "| measure | loopworks |", "| --- | ---: |",
        f"| StartHumanLoop, 1 thread (loops/s) | {out['start_1_thread']['loops_per_s']} |",
        f"| StartHumanLoop, 8 threads (loops/s) | {out['start_8_threads']['loops_per_s']} |",
        f"| answer + next task page with the task UI rendered, p50 / p99 (ms), one answer "
        f"every {args.think} s | {cycle['p50_ms']} / {cycle['p99_ms']} |",
        f"| the same for an annotator of a CreateLabelingJob job (template from S3) | "
        f"{gt_cycle['p50_ms']} / {gt_cycle['p99_ms']} |",
        f"| the same for a job without a template (its type's built-in template) | "
        f"{builtin_cycle['p50_ms']} / {builtin_cycle['p99_ms']} |", "",
        "The reviewer's cycle is what the browser does: POST the task form with the "
        "crowd-form's answer, follow the redirect to the next task's page, whose Liquid task "
        "UI is rendered with the loop's input.", ""])
    (RESULTS / "a2i.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
