"""One replica: the real ``StateMachine`` over the probed backend, driven along a scenario
the way a node drives it, with its own schedule of snapshots, crashes and installs.

What a node does to its state machine, and so what this does (each replica from its own
seeded schedule, so the three replicas take different paths through the same log):
- applies committed entries in batches of random sizes;
- takes snapshots (``take_snapshot`` -> the job writes -> ``snapshot_done``), sometimes
  fails one (``snapshot_failed``), and sometimes lets an *async* job write only after more
  entries were applied, as its writer thread may;
- crashes: the state is lost; a fresh backend instance restores the newest completed
  snapshot (or starts empty) and the log after it is applied again;
- installs a snapshot of replica n1 ("from the leader") on the live machine, skipping the
  entries it covers (replicas n2 and n3 only);
- answers its share of the scenario's queries.

What it records (a ``Trace``), keyed by ``(entry index, phase, sub)`` so that the replicas
can be compared in log order: each entry's backend calls and reply (phase 0, replays too),
each query's answer (phase 1), and at every checkpoint the state: the digest of a snapshot
of the machine (session table and the backend's files) and ``state_of(backend)`` if given
(phase 2). And what it finds by itself (``Finding``): a snapshot that does not restore into
a fresh instance, or restores into a different state (re-snapshot bytes, ``state_of``,
answers to the scenario's queries); two snapshots of one state that differ; an async job
that wrote live state; an answer that changed after it was given (a live reference into
the state); a snapshot that is a pickle; plus what the probe finds at each call.
"""

from __future__ import annotations

import hashlib
import io
import pickletools
import random
import shutil
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from zraft.core.entries import Entry
from zraft.fsm.codec import packb, unpackb
from zraft.fsm.machine import StateMachine
from zraft.fsm.snapshot import DATA_DIR, SnapshotImage
from zraft.saferepr import safe_repr
from zraft.testing.check_backend.env import Surroundings
from zraft.testing.check_backend.probe import Call, Finding, Probe, pack
from zraft.testing.check_backend.scenario import Scenario

# phases of a key (entry index, phase, sub), in the order things happen at one index
ENTRY, QUERY, STATE, SELF = 0, 1, 2, 3

# finding kinds
ROUNDTRIP = "snapshot_roundtrip"
RESTORE_FAILED = "restore_failed"
SNAPSHOT_FAILED = "snapshot_failed"
UNSTABLE = "snapshot_unstable"
ASYNC_LIVE = "async_snapshot_live"
LIVE_REFERENCE = "live_reference"
PICKLE = "pickle_snapshot"
STOPPED = "replica_stopped"

PREVIEW_BYTES = 2048  # of each snapshot file, kept for a report


class Schedule(NamedTuple):
    """How often a replica does each thing, per batch (the defaults are the checker's)."""

    snapshot: float = 0.08
    delayed: float = 0.05  # a snapshot whose async job writes after more applies
    failed: float = 0.02
    crash: float = 0.03
    install: float = 0.05
    max_crashes: int = 4
    max_installs: int = 4
    checkpoint_every: int = 16


class Observation(NamedTuple):
    key: tuple[int, int, int]
    detail: bytes  # msgpack: what every replica must agree on
    info: Any  # for a report only: what the call read, file previews, state_of


class Trace(NamedTuple):
    replica: int
    observations: list[Observation]
    findings: list[Finding]
    snapshots: list[tuple[int, str]]  # completed snapshots (index, directory)
    stats: dict[str, int]
    events: list[tuple[int, str]]  # crashes and installs: (after entry, what happened)

    def to_wire(self) -> list[Any]:
        return [self.replica, [list(o) for o in self.observations],
                [list(f) for f in self.findings], [list(s) for s in self.snapshots],
                self.stats, [list(e) for e in self.events]]

    @staticmethod
    def from_wire(raw: Any) -> Trace:
        replica, obs, findings, snaps, stats, events = raw
        return Trace(replica, [Observation(tuple(o[0]), o[1], o[2]) for o in obs],
                     [Finding(tuple(f[0]), f[1], f[2]) for f in findings],
                     [(s[0], s[1]) for s in snaps], stats, [(e[0], e[1]) for e in events])


