"""The README's local-cluster examples run, line by line, as a user would type them.

Shell blocks marked ``<!-- tested: cluster... -->`` in README.md and in this folder's
``readme_examples.md`` (the text proposed for the README) are run in a scratch directory,
each line through the ``zraft`` command's own entry point in this process (the real
command line in separate processes is covered by test_down_leaves_no_process_behind);
every line must exit 0. Every node started is killed by pid at the end, whatever happened.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.cluster.conftest import kill_pids
from zraft.cli import main as zraft_main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- tested: (cluster[\w-]*) -->\s*```sh\n(.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str, list[str]]]:
    if not path.exists():
        return []
    found = []
    for name, body in BLOCK.findall(path.read_text()):
        lines = [line.split(" #")[0].strip() for line in body.splitlines()]
        found.append((name, [line for line in lines if line and not line.startswith("#")]))
    return found


README = ROOT / "README.md"
PROPOSAL = Path(__file__).with_name("readme_examples.md")
IN_README = {name for name, _ in blocks(README)}
CASES = [pytest.param(lines, id=f"README.md:{name}") for name, lines in blocks(README)]
CASES += [pytest.param(lines, id=f"{PROPOSAL.name}:{name}")
          for name, lines in blocks(PROPOSAL) if name not in IN_README]  # not yet pasted


@pytest.mark.parametrize("lines", CASES)
def test_readme_block_runs(lines: list[str], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    if any("--plot" in line for line in lines):
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    pids: set[int] = set()
    try:
        for line in lines:
            argv = shlex.split(line)
            assert argv[0] == "zraft", f"README examples call zraft: {line}"
            code = zraft_main(argv[1:])
            out = capsys.readouterr()
            for record in tmp_path.glob("*/cluster.json"):
                pids.update(n["pid"] for n in json.loads(record.read_text())["nodes"]
                            if n.get("pid"))
            assert code == 0, f"{line}\n{out.out}\n{out.err}"
            if "--plot" in line:
                out = argv[argv.index("--plot") + 1]
                assert (tmp_path / out).read_bytes()[:4] == b"\x89PNG"
    finally:
        kill_pids(pids)
