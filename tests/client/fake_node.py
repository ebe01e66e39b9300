"""A small in-process fake of zraft node processes, speaking the documented client protocol.

Each fake node listens on 127.0.0.1:<free port>, runs the real cookie handshake and the real
framing, and hosts one peer ``p<i>``. One shared ``FakeCluster`` state plays the replicated
state machine: a dict backend, session table (connect/ping/write/close, dedup cache,
temporary keys), one-shot watches and the membership. Tests steer it through ``leader``,
``script`` (a hook that may answer, delay or drop any request) and ``stop_node``.
It is deliberately simple: it is a test double for the client, not a Raft implementation.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zraft.transport.codec import pack, unpack
from zraft.transport.frame_auth import FrameAuth, decoder_limit
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE, HEADER, FrameDecoder
from zraft.transport.handshake import server_handshake
from zraft.transport.sentinels import NOT_FOUND

COOKIE = b"test-cookie"

Script = Callable[[str, str, list[Any]], Any]


@dataclass
class FakeSession:
    timeout_ms: int
    conn: FakeConn | None
    cache: dict[int, Any] = field(default_factory=dict)
    temp_keys: set[Any] = field(default_factory=set)
    pings: int = 0


class FakeConn:
    def __init__(self, node: FakeNode, sock: socket.socket, auth: FrameAuth) -> None:
        self.node = node
        self.sock = sock
        self.auth = auth  # frames are authenticated as a real node's are
        self.lock = threading.Lock()
        self.closed = False

    def send(self, obj: Any) -> None:
        body = pack(obj)
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(self.auth.seal(HEADER.pack(len(body)) + body))
            except OSError:
                self.closed = True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeNode:
    def __init__(self, cluster: FakeCluster, index: int) -> None:
        self.cluster = cluster
        self.name = f"p{index}"
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peer_id = f"{self.name}@127.0.0.1:{self.port}"
        self.conns: list[FakeConn] = []
        self.running = False

    def start(self) -> None:
        if self.running:
            return
        if self.listener.fileno() < 0:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.running = True
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in list(self.conns):
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self.running:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            hello = server_handshake(sock, self.cluster.cookie, self.peer_id, timeout=2.0)
        except Exception:
            sock.close()
            return
        auth = FrameAuth.for_connection(hello.session_key, initiator=False)
        conn = FakeConn(self, sock, auth)
        self.conns.append(conn)
        decoder = FrameDecoder(decoder_limit(DEFAULT_MAX_FRAME_SIZE, auth))
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for body in auth.open_many(decoder.feed(data)):
                    frame = unpack(body)
                    self.cluster.handle(self, conn, frame[1], frame[2], frame[3])
        except OSError:
            pass
        conn.closed = True


class FakeCluster:
    """Shared fake state for ``n`` fake nodes; peer ``p1`` leads at first."""

    def __init__(self, n: int = 3, cookie: bytes = COOKIE) -> None:
        self.cookie = cookie
        self.lock = threading.RLock()
        self.nodes = [FakeNode(self, i + 1) for i in range(n)]
        self.peers = [node.peer_id for node in self.nodes]
        self.leader: str | None = self.peers[0]
        self.leader_hint: dict[str, str | None] = {}  # per-peer override of the redirect
        self.conf_index = 1
        self.conf = sorted(self.peers)
        self.data: dict[Any, Any] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.watches: list[tuple[Any, FakeConn, str, str, Any]] = []
        self.applied: list[Any] = []  # every payload applied to the backend
        self.requests: list[tuple[str, str, Any]] = []
        self.existing: set[str] = set()
        self.script: Script | None = None
        self.connect_reply: Any = "ok"  # a real node answers {"election_timeout_ms": ...}
        for node in self.nodes:
            node.start()

    # -- test controls ---------------------------------------------------------------

    def peer(self, i: int) -> str:
        return self.peers[i - 1]

    def leader_id(self) -> str:
        """The current leader (the real-cluster fixture waits for one)."""
        assert self.leader is not None
        return self.leader

    def followers(self) -> list[str]:
        return [p for p in self.peers if p != self.leader]

    def node_of(self, peer: str) -> FakeNode:
        return next(n for n in self.nodes if n.peer_id == peer)

    def stop_node(self, peer: str) -> None:
        self.node_of(peer).stop()

    def start_node(self, peer: str) -> None:
        self.node_of(peer).start()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()

    def ops(self, op: str) -> list[tuple[str, str, Any]]:
        with self.lock:
            return [r for r in self.requests if r[1] == op]

    def change_leader(self, new: str | None, push: bool = True) -> None:
        """A new leader: old leader's watches fire leader_changed, sessions get [6, leader]."""
        with self.lock:
            self.leader = new
            watches, self.watches = self.watches, []
            sessions = list(self.sessions.items())
        for _key, conn, name, sid, ref in watches:
            conn.send([6, "watch", [name, sid, ref, "leader_changed"]])
        if push and new is not None:
            for sid, s in sessions:
                if s.conn is not None:
                    s.conn.send([6, "leader", [new.partition("@")[0], sid, new]])

    def expire(self, sid: str) -> None:
        with self.lock:
            self._expire(sid)

    # -- request handling ------------------------------------------------------------

    def handle(self, node: FakeNode, conn: FakeConn, req_id: int, op: str, args: Any) -> None:
        with self.lock:
            self.requests.append((node.peer_id, op, args))
            script = self.script
        action = script(node.peer_id, op, args) if script else None
        if action == "drop":
            return
        if action == "apply_drop":  # applied, but the reply is lost
            with self.lock, contextlib.suppress(_Err):
                self._do(node, conn, op, args)
            return
        if isinstance(action, tuple) and action[0] == "delay":
            def later() -> None:
                time.sleep(action[1])
                self._answer(node, conn, req_id, op, args, None)
            threading.Thread(target=later, daemon=True).start()
            return
        self._answer(node, conn, req_id, op, args, action)

    def _answer(self, node: FakeNode, conn: FakeConn, req_id: int, op: str, args: Any,
                action: Any) -> None:
        if isinstance(action, tuple) and action[0] == "reply":
            status, payload = action[1], action[2]
        else:
            with self.lock:
                try:
                    status, payload = self._do(node, conn, op, args)
                except _Err as err:
                    status, payload = err.code, err.payload
        conn.send([3, req_id, status, payload])

    def _not_leader(self, peer: str) -> _Err:
        hint = self.leader_hint.get(peer, self.leader)
        return _Err("not_leader", {"message": "not leader", "leader": hint})

    def _do(self, node: FakeNode, conn: FakeConn, op: str, args: Any) -> tuple[str, Any]:
        peer = node.peer_id
        leader_ops = {"propose", "query", "get_conf", "set_conf"}
        if op in leader_ops and peer != self.leader:
            raise self._not_leader(peer)
        if op == "propose":
            return "ok", self._apply(conn, node.name, unpack(args[1]))
        if op == "query":
            _, q, sid, watch_ref = args
            key = q[1] if isinstance(q, list) and q and q[0] == "get" else q
            if watch_ref is not None:
                if sid not in self.sessions:
                    raise _Err("session_expired", {"message": "no such session"})
                self.watches.append((key, conn, node.name, sid, watch_ref))
            return "ok", self.data.get(_key(key), NOT_FOUND)
        if op == "query_local":
            return "ok", self.data.get(_key(args[1]), NOT_FOUND)
        if op == "get_conf":
            return "ok", [self.conf_index, self.conf]
        if op == "set_conf":
            _, prev, new, _timeout = args
            if prev != self.conf_index:
                raise _Err("newer_exists", {"message": "newer config"})
            self.conf_index += 2
            self.conf = sorted(new)
            return "ok", [self.conf_index, self.conf]
        if op == "stat":
            return "ok", {"role": "leader" if peer == self.leader else "follower",
                          "leader": self.leader, "term": 2, "peer": peer,
                          "conf": self.conf, "sessions": len(self.sessions)}
        if op == "check_exists":
            if peer in self.existing:
                raise _Err("already_present", {"message": "exists"})
            return "ok", None
        if op in ("create_peer", "bootstrap"):
            self.existing.add(peer)
            return "ok", None
        raise _Err("bad_request", {"message": f"unknown op {op}"})

    def _apply(self, conn: FakeConn, name: str, cmd: list[Any]) -> Any:
        code = cmd[0]
        if code == 1:
            return self._write(cmd[1], None)
        sid = cmd[1]
        if code == 2:
            s = self.sessions.get(sid)
            if s is None:
                self.sessions[sid] = FakeSession(cmd[2], conn)
            else:
                s.conn = conn
            return self.connect_reply
        s = self.sessions.get(sid)
        if s is None:
            raise _Err("session_expired", {"message": "session expired"})
        s.conn = conn
        if code == 3:
            s.pings += 1
            _drop_upto(s.cache, cmd[2])
            return "ok"
        if code == 4:
            _, _, msg_id, acc_upto, temporary, payload = cmd
            if msg_id in s.cache:
                result = s.cache[msg_id]
            else:
                result = self._write(payload, sid if temporary else None)
                s.cache[msg_id] = result
            _drop_upto(s.cache, acc_upto)
            return result
        if code == 5:
            self._expire(sid)
            return "ok"
        raise _Err("bad_request", {"message": f"bad command {cmd!r}"})

    def _write(self, payload: Any, owner: str | None) -> Any:
        self.applied.append(payload)
        key, value = payload[0], payload[1]
        key = _key(key)
        self.data[key] = value
        if owner is not None:
            self.sessions[owner].temp_keys.add(key)
        self._fire(key, "data_changed")
        return "ok"

    def _fire(self, key: Any, reason: str) -> None:
        keep = []
        for w in self.watches:
            if w[0] == key:
                w[1].send([6, "watch", [w[2], w[3], w[4], reason]])
            else:
                keep.append(w)
        self.watches = keep

    def _expire(self, sid: str) -> None:
        s = self.sessions.pop(sid, None)
        if s is None:
            return
        for key in s.temp_keys:
            self.data.pop(key, None)
            self._fire(key, "data_changed")
        self.watches = [w for w in self.watches if w[3] != sid]
        if s.conn is not None:
            s.conn.send([6, "disconnected", ["p", sid]])


class _Err(Exception):
    def __init__(self, code: str, payload: Any) -> None:
        super().__init__(code)
        self.code = code
        self.payload = payload


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _drop_upto(cache: dict[int, Any], acc_upto: int) -> None:
    for msg_id in [m for m in cache if m <= acc_upto]:
        del cache[msg_id]

