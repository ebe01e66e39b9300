"""zraft.core must stay pure: only the standard library's pure modules and zraft.core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "zraft" / "core"
ALLOWED = {
    "__future__", "typing", "dataclasses", "enum", "collections", "collections.abc", "random",
    "bisect", "heapq", "itertools", "functools", "math", "abc",
}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(("zraft.core." + (node.module or ""), node.lineno))
            else:
                found.append((node.module or "", node.lineno))
    return found


def _random_calls(path: Path) -> list[int]:
    """Lines calling module-level random functions (random.random(), random.choice()...)."""
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            bad.append(node.lineno)
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "random"
            and any(a.name != "Random" for a in node.names)
        ):
            bad.append(node.lineno)
    return bad


FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_only_pure_modules(path):
    for name, line in _imports(path):
        ok = name in ALLOWED or name == "zraft.core" or name.startswith("zraft.core.")
        assert ok, f"{path.name}:{line} imports {name}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_uses_only_injected_randomness(path):
    assert _random_calls(path) == []


def test_checker_catches_forbidden_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom os import path\nimport random\nrandom.random()\n")
    names = {n for n, _ in _imports(bad)}
    assert "time" in names and "os" in names
    assert _random_calls(bad) == [4]
