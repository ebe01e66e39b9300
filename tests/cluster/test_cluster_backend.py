"""`zraft cluster up --backend mod:Class --python-path DIR` runs a user backend, and
`add-node` / `restart` keep it; a backend the nodes cannot load makes `up` fail in one line
and leaves nothing behind, so the same `up` works once the cause is fixed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psutil
import pytest

from tests.cluster.conftest import Cli
from zraft.cli import main as zraft_main
from zraft.client import api
from zraft.cluster import admin
from zraft.cluster.local import LocalCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER_BACKENDS = Path(__file__).resolve().parents[1] / "acceptance" / "user_backends"
BACKEND = "late_backend:Flaky"


def _our_nodes(directory: Path) -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if str(directory) in " ".join(child.cmdline()) \
                    and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_up_runs_a_user_backend_that_add_node_and_restart_keep(
        cli: Cli, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mods").mkdir()
    up_args = ["cluster", "up", "--dir", str(cli.dir), "--election-timeout", "300",
               "--backend", BACKEND, "--python-path", "mods"]  # relative to the cwd

    # the module is not there yet: one line naming each node and the cause, exit 1
    capsys.readouterr()
    assert zraft_main(up_args) == 1
    err = capsys.readouterr().err

    def one(i: int) -> str:  # the same address twice: the peer's and its node's
        return (rf"zraft@(?P<a{i}>127\.0\.0\.1:\d+): backend late_backend:Flaky cannot be "
                rf"loaded on node (?P=a{i}): ModuleNotFoundError: No module named 'late_backend'")
    pattern = "; ".join(one(i) for i in (1, 2, 3))
    assert re.fullmatch(f"zraft cluster up: {pattern}\n", err), err
    assert not cli.dir.exists(), "a failed first `up` leaves no cluster directory"
    assert _our_nodes(cli.dir) == [], "a failed `up` leaves no node process"

    # the cause fixed, the same command works
    shutil.copy(USER_BACKENDS / "flaky_backend.py", tmp_path / "mods" / "late_backend.py")
    doc = cli.json(*up_args[1:])
    cli.pids.update(doc["pids"])
    cluster = LocalCluster.load(cli.dir)
    assert cluster.python_path == [str(tmp_path / "mods")]
    pool = admin.pool_for(cluster)
    try:
        assert api.write(doc["peers"][0], ["add", "a", 1], timeout=10, pool=pool)[0] == 1

        added = cli.json("add-node")
        cli.pids.add(added["pid"])
        wait_until(lambda: api.query_local(added["peer"], "all", timeout=2, pool=pool)
                   == [["a", 1]], 20, "the added node to run the backend and catch up")

        cli.json("restart", "1")
        assert api.write(doc["peers"][1], ["add", "a", 1], timeout=10, pool=pool)[0] == 2
        wait_until(lambda: api.query_local(doc["peers"][0], "all", timeout=2, pool=pool)
                   == [["a", 2]], 20, "the restarted node to run the backend again")
        states = {n: row["state"] for n, row in cli.status().items()}
        assert "failed" not in states.values() and len(states) == 4, states
    finally:
        pool.close()


def test_a_failed_up_in_an_existing_directory_removes_only_what_it_made(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "notes.txt").write_text("keep me")
    code = zraft_main(["cluster", "up", "--dir", str(directory), "--election-timeout", "300",
                       "--backend", "missing_backend:X", "--python-path", str(tmp_path)])
    assert code == 1
    assert "No module named 'missing_backend'" in capsys.readouterr().err
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    assert _our_nodes(directory) == []
