"""Settings resolve as argument, then LOOPWORKS_* environment, then config file, then default."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.errors import ConfigurationError
from loopworks.settings import TEST_HOOK_VARIABLES, explain_settings, load_settings, setting_specs

SRC = Path(__file__).resolve().parents[1] / "src" / "loopworks"
TOKEN = "tok-0123456789-abcdefghij-WXYZ"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder, named by LOOPWORKS_HOME, with no setting in the environment."""
    folder = tmp_path / "home"
    folder.mkdir()
    for spec in setting_specs():
        monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.setenv("LOOPWORKS_HOME", str(folder))
    return folder


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_order_of_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LOOPWORKS_HOME", str(home))
    monkeypatch.delenv("LOOPWORKS_WORKERS", raising=False)
    assert load_settings().home == home
    (home / "config.toml").write_text('workers = 3\ntokenizer = "from-config"\n')
    assert load_settings().workers == 3
    monkeypatch.setenv("LOOPWORKS_WORKERS", "5")
    assert load_settings().workers == 5
    assert load_settings(workers=7).workers == 7
    assert load_settings().tokenizer == "from-config"
    assert load_settings(home=str(tmp_path / "other")).jobs_dir == tmp_path / "other" / "jobs"


@pytest.mark.parametrize(("name", "config", "env", "argument", "expected"), [
    ("database_url", '"sqlite:////c.db"', "sqlite:////e.db", "sqlite:////a.db",
     ("sqlite:////c.db", "sqlite:////e.db", "sqlite:////a.db")),
    ("online_store_url", '"redis://c:6379/0"', "redis://e:6379/0", "redis://a:6379/0",
     ("redis://c:6379/0", "redis://e:6379/0", "redis://a:6379/0")),
    ("offline_store_url", '"s3://c/x"', "s3://e/x", "/a/offline",
     ("s3://c/x", "s3://e/x", "/a/offline")),
    ("api_token", '"from-config"', "from-env", "from-argument",
     ("from-config", "from-env", "from-argument")),
    ("secure_cookies", "true", "no", True, (True, False, True)),
    ("webhook_allow", '["10.0.0.0/8"]', "127.0.0.1", "hooks.internal",
     (("10.0.0.0/8",), ("127.0.0.1/32",), ("hooks.internal",))),
])
def test_argument_beats_environment_beats_config_beats_default(
        home: Path, monkeypatch: pytest.MonkeyPatch, name: str, config: str, env: str,
        argument: object, expected: tuple[object, object, object]) -> None:
    spec = {s.name: s for s in setting_specs()}[name]

    def resolved(**given: object) -> tuple[object, str, str]:
        value = {v.spec.name: v for v in explain_settings(**given)}[name]
        assert getattr(load_settings(**given), name) == value.value
        return value.value, value.source, value.where

    default = resolved()
    assert default[1:] == ("default", "")
    (home / "config.toml").write_text(f"{name} = {config}\n")
    assert resolved() == (expected[0], "config file", str(home / "config.toml"))
    monkeypatch.setenv(spec.env_var, env)
    assert resolved() == (expected[1], "environment", spec.env_var)
    assert resolved(**{name: argument}) == (expected[2], "argument", "")
    assert resolved(**{name: None}) == (expected[1], "environment", spec.env_var)  # not given
    monkeypatch.setenv(spec.env_var, "")  # an empty variable counts as unset
    assert resolved()[1] == "config file"


