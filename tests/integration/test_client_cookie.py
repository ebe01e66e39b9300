"""Least privilege without certificates: a node's ``client_cookie_file`` admits application
clients to reads, writes and sessions, never to operator ops (membership, create, leadership
transfer, backups, fault injection), Raft messages or snapshot streams; the cluster cookie
still does everything (issue 13 section 2)."""

from __future__ import annotations

import socket

import pytest

import zraft
from tests.integration.test_node_privilege import (
    COOKIE,
    node_config,
    one_line,
    run_node,
    start,
    started,  # noqa: F401 (the fixture)
)
from zraft.client.connection import ConnectionPool
from zraft.cluster.ports import free_port
from zraft.filemodes import write_private
from zraft.testing.authed_socket import authed
from zraft.transport import codec
from zraft.transport.errors import HandshakeError
from zraft.transport.framing import frame
from zraft.transport.handshake import client_handshake

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_COOKIE = "app-only-cookie"


def _node(tmp_path, started, port: int) -> str:  # noqa: F811 (the fixture)
    write_private(tmp_path / "cookie", COOKIE + "\n")
    write_private(tmp_path / "client-cookie", CLIENT_COOKIE + "\n")
    config = node_config(tmp_path / "a.toml", port, "a",
                         extra='client_cookie_file = "client-cookie"\n'
                               "fault_injection = true\n")
    start(started, config, tmp_path)
    return f"zraft@127.0.0.1:{port}"


def test_the_client_cookie_reads_and_writes_but_runs_no_operator_op(
        tmp_path, started) -> None:  # noqa: F811 (the fixture)
    port = free_port()
    peer = _node(tmp_path, started, port)
    operator, app = ConnectionPool(COOKIE), ConnectionPool(CLIENT_COOKIE)
    try:
        zraft.create([peer], "dict", pool=operator)  # the cluster cookie may do everything
        assert zraft.write(peer, ["k", "v"], pool=app)[0] == "ok"
        assert zraft.query(peer, "k", pool=app)[0] == "v"
        assert zraft.stat(peer, pool=app)["role"] == "leader"
        session = zraft.Session.start([peer], 5.0, pool=app)
        try:
            assert session.write_sync(["eph", 1], temporary=True) == "ok"
        finally:
            session.stop()
        other = f"other@127.0.0.1:{port}"
        refused = {
            "create_peer": lambda: zraft.create_peer(other, "dict", pool=app),
            "set_conf": lambda: zraft.set_new_conf(peer, [peer, other], [peer], pool=app),
            "transfer_leader": lambda: zraft.transfer_leader(peer, pool=app),
            "bootstrap": lambda: zraft.bootstrap(other, pool=app),
        }
        for op, call in refused.items():
            with pytest.raises(zraft.NotAllowed, match=f"{op} is an operator op"):
                call()
        assert zraft.stat(peer, pool=operator)["leader"] == peer  # nothing changed
        assert zraft.get_conf(peer, pool=operator)[1] == [peer]
        for op, args in (("partition", [["127.0.0.1:1"]]), ("heal", []),
                         ("snapshot_save", ["zraft"])):
            status, value = _request(port, CLIENT_COOKIE, op, args)
            assert status == "not_allowed" and "operator op" in str(value), (op, value)
            assert _request(port, COOKIE, "heal", [])[0] == "ok"
        assert _request(port, COOKIE, "snapshot_save", ["zraft"])[0] == "ok"
    finally:
        operator.close()
        app.close()


def test_the_client_cookie_is_no_peer_and_no_snapshot_sender(tmp_path, started) -> None:  # noqa: F811
    port = free_port()
    _node(tmp_path, started, port)
    for role in ("node", "snapshot"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
                pytest.raises(HandshakeError, match="refused us"):
            client_handshake(sock, CLIENT_COOKIE.encode(), f"127.0.0.1:{free_port()}",
                             10.0, role=role)
    # as a client it gets in, and a Raft message from it closes the connection
    msg = codec.AppendEntries(99, "zraft@127.0.0.1:1", f"zraft@127.0.0.1:{port}", 0, 0, [],
                              0, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        app = authed(sock, client_handshake(sock, CLIENT_COOKIE.encode(), "app", 10.0))
        app.sendall(frame(codec.encode(msg)))
        sock.settimeout(10)
        assert sock.recv(1) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            pytest.raises(HandshakeError, match="refused us"):
        client_handshake(sock, b"neither-cookie", "stranger", 10.0)


def test_a_client_cookie_that_is_the_cluster_cookie_or_readable_stops_the_node(
        tmp_path) -> None:
    write_private(tmp_path / "cookie", COOKIE + "\n")
    write_private(tmp_path / "same", COOKIE + "\n")
    config = node_config(tmp_path / "a.toml", free_port(), "a",
                         extra='client_cookie_file = "same"\n')
    assert "must be a different secret" in one_line(run_node(config, tmp_path))
    readable = tmp_path / "readable"
    readable.write_text(CLIENT_COOKIE + "\n")
    readable.chmod(0o644)
    config = node_config(tmp_path / "b.toml", free_port(), "b",
                         extra='client_cookie_file = "readable"\n')
    assert one_line(run_node(config, tmp_path)) == (
        f"zraft node: node.client_cookie_file {readable} is readable by group or others "
        f"(mode 0644): run chmod 600 {readable}")


def _request(port: int, cookie: str, op: str, args: list[object]) -> tuple[str, object]:
    """One request (admin op or peer op) on a fresh client connection: (status, value)."""
    from tests.integration.test_node_privilege import _read_frame

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        cli = authed(sock, client_handshake(sock, cookie.encode(), "cli", 10.0))
        if op in ("partition", "heal"):
            request = codec.AdminRequest(1, op, args)
        else:
            request = codec.ClientRequest(1, op, args)
        cli.sendall(frame(codec.encode(request)))
        sock.settimeout(30)
        reply = _read_frame(cli)
    return reply[2], reply[3] if len(reply) > 3 else None


def test_the_readme_example_runs(tmp_path, started, monkeypatch, capsys) -> None:  # noqa: F811
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    part = readme[readme.index("Application clients need not hold the cluster cookie"):]
    block = re.search(r"```python\n(.*?)```", part, re.S)
    assert block is not None
    port = free_port()
    peer = _node(tmp_path, started, port)
    operator = ConnectionPool(COOKIE)
    try:
        zraft.create([peer], "dict", pool=operator)
    finally:
        operator.close()
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {"peer": peer}
    try:
        exec(block.group(1), scope)  # the README's own example
    finally:
        scope["app"].close()  # type: ignore[attr-defined]
    assert "transfer_leader is an operator op" in capsys.readouterr().out
