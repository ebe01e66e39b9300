"""Every example of the backend guide runs, as a reader would run it, on real nodes.

Checked: all of ``docs/backends.md``, and the README sections "Your own state machine" and
"Replicated SQLite".
Each document runs in its own empty directory (the reader's project), in order:
- a fenced block right after ``<!-- file: NAME -->`` is written to that file (the reader's
  module; the nodes import it from there: ``--python-path .``);
- ```python blocks run in one namespace, with that directory as the current directory and
  first on ``sys.path`` (as a Python started there);
- ```sh blocks run with bash ``-euo pipefail`` there, the venv's ``zraft`` and ``python``
  first on PATH; ``examples/`` of this repository is linked into the directory, so the
  README's "from a clone" commands run as written;
- ```toml blocks must parse as a node configuration; ```py blocks are only shown.
A block fails the test if it raises or exits non-zero, naming the file and line. What a
python block prints must be what its comments say: ``print(x)  # text`` (or the comment on
the line after), where ``...`` stands for anything and a remark after two spaces and ``(``
is not output. Every node
process the examples started (``LocalCluster`` objects, ``cluster.json`` files) is killed
by pid at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import pytest

from tests.acceptance.test_readme_examples import _cleanup, run_bash
from zraft.config import parse_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SHELL_TIMEOUT = 90.0
_FENCE = re.compile(r"^```(\w*)")
_FILE = re.compile(r"^<!-- file: ([\w.]+) -->$")


class Block(NamedTuple):
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    file: str | None  # the file it is written to, if any


def blocks(text: str, section: str | None = None) -> list[Block]:
    """The fenced blocks of ``text`` (only those under the heading ``section``, of any
    level, until the next heading of that level or higher, if given)."""
    found: list[Block] = []
    inside = section is None
    level = 0
    block: list[str] | None = None
    lang, start, file, pending_file = "", 0, None, None
    for number, line in enumerate(text.splitlines(), 1):
        if block is not None:
            if line.startswith("```"):
                if inside:
                    found.append(Block(lang, "\n".join(block) + "\n", start, file))
                block = None
            else:
                block.append(line)
            continue
        heading = re.match(r"^(#+) (.*)$", line)
        if heading and section is not None:
            depth = len(heading.group(1))
            if heading.group(2).strip() == section:
                inside, level = True, depth
            elif inside and depth <= level:
                inside = False
        if (marker := _FILE.match(line.strip())) is not None:
            pending_file = marker.group(1)
            continue
        fence = _FENCE.match(line)
        if fence:
            block, lang, start, file, pending_file = [], fence.group(1), number, pending_file, None
        elif line.strip():
            pending_file = None
    return found


def test_blocks_are_found_with_their_files_and_sections() -> None:
    text = ("# T\n## A\n<!-- file: m.py -->\n```python\nx = 1\n```\n```sh\nls\n```\n"
            "### Sub\n```py\nshown\n```\n## B\n```sh\nno\n```\n")
    assert blocks(text, "A") == [Block("python", "x = 1\n", 4, "m.py"),
                                 Block("sh", "ls\n", 7, None), Block("py", "shown\n", 11, None)]
    assert [b.code for b in blocks(text, "Sub")] == ["shown\n"]
    assert len(blocks(text)) == 4


DOCS = [("docs/backends.md", None), ("README.md", "Your own state machine"),
        ("README.md", "Replicated SQLite")]
_PRINT = re.compile(r"^\s*print\((.*?)\)\s*(?:#\s?(.*))?$")


def promised_prints(code: str) -> list[str | None]:
    """What each ``print(...)`` line of ``code`` says it prints (None: it does not say)."""
    lines = code.splitlines()
    found: list[str | None] = []
    for number, line in enumerate(lines):
        if (match := _PRINT.match(line)) is None:
            continue
        said = match.group(2)
        if said is None and number + 1 < len(lines) and lines[number + 1].strip()[:1] == "#":
            said = lines[number + 1].strip()[1:].strip()
        found.append(said)
    return found


def prints_as_promised(said: str, printed: str) -> bool:
    said = said.split("  (", 1)[0].strip()  # "  (a remark)"
    return re.fullmatch(".*".join(re.escape(part) for part in said.split("...")),
                        printed) is not None


def test_promised_prints_are_read_from_the_comments() -> None:
    code = ("print(a)  # x: ... (...)\nprint(f(b)[0])\n# {'k': ...}  (a remark)\n"
            "print(c)\nx = 1\n")
    assert promised_prints(code) == ["x: ... (...)", "{'k': ...}  (a remark)", None]
    assert prints_as_promised("x: ... (...)", "x: 1 (the rest)")
    assert prints_as_promised("{'k': ...}  (a remark)", "{'k': 17}")
    assert not prints_as_promised("bad_command: no", "bad_command: yes")


def _run_python(block: Block, namespace: dict[str, Any], where: str) -> None:
    printed: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        printed.append(kwargs.get("sep", " ").join(str(a) for a in args))
        print(*args, **kwargs)

    namespace["print"] = record
    try:
        exec(compile(block.code, where, "exec"), namespace)
    finally:
        del namespace["print"]
    promised = promised_prints(block.code)
    assert len(printed) == len(promised), f"{where}: printed {printed}"
    for said, line in zip(promised, printed, strict=True):
        assert said is None or prints_as_promised(said, line), \
            f"{where}: printed {line!r}, the comment says {said!r}"


def _run_shell(code: str, cwd: Path, where: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    run_bash(code, cwd, env, where, SHELL_TIMEOUT)


def _check_toml(code: str, where: str, cwd: Path) -> None:
    raw = tomllib.loads(code)
    node = raw.setdefault("node", {})
    node.pop("cookie_file", None)
    node["cookie"] = "example"
    # the example's directories are the reader's: check the shape, not their existence
    node["python_path"] = [str(cwd)] * len(node.get("python_path", []))
    try:
        parse_config(raw)
    except Exception as exc:
        pytest.fail(f"{where}: the configuration does not parse: {exc}")


def _kill_recorded_nodes(directory: Path) -> None:
    for record in directory.rglob("cluster.json"):
        with contextlib.suppress(OSError, ValueError):
            for node in json.loads(record.read_text()).get("nodes", []):
                with contextlib.suppress(psutil.Error, TypeError, ValueError):
                    if node.get("pid"):
                        proc = psutil.Process(node["pid"])
                        if abs(proc.create_time() - (node.get("create_time") or 0)) < 0.05:
                            proc.kill()


@pytest.mark.parametrize("doc, section", DOCS,
                         ids=[d if s is None else f"{d}: {s}" for d, s in DOCS])
def test_guide_examples_run_on_real_nodes(doc: str, section: str | None, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    found = blocks((ROOT / doc).read_text(), section)
    assert any(b.lang == "python" for b in found), f"{doc}: no examples found"
    app = tmp_path / "app"
    app.mkdir()
    (app / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(app)
    monkeypatch.syspath_prepend(str(app))
    before = set(sys.modules)
    namespace: dict[str, Any] = {"__name__": "__guide__"}
    try:
        for block in found:
            where = f"{doc}:{block.line}"
            if block.file is not None:
                (app / block.file).write_text(block.code)
            elif block.lang == "python":
                _run_python(block, namespace, where)
            elif block.lang == "sh":
                _run_shell(block.code, app, where)
            elif block.lang == "toml":
                _check_toml(block.code, where, app)
    finally:
        _cleanup(namespace)
        for value in list(namespace.values()):
            if type(value).__name__ == "LocalCluster":
                with contextlib.suppress(Exception):
                    value.stop(timeout=5)
        _kill_recorded_nodes(app)
        for name in set(sys.modules) - before:  # the reader's modules, imported from app
            module = sys.modules.get(name)
            if str(getattr(module, "__file__", "") or "").startswith(str(app)):
                del sys.modules[name]