class _Pending(NamedTuple):
    image: SnapshotImage
    directory: Path
    reference: dict[str, bytes]  # files of a snapshot taken at the same index
    due: int


def fingerprint(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path (a snapshot is a handful of files)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def digest(files: dict[str, bytes]) -> list[list[Any]]:
    return [[name, len(data), hashlib.sha256(data).hexdigest()]
            for name, data in sorted(files.items())]


def file_difference(a: dict[str, bytes], b: dict[str, bytes]) -> str:
    """Where two snapshots first differ, in one line."""
    if sorted(a) != sorted(b):
        return f"files {sorted(a)} vs {sorted(b)}"
    for name in sorted(a):
        x, y = a[name], b[name]
        if x != y:
            at = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]),
                      min(len(x), len(y)))
            return (f"{name}: {len(x)} vs {len(y)} bytes, first difference at byte {at}: "
                    f"{x[at:at + 16].hex()} vs {y[at:at + 16].hex()}")
    return "no difference"


_PICKLE_SCAN_BYTES = 4 << 20  # of each snapshot file
_PICKLE_CANDIDATES = 256  # offsets tried per file, at most
_PICKLE_MIN_BYTES = 16  # pickle.dumps of anything but a tiny scalar is longer


def pickle_at(data: bytes) -> int | None:
    """The offset of a pickle (protocol 2 or later) in ``data``, whole or embedded (e.g.
    ``pickle.dumps`` bytes stored in a msgpack bin), else None. Found by parsing the opcodes
    (``pickletools``, which never runs them) from each PROTO opcode up to a STOP."""
    data = data[:_PICKLE_SCAN_BYTES]
    start, tried = data.find(b"\x80"), 0
    while start != -1 and tried < _PICKLE_CANDIDATES:
        if start + 1 < len(data) and 2 <= data[start + 1] <= 5:
            tried += 1
            if _whole_pickle(data[start:]):
                return start
        start = data.find(b"\x80", start + 1)
    return None


def _whole_pickle(data: bytes) -> bool:
    """``data`` starts with a pickle as ``pickle.dumps`` writes one: one PROTO, first; (from
    protocol 4) a FRAME next, and frames that fit; one object built (``pickletools.dis``
    checks the stack and memo) up to STOP."""
    try:
        for n, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data))):
            if (op.name == "PROTO") != (pos == 0):
                return False
            if n == 1 and data[1] >= 4 and op.name != "FRAME":
                return False  # protocol 4 and later frame everything but tiny pickles
            if op.name == "FRAME" and arg > len(data) - pos - 9:
                return False
            if op.name == "STOP":
                if pos < _PICKLE_MIN_BYTES - 1:
                    return False  # a bare small int or so: nothing worth a pickle
                break
        pickletools.dis(io.BytesIO(data), out=io.StringIO())
    except Exception:
        return False
    return True


