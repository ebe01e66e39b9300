"""Backends for the checker's tests: one that keeps every rule (``KV``), and variants that
each break one rule the checker must catch. Module-level classes, so the checker's replica
processes can import them by name."""

from __future__ import annotations

import datetime
import random
from pathlib import Path
from time import time as imported_time  # bound at import: only a fake installed first sees it
from typing import Any

from zraft.fsm.backend import ApplyResult, BadCommand, QueryResult, SnapshotCorrupted, SnapshotJob
from zraft.fsm.codec import packb, unpackb
from zraft.testing.check_backend import query, write

KEYS = ("a", "b", "c", "d", "e", "f")


def kv_commands(rng: random.Random) -> tuple[str, Any]:
    """Operations for the KV family."""
    r = rng.random()
    key = rng.choice(KEYS)
    if r < 0.3:
        return write(["set", key, rng.randint(0, 9)])
    if r < 0.5:
        return write(["add", key, rng.randint(1, 3)])
    if r < 0.6:
        return write(["del", key])
    if r < 0.7:
        return write(["join", key])
    if r < 0.75:
        return write(["pop"])
    if r < 0.85:
        return query(["get", key])
    return query(rng.choice((["keys"], ["members"], ["first"])))


def kv_state(backend: KV) -> Any:
    """A state_of for the KV family: the data sorted, the owners, the members sorted."""
    return [sorted(backend.data.items()), sorted(backend.owner.items()),
            sorted(backend.members)]


class KV:
    """A small, correct backend: ints by key, session-owned keys, a set of members."""

    def init(self, peer_id: str) -> None:
        self.data: dict[str, int] = {}
        self.owner: dict[str, str] = {}
        self.members: set[str] = set()

    def apply(self, command: Any) -> Any:
        return self._apply(command, None)

    def apply_in_session(self, command: Any, session_id: str) -> Any:
        return self._apply(command, session_id)

    def _apply(self, command: Any, sid: str | None) -> Any:
        if not isinstance(command, list) or not command:
            raise BadCommand("a command is a non-empty list")
        op, args = command[0], command[1:]
        if op == "set" and len(args) == 2:
            key, value = args
            self.data[key] = value
        elif op == "add" and len(args) == 2:
            key, value = args
            self.data[key] = self.data.get(key, 0) + value
        elif op == "del" and len(args) == 1:
            key = args[0]
            self.owner.pop(key, None)
            return ApplyResult(self.data.pop(key, None), (key,))
        elif op == "join" and len(args) == 1:
            self.members.add(args[0])
            return "ok"
        elif op == "pop" and not args:
            return self.pop_member()
        else:
            raise BadCommand(f"unknown command {op!r}")
        if sid is not None:
            self.owner[key] = sid
        else:
            self.owner.pop(key, None)
        return ApplyResult(self.data[key], (key,))

    def pop_member(self) -> Any:
        if not self.members:
            return None
        first = min(self.members)
        self.members.discard(first)
        return first

    def expire_session(self, session_id: str) -> list[str]:
        keys = sorted(k for k, s in self.owner.items() if s == session_id)
        for key in keys:
            del self.data[key], self.owner[key]
        return keys

    def query(self, q: Any) -> Any:
        if q == ["keys"]:
            return sorted(self.data)
        if q == ["members"]:
            return sorted(self.members)
        if q == ["first"]:
            return min(self.members, default=None)
        if isinstance(q, list) and len(q) == 2 and q[0] == "get":
            return QueryResult(self.data.get(q[1]), (q[1],))
        raise BadCommand("unknown query")

    def state(self) -> list[Any]:
        return [sorted(self.data.items()), sorted(self.owner.items()), sorted(self.members)]

    def snapshot(self) -> SnapshotJob:
        state = packb(self.state())
        return SnapshotJob("sync", lambda d: (Path(d) / "state").write_bytes(state))

    def snapshot_done(self) -> None:
        pass

    def snapshot_failed(self, reason: str) -> None:
        pass

    def install_snapshot(self, directory: Path) -> None:
        try:
            data, owner, members = unpackb((Path(directory) / "state").read_bytes())
        except Exception as exc:
            raise SnapshotCorrupted(str(exc)) from exc
        self.data, self.owner, self.members = dict(data), dict(owner), set(members)


class RandomKV(KV):
    """``add`` adds a random bonus."""

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["add"] and len(command) == 3:
            command = ["add", command[1], command[2] + random.randint(0, 1000)]
        return super()._apply(command, sid)


class ClockKV(KV):
    """``set`` stores the value plus the current day (from ``datetime``): the answer of a
    later ``get`` depends on when each replica applied it."""

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["set"] and len(command) == 3:
            day = datetime.datetime.now().toordinal()
            command = ["set", command[1], command[2] + 10 * day]
        return super()._apply(command, sid)


class ImportedClockKV(KV):
    """Reads the clock through ``from time import time`` (bound when the module loaded):
    ``set`` answers the time it happened."""

    def _apply(self, command: Any, sid: str | None) -> Any:
        result = super()._apply(command, sid)
        if isinstance(command, list) and command[:1] == ["set"]:
            return int(imported_time())
        return result


class SetOrderKV(KV):
    """``pop`` removes whichever member the set yields first: the order of a set of strs
    changes with PYTHONHASHSEED."""

    def pop_member(self) -> Any:
        return self.members.pop() if self.members else None


class DictOrderKV(KV):
    """``keys`` answers in insertion order; a snapshot writes the keys sorted, so a replica
    restored from one answers in another order than one that applied the log."""

    def query(self, q: Any) -> Any:
        if q == ["keys"]:
            return list(self.data)
        return super().query(q)


