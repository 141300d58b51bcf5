"""The deploy recipe (compose.yaml, deploy/) stays consistent with what loopworks reads: no
container runtime runs here, so these checks are what keep it from rotting."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from loopworks.settings import load_settings, setting_specs

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _server_environment() -> dict[str, str]:
    compose = _compose()
    env = compose["services"]["loopworks-1"]["environment"]
    assert env == compose["services"]["loopworks-2"]["environment"]  # one deployment
    return env


def test_every_loopworks_variable_is_a_setting_and_the_shared_ones_are_set() -> None:
    env = _server_environment()
    known = {spec.env_var for spec in setting_specs()}
    named = {name for name in env if name.startswith("LOOPWORKS_")}
    assert named - known == set()
    # What every process of one deployment must share (see `loopworks serve --help`).
    assert {"LOOPWORKS_API_TOKEN", "LOOPWORKS_SECRET_KEY", "LOOPWORKS_DATABASE_URL",
            "LOOPWORKS_ONLINE_STORE_URL", "LOOPWORKS_OFFLINE_STORE_URL",
            "LOOPWORKS_OBJECT_STORE_URL"} <= named


def test_the_settings_load(tmp_path: Path, monkeypatch) -> None:
    """The values, with the .env placeholders filled in, are settings loopworks accepts."""
    for spec in setting_specs():
        monkeypatch.delenv(spec.env_var, raising=False)
    for name, value in _server_environment().items():
        filled = re.sub(r"\$\{(\w+)(:-([^}]*)|:\?[^}]*)?\}",
                        lambda m: m.group(3) or f"x-{m.group(1).lower()}", str(value))
        monkeypatch.setenv(name, filled)
    settings = load_settings(home=tmp_path)
    assert settings.database_url.startswith("postgresql://")
    assert settings.online_store_url.startswith("redis://")
    assert settings.offline_store_url.startswith("s3://")
    assert settings.object_store_url.startswith("s3://")


def test_the_image_installs_extras_that_exist() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    wanted = re.search(r'pip install --no-cache-dir "\.\[([a-z0-9,]+)\]"', dockerfile).group(1)
    assert set(wanted.split(",")) <= set(extras)
    # The servers' PostgreSQL pools (32 connections per process) fit the database.
    command = _compose()["services"]["postgres"]["command"]
    limit = int(command[command.index("-c") + 1].split("=")[1])
    workers = int(re.search(r'"--workers", "(\d+)"', dockerfile).group(1))
    servers = sum(1 for name in _compose()["services"] if name.startswith("loopworks-"))
    assert servers * workers * 32 <= limit
