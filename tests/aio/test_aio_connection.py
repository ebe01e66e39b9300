"""zraft.aio connections against a scripted node (a socket served by a test thread that
runs the real server handshake): what is sent, when, and what a bad node costs."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import zraft.aio as za
from tests.aio.conftest import run
from zraft.aio.connection import Connection
from zraft.errors import Unreachable
from zraft.testing.authed_socket import accepted
from zraft.transport.codec import pack, unpack
from zraft.transport.framing import HEADER
from zraft.transport.handshake import server_handshake

COOKIE = b"scripted-cookie"


class ScriptedNode:
    """Accepts one connection; after ``release`` runs the handshake, then records frames
    and lets ``on_frame`` answer (or not)."""

    def __init__(self, on_frame: Callable[[socket.socket, Any], None] | None = None,
                 read: bool = True) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.peer = f"p1@{self.address}"
        self.release = threading.Event()
        self.frames: list[Any] = []
        self.on_frame = on_frame
        self.read = read
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        with sock:
            self.release.wait(10)
            peer = accepted(sock, server_handshake(sock, COOKIE, self.address, 5))
            if not self.read:
                self.done.wait(20)
                return
            sock.settimeout(10)
            try:
                while not self.done.is_set():
                    data = sock.recv(65536)
                    if not data:
                        return
                    for body in peer.feed(data):
                        frame = unpack(body)
                        self.frames.append(frame)
                        if self.on_frame is not None:
                            self.on_frame(peer, frame)  # what it sends is sealed
            except OSError:
                return

    def close(self) -> None:
        self.done.set()
        self.release.set()
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedNode]]:
    made: list[ScriptedNode] = []

    def make(**kw: Any) -> ScriptedNode:
        node = ScriptedNode(**kw)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


async def until(pred: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_a_call_cancelled_before_its_request_was_written_is_never_sent(
    scripted: Callable[..., ScriptedNode]
) -> None:
    node = scripted()  # handshakes only when released: requests wait in the outbox

    async def main() -> None:
        pool = za.ConnectionPool(COOKIE)
        first = asyncio.create_task(za.stat(node.peer, 10, pool=pool))
        second = asyncio.create_task(za.query_local(node.peer, "k", 10, pool=pool))
        await until(lambda: pool._conns and len(pool._conns[node.address]._outbox) == 2)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        node.release.set()
        await until(lambda: node.frames)  # frames arrive in order: the first would be first
        assert [f[2] for f in node.frames] == ["query_local"]
        second.cancel()
        pool.close()
        await pool.wait_closed()

    run(main())


def test_a_node_that_stops_reading_fails_the_connection_after_the_send_timeout(
    scripted: Callable[..., ScriptedNode]
) -> None:
    node = scripted(read=False)
    node.release.set()

    async def main() -> None:
        replies: list[tuple[str, Any]] = []
        conn = Connection(node.address, COOKIE, "c1", lambda push: None, 5.0, send_timeout=0.5)
        big = b"x" * (1024 * 1024)
        for _ in range(24):  # 24 MiB: more than the socket buffers and HIGH_WATER
            conn.request("query_local", ["p1", big], lambda s, p: replies.append((s, p)))
        await until(lambda: not conn.alive, timeout=20)
        assert len(replies) == 24 and {s for s, _ in replies} == {"noproc"}
        assert "read nothing" in replies[0][1]["message"]
        await conn.wait_closed()

    run(main())


@pytest.mark.parametrize("garbage", [
    b"\xc1\xc1\xc1",  # not msgpack
    pack([9, 1]),  # an unknown frame kind
    pack("x"),  # not a list
], ids=["not-msgpack", "unknown-kind", "not-a-list"])
def test_a_bad_frame_fails_its_connection_only(scripted: Callable[..., ScriptedNode],
                                               garbage: bytes) -> None:
    def answer(sock: socket.socket, frame: Any) -> None:
        if frame[3] == ["p1", "bad"]:
            sock.sendall(HEADER.pack(len(garbage)) + garbage)
        elif frame[3] != ["p1", "slow"]:
            body = pack([3, frame[1], "ok", "fine"])
            sock.sendall(HEADER.pack(len(body)) + body)

    node = scripted(on_frame=answer)
    node.release.set()

    async def main() -> None:
        pool = za.ConnectionPool(COOKIE)
        assert await za.query_local(node.peer, "good", 5, pool=pool) == "fine"
        waiting = asyncio.create_task(za.query_local(node.peer, "slow", 5, pool=pool))
        await until(lambda: len(node.frames) == 2)
        conn = pool._conns[node.address]
        with pytest.raises(Unreachable, match="failed"):
            await za.query_local(node.peer, "bad", 5, pool=pool)
        assert not conn.alive
        with pytest.raises(Unreachable, match="failed"):
            await waiting  # the other call on that connection learns it at once
        pool.close()
        await pool.wait_closed()

    run(main())
