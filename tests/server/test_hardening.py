"""The outside probe of issue 12, kept: what an attacker found over HTTP against a real
`loopworks serve`, each now answered as it should be."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine

from conftest import running_server

LABELS = ["negative", "neutral", "positive"]
OPERATOR = {"Authorization": "Bearer operator-token"}


class Site:
    """The running server, its home and database, and clients closed after the test."""

    def __init__(self, url: str, home: Path, jobs: LabelingJobs,
                 stack: contextlib.ExitStack) -> None:
        self.url, self.home, self.jobs, self._stack = url, home, jobs, stack

    def api(self, worker: str | None = None) -> httpx.Client:
        """A JSON API client with the worker's token (the operator's without one)."""
        token = self.jobs.workforce.issue_api_token(worker) if worker else "operator-token"
        return self._stack.enter_context(httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30))

    def browser(self, worker: str | None = None) -> httpx.Client:
        """A cookie-keeping client, signed in through a login link when a worker is given."""
        client = self._stack.enter_context(httpx.Client(base_url=self.url, timeout=30))
        if worker:
            secret = self.jobs.workforce.issue_login_link(worker)
            page = client.get(f"/login/{secret}")
            done = client.post(f"/login/{secret}", data={"csrf_token": csrf(page)})
            assert done.status_code == 303, done.text
        return client


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def site(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("nlp")
    jobs.workforce.add_worker("ana", teams_=["nlp"])
    jobs.workforce.add_worker("rita", "reviewer", teams_=["nlp"])
    jobs.workforce.add_worker("boss", "admin", password="correct horse battery")
    jobs.create_job(JobSpec("job-a", "nlp", LABELS), ["a one", "a two"])
    jobs.create_job(JobSpec("job-b", "nlp", ["yes", "no"]), ["b one", "b two"])
    with running_server(home, "operator-token") as url, contextlib.ExitStack() as stack:
        yield Site(url, home, jobs, stack)


# ------------------------------------------------------------------ data integrity
def test_an_item_id_of_another_job_is_404_in_the_api_and_the_pages(site: Site) -> None:
    ana = site.api("ana")
    b_task = ana.post("/api/labeling/jobs/job-b/next").json()
    a_task = ana.post("/api/labeling/jobs/job-a/next").json()
    b_item = b_task["item_id"]
    wrong = ana.post(f"/api/labeling/jobs/job-a/tasks/{b_item}/answer",
                     json={"answer": "negative"})
    assert wrong.status_code == 404 and "has no task" in wrong.text
    assert ana.post(f"/api/labeling/jobs/job-a/tasks/{b_item}/answer?next=true",
                    json={"answer": "negative"}).status_code == 404
    page = site.browser("ana")
    start = page.get("/jobs/job-a")
    form = {"csrf_token": csrf(start), "answer": "negative"}
    assert page.post(f"/jobs/job-a/tasks/{b_item}", data=form).status_code == 404
    assert page.post(f"/jobs/job-a/tasks/{b_item}/skip",
                     data={"csrf_token": csrf(start)}).status_code == 404
    assert site.jobs.answers("job-a") == [] and site.jobs.answers("job-b") == []
    # B's lease survived: B's answer lands under B, with B's labels; A's under A.
    assert ana.post(f"/api/labeling/jobs/job-b/tasks/{b_item}/answer",
                    json={"answer": "yes"}).status_code == 201
    assert ana.post(f"/api/labeling/jobs/job-a/tasks/{a_task['item_id']}/answer",
                    json={"answer": "positive"}).status_code == 201
    assert [a["answer"] for a in site.jobs.answers("job-b")] == ["yes"]
    assert [a["answer"] for a in site.jobs.answers("job-a")] == ["positive"]


def test_a_retried_answer_with_its_idempotency_key_gets_the_stored_result(site: Site) -> None:
    ana = site.api("ana")
    task = ana.post("/api/labeling/jobs/job-a/next").json()
    url = f"/api/labeling/jobs/job-a/tasks/{task['item_id']}/answer?next=true"
    key = {"Idempotency-Key": "8a7c3f5e-0b0c-4b6e-9d0a-1f2e3d4c5b6a"}
    first = ana.post(url, json={"answer": "neutral"}, headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    retry = ana.post(url, json={"answer": "neutral"}, headers=key)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()  # the same next task, not a second lease
    assert len(site.jobs.answers("job-a")) == 1
    assert ana.post(url, json={"answer": "neutral"}).status_code == 409  # no key: a conflict
    reused = ana.post(f"/api/labeling/jobs/job-a/tasks/{first.json()['next']['item_id']}"
                      "/answer", json={"answer": "neutral"}, headers=key)
    assert reused.status_code == 422 and "already used" in reused.text


def test_the_task_page_form_carries_an_idempotency_key(site: Site) -> None:
    page = site.browser("ana")
    start = page.get("/jobs/job-a")
    page.post("/jobs/job-a/next", data={"csrf_token": csrf(start)})
    task = page.get("/jobs/job-a")
    item = re.search(r'/jobs/job-a/tasks/(\d+)"', task.text).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', task.text).group(1)
    form = {"csrf_token": csrf(task), "answer": "positive", "idempotency_key": key}
    assert page.post(f"/jobs/job-a/tasks/{item}", data=form).status_code == 303
    again = page.post(f"/jobs/job-a/tasks/{item}", data=form)  # the browser resends it
    assert again.status_code == 303
    assert "Saved (already)." in page.get("/jobs/job-a").text
    assert len(site.jobs.answers("job-a")) == 1


# ------------------------------------------------------------------ sessions and roles
def test_sign_out_ends_the_session_on_the_server(site: Site) -> None:
    ana = site.browser("ana")
    assert "ana" in ana.get("/").text
    stolen = dict(ana.cookies)
    thief = site.browser()
    thief.cookies.update(stolen)
    assert thief.get("/").status_code == 200  # a copied cookie works while signed in
    home = ana.get("/")
    assert ana.post("/logout", data={"csrf_token": csrf(home)}).status_code == 303
    after = thief.get("/")
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_deactivation_ends_sessions_and_tokens(site: Site) -> None:
    page, api = site.browser("ana"), site.api("ana")
    assert page.get("/").status_code == 200
    assert api.get("/api/labeling/jobs").status_code == 200
    site.jobs.workforce.deactivate("ana")
    assert page.get("/").status_code == 303
    assert api.get("/api/labeling/jobs").status_code == 401


def test_labeling_tasks_are_for_annotators_and_review_tasks_for_reviewers(
        site: Site, tmp_path: Path) -> None:
    operator = site.api()
    made = operator.post("/api/review/flows", json={
        "name": "check", "team": "nlp", "labels": LABELS, "output": str(tmp_path / "out")})
    assert made.status_code == 201, made.text
    rita, ana = site.api("rita"), site.api("ana")
    refused = rita.post("/api/labeling/jobs/job-a/next")
    assert refused.status_code == 403 and "is for annotators" in refused.text
    assert ana.post("/api/labeling/jobs/review-check/next").status_code == 403
    assert [j["name"] for j in rita.get("/api/labeling/jobs").json()] == ["review-check"]
    assert "review-check" not in [j["name"] for j in ana.get("/api/labeling/jobs").json()]
    assert site.browser("rita").get("/jobs/job-a").status_code == 403


def test_password_sign_in_is_throttled_and_says_nothing_about_names(site: Site) -> None:
    from loopworks.labeling.signin import MAX_PER_NAME

    client = site.browser()
    page = client.get("/login")

    def attempt(name: str, password: str) -> httpx.Response:
        return client.post("/login", data={"csrf_token": csrf(page), "name": name,
                                           "password": password})

    for name in ("boss", "nobody"):
        answers = [attempt(name, "wrong guess") for _ in range(MAX_PER_NAME)]
        assert {a.status_code for a in answers} == {401}
        assert len({a.text.replace(name, "") for a in answers}) == 1
        limited = attempt(name, "correct horse battery")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert "Too many failed sign-ins" in limited.text


def test_api_tokens_expire_and_are_revoked_one_by_one(site: Site) -> None:
    from datetime import timedelta

    from loopworks.labeling.workforce import token_id

    workforce = site.jobs.workforce
    keep, drop = workforce.issue_api_token("ana"), workforce.issue_api_token("ana")
    expired = workforce.issue_api_token("ana", timedelta(microseconds=1))
    for token, status in ((keep, 200), (drop, 200), (expired, 401)):
        got = httpx.get(f"{site.url}/api/labeling/jobs",
                        headers={"Authorization": f"Bearer {token}"})
        assert got.status_code == status
    workforce.revoke_api_token("ana", token_id(drop))
    assert httpx.get(f"{site.url}/api/labeling/jobs",
                     headers={"Authorization": f"Bearer {drop}"}).status_code == 401
    assert httpx.get(f"{site.url}/api/labeling/jobs",
                     headers={"Authorization": f"Bearer {keep}"}).status_code == 200


def test_a_get_of_the_task_page_leases_nothing(site: Site) -> None:
    page = site.browser("ana")
    shown = page.get("/jobs/job-a")
    assert shown.status_code == 200 and 'id="start-form"' in shown.text
    with sqlite3.connect(site.home / "loopworks.db") as db:
        assert db.execute("SELECT count(*) FROM label_leases").fetchone()[0] == 0
    started = page.post("/jobs/job-a/next", data={"csrf_token": csrf(shown)})
    assert started.status_code == 303
    assert "/jobs/job-a/tasks/" in page.get("/jobs/job-a").text
    with sqlite3.connect(site.home / "loopworks.db") as db:
        assert db.execute("SELECT count(*) FROM label_leases").fetchone()[0] == 1
    # A cross-site form without the session's token leases nothing either.
    forged = page.post("/jobs/job-b/next", data={})
    assert forged.status_code == 403


# ------------------------------------------------------------------ bad input: 4xx
def test_out_of_range_ids_and_odd_names_are_4xx(site: Site, tmp_path: Path) -> None:
    ana, boss = site.api("ana"), site.browser("boss")
    huge = "9223372036854775808"
    for path in (f"/api/labeling/jobs/job-a/tasks/{huge}/answer",
                 f"/api/labeling/jobs/job-a/tasks/{huge}/answer?next=true",
                 "/api/labeling/jobs/job-a/tasks/-1/answer"):
        assert ana.post(path, json={"answer": "neutral"}).status_code == 422
    assert ana.get(f"/api/labeling/jobs/job-a/items/{huge}/image").status_code == 422
    page = site.browser("ana")
    start = page.get("/jobs/job-a")
    assert page.post(f"/jobs/job-a/tasks/{huge}", data={
        "csrf_token": csrf(start), "answer": "neutral"}).status_code == 422
    assert page.get(f"/jobs/job-a/tasks/{huge}/image").status_code == 422
    operator = site.api()
    assert operator.post("/api/review/flows", json={
        "name": "check", "team": "nlp", "labels": LABELS,
        "output": str(tmp_path / "out")}).status_code == 201
    token = operator.get("/api/review/flows/check/loops",
                         params={"next_token": "99999999999999999999999"})
    assert token.status_code == 422
    assert boss.get("/studio/jobs/*").status_code == 404
    long = "x" * 5000
    for path in (f"/jobs/{long}", f"/admin/jobs/{long}", f"/studio/jobs/{long}",
                 f"/studio/groups/{long}", f"/admin/review/{long}"):
        assert boss.get(path).status_code == 404, path[:40]
    for path in (f"/api/labeling/jobs/{long}/next", f"/api/labeling/jobs/{long}/stop"):
        assert operator.post(path).status_code == 404, path[:40]
    assert operator.get(f"/api/review/flows/{long}").status_code == 404
    assert operator.get(f"/api/feature-groups/{long}").status_code == 404


def test_a_bad_flow_is_refused_and_an_old_one_breaks_no_page(site: Site, tmp_path: Path
                                                            ) -> None:
    operator = site.api()
    base = {"team": "nlp", "labels": LABELS, "output": str(tmp_path / "out")}
    web = operator.post("/api/review/flows", json={**base, "name": "web",
                                                   "output": "http://example.com/out"})
    assert web.status_code == 422 and "cannot hold output documents" in web.text
    forever = operator.post("/api/review/flows", json={**base, "name": "forever",
                                                       "time_limit_seconds": 1e30})
    assert forever.status_code == 422
    assert operator.post("/api/review/flows", json={**base, "name": "good"}).status_code == 201
    # A flow stored before these checks, with both mistakes, is still listed and its
    # loops' failures stay its own.
    with sqlite3.connect(site.home / "loopworks.db") as db:
        spec = db.execute("SELECT spec FROM review_flows WHERE name = 'good'").fetchone()[0]
        db.execute("UPDATE review_flows SET spec = ? WHERE name = 'good'", (spec.replace(
            str(tmp_path / "out"), "http://example.com/out").replace(
            '"time_limit_seconds": 300', '"time_limit_seconds": 1e+30'),))
    started = operator.post("/api/review/flows/good/loops", json={
        "name": "l1", "input_content": {"text": "meh", "probabilities": [0.3, 0.4, 0.3]}})
    assert started.status_code in (200, 201), started.text
    rita = site.api("rita")
    task = rita.post("/api/labeling/jobs/review-good/next")
    assert task.status_code == 200, task.text
    answered = rita.post(f"/api/labeling/jobs/review-good/tasks/{task.json()['item_id']}"
                         "/answer", json={"answer": "neutral"})
    assert answered.status_code == 201  # the answer is stored; the loop says what failed
    loop = operator.get("/api/review/flows/good/loops/l1").json()
    assert loop["HumanLoopStatus"] == "Failed" and "output document" in loop["FailureReason"]
    boss = site.browser("boss")
    listed = boss.get("/admin/review")
    assert listed.status_code == 200 and "good" in listed.text
    assert boss.get("/admin/review/good").status_code == 200


def test_job_names_are_validated(site: Site, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from loopworks.cli import main

    manifest = tmp_path / "in.manifest"
    manifest.write_text('{"source": "hello"}\n')
    for name in ("../../../etc", "<img src=x onerror=alert(1)>"):
        made = CliRunner().invoke(main, ["label", "create-job", name, "--manifest",
                                         str(manifest), "--team", "nlp", "--labels", "a,b",
                                         "--home", str(site.home)])
        assert made.exit_code != 0 and "invalid job name" in made.output


def test_health_shows_the_wal(site: Site) -> None:
    health = httpx.get(f"{site.url}/healthz").json()
    assert health["status"] == "ok" and health["database"]["dialect"] == "sqlite"
    assert isinstance(health["database"]["wal_bytes"], int)


# ------------------------------------------------------------------ custom templates
def test_safe_in_a_flow_template_sanitises_task_input(site: Site, tmp_path: Path) -> None:
    operator = site.api()
    template = "<div id='from-input'>{{ input.html|safe }}</div><p>{{ text }}</p>"
    made = operator.post("/api/review/flows", json={
        "name": "markup", "team": "nlp", "labels": LABELS, "template": template,
        "output": str(tmp_path / "out")})
    assert made.status_code == 201, made.text
    hostile = ('<b>bold</b><meta http-equiv="refresh" content="0;url=https://evil.example/">'
               '<script>alert(1)</script><a href="javascript:alert(2)">x</a>'
               '<form action="https://evil.example"><input name=q></form>')
    operator.post("/api/review/flows/markup/loops", json={"name": "l1", "input_content": {
        "text": "t", "html": hostile, "probabilities": [0.3, 0.4, 0.3]}})
    page = site.browser("rita")
    start = page.get("/jobs/review-markup")
    page.post("/jobs/review-markup/next", data={"csrf_token": csrf(start)})
    html = page.get("/jobs/review-markup").text
    shown = re.search(r"<div id='from-input'>(.*?)</div>", html, re.S).group(1)
    assert "<b>bold</b>" in shown  # markup the template asked for survives...
    for gone in ("<meta", "<script", "javascript:", "<form", "<input"):
        assert gone not in shown  # ...what could act on the reviewer's page does not
    off = operator.post("/api/review/flows", json={
        "name": "raw", "team": "nlp", "labels": LABELS, "output": str(tmp_path / "out"),
        "template": "{% autoescape false %}{{ input.html }}{% endautoescape %}"})
    assert off.status_code == 201
    operator.post("/api/review/flows/raw/loops", json={"name": "l1", "input_content": {
        "text": "t", "html": hostile, "probabilities": [0.3, 0.4, 0.3]}})
    start = page.get("/jobs/review-raw")
    page.post("/jobs/review-raw/next", data={"csrf_token": csrf(start)})
    html = page.get("/jobs/review-raw").text
    assert "turns autoescape off" in html and "<meta http-equiv" not in html


def test_asking_for_a_task_again_gives_the_one_held(site: Site) -> None:
    """A reply to /next lost on the way must not strand a lease until it expires."""
    ana = site.api("ana")
    first = ana.post("/api/labeling/jobs/job-a/next").json()
    again = ana.post("/api/labeling/jobs/job-a/next").json()
    assert again["item_id"] == first["item_id"]
    done = ana.post(f"/api/labeling/jobs/job-a/tasks/{first['item_id']}/answer?next=true",
                    json={"answer": "neutral"})
    assert done.json()["next"]["item_id"] != first["item_id"]
