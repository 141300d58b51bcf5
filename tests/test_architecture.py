"""The architecture holds: layers import only downwards (import-linter, configured in
pyproject.toml and pictured in docs/architecture.md), and no module reaches into another's
private members or imports another module's private helper."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "loopworks"
#: Underscore names of other libraries' public APIs (SQLAlchemy rows, named tuples, os).
FOREIGN_API = {"_mapping", "_asdict", "_replace", "_fields", "_exit", "_getframe"}


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        found.append((name.removesuffix(".__init__"), ast.parse(path.read_text(), str(path))))
    return found


def test_layers_import_only_downwards() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=SRC.parents[1], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_no_private_member_of_another_object_or_module() -> None:
    reaches = []
    for module, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and node.attr not in FOREIGN_API:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    reaches.append(f"{module}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module \
                    and node.module.startswith("loopworks."):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        reaches.append(f"{module}:{node.lineno} imports {node.module}."
                                       f"{alias.name}")
    assert reaches == []
