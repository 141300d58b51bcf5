"""Webhooks against real local HTTP servers: signed, retried with back-off, never lost; only
to public addresses unless allowed; one slow receiver delays only its own events."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError
from loopworks.labeling import webhooks
from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.settings import load_settings

from _receiver import Receiver

LABELS = ["neg", "pos"]
SECRET = "s3cret"


@pytest.fixture
def url(metadata_url: str) -> str:
    return metadata_url


def _jobs(url: str) -> LabelingJobs:
    from loopworks.metadata import open_engine

    jobs = LabelingJobs(open_engine(url))
    if "nlp" not in [t.name for t in jobs.workforce.teams()]:
        jobs.workforce.add_team("nlp")
    return jobs


def _wait(jobs: LabelingJobs, job_id: int | None, seconds: float) -> list[dict]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = webhooks.deliveries(jobs.engine, job_id)
        if rows and all(r["state"] != "pending" for r in rows):
            return rows
        time.sleep(0.05)
    return webhooks.deliveries(jobs.engine, job_id)


def _label_all(jobs: LabelingJobs, job: str) -> None:
    worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
    while (task := jobs.next_task(job, worker)) is not None:
        jobs.submit(job, task.item_id, worker, "pos")


@pytest.fixture
def allow_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let webhooks reach this machine's receivers (refused by default)."""
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", "127.0.0.1/32")


def test_events_signed_and_retried_until_delivered(url: str, allow_local: None) -> None:
    receiver = Receiver(failures=2)
    jobs = _jobs(url)
    try:
        jobs.create_job(JobSpec("hooked", "nlp", LABELS, webhooks=[receiver.url],
                                webhook_secret=SECRET), ["a", "b"])
        _label_all(jobs, "hooked")
        rows = _wait(jobs, None, 20)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert [r["state"] for r in rows] == ["delivered"] * 3, rows
    assert [r["event"] for r in rows] == ["item.labeled", "item.labeled", "job.completed"]
    assert rows[-1]["payload"]["status"] == "Completed"
    assert rows[0]["payload"]["job"] == "hooked" and rows[0]["payload"]["answers"] == 1
    assert len(receiver.requests) == 5  # two failures, then each event once
    # The two failed deliveries are retried, with the same delivery id, after ~0.5 s.
    failed = [r["headers"]["X-Loopworks-Delivery"] for r in receiver.requests[:2]]
    for delivery in failed:
        tries = [r["at"] for r in receiver.requests
                 if r["headers"]["X-Loopworks-Delivery"] == delivery]
        assert len(tries) == 2 and 0.4 <= tries[1] - tries[0] < 3.0
    attempts = {str(r["id"]): r["attempts"] for r in rows}
    assert sorted(attempts.values()) == [1, 2, 2]
    assert all(attempts[d] == 2 for d in failed)
    for request in receiver.requests:
        body, headers = request["body"], request["headers"]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Loopworks-Signature"] == expected
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Loopworks-Event"] == json.loads(body)["event"]


def test_gives_up_after_the_retries_and_records_it(url: str, allow_local: None) -> None:
    receiver = Receiver(failures=100)
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, backoff=(0.05, 0.1))
    try:
        jobs.create_job(JobSpec("down", "nlp", LABELS, webhooks=[receiver.url],
                                webhook_secret=SECRET), ["a"])
        _label_all(jobs, "down")
        rows = _wait(jobs, None, 20)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert {r["state"] for r in rows} == {"gave-up"}
    assert all(r["attempts"] == 3 and r["last_error"] == "HTTP 500" for r in rows)
    assert len(receiver.requests) == 3 * len(rows)


def test_undelivered_events_survive_a_restart(url: str, allow_local: None) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, backoff=(0.05,) * 3)
    jobs.create_job(JobSpec("later", "nlp", LABELS, webhooks=[f"http://127.0.0.1:{port}/hook"],
                            webhook_secret=SECRET), ["a"])
    jobs.webhooks.close()
    jobs.webhooks.wake = lambda: None  # this process delivers nothing (it "crashes")
    _label_all(jobs, "later")
    assert [r["state"] for r in webhooks.deliveries(jobs.engine)] == ["pending"] * 2
    receiver = Receiver(port=port)
    restarted = _jobs(url)  # a new process finds the outbox and delivers it
    restarted.webhooks.resume()
    try:
        rows = _wait(restarted, None, 20)
    finally:
        restarted.webhooks.close()
        receiver.close()
    assert [r["state"] for r in rows] == ["delivered"] * 2
    assert [json.loads(r["body"])["event"] for r in receiver.requests] == [
        "item.labeled", "job.completed"]


