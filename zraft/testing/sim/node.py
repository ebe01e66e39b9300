"""One simulated node: a RaftCore driven exactly as a real node drives it.

Rules (the Ready obligations of ``zraft.core.ready``):
- Storage work (hard state, snapshot, entries, compaction) is queued as a write job and only
  reaches the ``MemoryStorage`` when the scheduler completes that job, in order; a crash
  throws the queue away, so a restart sees only what was durable.
- ``messages`` go out at once; ``persisted_messages`` wait for their job (and every earlier
  one), then ``core.persisted(number)`` is called.
- ``committed`` entries are applied at once to a ``KeyValueMachine``; ReadStates are answered
  when ``applied >= index``. A local snapshot is taken every ``snapshot_every`` applied
  entries; its image is durable at once (a real node writes it before ``snapshot_taken``).
- The node knows nothing about scheduling or faults; ``SimCluster`` calls it.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from zraft.core.entries import CONFIG, DATA, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.core.messages import (
    ConfigChangeResult,
    InstallSnapshot,
    ReadFailed,
    ReadState,
    Removed,
    RoleChanged,
    SafetyAlarm,
    SnapshotNeeded,
    TransferResult,
)
from zraft.testing.linearizability import FAIL, OK, Operation
from zraft.testing.sim.invariants import InvariantViolation, ShadowLog
from zraft.testing.sim.kv import KeyValueMachine

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from zraft.core.config import CoreConfig
    from zraft.testing.sim.invariants import SafetyChecker
    from zraft.testing.sim.network import SimNetwork


class SimCluster(Protocol):
    """What a node uses of its cluster (``zraft.testing.sim.cluster.SimCluster``); a
    protocol, so that this module does not import the cluster (which imports it)."""

    rng: random.Random
    core_config: CoreConfig
    core_factory: Callable[..., Any]
    snapshot_every: int
    snapshot_failure_rate: float
    snapshot_failures: list[tuple[str, str]]
    network: SimNetwork
    checker: SafetyChecker
    leader_hint: str | None

    def epoch_of(self, node: SimNode) -> int: ...
    def complete(self, op: Operation, outcome: str, result: Any) -> None: ...
    def record_effect(self, op_id: int, result: Any) -> None: ...
    def config_result(self, peer: str, result: Any) -> None: ...
    def transfer_result(self, peer: str, result: Any) -> None: ...
    def node_removed(self, peer: str) -> None: ...

_MAX_IMAGES = 4


class WriteJob(NamedTuple):
    number: int
    hard_state: HardState | None
    snapshot: SnapshotMeta | None
    image: dict[str, int] | None
    entries: list[Entry]
    compact_to: int
    persisted_messages: list[Any]
    has_storage_work: bool


class SimNode:
    def __init__(self, peer_id: str, cluster: SimCluster, storage: Any) -> None:
        self.id = peer_id
        self.cluster = cluster
        self.storage = storage
        self.up = False
        self.removed = False
        self.core: Any = None
        self.writes: deque[WriteJob] = deque()
        self.durable_images: dict[int, dict[str, int]] = {}
        self.machine = KeyValueMachine()
        self.shadow = ShadowLog()
        self.term = 0
        self.role = "follower"
        self.last_snapshot = 0
        self.proposals: dict[int, tuple[int, Operation]] = {}
        self.reads_pending: dict[int, Operation] = {}
        self.reads_waiting: list[tuple[int, Operation]] = []
        self.incoming_image: dict[int, dict[str, int]] = {}
        self.incarnation = 0

    # -- life cycle -------------------------------------------------------------------------

    def start(self, rng: random.Random) -> None:
        """Build a core from what is durable (first start or restart)."""
        cluster = self.cluster
        self.core = cluster.core_factory(self.id, self.storage, cluster.core_config, rng)
        self.up = True
        self.incarnation += 1
        self.writes.clear()
        self.proposals = {}
        self.reads_pending = {}
        self.reads_waiting = []
        self.incoming_image = {}
        self.role = "follower"
        hard, meta = self.storage.initial_state()
        self.term = hard.term
        self.shadow = self._shadow_from_storage(meta)
        # The newest durable image covers the storage snapshot (it is at least that new).
        if self.durable_images:
            newest = max(self.durable_images)
            self.machine = KeyValueMachine(dict(self.durable_images[newest]), newest)
        else:
            self.machine = KeyValueMachine()
        self.last_snapshot = self.machine.applied
        cluster.checker.restarted(self.id, self.machine.applied)

    def _shadow_from_storage(self, meta: SnapshotMeta) -> ShadowLog:
        storage = self.storage
        first, last = storage.first_index(), storage.last_index()
        base = first - 1
        terms = [storage.term(i) for i in range(first, last + 1)]
        return ShadowLog(base, meta.term if base == meta.index else storage.term(base), terms)

    def latest_config(self) -> ClusterConfig:
        """The newest configuration in this node's log, durable or not (its core's when up,
        else its storage's)."""
        if self.up:
            return self.core.log.config()[1]
        storage = self.storage
        first, last = storage.first_index(), storage.last_index()
        for entry in reversed(storage.entries(first, last + 1, 1 << 62) if last >= first
                              else []):
            if entry.type == CONFIG:
                return entry.data
        return storage.snapshot.config

    def crash(self) -> None:
        self.up = False
        self.core = None
        self.writes.clear()
        self.proposals = {}
        self.reads_pending = {}
        self.reads_waiting = []
        self.incoming_image = {}

    # -- the Ready loop ---------------------------------------------------------------------

    def drain(self) -> None:
        core = self.core
        checker = self.cluster.checker
        while self.up and core.has_ready():
            ready = core.ready()
            self._handle(ready)
            if not self.up:
                return
            core.advance(ready)
            checker.commit_observed(self.id, core.commit)
            self._maybe_snapshot()

    def _handle(self, ready: Any) -> None:
        cluster = self.cluster
        checker = cluster.checker
        if ready.hard_state is not None:
            self.term = ready.hard_state.term
        image = None
        if ready.snapshot is not None:
            meta = ready.snapshot
            image = self.incoming_image.pop(meta.index, None)
            self.shadow.install_snapshot(meta.index, meta.term)
            if meta.index > self.machine.applied:
                if image is None:
                    raise AssertionError(f"{self.id}: snapshot {meta.index} without an image")
                self.machine = KeyValueMachine(dict(image), meta.index)
                checker.reset_applied(self.id, meta.index)
                self.last_snapshot = meta.index
                self._answer_reads()
        if ready.entries:
            self.shadow.append(ready.entries)
            checker.appended(self.id, ready.entries, self.shadow)
        must = ready.must_persist or ready.compact_to
        if must or ready.persisted_messages:
            job = WriteJob(
                ready.number,
                ready.hard_state,
                ready.snapshot,
                image,
                ready.entries,
                ready.compact_to,
                ready.persisted_messages,
                bool(must),
            )
            if must or self.writes:
                self.writes.append(job)
            else:
                self._finish_job(job)
        send = cluster.network.send
        for msg in ready.messages:
            send(self.id, msg.dst, msg)
        for entry in ready.committed:
            self._apply(entry)
        for read in ready.reads:
            self._read_result(read)
        for event in ready.events:
            self._event(event)

    def _apply(self, entry: Entry) -> None:
        machine = self.machine
        index = entry.index
        if index <= machine.applied:
            return  # already in the restored image
        self.cluster.checker.applied(self.id, self.term, entry)
        if entry.type == DATA:
            op_id, result = machine.apply(index, entry.data)
            self.cluster.record_effect(op_id, result)
        else:
            machine.skip(index)
            result = None
        pending = self.proposals.pop(index, None)
        if pending is not None:
            term, op = pending
            if term == entry.term:
                self.cluster.complete(op, OK, result)
            else:
                self.cluster.complete(op, FAIL, None)  # another entry won this index
        if self.reads_waiting:
            self._answer_reads()

    def _answer_reads(self) -> None:
        applied = self.machine.applied
        still = []
        for index, op in self.reads_waiting:
            if applied >= index:
                self.cluster.complete(op, OK, self.machine.data.get(op.key))
            else:
                still.append((index, op))
        self.reads_waiting = still

    def _read_result(self, read: Any) -> None:
        op = self.reads_pending.pop(read.ctx, None)
        if op is None:
            return
        if isinstance(read, ReadState):
            self.reads_waiting.append((read.index, op))
            self._answer_reads()
        else:
            self.cluster.complete(op, FAIL, None)

    def _event(self, event: Any) -> None:
        cluster = self.cluster
        if isinstance(event, RoleChanged):
            self.role = event.role
            if event.term > self.term:
                self.term = event.term
            if event.role == "leader":
                cluster.checker.leader_elected(self.id, event.term, self.shadow)
                cluster.leader_hint = self.id
        elif isinstance(event, ReadFailed):
            self._read_result(event)
        elif isinstance(event, SnapshotNeeded):
            self._send_snapshot(event)
        elif isinstance(event, ConfigChangeResult):
            cluster.config_result(self.id, event)
        elif isinstance(event, TransferResult):
            cluster.transfer_result(self.id, event)
        elif isinstance(event, Removed):
            cluster.node_removed(self.id)
        elif isinstance(event, SafetyAlarm):
            raise InvariantViolation(
                f"safety alarm at {self.id}: {event.kind} from {event.src} in term "
                f"{event.term}: {event.detail}")

    def _send_snapshot(self, event: SnapshotNeeded) -> None:
        meta = event.meta
        image = self.durable_images.get(meta.index)
        cluster = self.cluster
        if image is None or cluster.rng.random() < cluster.snapshot_failure_rate:
            cluster.snapshot_failures.append((self.id, event.peer))
            return
        msg = InstallSnapshot(self.term, self.id, event.peer, meta, cluster.epoch_of(self),
                              cluster.core_config.cluster_id)
        cluster.network.send(self.id, event.peer, msg, image)

    def _maybe_snapshot(self) -> None:
        if self.machine.applied - self.last_snapshot >= self.cluster.snapshot_every:
            self.take_snapshot()

    def take_snapshot(self) -> bool:
        """Snapshot the state machine at its applied index and let the core compact."""
        applied = self.machine.applied
        if not self.up or applied <= self.last_snapshot:
            return False
        self.last_snapshot = applied
        self._keep_image(applied, self.machine.image())
        self.core.snapshot_taken(applied)
        return True

    def _keep_image(self, index: int, image: dict[str, int]) -> None:
        images = self.durable_images
        images[index] = image
        if len(images) > _MAX_IMAGES:
            del images[min(images)]

    # -- storage ----------------------------------------------------------------------------

    def complete_write(self) -> None:
        """The oldest queued write is now durable."""
        self._finish_job(self.writes.popleft())
        # Jobs without storage work behind it are durable as soon as it is.
        while self.writes and not self.writes[0].has_storage_work:
            self._finish_job(self.writes.popleft())
        self.drain()

    def _finish_job(self, job: WriteJob) -> None:
        storage = self.storage
        if job.hard_state is not None:
            storage.set_hard_state(job.hard_state)
        if job.snapshot is not None:
            storage.apply_snapshot(job.snapshot)
            if job.image is not None:
                self._keep_image(job.snapshot.index, job.image)
        if job.entries:
            storage.append(job.entries)
        if job.compact_to:
            storage.compact(job.compact_to)
        send = self.cluster.network.send
        for msg in job.persisted_messages:
            send(self.id, msg.dst, msg)
        self.core.persisted(job.number)

    # -- inbound ----------------------------------------------------------------------------

    def receive(self, msg: Any, payload: Any) -> None:
        if payload is not None:
            self.incoming_image[msg.meta.index] = payload
        self.core.step(msg)
        self.drain()
