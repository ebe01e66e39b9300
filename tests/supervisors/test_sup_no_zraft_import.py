"""supervisors/ is generic: nothing in it may import zraft (DESIGN: supervisors/)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "supervisors"


def _imported_modules(source: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_checker_sees_a_zraft_import() -> None:
    assert "zraft.core" in _imported_modules("from zraft.core import x\nimport os\n")
    assert "zraft" in _imported_modules("import zraft\n")


def test_no_module_under_supervisors_imports_zraft() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert files, "supervisors package not found"
    offenders = [
        f"{path.name}: {name}"
        for path in files
        for name in _imported_modules(path.read_text())
        if name == "zraft" or name.startswith("zraft.")
    ]
    assert offenders == []
