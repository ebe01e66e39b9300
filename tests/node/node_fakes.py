"""In-process stand-ins for a node's connections and a peer's context (no sockets)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.transport.helpers import wait_for
from zraft.actors.context import PeerContext
from zraft.actors.replies import encode_reply
from zraft.backends.dict import DictBackend
from zraft.core.config import CoreConfig
from zraft.node.events import EventLog
from zraft.node.sessions import SessionRegistry
from zraft.storage import DiskLogStorage, SnapshotStore
from zraft.transport import codec
from zraft.transport.framing import FrameDecoder


class Conn:
    """A client connection: records the replies sent to it (thread-safe)."""

    def __init__(self, name: str = "client", role: str = "client") -> None:
        self.peer_id = name
        self.role = role
        self.remote = "127.0.0.1:1"
        self.closed = False
        self._decoder = FrameDecoder()
        self._lock = threading.Lock()
        self.replies: dict[int, tuple[str, Any]] = {}

    def send(self, data: Any) -> bool:
        if not isinstance(data, bytes):
            data = codec.encode_frame(data)
        with self._lock:
            for body in self._decoder.feed(data):
                reply = codec.decode(body)
                if isinstance(reply, codec.ClientReply):
                    self.replies[reply.req_id] = (reply.status, reply.payload)
        return True

    def close(self) -> None:
        self.closed = True


def peer_context(tmp_path: Path, failures: list[str], name: str = "p") -> PeerContext:
    """A one-node peer on disk under ``tmp_path``; crashes are appended to ``failures``."""
    peer_id = f"{name}@127.0.0.1:7999"

    def reply(conn: Any, req_id: int, status: str, payload: Any) -> None:
        conn.send(encode_reply(codec.ClientReply(req_id, status, payload)))

    return PeerContext(
        peer_id=peer_id, peer_name=name, backend_name="dict", tick_ms=10, max_log_count=1000,
        open_storage=lambda discard_after=None: DiskLogStorage.open(
            tmp_path, peer_id, backend="dict", discard_after=discard_after),
        core_config=lambda: CoreConfig(election_ticks=4, heartbeat_ticks=1),
        make_backend=DictBackend,
        snapshot_store=lambda: SnapshotStore.for_peer(tmp_path, peer_id),
        send_raft=lambda msgs: None, reply=reply, sessions=SessionRegistry(), snapshots=None,
        events=EventLog("127.0.0.1:7999"),
        report_failure=lambda n, r: failures.append(f"{n}: {r}"),
        peer_removed=lambda n: None)


def wait(pred: Any, what: str, timeout: float = 10.0) -> Any:
    """``wait_for`` naming what it waited for when it gives up."""
    try:
        return wait_for(pred, timeout, interval=0.01)
    except AssertionError:
        raise TimeoutError(what) from None
