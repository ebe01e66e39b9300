"""``zraft create``, ``zraft delete`` and ``zraft conf add/remove`` against real nodes:
output, ``--json`` documents and exit codes (0 ok, 1 the failure named, 2 bad usage, 3 a
missing key / a peer that is not a member), as the other commands have them."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.harness import Acceptance
from tests.acceptance.test_backup import _zraft
from zraft.client import api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _ok(acc: Acceptance, *argv: str) -> str:
    done = _zraft(acc, *argv)
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout


def test_create_conf_add_remove_and_delete(make_cluster) -> None:
    acc = make_cluster(3, create=False)
    p1, p2, p3 = acc.peers
    made = json.loads(_ok(acc, "create", "--peers", f"{p1},{p2}", "--backend", "dict",
                          "--json"))
    assert made["peers"] == sorted([p1, p2]) and made["backend"] == "dict"
    assert made["cluster_id"] == acc.stat(p1)["cluster_id"] != ""
    again = _zraft(acc, "create", "--peers", f"{p1},{p2}")
    assert again.returncode == 1 and again.stderr.startswith("AlreadyPresent: ")

    assert _ok(acc, "conf", "add", p3) == f"peers: {','.join(sorted(acc.peers))}\n"
    assert acc.stat(p3)["cluster_id"] == made["cluster_id"]  # created in this cluster
    assert json.loads(_ok(acc, "conf", "add", p3, "--json")) == {
        "changed": False, "peers": sorted(acc.peers)}
    assert json.loads(_ok(acc, "conf", "remove", p3, "--json")) == {
        "changed": True, "peers": sorted([p1, p2])}
    gone = _zraft(acc, "conf", "remove", p3)
    assert (gone.returncode, gone.stdout, gone.stderr) == (3, "", f"not a member: {p3}\n")
    assert json.loads(_ok(acc, "conf", "remove", p3, "--json"))["changed"] is False
    for argv in (["conf", "remove", "not-a-peer"], ["conf", "add", "x@"],
                 ["conf", "set", "bad"], ["conf", "set", p1, "--old", "bad"], ["stat", "bad"]):
        usage = _zraft(acc, *argv)  # bad usage, one line: was a traceback and exit 1
        assert usage.returncode == 2 and "Traceback" not in usage.stderr, argv
        assert usage.stderr.splitlines()[-1].startswith(f"zraft {argv[0]}"), argv
    assert api.get_conf(p1, pool=acc.pool)[1] == sorted([p1, p2])

    assert _ok(acc, "write", "color", "red", "--peers", f"{p1},{p2}") == "ok\n"
    assert _ok(acc, "delete", "color", "--peers", f"{p1},{p2}") == "ok\n"
    missing = _zraft(acc, "delete", "color", "--peers", f"{p1},{p2}")
    assert (missing.returncode, missing.stdout, missing.stderr) == (3, "", "not found: color\n")
    doc = json.loads(_ok(acc, "delete", "color", "--peers", f"{p1},{p2}", "--json"))
    assert doc["deleted"] is False and doc["key"] == "color"
    down = _zraft(acc, "delete", "color", "--peers", "zraft@127.0.0.1:1", "--timeout", "1",
                  "--json")
    assert down.returncode == 1 and json.loads(down.stdout)["error"] == "AllFailed"
