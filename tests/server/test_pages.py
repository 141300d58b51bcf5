"""The pages over plain HTTP against a real `loopworks serve`: sessions, CSRF, roles, escaping."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine

from conftest import open_task, running_server

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> & "quotes"'


@pytest.fixture
def site(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("nlp")
    jobs.workforce.add_team("vision")
    jobs.workforce.add_worker("ana", teams_=["nlp"])
    jobs.workforce.add_worker("vic", teams_=["vision"])
    jobs.workforce.add_worker("boss", role="admin", password="correct horse battery")
    jobs.create_job(JobSpec("sent", "nlp", ["negative", "neutral", "positive"],
                            instructions="Judge the <em>tone</em>",
                            examples=[{"source": "Broke after a <b>day</b>",
                                       "answer": "negative", "why": "a defect"}]),
                    [HOSTILE, "fine", "awful"])
    with running_server(home, "operator-token") as url, contextlib.ExitStack() as clients:
        yield Site(url, jobs, clients)


class Site:
    """The running server, its database, and HTTP clients closed after the test."""

    def __init__(self, url: str, jobs: LabelingJobs, clients: contextlib.ExitStack) -> None:
        self.url, self.jobs, self._clients = url, jobs, clients

    def client(self) -> httpx.Client:
        return self._clients.enter_context(httpx.Client(base_url=self.url))

    def __iter__(self):  # url, jobs = site
        return iter((self.url, self.jobs))


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def sign_in(site: Site, worker: str) -> httpx.Client:
    client = site.client()
    secret = site.jobs.workforce.issue_login_link(worker)
    page = client.get(f"/login/{secret}")
    done = client.post(f"/login/{secret}", data={"csrf_token": _csrf(page)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    return client


def test_anonymous_visitors_are_sent_to_sign_in(site) -> None:
    url, _ = site
    for path in ["/", "/jobs/sent", "/admin/jobs/sent"]:
        response = httpx.get(url + path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert httpx.post(f"{url}/jobs/sent/tasks/1", data={"answer": "neutral"}).status_code == 303


def test_login_link_works_once_and_sets_a_safe_cookie(site) -> None:
    url, jobs = site
    client = site.client()
    secret = jobs.workforce.issue_login_link("ana")
    page = client.get(f"/login/{secret}")  # a link preview: shows a button, uses nothing
    assert page.status_code == 200 and client.get(f"/login/{secret}").status_code == 200
    assert client.post(f"/login/{secret}", data={"csrf_token": "forged"}).status_code == 403
    done = client.post(f"/login/{secret}", data={"csrf_token": _csrf(page)})
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "ana" in client.get("/").text
    again = site.client()
    page = again.get(f"/login/{secret}")
    refused = again.post(f"/login/{secret}", data={"csrf_token": _csrf(page)})
    assert refused.status_code == 401 and "unknown, used or expired" in refused.text


def test_password_sign_in_and_no_open_redirect(site) -> None:
    url, _ = site
    client = site.client()
    page = client.get("/login")
    wrong = client.post("/login", data={"csrf_token": _csrf(page), "name": "boss",
                                        "password": "nope", "next": "/"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    ok = client.post("/login", data={"csrf_token": _csrf(page), "name": "boss",
                                     "password": "correct horse battery",
                                     "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"


def test_forms_need_the_session_csrf_token(site) -> None:
    url, jobs = site
    ana = sign_in(site, "ana")
    task = open_task(ana, "sent")
    item = re.search(r'/jobs/sent/tasks/(\d+)"', task.text).group(1)
    forged = ana.post(f"/jobs/sent/tasks/{item}", data={"answer": "neutral"})
    assert forged.status_code == 403
    assert jobs.answers("sent") == []
    saved = ana.post(f"/jobs/sent/tasks/{item}",
                     data={"answer": "neutral", "csrf_token": _csrf(task)})
    assert saved.status_code == 303
    assert [a["answer"] for a in jobs.answers("sent")] == ["neutral"]


def test_user_content_is_escaped(site) -> None:
    url, jobs = site
    ana = sign_in(site, "ana")
    page = open_task(ana, "sent").text
    assert "<script>window.pwned" not in page and "onerror=\"window" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert "Judge the &lt;em&gt;tone&lt;/em&gt;" in page  # instructions are text too
    assert "<q>Broke after a &lt;b&gt;day&lt;/b&gt;</q> → <strong>negative</strong>" in page
    data = re.search(r'id="task-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data  # the JSON block cannot close its script element


def test_roles_and_teams_are_enforced(site) -> None:
    url, jobs = site
    ana = sign_in(site, "ana")
    assert ana.get("/admin/jobs/sent").status_code == 403
    assert ana.get("/admin/jobs/sent/export").status_code == 403
    vic = sign_in(site, "vic")
    assert "sent" not in vic.get("/").text
    refused = vic.get("/jobs/sent")
    assert refused.status_code == 403 and "not in team" in refused.text
    assert vic.get("/jobs/sent/tasks/1/image").status_code in (403, 404)
    jobs.workforce.deactivate("ana")  # ends ana's sessions at once
    assert ana.get("/").status_code == 303


def test_admin_dashboard_and_export(site) -> None:
    url, jobs = site
    ana = sign_in(site, "ana")
    for answer in ["negative", "positive"]:
        task = open_task(ana, "sent")
        item = re.search(r'/jobs/sent/tasks/(\d+)"', task.text).group(1)
        ana.post(f"/jobs/sent/tasks/{item}", data={"answer": answer,
                                                  "csrf_token": _csrf(task)})
    boss = sign_in(site, "boss")
    board = boss.get("/admin/jobs/sent")
    assert board.status_code == 200
    assert re.search(r'id="labeled">2<', board.text) and re.search(r'id="answers">2<', board.text)
    assert "<svg" in board.text and "negative: 1" in board.text and "neutral: 0" in board.text
    assert re.search(r"<td>ana</td><td>2</td>", board.text)
    export = boss.get("/admin/jobs/sent/export")
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    lines = export.text.splitlines()
    assert len(lines) == 3
    assert sum('"sent-metadata"' in line for line in lines) == 2
