"""One PySyncObj 0.3.17 node process with a zraft-protocol front end (bench only).

Run by ``bench.pysyncobj_side`` as ``python -m bench.pysyncobj_node ...``. The node is a
replicated key-value dict (PySyncObj ``@replicated`` methods ``put`` and ``get``) and a TCP
front end that speaks exactly what a zraft node speaks to clients: the cookie handshake of
``zraft.transport.handshake``, then length-prefixed msgpack frames ``[2, req_id, op, args]``
answered by ``[3, req_id, status, payload]``. So one client engine
(``zraft.client.connection``) drives both systems with the same bytes on the wire.

Ops (args as zraft's): ``propose [name, packb([1, ["put", k, v]]), None]`` (replicated put),
``query [name, ["get", k], None, None]`` (a replicated get through the log: PySyncObj's only
linearizable read), ``query_local [name, ["get", k]]``, ``stat [name]`` (role, term, leader
peer id, commit, applied, rss).

Rules:
- Replies to replicated calls are produced by PySyncObj's commit callbacks (on its tick
  thread) and flushed once per tick, so they leave in batches as a real server's would.
- Durability ``mem``: no journal (PySyncObj's default). ``journal``: its mmap journal, never
  synced while running. ``msync``: the journal plus a group commit: the mapping is msync'ed
  after the leader appends a batch of commands (before its commit index can count itself) and
  before a follower acknowledges AppendEntries. This is not an upstream option: it makes
  PySyncObj durable like an fsync-before-ack Raft so the comparison is fair.
- The process exits by itself when its parent dies or after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
from typing import Any

import msgpack

from zraft.transport.frame_auth import FrameAuth, decoder_limit
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE, HEADER, FrameDecoder
from zraft.transport.handshake import server_handshake

ERRORS = {1: "queue_full", 2: "no_leader", 3: "discarded", 4: "not_leader",
          5: "leader_changed", 6: "denied", 7: "unknown_outcome"}
ROLES = {0: "follower", 1: "candidate", 2: "leader"}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return -1


def install_group_commit_msync() -> None:
    """Patch PySyncObj so the journal is msync'ed before anything depends on it."""
    from pysyncobj import SyncObj
    from pysyncobj.journal import FileJournal

    plain_add = FileJournal.add

    def add_marking_dirty(self: Any, *args: Any) -> None:
        plain_add(self, *args)
        self.bench_dirty = True

    FileJournal.add = add_marking_dirty

    def sync_if_dirty(obj: Any) -> None:
        journal = obj._SyncObj__raftLog
        if getattr(journal, "bench_dirty", False):
            journal.flush()  # mmap.flush() is msync(MS_SYNC) of the whole mapping
            journal.bench_dirty = False

    plain_check = SyncObj._checkCommandsToApply

    def check_then_sync(self: Any) -> None:
        plain_check(self)  # the leader appends the queued commands here
        sync_if_dirty(self)

    SyncObj._checkCommandsToApply = check_then_sync
    plain_ack = SyncObj._SyncObj__sendNextNodeIdx

    def sync_then_ack(self: Any, node: Any, *args: Any, **kwargs: Any) -> Any:
        sync_if_dirty(self)
        return plain_ack(self, node, *args, **kwargs)

    SyncObj._SyncObj__sendNextNodeIdx = sync_then_ack


class FrontConn:
    """One client connection: its socket, reply queue and send lock."""

    def __init__(self, sock: socket.socket, auth: FrameAuth) -> None:
        self.sock = sock
        self.auth = auth  # frames are authenticated as a zraft node's are (protocol 2)
        self.out: list[bytes] = []
        self.lock = threading.Lock()

    def queue(self, req_id: int, status: str, payload: Any) -> None:
        body = msgpack.packb([3, req_id, status, payload], use_bin_type=True)
        self.out.append(HEADER.pack(len(body)) + body)  # list.append is atomic

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        try:
            with self.lock:  # sealed in the order written
                n = len(out)
                data = self.auth.seal_frames(b"".join(out[:n]))
                del out[:n]
                self.sock.sendall(data)
        except OSError:
            pass


