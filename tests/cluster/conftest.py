"""Local-cluster tests: real node processes, every one killed by pid at teardown."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from zraft.cli import main as zraft_main
from zraft.cluster.local import CLUSTER_FILE


class Cli:
    """Runs `zraft ...` in-process and returns (exit code, stdout)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], directory: Path) -> None:
        self.capsys = capsys
        self.dir = directory
        self.pids: set[int] = set()

    def __call__(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = zraft_main(list(argv))
        out = self.capsys.readouterr().out
        self.remember_pids()
        return code, out

    def cluster(self, *argv: str) -> tuple[int, str]:
        return self("cluster", argv[0], "--dir", str(self.dir), *argv[1:])

    def json(self, *argv: str) -> Any:
        code, out = self.cluster(*argv, "--json")
        assert code == 0, out
        return json.loads(out)

    def status(self) -> dict[int, dict[str, Any]]:
        return {row["node"]: row for row in self.json("status")["nodes"]}

    def remember_pids(self) -> None:
        path = self.dir / CLUSTER_FILE
        if path.exists():
            for node in json.loads(path.read_text()).get("nodes", []):
                if node.get("pid"):
                    self.pids.add(int(node["pid"]))


def kill_pids(pids: set[int]) -> None:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if "zraft.node" in " ".join(proc.cmdline()):
                proc.resume()
                proc.kill()
                procs.append(proc)
        except psutil.Error:
            continue
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    runner = Cli(capsys, tmp_path / "cluster")
    yield runner
    runner.remember_pids()
    kill_pids(runner.pids)


@pytest.fixture
def up(cli: Cli) -> Callable[..., dict[str, Any]]:
    def start(*extra: str) -> dict[str, Any]:
        doc = cli.json("up", "--election-timeout", "300", *extra)
        cli.pids.update(doc["pids"])
        return doc
    return start
