"""The ``zraft`` command's client subcommands against fake nodes: output, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.client.fake_node import FakeCluster
from zraft.cli import main


def run(cluster: FakeCluster, capsys: pytest.CaptureFixture[str], *argv: str,
        peers: list[str] | None = None) -> tuple[int, str, str]:
    target = ["--peers", ",".join(peers or cluster.peers), "--cookie", cluster.cookie.decode()]
    code = main([*argv, *target])
    out, err = capsys.readouterr()
    return code, out, err


def test_write_then_read(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cluster, capsys, "write", "k", "42")[:2] == (0, "ok\n")
    assert run(cluster, capsys, "read", "k")[:2] == (0, "42\n")
    assert run(cluster, capsys, "write", "s", "hello")[0] == 0
    assert run(cluster, capsys, "read", "s")[:2] == (0, "hello\n")
    assert run(cluster, capsys, "read", "nope") == (3, "", "not found: nope\n")


def test_a_missing_key_is_told_from_a_stored_not_found_string(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both printed NOT_FOUND with exit 0; now only the stored string does."""
    assert run(cluster, capsys, "write", "s", "NOT_FOUND")[0] == 0
    assert run(cluster, capsys, "read", "s") == (0, "NOT_FOUND\n", "")
    assert run(cluster, capsys, "read", "absent") == (3, "", "not found: absent\n")
    code, out, _ = run(cluster, capsys, "read", "absent", "--json")  # the document says it
    assert code == 0 and json.loads(out)["found"] is False
    code, out, _ = run(cluster, capsys, "read", "s", "--json")
    assert code == 0 and json.loads(out)["found"] is True and json.loads(out)["value"] == (
        "NOT_FOUND")


def test_json_output(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, capsys, "write", "k", "[1, 2]", "--json")
    assert code == 0
    assert json.loads(out) == {"result": "ok", "leader": cluster.leader_id()}
    code, out, _ = run(cluster, capsys, "read", "k", "--json")
    assert json.loads(out) == {"key": "k", "found": True, "value": [1, 2],
                               "leader": cluster.leader_id()}
    code, out, _ = run(cluster, capsys, "read", "zz", "--json")
    assert json.loads(out)["found"] is False


def test_string_flag(fake: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(fake, capsys, "write", "k", "42", "--string")[0] == 0
    assert fake.data["k"] == "42"


def test_conf_get_and_set(fake: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(fake, capsys, "conf", "get", "--json")
    assert code == 0
    assert json.loads(out) == {"leader": fake.peer(1), "peers": sorted(fake.peers)}
    new = ",".join(fake.peers[:2])
    code, out, _ = run(fake, capsys, "conf", "set", new, "--json")
    assert code == 0 and json.loads(out)["peers"] == sorted(fake.peers[:2])
    # a wrong expected old configuration fails with the error's name, exit 1
    code, _, err = run(fake, capsys, "conf", "set", fake.peer(1), "--old", new + "," + fake.peer(3))
    assert code == 1 and err.startswith("PeersChanged:")


def test_stat(fake: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(fake, capsys, "stat", fake.peer(2), "--json")
    assert code == 0 and json.loads(out)[fake.peer(2)]["role"] == "follower"
    fake.stop_node(fake.peer(3))
    code, out, _ = run(fake, capsys, "stat", "--json", "--timeout", "1")
    report = json.loads(out)
    assert code == 0
    assert report[fake.peer(1)]["role"] == "leader"
    assert report[fake.peer(3)]["error"] == "Unreachable"
    code, out, _ = run(fake, capsys, "stat")
    assert f"{fake.peer(1)}:\n" in out and "  role: leader" in out


def test_stat_of_one_peer_needs_no_peers_option(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``zraft stat PEER`` (its help: "status of one peer") stopped with "no peers: give
    --peers" unless --peers, --dir or $ZRAFT_PEERS named some cluster as well."""
    for var in ("ZRAFT_PEERS", "ZRAFT_CLUSTER_DIR"):
        monkeypatch.delenv(var, raising=False)
    code = main(["stat", fake.peer(2), "--json", "--cookie", fake.cookie.decode()])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)[fake.peer(2)]["role"] == "follower"


def test_operation_failure_exits_1_with_the_error_name(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    for peer in fake.peers:
        fake.stop_node(peer)
    code, out, err = run(fake, capsys, "write", "k", "1", "--timeout", "2")
    assert code == 1 and err.startswith("AllFailed:") and out == ""
    code, out, _ = run(fake, capsys, "read", "k", "--timeout", "2", "--json")
    assert code == 1 and json.loads(out)["error"] == "AllFailed"


def test_timeout_exits_1(fake: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    fake.script = lambda peer, op, args: ("reply", "loading", {})
    code, _, err = run(fake, capsys, "read", "k", "--timeout", "0.3")
    assert code == 1 and err.startswith("Timeout:")


def test_bad_usage_exits_2(fake: FakeCluster, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZRAFT_COOKIE", "ZRAFT_COOKIE_FILE", "ZRAFT_PEERS", "ZRAFT_CLUSTER_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as info:
        main(["write", "only-key"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        run(fake, capsys, "read", "k", peers=["not-a-peer-id"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["read", "k", "--peers", fake.peer(1)])  # no cookie anywhere
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    for bad in ("nan", "inf", "0", "-1", "1e9", "soon"):  # checked before anything is sent
        with pytest.raises(SystemExit) as info:
            run(fake, capsys, "write", "k", "v", "--timeout", bad)
        assert info.value.code == 2
        assert "timeout" in capsys.readouterr().err
    assert fake.requests == []


@pytest.mark.timeout(30)
def test_watch_prints_value_then_changes(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.data["w"] = 0

    def armed() -> bool:
        with fake.lock:
            return any(w[0] == "w" for w in fake.watches)

    def writer() -> None:
        for i in (1, 2):
            deadline = time.monotonic() + 5
            while not armed() and time.monotonic() < deadline:
                time.sleep(0.005)
            with fake.lock:
                fake._write(["w", i], None)

    thread = threading.Thread(target=writer)
    thread.start()
    code, out, _ = run(fake, capsys, "watch", "w", "--count", "2", "--json")
    thread.join(5)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(x["event"], x["value"]) for x in lines] == [
        ("value", 0), ("data_changed", 1), ("data_changed", 2)
    ]


def test_dir_reads_cluster_json(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "cookie").write_text(fake.cookie.decode() + "\n")
    (tmp_path / "cluster.json").write_text(
        json.dumps({"peers": fake.peers, "cookie_file": "cookie", "election_timeout": 200})
    )
    assert main(["write", "d", "1", "--dir", str(tmp_path)]) == 0
    assert fake.data["d"] == 1
    with pytest.raises(SystemExit) as info:
        main(["read", "d", "--dir", str(tmp_path / "missing")])
    assert info.value.code == 2


def test_console_script_runs(fake: FakeCluster) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zraft.cli", "read", "k", "--json",
         "--peers", ",".join(fake.peers)],
        capture_output=True, text=True, timeout=30,
        env={"ZRAFT_COOKIE": fake.cookie.decode(), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["found"] is False


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`zraft ... | head`: no traceback and no 'Exception ignored' from the exit flush."""
    import subprocess
    import sys

    script = ("import argparse, sys, zraft.cli as cli\n"
              "p = argparse.ArgumentParser()\n"
              "p.set_defaults(func=lambda a: [print('x' * 100) for _ in range(100_000)])\n"
              "cli.build_parser = lambda: p\n"
              "sys.exit(cli.main([]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"xxx")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 1
    assert err == b""
