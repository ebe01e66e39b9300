"""The README section "Replicated Python objects" runs as written, on real node processes.

- Its ```py block is the example module ``examples/objects/inventory.py`` (shown, not run:
  the nodes import the file).
- Its ```toml block is the allowlist of the nodes the examples run on (the shared test
  cluster's, with ``examples/objects`` on their PYTHONPATH).
- Its ```python blocks run in order in one namespace holding ``nodes`` (the three nodes'
  ``host:port``) and ``cookie_file``, in a temporary directory; the embedded node's
  address ``127.0.0.1:7201`` is replaced by a free port.
- Its ```sh block's ``shop.py`` commands are the ones ``test_objects_embedded`` runs
  (``readme_shop_commands``).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.objects.conftest import EXAMPLES, ROOT, Objects
from zraft.cluster.local import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECTION_TITLE = "## Replicated Python objects"
EMBEDDED_ADDRESS = "127.0.0.1:7201"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"{SECTION_TITLE}\n")
    end = text.index("\n## ", start + len(SECTION_TITLE))
    return text[start:end]


def blocks(lang: str) -> list[str]:
    # indented fences too (the toml block sits in a list item)
    found = re.findall(rf"^( *)```{lang}\n(.*?)^\1```$", section(), re.S | re.M)
    return ["".join(line[len(indent):] + "\n" for line in body.splitlines())
            for indent, body in found]


def readme_shop_commands() -> list[list[str]]:
    """The argv of each ``shop.py`` line of the section's ```sh block."""
    (sh,) = blocks("sh")
    return [shlex.split(line) for line in sh.splitlines() if "shop.py" in line]


def test_the_section_shows_the_example_module_as_it_is() -> None:
    (shown,) = blocks("py")
    assert shown in (EXAMPLES / "inventory.py").read_text()


def test_the_shop_commands_start_three_copies_of_the_example_app() -> None:
    commands = readme_shop_commands()
    assert [c[:4] for c in commands] == [
        ["python", "examples/objects/shop.py", "--me", str(i)] for i in range(3)]
    assert all((ROOT / c[1]).is_file() for c in commands)


def test_the_python_examples_run_on_real_nodes(
        shared_objects: Objects, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (toml,) = blocks("toml")
    assert tomllib.loads(toml)["node"]["backends"] == shared_objects.cluster.backends
    acc = shared_objects
    monkeypatch.chdir(tmp_path)  # the embedded node's relative data_dir
    monkeypatch.syspath_prepend(str(EXAMPLES))  # ``from inventory import Inventory``
    address = f"127.0.0.1:{free_port()}"
    namespace: dict[str, Any] = {"__name__": "__readme__", "cookie_file": acc.cookie_file,
                                 "nodes": [n.address for n in acc.cluster.nodes]}
    examples = blocks("python")
    assert len(examples) == 4 and sum(EMBEDDED_ADDRESS in code for code in examples) == 1
    try:
        for number, code in enumerate(examples, 1):
            code = code.replace(EMBEDDED_ADDRESS, address)
            exec(compile(code, f"README {SECTION_TITLE[3:]} block {number}", "exec"),
                 namespace)
    finally:
        for value in namespace.values():  # handles an example left open on a failure
            close = getattr(value, "close", None)
            if callable(close) and type(value).__module__.startswith("zraft.objects"):
                close()
    assert (tmp_path / "app-data").is_dir()  # the embedded node stored its peer there
