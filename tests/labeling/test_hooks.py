"""Hooks, the stand-in for Ground Truth's Lambdas: registered by name, called with retries,
Python functions in a thread with a timeout, URLs under the webhooks' address policy."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.errors import ConfigurationError, ConflictError, NotFoundError
from loopworks.labeling.hooks import Hook, HookError, Hooks, hook_name_of_arn
from loopworks.metadata import open_engine

from _receiver import Receiver

PRE_EVENT = {"version": "2018-10-16",
             "labelingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/s",
             "dataObject": {"source": "great fit"}}
PRE_ANSWER = {"taskInput": {"text": "great fit"}, "isHumanAnnotationRequired": "true"}


@pytest.fixture(autouse=True)
def _hookfns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hookfns`` (beside this file) importable as the server would import a hook module."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture
def engine(metadata_url: str) -> sa.Engine:
    return open_engine(metadata_url)


@pytest.fixture
def hooks(engine: sa.Engine) -> Hooks:
    return Hooks(engine, backoff=(0.01,))  # short waits: the retries, not the pace, matter


@pytest.fixture
def allow_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let hooks reach this machine's receivers (refused by default), as webhooks."""
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", "127.0.0.1/32")


@pytest.mark.parametrize(("arn", "name"), [
    ("arn:aws:lambda:us-east-1:123456789012:function:pre-sentiment", "pre-sentiment"),
    ("arn:aws:lambda:eu-west-2:123456789012:function:acs_text:$LATEST", "acs_text"),
    ("arn:aws:lambda:us-east-1:123456789012:function:pre:prod", "pre"),
    ("arn:aws:lambda:us-east-1:123456789012:function:pre:7", "pre"),
    ("arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox", "PRE-BoundingBox"),
    ("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:pre", "pre"),
    (f"arn:aws:lambda:us-east-1:123456789012:function:{'a' * 64}", "a" * 64),
])
def test_the_hook_name_of_a_lambda_arn(arn: str, name: str) -> None:
    assert hook_name_of_arn(arn) == name


@pytest.mark.parametrize("arn", [
    "pre-sentiment",
    "arn:aws:lambda:us-east-1:12345:function:pre",  # the account has 12 digits
    "arn:aws:lambda:us-east-1:123456789012:function:",
    "arn:aws:lambda:us-east-1:123456789012:function:pre.py",
    f"arn:aws:lambda:us-east-1:123456789012:function:{'a' * 65}",
    "arn:aws:lambda:us-east-1:123456789012:function:pre:prod:extra",
    "arn:aws:lambda:us-east-1:123456789012:layer:pre",
    "arn:aws:sagemaker:us-east-1:123456789012:function:pre",
    " arn:aws:lambda:us-east-1:123456789012:function:pre",
])
def test_what_is_not_a_lambda_arn(arn: str) -> None:
    assert hook_name_of_arn(arn) is None


def test_add_get_list_remove(hooks: Hooks) -> None:
    made = hooks.add("pre-sentiment", python="hookfns:pre_annotate", timeout_seconds=5,
                     retries=0)
    hooks.add("acs", url="https://hooks.example.com/consolidate")
    assert made == hooks.get("pre-sentiment")
    assert (made.python, made.url, made.timeout_seconds, made.retries) == (
        "hookfns:pre_annotate", None, 5.0, 0)
    acs = hooks.get("acs")
    assert (acs.python, acs.url, acs.timeout_seconds, acs.retries) == (
        None, "https://hooks.example.com/consolidate", 30.0, 2)
    assert [h.name for h in hooks.list()] == ["acs", "pre-sentiment"]
    hooks.remove("acs")
    assert [h.name for h in hooks.list()] == ["pre-sentiment"]
    with pytest.raises(NotFoundError, match="no hook named 'acs'.*loopworks hooks add"):
        hooks.get("acs")
    with pytest.raises(NotFoundError, match="no hook named 'acs'"):
        hooks.remove("acs")
    with pytest.raises(NotFoundError, match="loopworks hooks add"):
        hooks.invoke("acs", PRE_EVENT)
    with pytest.raises(ConflictError, match="'pre-sentiment' exists already"):
        hooks.add("pre-sentiment", url="https://hooks.example.com/")


