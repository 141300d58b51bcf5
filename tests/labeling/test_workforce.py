"""Workers, teams and credentials on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, PermissionDenied
from loopworks.labeling.workforce import Role, Workforce, hash_password, verify_password
from loopworks.metadata import open_engine


@pytest.fixture
def workforce(metadata_url: str) -> Workforce:
    return Workforce(open_engine(metadata_url))


def test_teams_workers_and_roles(workforce: Workforce) -> None:
    workforce.add_team("nlp", "sentiment labelers")
    workforce.add_team("qa")
    ann = workforce.add_worker("ana", "annotator", teams_=["nlp", "qa"])
    assert ann.role is Role.ANNOTATOR and ann.teams == ("nlp", "qa")
    workforce.add_worker("rev", Role.REVIEWER)
    workforce.add_to_team("rev", "qa")
    assert [w.name for w in workforce.members("qa")] == ["ana", "rev"]
    with pytest.raises(ConflictError):
        workforce.add_team("nlp")
    with pytest.raises(ConflictError):
        workforce.add_worker("ana")
    with pytest.raises(NotFoundError, match="no team 'ghosts'"):
        workforce.add_worker("bob", teams_=["ghosts"])
    assert [w.name for w in workforce.workers()] == ["ana", "rev"]  # nothing half-made
    with pytest.raises(ConfigurationError, match="unknown role"):
        workforce.add_worker("bob", "boss")
    with pytest.raises(ConfigurationError, match="invalid worker name"):
        workforce.add_worker("<script>")


def test_tokens_links_and_passwords(workforce: Workforce) -> None:
    workforce.add_worker("ana", "annotator", password="correct horse")
    token = workforce.issue_api_token("ana")
    assert workforce.authenticate_token(token).name == "ana"
    with pytest.raises(PermissionDenied):
        workforce.authenticate_token(token + "x")
    link = workforce.issue_login_link("ana")
    assert workforce.redeem_login_link(link).name == "ana"
    with pytest.raises(PermissionDenied, match="used or expired"):
        workforce.redeem_login_link(link)  # one use only
    expired = workforce.issue_login_link("ana", valid_for=timedelta(seconds=-1))
    with pytest.raises(PermissionDenied):
        workforce.redeem_login_link(expired)
    assert workforce.authenticate_password("ana", "correct horse").name == "ana"
    with pytest.raises(PermissionDenied, match="wrong worker name or password"):
        workforce.authenticate_password("ana", "wrong horse")
    workforce.deactivate("ana")
    with pytest.raises(PermissionDenied, match="deactivated"):
        workforce.authenticate_token(token)


def test_secrets_are_never_stored(workforce: Workforce) -> None:
    import sqlalchemy as sa

    workforce.add_worker("ana", password="correct horse")
    token = workforce.issue_api_token("ana")
    with workforce.engine.connect() as conn:
        dump = repr(conn.execute(sa.text("SELECT * FROM credentials")).all())
        dump += repr(conn.execute(sa.text("SELECT * FROM workers")).all())
    assert token not in dump and "correct horse" not in dump
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and verify_password("correct horse", stored)
    assert stored != hash_password("correct horse")  # salted


def test_cli_team_and_worker(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    assert runner.invoke(main, ["team", "add", "nlp", *home]).exit_code == 0
    added = runner.invoke(main, ["worker", "add", "ana", "--team", "nlp", *home])
    assert added.exit_code == 0, added.output
    assert "API token (shown once" in added.output and "/login/" in added.output
    listed = runner.invoke(main, ["worker", "list", "--json", *home])
    assert '"teams": [\n      "nlp"\n    ]' in listed.output
    dup = runner.invoke(main, ["worker", "add", "ana", *home])
    assert dup.exit_code == 2 and "already exists" in dup.output


def test_token_checks_do_not_wait_for_a_writer(tmp_path) -> None:
    """On SQLite a token check reads a snapshot: a long write elsewhere does not hold up
    every API request behind it."""
    import time

    import sqlalchemy as sa

    from loopworks.labeling.workforce import Workforce
    from loopworks.metadata import open_engine

    engine = open_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    workforce = Workforce(engine)
    workforce.add_worker("ana")
    token = workforce.issue_api_token("ana")
    with engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
        writer.execute(sa.text("UPDATE workers SET active = active"))
        started = time.perf_counter()
        assert workforce.authenticate_token(token).name == "ana"
        assert workforce.worker_by_id(1).name == "ana"
        assert time.perf_counter() - started < 5  # the busy timeout is 30 s


def test_sessions_end_on_the_server(workforce: Workforce) -> None:
    ana = workforce.add_worker("ana")
    first, second = workforce.start_session(ana), workforce.start_session(ana)
    assert workforce.session_worker(first).name == "ana"
    workforce.end_session(first)  # signing out: a copy of the cookie no longer works
    with pytest.raises(PermissionDenied, match="session has ended"):
        workforce.session_worker(first)
    assert workforce.session_worker(second).name == "ana"
    workforce.deactivate("ana")  # ends every session of the worker
    with pytest.raises(PermissionDenied):
        workforce.session_worker(second)
    short = workforce.start_session(workforce.add_worker("bob"), lifetime=timedelta(0))
    with pytest.raises(PermissionDenied, match="session has ended"):
        workforce.session_worker(short)


def test_api_tokens_expire_are_listed_and_revoked_one_by_one(workforce: Workforce) -> None:
    from loopworks.labeling.workforce import token_id

    workforce.add_worker("ana")
    keep = workforce.issue_api_token("ana")
    drop = workforce.issue_api_token("ana", timedelta(days=1))
    assert {t.id for t in workforce.api_tokens("ana")} == {token_id(keep), token_id(drop)}
    assert workforce.authenticate_token(drop).name == "ana"
    workforce.revoke_api_token("ana", token_id(drop))
    with pytest.raises(PermissionDenied):
        workforce.authenticate_token(drop)
    assert workforce.authenticate_token(keep).name == "ana"  # the other one still works
    with pytest.raises(NotFoundError):
        workforce.revoke_api_token("ana", token_id(drop))
    with pytest.raises(ConfigurationError):
        workforce.issue_api_token("ana", timedelta(0))
    gone = workforce.issue_api_token("ana", timedelta(microseconds=1))
    with pytest.raises(PermissionDenied, match="expired"):
        workforce.authenticate_token(gone)


def test_last_use_of_a_token_is_recorded(workforce: Workforce) -> None:
    import time

    from loopworks.labeling.workforce import token_id

    workforce.add_worker("ana")
    token = workforce.issue_api_token("ana")
    assert workforce.api_tokens("ana")[0].last_used_at is None
    workforce.authenticate_token(token)
    deadline = time.monotonic() + 30  # written on a thread of its own
    while workforce.api_tokens("ana")[0].last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    listed = workforce.api_tokens("ana")[0]
    assert listed.id == token_id(token) and listed.last_used_at is not None


def test_failed_sign_ins_are_limited_per_name_and_address(workforce: Workforce) -> None:
    from loopworks.errors import RateLimited
    from loopworks.labeling.signin import MAX_PER_ADDRESS, MAX_PER_NAME

    workforce.add_worker("boss", "admin", password="correct horse battery")
    for _ in range(MAX_PER_NAME):
        with pytest.raises(PermissionDenied, match="wrong worker name or password"):
            workforce.authenticate_password("boss", "guess", address="10.0.0.1")
    with pytest.raises(RateLimited) as limited:  # even the right password, for a while
        workforce.authenticate_password("boss", "correct horse battery", address="10.0.0.2")
    assert limited.value.retry_after > 0
    # A name that does not exist is limited the same way (nothing tells them apart).
    for _ in range(MAX_PER_NAME):
        with pytest.raises(PermissionDenied, match="wrong worker name or password"):
            workforce.authenticate_password("nobody", "guess", address="10.0.0.3")
    with pytest.raises(RateLimited):
        workforce.authenticate_password("nobody", "guess", address="10.0.0.4")
    # One address trying many names is limited too.
    for i in range(MAX_PER_ADDRESS - MAX_PER_NAME):  # 10.0.0.1 has MAX_PER_NAME failures
        with pytest.raises(PermissionDenied):
            workforce.authenticate_password(f"name{i}", "guess", address="10.0.0.1")
    with pytest.raises(RateLimited):
        workforce.authenticate_password("fresh-name", "guess", address="10.0.0.1")
    workforce.add_worker("ana", password="another good one")
    assert workforce.authenticate_password("ana", "another good one",
                                           address="10.0.0.9").name == "ana"


def test_cli_worker_tokens(tmp_path: Path) -> None:
    from loopworks.labeling.workforce import token_id

    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    assert runner.invoke(main, ["worker", "add", "ana", *home]).exit_code == 0
    issued = runner.invoke(main, ["worker", "token", "ana", "--new", "--expires-in", "30",
                                  *home])
    assert issued.exit_code == 0, issued.output
    secret = issued.stdout.strip().splitlines()[-1]
    listed = runner.invoke(main, ["worker", "token", "ana", "--json", *home])
    rows = __import__("json").loads(listed.stdout)
    assert len(rows) == 2 and token_id(secret) in {r["id"] for r in rows}
    assert [r for r in rows if r["id"] == token_id(secret)][0]["expires_at"]
    assert secret not in listed.stdout
    revoked = runner.invoke(main, ["worker", "token", "ana", "--revoke", token_id(secret),
                                   *home])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = runner.invoke(main, ["worker", "token", "ana", "--revoke", token_id(secret), *home])
    assert again.exit_code != 0 and "no API token" in again.output
