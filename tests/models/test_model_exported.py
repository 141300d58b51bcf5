"""loopworks.models' __all__ names exactly its public API (as tests/test_exported_members.py)."""

from __future__ import annotations

import loopworks.models as models


def test_all_names_exist_and_public_callables_are_listed() -> None:
    assert models.__all__
    for member in models.__all__:
        assert hasattr(models, member), member
    public = {n for n, v in vars(models).items() if not n.startswith("_")
              and getattr(v, "__module__", "").startswith("loopworks.models") and callable(v)}
    assert public <= set(models.__all__), public - set(models.__all__)


def test_domain_code_does_not_import_the_web_layer() -> None:
    import ast
    from pathlib import Path

    for path in Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("fastapi", "starlette", "jinja2",
                                            "loopworks.server")), (path.name, name)