class ReplicaRun:
    def __init__(self, scenario: Scenario, number: int, peer_id: str, seed: int,
                 factory: Callable[[], Any], env: Surroundings,
                 state_of: Callable[[Any], Any] | None, workdir: Path,
                 foreign: list[tuple[int, str]] | None = None,
                 schedule: Schedule | None = None) -> None:
        self.scenario = scenario
        self.number = number
        self.peer_id = peer_id
        self.rng = random.Random(seed * 31 + number)
        self.factory = factory
        self.env = env
        self.state_of = state_of
        self.workdir = workdir
        self.foreign = sorted(foreign or [])
        self.schedule = schedule or Schedule()
        self.observations: list[Observation] = []
        self.findings: list[Finding] = []
        self.durable: list[tuple[int, Path]] = []
        self.events: list[tuple[int, str]] = []
        self.pending: _Pending | None = None
        self.stats = dict.fromkeys(("batches", "applied", "snapshots", "restores", "crashes",
                                    "installs", "queries", "checkpoints"), 0)
        self._dirs = 0
        self._at = 0  # the entry index the run is at (for a finding that stops it)
        self._pickle_checked = False
        last = len(scenario.entries)
        every = self.schedule.checkpoint_every
        self.checkpoints = {*range(every, last + 1, every), last}
        self.query_at: dict[int, list[Any]] = {}
        for q in scenario.queries:
            if number == 0 or q.second == number:
                self.query_at.setdefault(q.after, []).append(q)
        self.machine: Any = None
        self.probe: Any = None

    # ------------------------------------------------------------------ helpers

    def _new_machine(self) -> tuple[StateMachine, Probe]:
        with self.env.active():  # a constructor that reads the clock sees the fake one
            backend = self.factory()
        probe = Probe(backend, self.env, self.findings)
        return StateMachine(probe, self.peer_id), probe

    def _find(self, key: tuple[int, int, int], kind: str, message: str) -> None:
        self.findings.append(Finding(key, kind, message))

    def _new_dir(self, label: str) -> Path:
        self._dirs += 1
        path = self.workdir / f"{label}-{self._dirs}"
        path.mkdir(parents=True)
        return path

    # ------------------------------------------------------------------ the run

    def run(self) -> Trace:
        try:
            with self.env.world():
                self.machine, self.probe = self._new_machine()
                self._run()
        except Exception as exc:
            key = (self._at, SELF, 9)
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
            self._find(key, STOPPED, f"the replica stopped: {type(exc).__name__}: "
                       f"{safe_repr(str(exc))}\n{''.join(tb)[-1500:]}")
        return Trace(self.number, self.observations, self.findings,
                     [(i, str(p)) for i, p in self.durable], self.stats, self.events)

    def _run(self) -> None:
        last = len(self.scenario.entries)
        while self.machine.applied_index < last:
            start = self.machine.applied_index + 1
            end = min(last, start + self.rng.randint(0, 7), self._next_stop(start))
            self._at = start
            self._apply(start, end)
            self._at = end
            if self.pending is not None and end >= self.pending.due:
                self._finish_pending()
            for q in self.query_at.get(end, ()):
                self._query(q)
            if end in self.checkpoints:
                self._checkpoint(end)
            self._maybe_act(end)
        if self.pending is not None:
            self._finish_pending()

    def _next_stop(self, start: int) -> int:
        stops = [i for i in (*self.checkpoints, *self.query_at) if i >= start]
        if self.pending is not None and self.pending.due >= start:
            stops.append(self.pending.due)
        return min(stops, default=len(self.scenario.entries))

    def _apply(self, start: int, end: int) -> None:
        entries = self.scenario.entries[start - 1:end]
        probe = self.probe

        def tagged() -> Iterator[Entry]:
            for entry in entries:
                probe.tag = (entry.index, ENTRY, 0)
                probe.calls.pop(entry.index, None)
                yield entry

        batch = self.machine.apply(tagged())
        self.stats["batches"] += 1
        self.stats["applied"] += len(entries)
        replies = {r.index: r for r in batch.replies}
        for entry in entries:
            calls = probe.calls.pop(entry.index, [])
            reply = replies.get(entry.index)
            detail: list[Any] = [[c.method, c.detail] for c in calls]
            if reply is not None:
                value = pack(reply.result)
                detail.append(["reply", reply.error, value])
                self._check_live_reference(entry, calls, value)
            reads = [r for c in calls for r in c.reads]
            self.observations.append(Observation((entry.index, ENTRY, 0), packb(detail),
                                                 [reads, None, None]))

    def _check_live_reference(self, entry: Entry, calls: list[Call],
                              value: bytes | None) -> None:
        """The result as the client gets it (after the batch) must be the one the backend
        gave: an answer that is a live part of the state changes with later writes."""
        writes = [c for c in calls if c.method in ("apply", "apply_in_session")]
        if not writes:
            return
        given = unpackb(writes[-1].detail)
        if given[0] in ("raised", "raised BadCommand") or given[0] is None:
            return  # an exception, or a result msgpack cannot encode (found already)
        if given[0] != value:
            self._find((entry.index, ENTRY, 0), LIVE_REFERENCE,
                       f"the result of entry {entry.index} changed after it was returned, "
                       f"while later entries of the same batch were applied: "
                       f"{safe_repr(_maybe_unpack(given[0]))} became "
                       f"{safe_repr(_maybe_unpack(value))}. Return a copy, not a live part "
                       "of the state (a node sends replies after the whole batch)")

    def _query(self, q: Any) -> None:
        reply = self.machine.query(q.query)
        self.stats["queries"] += 1
        detail = packb([self.probe.last_query, reply.error])
        self.observations.append(Observation((q.after, QUERY, q.qid), detail,
                                             [list(self.probe.last_query_reads), None, None]))

    # ------------------------------------------------------------------ snapshots

    def _snapshot(self, key: tuple[int, int, int], *, write: bool = True
                  ) -> tuple[SnapshotImage, Path] | None:
        """Take a snapshot (and write it unless told not to); None if it failed."""
        try:
            image = self.machine.take_snapshot()
        except Exception as exc:
            self._find(key, SNAPSHOT_FAILED, f"snapshot() raised {type(exc).__name__}: "
                       f"{safe_repr(str(exc))}")
            return None
        directory = self._new_dir(f"r{self.number}-snap-{image.index}")
        if write and not self._write(key, image, directory):
            return None
        return image, directory

    def _write(self, key: tuple[int, int, int], image: SnapshotImage, directory: Path) -> bool:
        try:
            image.write(directory)
        except Exception as exc:
            self._find(key, SNAPSHOT_FAILED, f"the snapshot job's write raised "
                       f"{type(exc).__name__}: {safe_repr(str(exc))}")
            self.machine.snapshot_failed(image, f"{type(exc).__name__}")
            return False
        self.machine.snapshot_done(image, 0)
        self.durable.append((image.index, directory))
        self.stats["snapshots"] += 1
        self._check_pickle(key, directory)
        return True

    def _check_pickle(self, key: tuple[int, int, int], directory: Path) -> None:
        """A snapshot must be msgpack-clean: no pickle in it, whole or embedded."""
        if self._pickle_checked:
            return
        for name, data in fingerprint(directory / DATA_DIR).items():
            at = pickle_at(data)
            if at is not None:
                self._pickle_checked = True
                where = "is a pickle" if at == 0 else f"holds a pickle at byte {at}"
                self._find(key, PICKLE, f"the snapshot file data/{name} {where}: a node "
                           "installing a snapshot from a peer would run whatever it says; "
                           "write msgpack (zraft.fsm.codec.packb) instead")
                return

    def _checkpoint(self, index: int) -> None:
        if self.pending is not None:
            self._finish_pending()
        key = (index, STATE, 0)
        taken = self._snapshot((index, SELF, 0))
        if taken is None:
            return
        self.stats["checkpoints"] += 1
        _, directory = taken
        files = fingerprint(directory)
        state = self._state_of((index, SELF, 1), self.probe.backend)
        previews = {name: data[:PREVIEW_BYTES] for name, data in files.items()}
        self.observations.append(Observation(key, packb([digest(self._compared(files)),
                                                         state]), [[], previews, state]))
        self._roundtrip(index, directory, files, state)

    def _compared(self, files: dict[str, bytes]) -> dict[str, bytes]:
        """The snapshot files whose bytes must match: all of them, or with ``state_of``
        (which then describes the backend's state) only the machine's own (sessions), so a
        backend may write a state in a non-canonical order (a set as it iterates)."""
        if self.state_of is None:
            return files
        return {name: data for name, data in files.items()
                if not name.startswith(DATA_DIR + "/")}

    def _state_of(self, key: tuple[int, int, int], backend: Any) -> bytes | None:
        if self.state_of is None:
            return None
        value = self.state_of(backend)
        packed = pack(value)
        if packed is None:
            self._find(key, ROUNDTRIP, f"state_of returned a value msgpack cannot encode: "
                       f"{safe_repr(value)}")
        return packed

    def _roundtrip(self, index: int, directory: Path, files: dict[str, bytes],
                   state: bytes | None) -> None:
        """restore(snapshot(s)) must be s: a fresh instance restored from the snapshot
        snapshots to the same bytes, has the same ``state_of`` and answers alike."""
        key = (index, SELF, 2)
        machine, probe = self._new_machine()
        try:
            machine.restore(directory)
        except Exception as exc:
            self._find(key, RESTORE_FAILED, f"the snapshot taken at entry {index} cannot be "
                       f"restored into a fresh instance: {type(exc).__name__}: "
                       f"{safe_repr(str(exc))}")
            return
        self.stats["restores"] += 1
        again = self._new_dir(f"r{self.number}-resnap-{index}")
        try:
            image = machine.take_snapshot()
            image.write(again)
            machine.snapshot_done(image, 0)
        except Exception as exc:
            self._find(key, SNAPSHOT_FAILED, f"snapshotting a restored instance raised "
                       f"{type(exc).__name__}: {safe_repr(str(exc))}")
            return
        files2 = fingerprint(again)
        shutil.rmtree(again, ignore_errors=True)
        if self._compared(files2) != self._compared(files):
            self._find(key, ROUNDTRIP, f"restore(snapshot(s)) != s: the state restored from "
                       f"the snapshot at entry {index} snapshots differently "
                       f"({file_difference(self._compared(files), self._compared(files2))})"
                       ": the snapshot loses or changes "
                       "something (or is not canonical)")
            return
        state2 = self._state_of(key, probe.backend)
        if state2 != state:
            self._find(key, ROUNDTRIP, f"restore(snapshot(s)) != s: state_of after restoring "
                       f"the snapshot at entry {index} is {safe_repr(_maybe_unpack(state2))}, "
                       f"before it was {safe_repr(_maybe_unpack(state))}")
            return
        for query in self.scenario.probe_queries:
            here = self.machine.query(query)
            mine = self.probe.last_query, here.error
            there = machine.query(query)
            theirs = probe.last_query, there.error
            if mine != theirs:
                self._find(key, ROUNDTRIP, f"restore(snapshot(s)) != s: after restoring the "
                           f"snapshot at entry {index}, query {safe_repr(query)} answers "
                           f"{_answer(theirs)} instead of {_answer(mine)}: the snapshot loses "
                           "or changes something, or the restored state iterates in another "
                           "order (e.g. a dict rebuilt sorted)")
                return

    def _finish_pending(self) -> None:
        pending, self.pending = self.pending, None
        assert pending is not None
        index = pending.image.index
        key = (index, SELF, 3)
        if not self._write(key, pending.image, pending.directory):
            return
        files = fingerprint(pending.directory / "data")
        if files != pending.reference:
            applied = self.machine.applied_index
            difference = file_difference(pending.reference, files)
            if pending.image.is_async:
                self._find(key, ASYNC_LIVE, f"the async snapshot job taken at entry {index} "
                           f"and written after entry {applied} wrote other files than a "
                           f"snapshot of the same state ({difference}"
                           "): its write() reads live state; snapshot() must hand it an "
                           "immutable view (a copy, or copy-on-write)")
            else:
                self._find(key, UNSTABLE, f"two snapshots of the state at entry {index} "
                           f"differ ({difference}): the "
                           "snapshot depends on time, randomness or iteration order")

    # ------------------------------------------------------------------ faults

    def _maybe_act(self, index: int) -> None:
        rng, sched = self.rng, self.schedule
        r = rng.random()
        if r < sched.snapshot:
            self._plain_snapshot(index)
        elif (r := r - sched.snapshot) < sched.delayed:
            self._delayed_snapshot(index)
        elif (r := r - sched.delayed) < sched.failed:
            self._failed_snapshot(index)
        elif (r := r - sched.failed) < sched.crash:
            self._crash(index)
        elif r - sched.crash < sched.install:
            self._install(index)

    def _plain_snapshot(self, index: int) -> None:
        if self.pending is not None:
            return
        taken = self._snapshot((index, SELF, 4))
        if taken is not None:
            self._roundtrip(index, taken[1], fingerprint(taken[1]), self._state_of(
                (index, SELF, 1), self.probe.backend))

    def _delayed_snapshot(self, index: int) -> None:
        if self.pending is not None:
            return
        reference = self._snapshot((index, SELF, 4))
        if reference is None:
            return
        taken = self._snapshot((index, SELF, 4), write=False)
        if taken is None:
            return
        image, directory = taken
        due = index if not image.is_async else index + self.rng.randint(1, 6)
        self.pending = _Pending(image, directory, fingerprint(reference[1] / "data"), due)
        if due == index:
            self._finish_pending()

    def _failed_snapshot(self, index: int) -> None:
        if self.pending is not None:
            return
        taken = self._snapshot((index, SELF, 4), write=False)
        if taken is not None:
            self.machine.snapshot_failed(taken[0], "checker: the disk is full")
            shutil.rmtree(taken[1], ignore_errors=True)

    def _crash(self, index: int) -> None:
        if self.stats["crashes"] >= self.schedule.max_crashes:
            return
        self.stats["crashes"] += 1
        self.pending = None  # its writer died with the process
        self.machine, self.probe = self._new_machine()
        if not self.durable:
            self.events.append((index, f"crashed after entry {index} and replayed the log "
                                       "from the start"))
            return
        newest, directory = max(self.durable)
        self.events.append((index, f"crashed after entry {index}, restarted from its snapshot "
                                   f"of entry {newest} and replayed the log after it"))
        self._restore(index, newest, directory, "its own snapshot after a crash")

    def _install(self, index: int) -> None:
        if self.number == 0 or self.stats["installs"] >= self.schedule.max_installs:
            return
        ahead = [(i, d) for i, d in self.foreign if i > index]
        if not ahead:
            return
        newest, source = ahead[min(len(ahead) - 1, self.rng.randint(0, 2))]
        directory = self._new_dir(f"r{self.number}-install-{newest}")
        shutil.copytree(source, directory, dirs_exist_ok=True)
        self.stats["installs"] += 1
        self.events.append((index, f"installed n1's snapshot of entry {newest} after entry "
                                   f"{index}"))
        self._restore(index, newest, directory, "a snapshot from n1 (the leader)")

    def _restore(self, index: int, snapshot_index: int, directory: Path, what: str) -> None:
        try:
            self.machine.restore(directory)
        except Exception as exc:
            # the run goes on: a crashed replica replays the whole log; an install leaves
            # whatever it left, and the finding (the first at this point) says why
            self._find((index, SELF, 5), RESTORE_FAILED, f"restoring {what} (entry "
                       f"{snapshot_index}) failed: {type(exc).__name__}: {safe_repr(str(exc))}")
            return
        self.stats["restores"] += 1


def _maybe_unpack(data: bytes | None) -> Any:
    if data is None:
        return "<not msgpack-encodable>"
    try:
        return unpackb(data)
    except Exception:
        return data


def _answer(pair: tuple[bytes | None, str | None]) -> str:
    detail, error = pair
    if error is not None:
        return f"error {error!r}"
    value = _maybe_unpack(detail)
    return safe_repr(value[0] if isinstance(value, list) and value else value)


__all__ = ["ENTRY", "QUERY", "SELF", "STATE", "Observation", "ReplicaRun", "Schedule",
           "Trace", "digest", "file_difference", "fingerprint", "pickle_at"]
