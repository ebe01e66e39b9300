"""No thread that serves many connections dies of one of them; if one dies anyway, the
transport starts a new one or, past its restart budget, reports a fatal failure
(issue 11, section 1). Failures are injected by monkeypatching."""

from __future__ import annotations

import errno
import logging
import socket
import threading

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.transport import codec, tcp
from zraft.transport.codec import ClientReply, ClientRequest
from zraft.transport.handshake import client_handshake
from zraft.transport.tcp import TcpTransport, TransportConfig, connect, parse_addr

FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0,
                       handshake_timeout=2.0)


def _echo(conn, frames):
    for f in frames:
        conn.send(ClientReply(f.req_id, "ok", f.args))


def _ask(server: TcpTransport, name: str, value: object) -> object:
    """A fresh client's round trip: the server serves new clients."""
    replies = Inbox()
    conn = connect(server.address, COOKIE, name, replies, FAST)
    try:
        conn.send(ClientRequest(1, "echo", value))
        (reply,) = replies.wait_count(1)
        return reply.payload
    finally:
        conn.close()


@pytest.fixture
def server():
    made: list[TcpTransport] = []

    def make(**kwargs) -> TcpTransport:
        t = TcpTransport(COOKIE, _echo, config=kwargs.pop("config", FAST), **kwargs)
        t.start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def test_an_unexpected_error_decoding_one_client_closes_only_that_client(server, monkeypatch):
    """Was: only DecodeError was caught, anything else killed the reactor thread."""
    real = codec.decode_many

    def decode_many(bodies):
        if any(b"boom" in b for b in bodies):
            raise RuntimeError("injected")
        return real(bodies)

    monkeypatch.setattr(codec, "decode_many", decode_many)
    s = server()
    replies = Inbox()
    good = connect(s.address, COOKIE, "good", replies, FAST)
    bad = connect(s.address, COOKIE, "bad", Inbox(), FAST)
    try:
        bad.send(ClientRequest(1, "echo", "boom"))
        wait_for(lambda: bad.closed)
        good.send(ClientRequest(2, "echo", "fine"))
        assert replies.wait_count(1) == [ClientReply(2, "ok", "fine")]
        assert s._reactor._thread.is_alive()
        assert s.status()["malformed"] == 1
    finally:
        good.close()
        bad.close()


def _break_selector(monkeypatch, server: TcpTransport, times: int = 1) -> list[int]:
    """The next ``times`` selects of the reactor raise (a bug outside any connection)."""
    cls = type(server._reactor._sel)
    real = cls.select
    left = [times]

    def select(self, timeout=None):
        if left[0] > 0 and threading.current_thread().name.startswith("zraft-reactor"):
            left[0] -= 1
            raise RuntimeError("injected reactor failure")
        return real(self, timeout)

    monkeypatch.setattr(cls, "select", select)
    server._reactor._wake()
    return left


def test_a_reactor_that_dies_is_replaced(server, monkeypatch):
    s = server()
    before = _ask(s, "c0", "before")
    old = s._reactor
    stranded = connect(s.address, COOKIE, "stranded", Inbox(), FAST)
    wait_for(lambda: len(old) == 1)
    left = _break_selector(monkeypatch, s)
    wait_for(lambda: left[0] == 0 and s._reactor is not old)
    wait_for(lambda: stranded.closed)  # its connections were closed, not leaked
    assert before == "before" and _ask(s, "c1", "after") == "after"
    assert s.status()["thread_restarts"] == 1 and s.fatal is None
    wait_for(lambda: not [c for c in s.inbound_connections() if c.peer_id == "stranded"])


def test_past_its_restart_budget_the_transport_reports_fatal(server, monkeypatch):
    fatal: list[str] = []
    s = server(on_fatal=fatal.append)
    _break_selector(monkeypatch, s, times=10 ** 6)
    wait_for(lambda: fatal)
    assert "reactor died" in fatal[0] and "injected reactor failure" in fatal[0]
    assert s.fatal == fatal[0] and s.status()["thread_restarts"] == tcp.RESTARTS


class FlakyListener:
    """Wraps the listening socket: ``accept`` raises the queued exceptions first."""

    def __init__(self, sock: socket.socket, failures: list[BaseException]) -> None:
        self._sock = sock
        self.failures = failures

    def accept(self):
        if self.failures:
            raise self.failures.pop(0)
        return self._sock.accept()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _flaky_server(failures: list[BaseException], **kwargs) -> TcpTransport:
    s = TcpTransport(COOKIE, _echo, config=FAST, **kwargs)
    s.start(serve=False)
    s._lsock = FlakyListener(s._lsock, failures)
    s.serve()
    return s


def test_the_accept_loop_survives_an_unexpected_error():
    """Was: anything but OSError from accept ended the accept thread: no client got in."""
    s = _flaky_server([RuntimeError("injected")])
    try:
        assert _ask(s, "c", 1) == 1
        assert s._acceptor.is_alive()
    finally:
        s.close()


def test_an_accept_thread_that_ends_anyway_is_restarted():
    s = _flaky_server([SystemExit()])  # gets past every `except Exception`
    try:
        wait_for(lambda: s.status()["thread_restarts"] == 1)
        assert _ask(s, "c", 2) == 2
    finally:
        s.close()


def test_out_of_descriptors_on_accept_backs_off_and_logs_once(caplog):
    emfile = [OSError(errno.EMFILE, "Too many open files") for _ in range(6)]
    caplog.set_level(logging.INFO, logger="zraft.transport.tcp")
    s = _flaky_server(emfile)
    try:
        assert _ask(s, "c", 3) == 3
        assert s.status()["accept_errors"] == 6
        failures = [r for r in caplog.records if "accept failed" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in failures]
        assert any("accept works again after 6" in r.getMessage() for r in caplog.records)
    finally:
        s.close()


def test_an_error_after_the_handshake_closes_that_socket(server, monkeypatch):
    """Was: an exception in the handshake thread left the socket open (a leaked fd)."""
    real = tcp.tune_socket
    calls = [0]

    def tune(sock, timeout):
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("injected")
        real(sock, timeout)

    monkeypatch.setattr(tcp, "tune_socket", tune)
    s = server()
    sock = socket.create_connection(parse_addr(s.address), timeout=5)
    with sock:
        client_handshake(sock, COOKIE, "first", 5.0)
        assert sock.recv(10) == b""  # closed by the server
    wait_for(lambda: not s._threads and not s._handshaking and not s.inbound_connections())
    assert _ask(s, "second", 4) == 4
