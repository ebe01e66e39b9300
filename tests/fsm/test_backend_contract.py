"""The parts of the Backend contract the state machine guarantees (docs/backends.md):
error results alike on every replica, the entry time for backends that ask for it, both
BadCommand classes, and SimpleBackend's snapshots with their versions."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import zraft
from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.fsm import BadCommand, SimpleBackend, SnapshotCorrupted
from zraft.fsm.codec import packb
from zraft.fsm.machine import takes_time
from zraft.fsm.simple import STATE_FILE


class Raising(SimpleBackend):
    def init(self, peer_id: str) -> None:
        self.items: list[Any] = []

    def apply(self, command: Any) -> Any:
        if command == "object":  # a default repr holds a memory address, unlike any other
            raise RuntimeError(f"bad state {self!r}\nsecond line")
        self.items.append(command)
        if command == "half":
            raise KeyError("half")
        if command == "client-bad":
            raise zraft.BadCommand("refused by the client's class")
        return len(self.items)

    def get_state(self) -> Any:
        return self.items

    def set_state(self, state: Any) -> None:
        self.items = state


def _run(commands: list[Any], alive: list[Any]) -> tuple[list[Any], list[Any]]:
    machine = new_machine(backend=Raising())
    alive.append(machine)  # three live backends: three different addresses in their reprs
    feed = Feeder(machine)
    replies = [tuple(feed.write(c)) for c in commands]
    feed.connect("s1", 10_000)
    replies += [tuple(feed.swrite("s1", i + 1, c)) for i, c in enumerate(commands)]
    # a session write's answer is cached in the replicated session table: the same too
    return replies, [machine.backend.items, machine.sessions.to_bytes()]


def test_an_apply_that_raises_answers_the_same_line_on_every_replica() -> None:
    commands = ["a", "half", "object", "client-bad", "b"]
    alive: list[Any] = []
    replicas = [_run(commands, alive) for _ in range(3)]
    assert replicas[0] == replicas[1] == replicas[2]
    replies, (items, _sessions) = replicas[0]
    errors = [r[3] for r in replies[:5]]
    assert [r[3] for r in replies[5:]] == errors
    assert errors == [None, "backend_error: KeyError: 'half'",
                      f"backend_error: RuntimeError: bad state <{Raising.__module__}."
                      "Raising object at 0x...>",
                      "bad_command: refused by the client's class", None]
    # the state is what the backend left: "half" and "client-bad" were appended first
    assert items[:4] == ["a", "half", "client-bad", "b"]


class Exiting(Raising):
    def apply(self, command: Any) -> Any:
        if command == "exit":
            sys.exit(3)
        if command == "interrupt":
            raise KeyboardInterrupt
        return super().apply(command)

    def query(self, query: Any) -> Any:
        sys.exit(4)


def test_sys_exit_in_a_backend_is_its_error_but_ctrl_c_in_the_main_thread_is_not() -> None:
    machine = new_machine(backend=Exiting())
    feed = Feeder(machine)
    assert tuple(feed.write("exit"))[3] == "backend_error: SystemExit: 3"
    assert machine.query("anything").error == "backend_error: SystemExit: 4"
    assert tuple(feed.write("a"))[2:] == (1, None), "the machine goes on"
    with pytest.raises(KeyboardInterrupt):  # this test runs in the main thread
        feed.write("interrupt")
    # in an actor's thread an explicit KeyboardInterrupt is the backend's error too
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(tuple(feed.write("interrupt"))))
    worker.start()
    worker.join(10)
    assert answers[0][3] == "backend_error: KeyboardInterrupt"


def test_the_entry_time_goes_to_backends_that_take_it() -> None:
    class Timed(Raising):
        def apply(self, command: Any, *, time_ms: int) -> Any:
            self.items.append([command, time_ms])
            return time_ms

        def apply_in_session(self, command: Any, session_id: str, *, time_ms: int) -> Any:
            self.items.append([command, session_id, time_ms])
            return time_ms

    machine = new_machine(backend=Timed())
    feed = Feeder(machine)
    assert feed.write("x", time=1_000).result == 1_000
    feed.connect("s", 60_000, time=2_000)
    assert feed.swrite("s", 1, "y", time=3_000, temporary=True).result == 3_000
    assert feed.swrite("s", 2, "z", time=4_000).result == 4_000
    assert machine.backend.items == [["x", 1_000], ["y", "s", 3_000], ["z", 4_000]]


def test_only_a_time_ms_parameter_asks_for_the_time() -> None:
    def plain(command: Any) -> None: ...
    def keyword(command: Any, *, time_ms: int) -> None: ...
    def positional(command: Any, time_ms: int = 0) -> None: ...
    def other(command: Any, **options: Any) -> None: ...

    assert not takes_time(plain) and not takes_time(other) and not takes_time(len)
    assert takes_time(keyword) and takes_time(positional)
    # the dict backend keeps its one-call fast path
    machine = new_machine()
    assert machine._backend_apply == machine.backend.apply


def test_zraft_fsm_badcommand_and_zraft_badcommand_both_refuse() -> None:
    class Refusing(Raising):
        def apply(self, command: Any) -> Any:
            raise (BadCommand if command == 1 else zraft.BadCommand)()

    feed = Feeder(new_machine(backend=Refusing()))
    assert feed.write(1).error == feed.write(2).error == "bad_command"


class Counter(SimpleBackend):
    snapshot_version = 2

    def init(self, peer_id: str) -> None:
        self.counts: dict[str, int] = {}

    def get_state(self) -> Any:
        return {"counts": self.counts}

    def set_state(self, state: Any) -> None:
        self.counts = state["counts"]

    def upgrade_state(self, version: int, state: Any) -> Any:
        if version == 1:  # version 1 was the bare map
            return {"counts": state}
        return super().upgrade_state(version, state)


def _snapshot(backend: SimpleBackend, directory: Path) -> Path:
    job = backend.snapshot()
    directory.mkdir()
    job.write(directory)
    return directory


def test_simple_backend_snapshots_round_trip_and_are_taken_at_once(tmp_path: Path) -> None:
    a = Counter()
    a.init("p")
    a.counts["x"] = 1
    job = a.snapshot()
    a.counts["x"] = 2  # after snapshot(): not in this snapshot
    (tmp_path / "s").mkdir()
    job.write(tmp_path / "s")
    b = Counter()
    b.init("q")
    b.install_snapshot(tmp_path / "s")
    assert b.counts == {"x": 1}
    assert job.mode == "async"


def test_simple_backend_reads_older_versions_and_refuses_newer_ones(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / STATE_FILE).write_bytes(packb({"format": "zraft-simple", "version": 1,
                                          "state": {"x": 5}}))
    b = Counter()
    b.init("p")
    b.install_snapshot(old)
    assert b.counts == {"x": 5}

    class Newer(Counter):
        snapshot_version = 3

    n = Newer()
    n.init("p")
    newer = _snapshot(n, tmp_path / "newer")
    with pytest.raises(SnapshotCorrupted) as info:
        b.install_snapshot(newer)
    assert str(info.value) == ("Counter reads snapshot versions up to 2, this one is version 3 "
                               "(written by a newer release of the backend: upgrade it on "
                               "this node)")
    (old / STATE_FILE).write_bytes(b"\xc1")
    with pytest.raises(SnapshotCorrupted):
        b.install_snapshot(old)
    (old / STATE_FILE).write_bytes(packb({"format": "zraft-simple", "version": 0,
                                          "state": {}}))
    with pytest.raises(SnapshotCorrupted, match="cannot read snapshot version 0"):
        b.install_snapshot(old)


def test_simple_backend_defaults_refuse_clearly() -> None:
    backend = SimpleBackend()
    backend.init("p")
    with pytest.raises(BadCommand, match="SimpleBackend has no writes"):
        backend.apply(["x"])
    with pytest.raises(BadCommand, match="no temporary"):
        backend.apply_in_session(["x"], "s")
    assert list(backend.expire_session("s")) == []
    assert isinstance(backend, zraft.Backend)