class LossyKV(KV):
    """The snapshot keeps only three keys."""

    def state(self) -> list[Any]:
        data, owner, members = super().state()
        return [data[:3], [o for o in owner if o[0] in dict(data[:3])], members]


class ForgetfulOwnersKV(KV):
    """The snapshot forgets which keys are temporary: after a restore, a session's expiry
    leaves its keys behind."""

    def state(self) -> list[Any]:
        data, _, members = super().state()
        return [data, [], members]


class MutatingKV(KV):
    """Consumes its command in place."""

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command:
            op = command.pop(0)
            return super()._apply([op, *command], sid)
        return super()._apply(command, sid)


class LiveAsyncSnapshotKV(KV):
    """An async snapshot whose job reads the live tables when it runs, not a copy."""

    def snapshot(self) -> SnapshotJob:
        return SnapshotJob("async", lambda d: (Path(d) / "state").write_bytes(packb(
            self.state())))


class PickleKV(KV):
    """Snapshots with pickle."""

    def snapshot(self) -> SnapshotJob:
        import pickle

        state = pickle.dumps(self.state())
        return SnapshotJob("sync", lambda d: (Path(d) / "state").write_bytes(state))

    def install_snapshot(self, directory: Path) -> None:
        import pickle

        data, owner, members = pickle.loads((Path(directory) / "state").read_bytes())
        self.data, self.owner, self.members = dict(data), dict(owner), set(members)


class SetResultKV(KV):
    """Answers ``members`` with a set (msgpack cannot encode it)."""

    def query(self, q: Any) -> Any:
        if q == ["members"]:
            return set(self.members)
        return super().query(q)


class LiveResultKV(KV):
    """``join`` answers the live member list (a client gets it after the batch)."""

    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.joined: list[str] = []

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["join"] and len(command) == 2:
            super()._apply(command, sid)
            self.joined.append(command[1])
            return self.joined
        return super()._apply(command, sid)

    def state(self) -> list[Any]:
        return [*super().state(), list(self.joined)]

    def install_snapshot(self, directory: Path) -> None:
        data, owner, members, joined = unpackb((Path(directory) / "state").read_bytes())
        self.data, self.owner, self.members = dict(data), dict(owner), set(members)
        self.joined = list(joined)


class PeerIdKV(KV):
    """Keeps the node's peer id in the replicated state."""

    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.me = peer_id

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["del"]:
            return self.me
        return super()._apply(command, sid)


class UnsortedSnapshotKV(KV):
    """Correct, but its snapshot writes the members in the set's iteration order: the bytes
    differ between replicas (PYTHONHASHSEED) while the states are the same."""

    def state(self) -> list[Any]:
        data, owner, _ = super().state()
        return [data, owner, list(self.members)]


class EmbeddedPickleKV(KV):
    """msgpack on the outside, a pickle of the members inside a bin field."""

    def snapshot(self) -> SnapshotJob:
        import pickle

        data, owner, members = self.state()
        state = packb([data, owner, pickle.dumps(members)])
        return SnapshotJob("sync", lambda d: (Path(d) / "state").write_bytes(state))

    def install_snapshot(self, directory: Path) -> None:
        import pickle

        data, owner, members = unpackb((Path(directory) / "state").read_bytes())
        self.data, self.owner, self.members = dict(data), dict(owner), set(pickle.loads(members))


class HiddenRandomKV(KV):
    """``set`` answers right but also records a random stamp in the state: no answer
    differs, only the states (and so the snapshots) do."""

    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.stamps: dict[str, int] = {}

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["set"] and len(command) == 3:
            self.stamps[command[1]] = random.getrandbits(32)
        return super()._apply(command, sid)

    def state(self) -> list[Any]:
        return [*super().state(), sorted(self.stamps.items())]

    def install_snapshot(self, directory: Path) -> None:
        data, owner, members, stamps = unpackb((Path(directory) / "state").read_bytes())
        self.data, self.owner, self.members = dict(data), dict(owner), set(members)
        self.stamps = dict(stamps)


class QueryWritesKV(KV):
    """``get`` counts its reads in the state: only the replicas that ran a query change."""

    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.reads = 0

    def query(self, q: Any) -> Any:
        if isinstance(q, list) and q[:1] == ["get"]:
            self.reads += 1
        return super().query(q)

    def state(self) -> list[Any]:
        return [*super().state(), self.reads]

    def install_snapshot(self, directory: Path) -> None:
        data, owner, members, reads = unpackb((Path(directory) / "state").read_bytes())
        self.data, self.owner, self.members = dict(data), dict(owner), set(members)
        self.reads = reads


class UnorderedExpiryKV(KV):
    """Correct: an expiry lists the deleted keys in a set's order (they are a set of keys
    that fire watches, so their order is free)."""

    def expire_session(self, session_id: str) -> list[str]:
        return list(set(super().expire_session(session_id)))


class ExitKV(KV):
    """Kills its process on ``pop`` (a backend calling os._exit, or crashing the interpreter)."""

    def pop_member(self) -> Any:
        import os

        os._exit(3)


class HangKV(KV):
    """Never returns from ``pop``."""

    def pop_member(self) -> Any:
        import sys
        import time

        print("HangKV: pop hangs now", file=sys.stderr, flush=True)  # in the report
        time.sleep(3600)


class BornAtKV(KV):
    """Stamps each instance with the time it was made (in ``__init__``) and answers ``del``
    with it: a replica restarted later answers differently."""

    def __init__(self) -> None:
        import time

        self.born = time.time()

    def _apply(self, command: Any, sid: str | None) -> Any:
        if isinstance(command, list) and command[:1] == ["del"]:
            return int(self.born)
        return super()._apply(command, sid)


class NotABackend:
    """Has apply but none of the rest of the Backend protocol."""

    def apply(self, command: Any) -> Any:
        return command