# -- what may be reached ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the resolver answers as the test says: each lookup takes the next answer (the
    last one sticks); ``fake_dns[name + "?"]`` counts the lookups. Other names resolve as
    usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
        if isinstance(host, str) and host in answers:
            answers.setdefault(host + "?", []).append("looked up")
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     (address, port))]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _deliver(jobs: LabelingJobs, name: str, hooks: list[str], **dispatcher: object
             ) -> list[dict]:
    """Create job ``name`` with one item and these webhooks, label it, and return its
    deliveries once none is pending."""
    jobs.webhooks.close()
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, **dispatcher)  # type: ignore[arg-type]
    jobs.create_job(JobSpec(name, "nlp", LABELS, webhooks=hooks, webhook_secret=SECRET), ["a"])
    _label_all(jobs, name)
    return _wait(jobs, None, 60)


REFUSED_HOSTS = [
    "127.0.0.1", "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "localhost",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[2002:7f00:1::]", "0.0.0.0", "0",
    "[::]", "169.254.169.254", "metadata.google.internal", "10.0.0.1", "172.16.0.1",
    "192.168.1.1", "100.64.0.1", "[fc00::1]", "[fe80::1]", "[fec0::1]", "224.0.0.1",
    "[ff02::1]", "240.0.0.1", "255.255.255.255", "192.0.2.1", "intranet.example",
]