def build_node(args: argparse.Namespace) -> tuple[Any, Any]:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    if args.mode == "msync":
        install_group_commit_msync()

    class KV(SyncObj):
        def __init__(self, self_addr: str, partners: list[str], conf: Any) -> None:
            super().__init__(self_addr, partners, conf)
            self.data: dict[str, bytes] = {}

        @replicated
        def put(self, key: str, value: bytes) -> None:
            self.data[key] = value

        @replicated
        def get(self, key: str) -> bytes | None:
            return self.data.get(key)

    os.makedirs(args.dir, exist_ok=True)
    conf_kw: dict[str, Any] = {"appendEntriesUseBatch": bool(args.batch),
                               "dynamicMembershipChange": False}
    if args.mode in ("journal", "msync"):
        conf_kw["journalFile"] = os.path.join(args.dir, "journal.bin")
        conf_kw["fullDumpFile"] = os.path.join(args.dir, "dump.bin")
    return KV(args.self_addr, args.partners.split(","), SyncObjConf(**conf_kw)), KV


def serve(args: argparse.Namespace) -> None:
    obj, _ = build_node(args)
    cookie = open(args.cookie_file, "rb").read().strip()  # noqa: SIM115
    raft_addrs = args.raft_addrs.split(",")
    peer_ids = args.peer_ids.split(",")
    peer_of_raft = dict(zip(raft_addrs, peer_ids, strict=True))
    conns: list[FrontConn] = []
    conns_lock = threading.Lock()

    def flush_all() -> None:
        with conns_lock:
            current = list(conns)
        for c in current:
            c.flush()

    obj.addOnTickCallback(flush_all)

    def stat() -> dict[str, Any]:
        leader = obj._getLeader()
        return {"role": ROLES.get(obj._SyncObj__raftState, "?"), "term": obj._getTerm(),
                "leader": peer_of_raft.get(leader.address) if leader is not None else None,
                "commit": obj.raftCommitIndex, "applied": obj.raftLastApplied,
                "log_len": obj._getRaftLogSize(), "rss": _rss_bytes(), "pid": os.getpid()}

    def handle(conn: FrontConn, req_id: int, op: str, args_: list[Any]) -> None:
        def on_commit(result: Any, err: int) -> None:
            if err == 0:
                conn.queue(req_id, "ok", result)
            else:
                conn.queue(req_id, ERRORS.get(err, "error"), {"message": f"pysyncobj {err}"})

        if op == "propose":
            _tag, (_put, key, value) = msgpack.unpackb(args_[1], raw=False)
            obj.put(key, value, callback=on_commit)
            return
        if op == "query":
            obj.get(args_[1][1], callback=on_commit)
            return
        if op == "query_local":
            conn.queue(req_id, "ok", obj.data.get(args_[1][1]))
        elif op == "stat":
            conn.queue(req_id, "ok", stat())
        else:
            conn.queue(req_id, "bad_request", {"message": f"unknown op {op!r}"})
        conn.flush()

    def serve_conn(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            hello = server_handshake(sock, cookie, args.peer_ids.split(",")[args.index])
        except Exception:
            sock.close()
            return
        auth = FrameAuth.for_connection(hello.session_key, initiator=False)
        conn = FrontConn(sock, auth)
        with conns_lock:
            conns.append(conn)
        decoder = FrameDecoder(decoder_limit(DEFAULT_MAX_FRAME_SIZE, auth))
        try:
            while True:
                data = sock.recv(1 << 18)
                if not data:
                    break
                for body in auth.open_many(decoder.feed(data)):
                    _kind, req_id, op, args_ = msgpack.unpackb(body, raw=False)
                    handle(conn, req_id, op, args_)
        except (OSError, ValueError):
            pass
        finally:
            with conns_lock:
                if conn in conns:
                    conns.remove(conn)
            sock.close()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.client_port))
    listener.listen(128)

    def accept_loop() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_conn, args=(sock,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    parent = os.getppid()
    deadline = time.monotonic() + args.lifetime
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        if os.getppid() != parent or time.monotonic() > deadline:
            break
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=int, required=True, help="this node's position")
    p.add_argument("--raft-addrs", required=True, help="every node's PySyncObj address")
    p.add_argument("--peer-ids", required=True, help="every node's client-facing peer id")
    p.add_argument("--client-port", type=int, required=True)
    p.add_argument("--cookie-file", required=True)
    p.add_argument("--mode", choices=("mem", "journal", "msync"), default="msync")
    p.add_argument("--batch", type=int, default=1, help="appendEntriesUseBatch (0 or 1)")
    p.add_argument("--dir", required=True)
    p.add_argument("--lifetime", type=float, default=3600.0)
    args = p.parse_args(argv)
    addrs = args.raft_addrs.split(",")
    args.self_addr = addrs[args.index]
    args.partners = ",".join(a for i, a in enumerate(addrs) if i != args.index)
    serve(args)


if __name__ == "__main__":
    main()
