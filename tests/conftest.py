"""Shared fixtures: sample data made here, the real data under ../shared/data when present."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopworks.embeddings.model import embeddings_missing
from loopworks.samples import generate_reviews, write_reviews

# The browser fixtures (Playwright + Debian's Chromium) live in tests/_browser.py.
pytest_plugins = ["_browser"]

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_REVIEWS = SHARED / "reviews" / "womens_clothing_ecommerce_reviews.csv"
ROBERTA = SHARED / "tokenizers" / "roberta-base"
EVENT_TIME = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


#: Skip, with the install command, when the ``embeddings`` extra is not installed.
needs_torch = pytest.mark.skipif(
    embeddings_missing() is not None,
    reason='the embeddings extra is not installed: pip install torch==2.13.0 && '
           'pip install "loopworks[embeddings]"')


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip, with the reason, when the real data beside the project is missing."""
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path}")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own LOOPWORKS_HOME; environment changes are undone after it."""
    saved = dict(os.environ)
    monkeypatch.setenv("LOOPWORKS_HOME", str(tmp_path_factory.mktemp("home")))
    # Exported inference models (ONNX) are made once per run and shared by the tests' homes,
    # as a team shares one model_cache; tests of the cache itself unset it.
    monkeypatch.setenv("LOOPWORKS_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The same terminal width whoever runs the tests: tables are laid out to it (printed
    # lines never wrap, whatever the width: see cli/_common.plain_console).
    monkeypatch.setenv("COLUMNS", "120")
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 generated reviews with a few broken rows, as CSV."""
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    write_reviews(generate_reviews(3000, seed=7), path)
    return path


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_URL = os.environ.get("LOOPWORKS_TEST_DATABASE_URL",
                              "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOOPWORKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install loopworks[postgres])")
    import secrets

    import sqlalchemy as sa

    from loopworks.metadata import open_engine

    base = open_engine(POSTGRES_URL)
    try:
        with base.begin() as conn:
            schema = f"lw_test_{secrets.token_hex(4)}"
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_URL}: {str(exc).splitlines()[0]}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    yield url
    from loopworks.metadata import dispose_engine

    dispose_engine(url)
    with base.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metadata database twice: a SQLite file, and PostgreSQL (skipped with the reason
    when no server answers)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def labeling_jobs(metadata_url: str):
    """Labeling jobs with teams ``nlp`` and ``other``, on SQLite and on PostgreSQL."""
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata import open_engine

    jobs = LabelingJobs(open_engine(metadata_url))
    jobs.workforce.add_team("nlp")
    jobs.workforce.add_team("other")
    yield jobs
    jobs.webhooks.close()


@pytest.fixture
def redis_url() -> str:
    """The test Redis URL; skipped with the reason when no server answers there."""
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        pytest.skip(f"no Redis server at {REDIS_URL}")
    return REDIS_URL


@contextlib.contextmanager
def running_server(home: Path, token: str, *, tls: tuple[Path, Path] | None = None,
                   env: dict[str, str] | None = None):
    """A real `loopworks serve` subprocess on a free port; yields its base URL.

    ``tls`` (certificate, key) serves HTTPS; ``env`` adds environment variables (settings).
    Polls /healthz until ready and shows the server's output if it fails to start.
    """
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, LOOPWORKS_HOME=str(home), LOOPWORKS_API_TOKEN=token, **(env or {}))
    command = [sys.executable, "-m", "loopworks.cli", "serve", "--port", str(port)]
    if tls is not None:
        command += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", verify=False).status_code == 200:  # noqa: S501
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start:\n{proc.stdout.read()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # a client still holding a connection open
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def open_task(client, job: str):
    """A signed-in page client's view of the job with a task on it: the page shows the
    task held, else a Start button whose POST leases one (a GET never leases)."""
    import re

    page = client.get(f"/jobs/{job}")
    if 'id="start-form"' in page.text:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        started = client.post(f"/jobs/{job}/next", data={"csrf_token": token})
        assert started.status_code == 303, started.text
        page = client.get(f"/jobs/{job}")
    return page