@pytest.mark.parametrize(("name", "options", "message"), [
    ("pre.py", {"python": "hookfns:echo"}, "hook name 'pre.py' must be"),
    ("", {"python": "hookfns:echo"}, "hook name '' must be"),
    ("pre", {}, "exactly one of python"),
    ("pre", {"python": "hookfns:echo", "url": "https://x.example.com/"}, "exactly one of"),
    ("pre", {"python": "hookfns.echo"}, "must be module:function"),
    ("pre", {"python": "no_such_hook_module:echo"},
     "cannot import module 'no_such_hook_module'.*ModuleNotFoundError"),
    ("pre", {"python": "hookfns:no_such_function"}, "module 'hookfns' has no "
                                                      "'no_such_function'"),
    ("pre", {"python": "hookfns:not_a_function"}, "'not_a_function' is not callable"),
    ("pre", {"url": "ftp://x.example.com/"}, "must start with http:// or https://"),
    ("pre", {"url": "https://user:pw@x.example.com/"}, "must not carry credentials"),
    ("pre", {"python": "hookfns:echo", "timeout_seconds": 0}, "timeout must be 0.1 to 900"),
    ("pre", {"python": "hookfns:echo", "timeout_seconds": 901}, "timeout must be"),
    ("pre", {"python": "hookfns:echo", "retries": 11}, "retries must be 0 to 10"),
    ("pre", {"python": "hookfns:echo", "retries": -1}, "retries must be"),
    ("a" * 64, {"python": "hookfns:echo"}, "longer than 63 characters"),
])
def test_add_refuses_what_cannot_work(tmp_path: Path, name: str, options: dict,
                                      message: str) -> None:
    hooks = Hooks(open_engine(f"sqlite:///{tmp_path / 'meta.db'}"))
    with pytest.raises(ConfigurationError, match=message):
        hooks.add(name, **options)
    assert hooks.list() == []


def test_a_python_hook_answers_json_and_gets_a_copy(hooks: Hooks) -> None:
    hooks.add("pre", python="hookfns:pre_annotate")
    assert hooks.invoke("pre", PRE_EVENT) == PRE_ANSWER
    hooks.add("echo", python="hookfns:echo")
    event = {"dataObject": {"source": "a"}, "n": (1, 2)}
    assert hooks.invoke("echo", event) == {"dataObject": {"source": "a"}, "n": [1, 2],
                                           "seen": True}
    assert "seen" not in event


def test_a_python_hook_that_outlasts_its_timeout(hooks: Hooks, tmp_path: Path) -> None:
    hooks.add("slow", python="hookfns:sleepy", timeout_seconds=0.2, retries=2)
    counter = tmp_path / "attempts"
    with pytest.raises(HookError, match=r"hook 'slow' timed out after 0.2 s \(3 attempts\)"
                       ) as raised:
        hooks.invoke("slow", {"sleep": 1.0, "counter": str(counter)})
    assert (raised.value.hook, raised.value.attempts) == ("slow", 3)


def test_a_failing_python_hook_is_retried(hooks: Hooks, tmp_path: Path) -> None:
    hooks.add("flaky", python="hookfns:flaky", retries=2)
    event = {"failures": 2, "counter": str(tmp_path / "a")}
    assert hooks.invoke("flaky", event) == {"attempts": 3}
    event = {"failures": 3, "counter": str(tmp_path / "b")}
    with pytest.raises(HookError, match=r"hook 'flaky' raised ValueError: attempt 3 fails "
                                        r"\(3 attempts\)"):
        hooks.invoke("flaky", event)
    assert (tmp_path / "b").read_text() == "3"


def test_a_python_hook_that_returns_something_else_than_json(hooks: Hooks) -> None:
    hooks.add("odd", python="hookfns:not_json", retries=0)
    with pytest.raises(HookError, match=r"'odd' returned a value that is not JSON: .*object"
                                        r".*\(1 attempt\)"):
        hooks.invoke("odd", {})


def test_an_event_that_is_not_json(hooks: Hooks) -> None:
    hooks.add("echo", python="hookfns:echo")
    with pytest.raises(TypeError, match="the event for hook 'echo' is not JSON"):
        hooks.invoke("echo", {"when": object()})


