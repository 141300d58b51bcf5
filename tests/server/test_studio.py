"""Studio in a real browser: search the catalog, open a group, run and download a query, a
refused DDL statement, a processing job's charts, and an annotator kept out. Screenshots of
each page go to tests/artifacts/.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.workforce import Workforce
from loopworks.metadata import database_url, open_engine
from loopworks.processing.config import ProcessingConfig
from loopworks.processing.job import run_processing_job

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


def test_annotators_are_kept_out(studio) -> None:
    url, workforce = studio
    with httpx.Client(base_url=url) as client:
        secret = workforce.issue_login_link("ana")
        page = client.get(f"/login/{secret}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.post(f"/login/{secret}", data={"csrf_token": token})
        for path in ["/studio", "/studio/console", "/studio/groups/reviews", "/studio/jobs"]:
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