def test_home_comes_from_argument_environment_or_default(
        home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().home == home
    assert load_settings(home=tmp_path / "given").home == tmp_path / "given"
    monkeypatch.delenv("LOOPWORKS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings().home == tmp_path / ".loopworks"
    (home / "config.toml").write_text(f'home = "{tmp_path}"\n')
    with pytest.raises(ConfigurationError, match="'home' cannot be set in the config file"):
        load_settings(home=home)


def test_secure_cookies_follow_the_public_url_unless_set(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().secure_cookies is False
    monkeypatch.setenv("LOOPWORKS_PUBLIC_URL", "https://label.example.com")
    assert load_settings().secure_cookies is True
    monkeypatch.setenv("LOOPWORKS_SECURE_COOKIES", "0")
    assert load_settings().secure_cookies is False
    monkeypatch.setenv("LOOPWORKS_PUBLIC_URL", "http://localhost:8000")
    assert load_settings(secure_cookies=True).secure_cookies is True


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("YES", True), (" True ", True),
    ("0", False), ("false", False), ("no", False), ("No", False)])
def test_bool_settings_read_yes_and_no(home: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                       expected: bool) -> None:
    monkeypatch.setenv("LOOPWORKS_SECURE_COOKIES", text)
    assert load_settings().secure_cookies is expected


def test_bad_settings_say_what_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPWORKS_WORKERS", "many")
    with pytest.raises(ConfigurationError, match="'workers' must be a whole number"):
        load_settings()
    monkeypatch.delenv("LOOPWORKS_WORKERS")
    (tmp_path / "config.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigurationError, match=r"config.toml: unknown setting\(s\) colour"):
        load_settings()
    (tmp_path / "config.toml").write_text("workers = \n")
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        load_settings()


def test_bad_values_name_the_setting_and_its_source(home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / "config.toml"
    monkeypatch.setenv("LOOPWORKS_SECURE_COOKIES", "maybe")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "'secure_cookies' must be true or false" in str(raised.value)
    assert "from LOOPWORKS_SECURE_COOKIES" in str(raised.value)
    assert (raised.value.setting, raised.value.source) == ("secure_cookies", "environment")
    monkeypatch.delenv("LOOPWORKS_SECURE_COOKIES")

    config.write_text("workers = 0\n")
    with pytest.raises(ConfigurationError, match=f"'workers' must be at least 1, got 0 "
                                                 f"\\(from {re.escape(str(config))}\\)"):
        load_settings()
    config.write_text("tokenizer = 3\n")
    with pytest.raises(ConfigurationError, match="'tokenizer' must be text") as raised:
        load_settings()
    assert raised.value.file == str(config) and raised.value.source == "config file"
    config.write_text('public_url = "label.example.com"\n')
    with pytest.raises(ConfigurationError, match="'public_url' must be an http:// or https://"):
        load_settings()
    config.write_text('webhook_allow = "10.0.0.0/33"\n')
    with pytest.raises(ConfigurationError, match=f"'webhook_allow'.*{re.escape(str(config))}"):
        load_settings()
    config.unlink()

    with pytest.raises(ConfigurationError, match="'workers' must be a whole number, got 'two' "
                                                 r"\(given as an argument\)"):
        load_settings(workers="two")
    with pytest.raises(TypeError, match="unknown setting"):
        load_settings(colour="blue")


def test_a_bad_secret_is_never_echoed(home: Path) -> None:
    (home / "config.toml").write_text(f"api_token = [{TOKEN!r}]\n")
    with pytest.raises(ConfigurationError, match="'api_token' must be text") as raised:
        load_settings()
    assert TOKEN not in str(raised.value)


def test_unknown_config_keys_are_refused_with_the_known_ones(home: Path) -> None:
    (home / "config.toml").write_text('database_url = "sqlite:////x.db"\ndatabse_url = "y"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "unknown setting(s) databse_url" in message
    known = message.split("known: ", 1)[1].split(", ")
    assert known == [s.name for s in setting_specs() if s.name != "home"]


def test_every_setting_has_help_a_default_and_a_kind() -> None:
    for spec in setting_specs():
        assert spec.help.endswith(".") and spec.default_text, spec.name
        assert spec.env_var == "LOOPWORKS_" + spec.name.upper()
    secrets = {s.name for s in setting_specs() if s.secret}
    assert secrets == {"api_token", "secret_key", "webhook_secret"}


def test_every_loopworks_variable_in_the_source_is_a_setting() -> None:
    """No LOOPWORKS_* variable may be added outside Settings again (test hooks excepted)."""
    known = {s.env_var for s in setting_specs()} | set(TEST_HOOK_VARIABLES)
    mentioned: dict[str, set[str]] = {}
    for path in SRC.rglob("*"):
        if path.suffix in (".py", ".html", ".js", ".toml", ".md") and path.is_file():
            for name in re.findall(r"\bLOOPWORKS_[A-Z][A-Z0-9_]*", path.read_text("utf-8")):
                mentioned.setdefault(name, set()).add(str(path.relative_to(SRC)))
    strays = {name: sorted(files) for name, files in mentioned.items() if name not in known}
    assert not strays, f"LOOPWORKS_* variables that are not settings: {strays}"
    assert {"LOOPWORKS_DATABASE_URL", "LOOPWORKS_API_TOKEN"} <= set(mentioned)


def test_settings_are_read_from_the_environment_in_one_place() -> None:
    """Outside settings.py nothing reads a LOOPWORKS_* variable but the test hook's."""
    read = re.compile(r"""(?:environ\.get|getenv)\(\s*["'](LOOPWORKS_\w+)"""
                      r"""|environ\[\s*["'](LOOPWORKS_\w+)["']\s*\](?!\s*=[^=])"""
                      r"""|envvar\s*=\s*["'](LOOPWORKS_\w+)""")
    readers: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        names = {"".join(m) for m in read.findall(path.read_text("utf-8"))}
        if names - set(TEST_HOOK_VARIABLES) and path != SRC / "settings.py":
            readers[str(path.relative_to(SRC))] = sorted(names)
    assert not readers, f"read a setting's variable instead of using Settings: {readers}"


def test_config_show_prints_every_setting_and_masks_secrets(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text(f'secret_key = "{TOKEN}"\nworkers = 3\n')
    monkeypatch.setenv("LOOPWORKS_API_TOKEN", TOKEN)
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_SECRET", "short")
    monkeypatch.setenv("LOOPWORKS_PUBLIC_URL", "https://label.example.com")
    result = invoke("config", "show")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "short" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == f"config file: {home / 'config.toml'}"
    assert "api_token = ****WXYZ  [environment LOOPWORKS_API_TOKEN]" in lines
    assert f"secret_key = ****WXYZ  [config file {home / 'config.toml'}]" in lines
    assert "webhook_secret = ****  [environment LOOPWORKS_WEBHOOK_SECRET]" in lines
    assert f"workers = 3  [config file {home / 'config.toml'}]" in lines
    assert "secure_cookies = true  [default]" in lines
    for spec in setting_specs():
        assert any(line.startswith(f"{spec.name} = ") for line in lines), spec.name
        assert f"    {spec.help} (env {spec.env_var}" in result.output

    shown = invoke("config", "show", "--json", "--home", str(home))
    assert shown.exit_code == 0, shown.output
    assert TOKEN not in shown.output
    report = json.loads(shown.output)
    assert report["config_file"] == str(home / "config.toml") and report["config_file_exists"]
    by_name = {s["name"]: s for s in report["settings"]}
    assert list(by_name) == [s.name for s in setting_specs()]
    assert by_name["api_token"] | {"help": ""} == {
        "name": "api_token", "value": "****WXYZ", "source": "environment",
        "where": "LOOPWORKS_API_TOKEN", "env": "LOOPWORKS_API_TOKEN", "config_key": "api_token",
        "secret": True, "default": "a random one, printed by loopworks serve", "help": ""}
    assert by_name["secret_key"]["value"] == "****WXYZ"
    assert by_name["home"] | {"help": ""} == {
        "name": "home", "value": str(home), "source": "argument", "where": "",
        "env": "LOOPWORKS_HOME", "config_key": None, "secret": False,
        "default": "~/.loopworks", "help": ""}
    assert by_name["workers"]["value"] == 3 and by_name["webhook_allow"]["value"] == []
    assert by_name["tokenizer"] == by_name["tokenizer"] | {"value": "", "source": "default"}

    other = home.parent / "other"
    assert invoke("config", "path", "--home", str(other)).output == f"{other / 'config.toml'}\n"
    assert invoke("config", "show", "--home", str(other)).output.startswith(
        f"config file: {other / 'config.toml'} (none)\n")


def test_config_show_reports_a_bad_setting_cleanly(home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_WORKERS", "lots")
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 2
    assert "error: setting 'workers' must be a whole number, got 'lots' (from " \
           "LOOPWORKS_WORKERS)" in result.output


def test_serve_hands_its_options_to_the_server_processes(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    started: list[dict[str, str]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(
        {s.env_var: os.environ.get(s.env_var, "") for s in setting_specs()}))
    database = f"sqlite:///{home / 'from-config.db'}"  # the test's own, not shared
    (home / "config.toml").write_text(f'database_url = "{database}"\n')
    result = invoke("serve", "--home", str(home), "--online-store-url", "redis://a:1/0",
                    "--no-secure-cookies", "--webhook-allow", "10.0.0.0/8")
    assert result.exit_code == 0, result.output
    env = started[-1]
    assert (env["LOOPWORKS_HOME"], env["LOOPWORKS_ONLINE_STORE_URL"],
            env["LOOPWORKS_SECURE_COOKIES"], env["LOOPWORKS_WEBHOOK_ALLOW"]) == (
        str(home), "redis://a:1/0", "false", "10.0.0.0/8")
    assert env["LOOPWORKS_DATABASE_URL"] == ""  # the servers read config.toml themselves
    assert env["LOOPWORKS_API_TOKEN"] and env["LOOPWORKS_API_TOKEN"] in result.output
    with monkeypatch.context() as scoped:  # the servers then build this settings object
        for name, value in env.items():
            scoped.setenv(name, value)
        settings = load_settings()
    assert (settings.database_url, settings.online_store_url, settings.secure_cookies,
            settings.webhook_allow) == (database, "redis://a:1/0", False, ("10.0.0.0/8",))

    monkeypatch.delenv("LOOPWORKS_API_TOKEN")
    (home / "config.toml").write_text(f'api_token = "{TOKEN}"\n')
    result = invoke("serve", "--home", str(home))
    assert result.exit_code == 0 and "API token" not in result.output
    assert started[-1]["LOOPWORKS_API_TOKEN"] == ""  # the servers read config.toml

    bad = CliRunner().invoke(main, ["serve", "--public-url", "label.example.com"])
    assert bad.exit_code == 2 and "'public_url' must be an http:// or https:// URL" in bad.output
    assert len(started) == 2


def test_new_jobs_and_flows_sign_with_the_webhook_secret_setting(
        home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata import database_url, open_engine

    manifest = tmp_path / "items.jsonl"
    manifest.write_text('{"source": "good"}\n{"source": "bad"}\n')
    assert invoke("team", "add", "nlp").exit_code == 0
    create = ["label", "create-job", "--team", "nlp", "--labels", "neg,pos", "--manifest",
              str(manifest), "--webhook", "http://127.0.0.1:9/hook"]
    refused = CliRunner().invoke(main, [*create[:2], "none", *create[2:]])
    assert refused.exit_code == 2 and "webhook_secret" in refused.output
    (home / "config.toml").write_text('webhook_secret = "from-config"\n')
    assert invoke(*create[:2], "config", *create[2:]).exit_code == 0
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_SECRET", "from-env")
    assert invoke(*create[:2], "env", *create[2:]).exit_code == 0
    assert invoke(*create[:2], "option", *create[2:], "--webhook-secret", "given").exit_code == 0
    jobs = LabelingJobs(open_engine(database_url(home)))
    assert [jobs.job(n).webhook_secret for n in ("config", "env", "option")] == [
        "from-config", "from-env", "given"]


def test_the_aws_account_id_is_twelve_digits(tmp_path: Path) -> None:
    assert load_settings(home=str(tmp_path)).aws_account_id == "000000000000"
    assert load_settings(home=str(tmp_path), aws_account_id="123456789012").aws_account_id \
        == "123456789012"
    with pytest.raises(ConfigurationError, match="aws_account_id' must be twelve digits"):
        load_settings(home=str(tmp_path), aws_account_id="12345")