def test_a_url_hook_gets_the_event_and_answers_json(hooks: Hooks, allow_local: None) -> None:
    receiver = Receiver(failures=1, status=200, body=json.dumps(PRE_ANSWER).encode())
    try:
        hooks.add("pre", url=receiver.url, retries=1)
        assert hooks.invoke("pre", PRE_EVENT) == PRE_ANSWER
    finally:
        receiver.close()
    assert len(receiver.requests) == 2  # a 500, then the answer
    request = receiver.requests[-1]
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == PRE_EVENT


def test_a_url_hook_that_fails_names_the_status(hooks: Hooks, allow_local: None) -> None:
    receiver = Receiver(failures=5, body=b"{}")
    try:
        hooks.add("down", url=receiver.url, retries=1)
        with pytest.raises(HookError, match=r"'down' answered HTTP 500.*\(2 attempts\)"):
            hooks.invoke("down", PRE_EVENT)
    finally:
        receiver.close()
    assert len(receiver.requests) == 2


def test_a_url_hook_that_answers_something_else_than_json(hooks: Hooks,
                                                          allow_local: None) -> None:
    receiver = Receiver(status=200, body=b"<html>hello</html>")
    try:
        hooks.add("html", url=receiver.url, retries=1)
        with pytest.raises(HookError, match=r"'html' answered something that is not JSON: "
                                            r"<html>hello</html> \(2 attempts\)"):
            hooks.invoke("html", PRE_EVENT)
    finally:
        receiver.close()


def test_a_url_hook_reaches_only_allowed_addresses(hooks: Hooks,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPWORKS_WEBHOOK_ALLOW", raising=False)
    receiver = Receiver(status=200, body=b"{}")
    try:
        hooks.add("local", url=receiver.url)
        with pytest.raises(HookError, match=r"'local' was refused: 127.0.0.1 .*not a public "
                                            r"address.*webhook_allow.*\(1 attempt\)"):
            hooks.invoke("local", PRE_EVENT)
        assert receiver.requests == []  # refused before connecting, and not retried
        allowed = Hooks(hooks.engine, allow=["127.0.0.1/32"])
        assert allowed.invoke("local", PRE_EVENT) == {}
    finally:
        receiver.close()
    assert len(receiver.requests) == 1


def test_the_hook_error_pickles_with_its_fields() -> None:
    err = pickle.loads(pickle.dumps(HookError("hook 'x' timed out", hook="x", attempts=3,
                                              reason="timed out")))
    assert (str(err), err.hook, err.attempts) == ("hook 'x' timed out", "x", 3)


def test_a_hook_value_defaults() -> None:
    hook = Hook("pre", python="hookfns:echo")
    assert (hook.timeout_seconds, hook.retries, hook.url) == (30.0, 2, None)


def test_the_hooks_command(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]

    def run(*args: str):
        return runner.invoke(main, ["hooks", *args, *home], catch_exceptions=False)

    assert "PreHumanTaskLambdaArn" in runner.invoke(main, ["hooks", "--help"]).output
    added = run("add", "pre-sentiment", "--python", "hookfns:pre_annotate", "--timeout", "5",
                "--retries", "1")
    assert added.exit_code == 0, added.output
    listed = json.loads(run("list", "--json").output)
    assert [(h["name"], h["python"], h["url"], h["timeout_seconds"], h["retries"])
            for h in listed] == [("pre-sentiment", "hookfns:pre_annotate", None, 5.0, 1)]
    assert "pre-sentiment" in run("list").output
    event = tmp_path / "event.json"
    event.write_text(json.dumps(PRE_EVENT))
    invoked = run("invoke", "pre-sentiment", "--event", str(event))
    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.output) == PRE_ANSWER
    from_stdin = runner.invoke(main, ["hooks", "invoke", "pre-sentiment", "--event", "-",
                                      *home], input=json.dumps(PRE_EVENT))
    assert json.loads(from_stdin.output) == PRE_ANSWER
    missing = run("add", "broken", "--python", "no_such_hook_module:f")
    assert missing.exit_code == 2
    assert "cannot import module 'no_such_hook_module'" in missing.output
    assert "Traceback" not in missing.output
    assert run("remove", "pre-sentiment").exit_code == 0
    assert json.loads(run("list", "--json").output) == []
    gone = run("invoke", "pre-sentiment", "--event", str(event))
    assert gone.exit_code == 2 and "no hook named 'pre-sentiment'" in gone.output
