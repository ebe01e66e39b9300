"""README examples outside the client and cluster sections (those have their own tests):
the node config parses, the simulator and fuzz commands run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zraft.config import parse_config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SECTION = README[README.index("## Running nodes"):]


def test_node_config_example_parses(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", SECTION, re.S)
    assert block is not None
    raw = tomllib.loads(block.group(1))
    cookie = tmp_path / "cookie"  # the example's /etc path does not exist here
    cookie.write_text("secret\n")
    raw["node"]["cookie_file"] = str(cookie)
    cfg = parse_config(raw)
    assert cfg.listen == "127.0.0.1:7001" and cfg.raft.election_timeout == 500


def _commands() -> list[str]:
    testing = README[README.index("## Testing and evidence"):README.index("## Layout")]
    lines = []
    for body in re.findall(r"```sh\n(.*?)```", testing, re.S):
        lines += [line.split(" #")[0].strip() for line in body.splitlines() if line.strip()]
    return lines


@pytest.mark.parametrize("line", _commands())
def test_testing_section_commands_run(line: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/python"
    proc = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True,
                          timeout=240, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
