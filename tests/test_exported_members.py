"""Every public package's __all__ names exactly what it exports (httpx-style)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["loopworks", "loopworks.processing", "loopworks.samples", "loopworks.errors",
            "loopworks.featurestore", "loopworks.server", "loopworks.metadata",
            "loopworks.labeling", "loopworks.models", "loopworks.review",
            "loopworks.settings"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, f"{name} has an empty __all__"
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"
    public = {n for n, v in vars(module).items() if not n.startswith("_")
              and getattr(v, "__module__", "").startswith(name) and callable(v)}
    assert public <= set(module.__all__) | {"annotations"}, public - set(module.__all__)


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    from loopworks.errors import InputError, MissingDependencyError

    err = pickle.loads(pickle.dumps(InputError("bad.csv, line 3: oops", file="bad.csv", line=3)))
    assert isinstance(err, InputError)
    assert (str(err), err.file, err.line) == ("bad.csv, line 3: oops", "bad.csv", 3)
    dep = pickle.loads(pickle.dumps(MissingDependencyError("ray", "ray", "the Ray engine")))
    assert 'pip install "loopworks[ray]"' in str(dep)
