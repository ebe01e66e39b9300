"""Every example of the client documentation runs, against a real 3-node cluster.

The sections "Client API", "Sessions, ephemeral data and watches" and "Command line" of
``README.md`` are checked: their
```python blocks run in order in one namespace that holds ``peers`` (the peer ids of three
running nodes, cluster not yet created) and ``cookie_file`` (```py blocks are only shown);
their ```sh blocks run with bash (``-euo pipefail``) with ``$ZRAFT_PEERS`` and
``$ZRAFT_COOKIE_FILE`` set and the venv's ``zraft`` on PATH. A block fails the test if it
raises or exits non-zero; the failure names the file and line of the block.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pykka
import pytest

from tests.acceptance.harness import Acceptance

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md"]
SECTIONS = {"Client API", "Sessions, ephemeral data and watches", "Command line"}
# subsections run elsewhere, in a directory of their own (test_backend_guide.py)
SKIPPED = {"Your own state machine"}
SHELL_TIMEOUT = 60.0
_FENCE = re.compile(r"^```(\w*)")


class Example(NamedTuple):
    lang: str
    code: str
    line: int  # 1-based line of the opening fence


def examples(text: str) -> list[Example]:
    """The python and sh blocks under the level-2 headings named in SECTIONS, except those
    under a level-3 heading named in SKIPPED."""
    found: list[Example] = []
    section = ""
    skipped = False
    block: list[str] | None = None
    lang, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if block is not None:
            if line.startswith("```"):
                if section in SECTIONS and not skipped and lang in ("python", "sh"):
                    found.append(Example(lang, "\n".join(block) + "\n", start))
                block = None
            else:
                block.append(line)
            continue
        fence = _FENCE.match(line)
        if fence:
            block, lang, start = [], fence.group(1), number
        elif line.startswith("## "):
            section, skipped = line[3:].strip(), False
        elif line.startswith("### "):
            skipped = line[4:].strip() in SKIPPED
    return found


def test_examples_are_found_under_the_sections_only() -> None:
    text = ("## Other\n```python\nskipped\n```\n## Client API\n### sub\n```python\na = 1\n```\n"
            "```toml\nx = 1\n```\n```py\nshown = 1\n```\n## Command line\n```sh\necho hi\n```\n"
            "## Layout\n```sh\nnot run\n```\n")
    assert examples(text) == [Example("python", "a = 1\n", 7), Example("sh", "echo hi\n", 17)]
    text = ("## Client API\n### Your own state machine\n```python\nskip = 1\n```\n"
            "### Next\n```python\nrun = 1\n```\n")
    assert examples(text) == [Example("python", "run = 1\n", 7)]


def _run_shell(code: str, acc: Acceptance, cwd: Path, where: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    env.update(ZRAFT_PEERS=",".join(acc.peers), ZRAFT_COOKIE_FILE=acc.cookie_file,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    run_bash(code, cwd, env, where, SHELL_TIMEOUT)


def run_bash(code: str, cwd: Path, env: dict[str, str], where: str, timeout: float) -> None:
    """Run a shell example under ``bash -euo pipefail``; fail the test unless it exits 0
    within ``timeout``. Its whole process group is killed after (whatever it left behind)."""
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # bash and anything it left in the background
        out, _ = proc.communicate()
        pytest.fail(f"{where}: shell example did not finish in {timeout}s:\n"
                    f"{out.decode()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    print(out.decode())
    assert proc.returncode == 0, f"{where}: exit {proc.returncode}:\n{out.decode()}"


def _cleanup(namespace: dict[str, Any]) -> None:
    """Stop sessions and actors an example left running."""
    from zraft.client.session import Session

    for value in list(namespace.values()):
        with contextlib.suppress(Exception):
            if isinstance(value, (Session, pykka.ActorRef)):
                value.stop(timeout=1)


@pytest.mark.parametrize("doc", DOCS)
def test_documented_examples_run(doc: str, make_cluster, tmp_path: Path) -> None:
    path = ROOT / doc
    if not path.exists():
        pytest.skip(f"{doc} does not exist")
    found = examples(path.read_text())
    if not found:
        pytest.skip(f"{doc} has no client API sections (yet)")
    acc = make_cluster(create=False)
    namespace: dict[str, Any] = {"__name__": "__readme__", "peers": list(acc.peers),
                                 "cookie_file": acc.cookie_file}
    try:
        for example in found:
            where = f"{doc}:{example.line}"
            if example.lang == "python":
                exec(compile(example.code, where, "exec"), namespace)
            else:
                _run_shell(example.code, acc, tmp_path, where)
    finally:
        _cleanup(namespace)
