"""``zraft.Node``: a node embedded in the application's process. In process: the config
rules, a clean stop (no actor, thread or logging change left behind), a restart from the
same data directory. Across processes: three copies of ``examples/objects/shop.py``, started
by the README's command lines (each an app with its own embedded node), serve one
replicated Inventory through a leader kill."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest

import zraft
from tests.acceptance.harness import ROOT, _line, wait_for
from tests.objects.test_objects_readme import readme_shop_commands
from zraft.cluster.local import free_port
from zraft.config import ConfigError
from zraft.filemodes import write_private
from zraft.node.embedded import build_config
from zraft.objects import Counter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_config_is_built_and_checked_like_a_config_file(tmp_path: Path) -> None:
    cfg = build_config(listen="127.0.0.1:7001", data_dir=tmp_path, cookie="c",
                       backends=("dict", "zraft.objects:Counter"),
                       raft={"election_timeout": 200}, logging={"level": "debug"})
    assert (cfg.log_dir, cfg.snapshot_dir) == (str(tmp_path), str(tmp_path))
    assert cfg.logging.dir == str(tmp_path / "log") and cfg.logging.level == "debug"
    assert cfg.backends == ("dict", "zraft.objects:Counter")
    assert cfg.raft.election_timeout == 200
    with pytest.raises(ConfigError, match=r"unknown key 'node\.bogus'"):
        build_config(cookie="c", bogus=1)
    with pytest.raises(ConfigError, match=r"raft\.election_timeout must be an integer"):
        build_config(cookie="c", raft={"election_timeout": "fast"})
    with pytest.raises(ConfigError, match="no cookie"):
        build_config(listen="127.0.0.1:7001")
    with pytest.raises(ConfigError, match="not both"):
        build_config(cfg, cookie="c")
    toml = tmp_path / "node.toml"
    toml.write_text('[node]\ncookie = "c"\nlisten = "127.0.0.1:7002"\n')
    assert build_config(toml, listen="127.0.0.1:7003").listen == "127.0.0.1:7003"


def _node(directory: Path, port: int) -> zraft.Node:
    return zraft.Node(listen=f"127.0.0.1:{port}", data_dir=directory, cookie="c",
                      backends=["zraft.objects:Counter"], raft={"election_timeout": 100})


def test_an_embedded_node_serves_stops_cleanly_and_restarts_from_its_data(
        tmp_path: Path) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    actors_before = set(pykka.ActorRegistry.get_all())
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level
    port = free_port()
    with _node(tmp_path, port) as node:
        assert node.running and repr(node) == f"<zraft.Node 127.0.0.1:{port} running>"
        peer = node.peer_id("c")
        zraft.objects.create([peer], Counter, cookie="c")
        with zraft.connect_object([peer], Counter, cookie="c") as counter:
            assert counter.incr(3) == 3
        with pytest.raises(ConfigError, match=f"node.listen 127.0.0.1:{port}"):
            _node(tmp_path / "other", port).start()  # the port is taken: nothing left running
    assert not node.running and node.exit_code == 0 and node.fatal is None
    node.stop()  # idempotent
    assert set(pykka.ActorRegistry.get_all()) == actors_before
    def leftover() -> list[str]:
        """New threads but the shared client ones, and connections to other nodes (other
        tests' clusters may be in this process)."""
        return [f"{t.name}{' (daemon)' if t.daemon else ''}" for t in threading.enumerate()
                if t.ident not in threads_before and not t.name.startswith("zraft-client")
                and not (t.name.startswith("zraft-conn-") and not t.name.endswith(f":{port}"))]
    try:
        wait_for(lambda: not leftover(), 10, "the node's threads to end")
    except TimeoutError:
        raise AssertionError(f"node {port}: threads left: {leftover()}") from None
    assert (list(root.handlers), root.level) == (handlers_before, level_before)
    with _node(tmp_path, port) as again, \
            zraft.connect_object([again.peer_id("c")], Counter, cookie="c") as counter:
        assert counter.get() == 3  # the stored peer was restarted from the data directory
    with pytest.raises(RuntimeError, match="started already"):
        again.start()


def _readme_command(me: int, nodes: list[str], cookie_file: Path) -> list[str]:
    """The README's command line for copy ``me``, on free ports and this test's files."""
    argv = list(readme_shop_commands()[me])
    argv[0], argv[1] = sys.executable, str(Path(ROOT) / argv[1])
    argv[argv.index("--nodes") + 1] = ",".join(nodes)
    argv[argv.index("--cookie-file") + 1] = str(cookie_file)
    assert argv[argv.index("--me") + 1] == str(me)
    return argv


def test_a_start_that_fails_midway_leaves_nothing_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any failure inside start (not only ConfigError) stops what was started: the
    application's process goes on without a half-made node in it."""
    from zraft.node import server

    started = server.Node.start

    def start_then_fail(self: server.Node) -> None:
        started(self)  # supervisor, transport, ticker are up now
        raise RuntimeError("planted failure after the node started")

    monkeypatch.setattr(server.Node, "start", start_then_fail)
    actors_before = set(pykka.ActorRegistry.get_all())
    port = free_port()
    node = _node(tmp_path, port)
    with pytest.raises(RuntimeError, match="planted failure"):
        node.start()
    assert not node.running and set(pykka.ActorRegistry.get_all()) == actors_before
    monkeypatch.undo()
    with _node(tmp_path / "again", port) as again:  # the port was released
        assert again.running


def test_an_application_that_forgets_stop_still_exits(tmp_path: Path) -> None:
    """Pykka's actor threads are not daemon threads: before the exit hook, a script that
    started a node and returned without ``stop()`` hung at interpreter exit for ever."""
    port = free_port()
    script = (
        "import zraft\n"
        f"node = zraft.Node(listen='127.0.0.1:{port}', data_dir={str(tmp_path)!r}, "
        "cookie='c', backends=['zraft.objects:Counter'])\n"
        "node.start()\n"
        "print('started', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = psutil.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the process never exited: the forgotten node kept it alive")
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "started"


class App:
    """One ``shop.py`` process: its embedded node and its Inventory handle."""

    def __init__(self, me: int, nodes: list[str], tmp: Path, cookie_file: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
        self.address = nodes[me]
        self.proc = psutil.Popen(
            [*_readme_command(me, nodes, cookie_file),
             "--data", str(tmp / "shop"), "--election-timeout", "250"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=tmp)

    def ask(self, line: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        return json.loads(_line(self.proc, 20.0))

    def kill(self) -> None:
        if self.proc.is_running():
            self.proc.kill()
        self.proc.wait(10)


def test_three_app_processes_share_one_object_through_a_leader_kill(tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookie"
    write_private(cookie_file, "shop-cookie\n")  # a node refuses a cookie others can read
    nodes = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    apps = [App(i, nodes, tmp_path, cookie_file) for i in range(3)]
    try:
        for app in apps:
            assert _line(app.proc, 60.0) == "ready"
        assert apps[0].ask("restock apple 10") == 10
        assert apps[1].ask("sell apple 3") == 7
        assert apps[2].ask("available apple") == 7  # linearizable: through the leader
        assert apps[2].ask("sell apple 99").startswith(
            "error: BadCommand: bad_command: cannot sell 99 apple: 7 left")
        for app in apps:  # each app's own node has the state
            wait_for(lambda app=app: app.ask("local apple") == 7, 10, "the copies")
        leader = apps[0].ask("leader")
        victim = next(a for a in apps if leader.endswith("@" + a.address))
        survivors = [a for a in apps if a is not victim]
        victim.kill()
        sold = [survivors[i % 2].ask("sell apple 1") for i in range(4)]
        assert sold == [6, 5, 4, 3]  # every sale acknowledged once, none lost or doubled
        assert [a.ask("report") for a in survivors] == [{"stock": {"apple": 3}, "sold": 7}] * 2
        for app in survivors:
            wait_for(lambda app=app: app.ask("local apple") == 3, 10, "the survivors' copies")
    finally:
        for app in apps:
            app.kill()
