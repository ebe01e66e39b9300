"""Every python example of the README's "asyncio" section runs, in order and in one
namespace holding ``peers`` and ``cookie_file``, against a created cluster of real node
processes (the web-style server example included)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.client.real_cluster import COOKIE, RealCluster

pytestmark = [pytest.mark.integration]

README = Path(__file__).resolve().parents[2] / "README.md"


def section_examples(text: str, heading: str = "## asyncio") -> list[tuple[int, str]]:
    """``(line, code)`` of the ```python blocks under ``heading`` (to the next ``## ``)."""
    start = text.index(f"\n{heading}\n") + 1
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end >= 0 else len(text)]
    first_line = text[:start].count("\n") + 1
    return [(first_line + section[:m.start()].count("\n"), m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", section, re.S | re.M)]


def test_the_section_has_examples() -> None:
    assert len(section_examples(README.read_text())) >= 3


def test_readme_asyncio_examples(real: RealCluster, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zraft.aio.api._cookie", None)  # the examples call configure
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(COOKIE.decode() + "\n")
    namespace = {"peers": list(real.peers), "cookie_file": str(cookie_file)}
    threads = threading.active_count()
    for line, code in section_examples(README.read_text()):
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    assert threading.active_count() == threads  # the examples started no thread
