"""Messages between a node's actors. Each carries a batch where it can: no hop per entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Probe(NamedTuple):
    """Asked (``ref.ask``) by the metrics scrape: the peer answers ``probe()``, a few
    figures of its core (zraft/node/metrics.py)."""


class Tick(NamedTuple):
    now_ms: int


class NodeSignal(NamedTuple):
    """A node-level failure signal (``zraft.node.liveness``): ``node`` is ``unreachable``
    or ``restarted``; the peer tells its core about its group's members on that node."""

    kind: str
    node: str


class RaftInbound(NamedTuple):
    """Raft messages for this peer decoded from one socket read."""

    messages: list[Any]


class ClientRequest(NamedTuple):
    conn: Any
    req_id: int
    op: str
    args: list[Any]


class ClientBatch(NamedTuple):
    """Client requests for this peer decoded from one socket read."""

    requests: list[ClientRequest]


class Persisted(NamedTuple):
    """The log writer made every op up to Ready ``number`` durable."""

    number: int
    last_index: int


class WriteOps(NamedTuple):
    """Storage work of one or more Ready batches, applied in order then fsynced once."""

    number: int
    ops: list[tuple[str, Any]]
    # Raft messages that may leave once this write is durable (votes, append replies): the
    # writer sends them itself right after the fsync, a thread hop before the peer could.
    after: Sequence[Any] = ()


class Apply(NamedTuple):
    """Committed entries to apply, with the client waiters of those indexes."""

    entries: list[Any]
    waiters: dict[int, tuple[int, Any, int]]


class Read(NamedTuple):
    """Reads confirmed by a quorum: answer once applied >= index."""

    index: int
    requests: list[ClientRequest]


class SetLeader(NamedTuple):
    is_leader: bool
    leader: str | None


class SnapshotTaken(NamedTuple):
    index: int


class SnapshotArrived(NamedTuple):
    """A snapshot from leader ``src`` (term ``term``) is on disk and verified."""

    term: int
    src: str
    meta: Any
    path: str
    cluster: str = ""  # the sending leader's cluster id (from its offer)


class InstallSnapshot(NamedTuple):
    """State machine: replace your state with the snapshot at ``path``."""

    meta: Any
    path: str


class SnapshotSendDone(NamedTuple):
    peer: str
    ok: bool
    reason: str


class ProposeInternal(NamedTuple):
    """A command the node itself proposes (session expiry checks)."""

    commands: list[bytes]


class ChildFailed(NamedTuple):
    name: str
    reason: str


class StorageFailed(NamedTuple):
    """Log writer -> peer: a write or fsync failed (``reason``); ``durable`` is the last
    index that was durable before it. The writer takes no more writes."""

    reason: str
    durable: int


class BackendFailed(NamedTuple):
    """State machine -> peer: the backend cannot go on (its ``init`` or ``install_snapshot``
    raised); ``reason`` is one line naming the call and the exception."""

    reason: str