def test_addresses_that_are_not_public_are_refused(
        url: str, fake_dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPWORKS_WEBHOOK_ALLOW", raising=False)
    fake_dns["metadata.google.internal"] = ["169.254.169.254"]
    fake_dns["intranet.example"] = ["10.1.2.3"]
    receiver = Receiver()
    jobs = _jobs(url)
    hooks = [f"http://{host}:{receiver.port}/hook" for host in REFUSED_HOSTS]
    try:
        rows = _deliver(jobs, "private", hooks, backoff=(0.01,) * 3)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert len(rows) == 2 * len(hooks)
    for row in rows:  # given up at the first attempt, nothing sent
        assert (row["state"], row["attempts"], row["last_error"]) == (
            "gave-up", 1, webhooks.REFUSED), row["url"]
    assert receiver.requests == []


def test_the_allowlist_lets_webhooks_reach_those_addresses(
        url: str, fake_dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", "10.0.0.0/8, 127.0.0.1/32,hooks.internal")
    fake_dns["hooks.internal"] = ["127.0.0.1"]
    receiver = Receiver()
    jobs = _jobs(url)
    allowed = [receiver.url, f"http://127.1:{receiver.port}/hook",
               f"http://hooks.internal:{receiver.port}/hook"]
    refused = [f"http://0.0.0.0:{receiver.port}/hook", "http://169.254.169.254/latest"]
    try:
        rows = _deliver(jobs, "allowed", allowed + refused)
    finally:
        jobs.webhooks.close()
        receiver.close()
    state = {(r["url"], r["event"]): (r["state"], r["last_error"]) for r in rows}
    for hook in allowed:
        assert state[hook, "item.labeled"] == ("delivered", None)
    for hook in refused:
        assert state[hook, "item.labeled"] == ("gave-up", webhooks.REFUSED)
    assert len(receiver.requests) == 2 * len(allowed)
    hosts = {r["headers"]["Host"] for r in receiver.requests}
    assert f"hooks.internal:{receiver.port}" in hosts and f"127.1:{receiver.port}" in hosts


def test_each_attempt_resolves_once_and_connects_to_the_checked_address(
        url: str, fake_dns: dict[str, list[str]], allow_local: None) -> None:
    # The name's first answer passes the check, its next ones point at cloud metadata. Had
    # the first delivery looked the name up again to connect, it would have gone there (DNS
    # rebinding); the second delivery's one lookup finds the metadata address: refused.
    fake_dns["hooks.example"] = ["127.0.0.1", "169.254.169.254"]
    receiver = Receiver()
    jobs = _jobs(url)
    try:
        rows = _deliver(jobs, "pinned", [f"http://hooks.example:{receiver.port}/in?x=1"],
                        lanes=1)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert [(r["event"], r["state"], r["last_error"]) for r in rows] == [
        ("item.labeled", "delivered", None), ("job.completed", "gave-up", webhooks.REFUSED)]
    assert len(fake_dns["hooks.example?"]) == 2  # one per attempt
    assert len(receiver.requests) == 1 and receiver.requests[0]["path"] == "/in?x=1"
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example:{receiver.port}"


def test_a_redirect_is_not_followed(url: str, allow_local: None) -> None:
    target = Receiver()
    redirecting = Receiver(status=302, headers={"Location": target.url})
    jobs = _jobs(url)
    try:
        rows = _deliver(jobs, "moved", [redirecting.url], backoff=(0.01, 0.01))
    finally:
        jobs.webhooks.close()
        redirecting.close()
        target.close()
    assert {(r["state"], r["attempts"]) for r in rows} == {("gave-up", 3)}
    assert {r["last_error"] for r in rows} == {"HTTP 302 (redirects are not followed)"}
    assert len(redirecting.requests) == 3 * len(rows) and target.requests == []


class _RawServer:
    """A TCP server that answers every connection with ``answer`` bytes and hangs up."""

    def __init__(self, answer: bytes) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, args=(answer,), daemon=True)
        self.thread.start()

    def _serve(self, answer: bytes) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:  # closed
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    def close(self) -> None:
        self.socket.close()


def test_the_error_does_not_tell_a_closed_port_from_an_open_one(
        url: str, allow_local: None) -> None:
    garbage = _RawServer(b"SSH-2.0-OpenSSH_9.6\r\n")
    hang_up = _RawServer(b"")
    silent = socket.create_server(("127.0.0.1", 0))  # connects, never answers
    ports = [_free_port(), garbage.port, hang_up.port, silent.getsockname()[1]]
    jobs = _jobs(url)
    try:
        rows = _deliver(jobs, "probe", [f"http://127.0.0.1:{port}/" for port in ports],
                        backoff=(), timeout=1.0)
    finally:
        jobs.webhooks.close()
        garbage.close()
        hang_up.close()
        silent.close()
    assert len(rows) == 2 * len(ports)
    # One text for all four: no errno, no "refused" against "timed out", no port.
    assert {(r["state"], r["last_error"]) for r in rows} == {("gave-up", webhooks.NO_ANSWER)}


def test_webhook_urls_are_checked_when_the_job_is_created() -> None:
    for bad, why in [("ftp://example.org/hook", "http:// or https://"),
                     ("https://user:pass@example.org/hook", "credentials"),
                     ("http:///hook", "no host"), ("http://example.org:99999/", "not a valid"),
                     ("example.org/hook", "http:// or https://")]:
        with pytest.raises(ConfigurationError, match=why) as raised:
            JobSpec("x", "nlp", LABELS, webhooks=[bad], webhook_secret=SECRET)
        assert raised.value.setting == "webhooks" and "'webhooks'" in str(raised.value)
    # Any host is fine here: addresses are checked when a delivery is attempted.
    JobSpec("x", "nlp", LABELS, webhooks=["http://10.0.0.1/hook"], webhook_secret=SECRET)


def test_the_allowlist_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", " 127.0.0.1, 10.1.2.3/8,[::1],Hooks.Internal,")
    assert load_settings().webhook_allow == (
        "127.0.0.1/32", "10.0.0.0/8", "::1/128", "hooks.internal")
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", "10.0.0.0/33")
    with pytest.raises(ConfigurationError, match="LOOPWORKS_WEBHOOK_ALLOW") as raised:
        load_settings()
    assert raised.value.setting == "webhook_allow"
    monkeypatch.delenv("LOOPWORKS_WEBHOOK_ALLOW")
    assert load_settings().webhook_allow == ()


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate (and its key) for ``hooks.example``, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=hooks.example", "-addext",
                    "subjectAltName=DNS:hooks.example"], check=True, capture_output=True)
    yield cert, key


