"""The ``zraft`` command against real nodes: a ``zraft watch`` process follows its key
across a leader kill (it reports ``leader_changed``, re-arms, and still sees the next
change), and failures exit 1 naming the error, bad usage exits 2.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from typing import Any

import psutil
import pytest

from tests.acceptance.harness import ROOT, Acceptance
from zraft.client import api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _env(acc: Acceptance) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    env.update(ZRAFT_PEERS=",".join(acc.peers), ZRAFT_COOKIE_FILE=acc.cookie_file,
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    return env


def _zraft(acc: Acceptance, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zraft.cli", *argv], env=_env(acc),
                          capture_output=True, text=True, timeout=30)


def _next_json(proc: psutil.Popen, timeout: float = 15.0) -> dict[str, Any]:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "zraft watch printed nothing in time"
    return json.loads(proc.stdout.readline())


def test_cli_watch_follows_its_key_across_a_leader_kill(make_cluster) -> None:
    acc = make_cluster()
    assert _zraft(acc, "write", "color", "red").returncode == 0
    watch = acc.own(psutil.Popen(
        [sys.executable, "-m", "zraft.cli", "watch", "color", "--json", "--count", "2",
         "--session-timeout", "5"],
        env=_env(acc), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    assert _next_json(watch) == {"key": "color", "event": "value", "value": "red"}

    leader = acc.leader()
    acc.kill(leader)
    assert _next_json(watch) == {"key": "color", "event": "leader_changed", "value": "red"}
    acc.leader(exclude=leader)
    assert _zraft(acc, "write", "color", "blue").returncode == 0
    assert _next_json(watch) == {"key": "color", "event": "data_changed", "value": "blue"}
    assert watch.wait(15) == 0  # --count 2 reached


def test_cli_exit_codes(make_cluster) -> None:
    acc = make_cluster()
    done = _zraft(acc, "read", "missing", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["found"] is False
    failed = _zraft(acc, "read", "k", "--peers", "zraft@127.0.0.1:1", "--timeout", "1")
    assert failed.returncode == 1 and failed.stderr.startswith("AllFailed")
    assert _zraft(acc, "read", "k", "--peers", "not-a-peer-id").returncode == 2
    changed = _zraft(acc, "conf", "set", ",".join(acc.peers[:2]), "--old", acc.peers[0],
                     "--json")
    assert changed.returncode == 1 and json.loads(changed.stdout)["error"] == "PeersChanged"
    assert api.get_conf(acc.peers[0], pool=acc.pool)[1] == sorted(acc.peers)  # unchanged
