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
    assert "API token (shown once):" in added.output and "/login/" in added.output
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