def test_https_checks_the_certificate_against_the_name(
        url: str, fake_dns: dict[str, list[str]], certificate: tuple[Path, Path]) -> None:
    fake_dns["hooks.example"] = fake_dns["impostor.example"] = ["127.0.0.1"]
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(*certificate)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore
    receiver = Receiver(tls=server_tls)
    jobs = _jobs(url)
    good = f"https://hooks.example:{receiver.port}/hook"
    bad = f"https://impostor.example:{receiver.port}/hook"
    try:
        rows = _deliver(jobs, "tls", [good, bad], backoff=(), allow=["127.0.0.1"],
                        tls=ssl.create_default_context(cafile=str(certificate[0])))
    finally:
        jobs.webhooks.close()
        receiver.close()
    state = {(r["url"], r["event"]): (r["state"], r["last_error"]) for r in rows}
    assert state[good, "item.labeled"] == ("delivered", None)
    assert state[bad, "item.labeled"] == ("gave-up", webhooks.NO_ANSWER)
    assert len(receiver.requests) == 2  # the impostor's handshake failed: nothing sent
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example:{receiver.port}"
    assert "hooks.example" in names and "impostor.example" in names


# -- lanes --------------------------------------------------------------------------------

def test_a_slow_receiver_does_not_hold_up_other_destinations(url: str, allow_local: None
                                                             ) -> None:
    gate = threading.Event()
    slow, fast = Receiver(gate=gate), Receiver()
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, timeout=120)  # the slow one never times out
    try:
        jobs.create_job(JobSpec("slow", "nlp", LABELS, webhooks=[slow.url],
                                webhook_secret=SECRET), ["a"])
        jobs.create_job(JobSpec("fast", "nlp", LABELS, webhooks=[fast.url],
                                webhook_secret=SECRET), ["b"])
        worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
        task = jobs.next_task("slow", worker)
        assert task is not None
        jobs.submit("slow", task.item_id, worker, "pos")
        assert slow.arrived.wait(60), "the slow receiver got nothing"
        # The slow delivery is now in flight and stays so until the gate opens. Events that
        # become due meanwhile for another destination are delivered all the same.
        _label_all_of(jobs, "fast", worker)
        assert fast.arrived.wait(60), "the fast receiver waited for the slow one"
        assert not gate.is_set() and len(slow.requests) == 1
        gate.set()
        rows = _wait(jobs, None, 60)
    finally:
        gate.set()
        jobs.webhooks.close()
        slow.close()
        fast.close()
    assert {r["state"] for r in rows} == {"delivered"}
    # One destination's deliveries go one at a time, in order.
    assert slow.most_in_flight == 1
    assert [json.loads(r["body"])["event"] for r in slow.requests] == [
        "item.labeled", "job.completed"]


def _label_all_of(jobs: LabelingJobs, job: str, worker: object) -> None:
    while (task := jobs.next_task(job, worker)) is not None:  # type: ignore[arg-type]
        jobs.submit(job, task.item_id, worker, "pos")  # type: ignore[arg-type]


def test_close_cuts_an_attempt_short_and_keeps_it_pending(url: str, allow_local: None) -> None:
    gate = threading.Event()
    receiver = Receiver(gate=gate)
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, timeout=120)
    try:
        jobs.create_job(JobSpec("closing", "nlp", LABELS, webhooks=[receiver.url],
                                webhook_secret=SECRET), ["a"])
        _label_all(jobs, "closing")
        assert receiver.arrived.wait(60)
        jobs.webhooks.close(timeout=30)  # not the answer, nor the 120 s timeout
        lanes = [t for t in threading.enumerate()
                 if t.name == f"loopworks-webhooks http://127.0.0.1:{receiver.port}"]
        assert lanes == []
        rows = webhooks.deliveries(jobs.engine)
        assert [(r["state"], r["attempts"]) for r in rows] == [("pending", 0)] * 2
        gate.set()
        restarted = webhooks.Dispatcher(jobs.engine)  # due at once: no claim to wait out
        restarted.deliver_due()
        rows = webhooks.deliveries(jobs.engine)
    finally:
        gate.set()
        jobs.webhooks.close()
        receiver.close()
    assert [r["state"] for r in rows] == ["delivered"] * 2
