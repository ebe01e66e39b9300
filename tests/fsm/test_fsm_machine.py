"""StateMachine: applying entries, error results, snapshots every max_log_count, restore."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.backends.dict import DictBackend
from zraft.core.entries import DATA, Entry
from zraft.fsm import NOT_FOUND, SnapshotCorrupted
from zraft.fsm.codec import packb
from zraft.fsm.commands import encode_write
from zraft.fsm.snapshot import SESSIONS_FILE


def test_read_write_zraft_fsm_scenario() -> None:
    """zraft_fsm eunit read/write: apply #1 {1,"1"}; read 1 -> "1", read 2 -> not found."""
    machine = new_machine()
    assert machine.applied_index == 0
    batch = machine.apply([Entry(1, 1, DATA, encode_write([1, "1"]), 0)])
    assert [tuple(r) for r in batch.replies] == [(1, 1, "ok", None)]
    assert batch.applied_index == 1 and machine.applied_index == 1
    assert machine.query(1).value == "1"
    assert machine.query(2).value is NOT_FOUND
    assert machine.query(["get", 1]).ok


def test_noop_and_config_entries_only_advance_the_index() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    assert feed.noop().replies == []
    assert feed.config().replies == []
    assert machine.applied_index == 2
    assert machine.query("anything").value is NOT_FOUND


def test_already_applied_entries_are_skipped_and_gaps_refused() -> None:
    machine = new_machine()
    first = Entry(1, 1, DATA, encode_write(["k", 1]), 0)
    machine.apply([first])
    again = machine.apply([first, Entry(2, 1, DATA, encode_write(["k", 2]), 0)])
    assert [r.index for r in again.replies] == [2]
    with pytest.raises(ValueError, match="gap"):
        machine.apply([Entry(4, 1, DATA, encode_write(["k", 3]), 0)])
    assert machine.query("k").value == 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x01",  # truncated array
        packb("not an array"),
        packb([]),
        packb([99, "x"]),
        packb(["1", ["k", "v"]]),
        packb([1]),
        packb([1, ["k", "v"], "extra"]),
        packb([2, "s", 0]),
        packb([2, "", 10]),
        packb([2, "s", True]),
        packb([3, "s", -1]),
        packb([4, "s", 0, 0, False, ["k", "v"]]),
        packb([4, "s", 1, 0, 1, ["k", "v"]]),
        packb([5, 7]),
        b"\xd4\x07\x00",  # an unknown msgpack extension type
        None,
    ],
)
def test_garbage_yields_bad_command_not_an_exception(data: Any) -> None:
    machine = new_machine()
    reply = Feeder(machine).reply(data)
    assert reply.error.startswith("bad_command: ") and reply.result is None
    assert len(reply.error) <= 250  # the reason is bounded
    assert machine.applied_index == 1


def test_backend_bad_command_and_crash_are_error_results() -> None:
    class Exploding(DictBackend):
        def apply(self, command: Any) -> Any:
            if command == "boom":
                raise ZeroDivisionError("no")
            return super().apply(command)

    machine = new_machine(backend=Exploding())
    feed = Feeder(machine)
    assert feed.write(["a", "b", "c", "d", "e"]).error == (
        "bad_command: unknown dict backend write of 5 items")
    assert feed.write("boom").error == "backend_error: ZeroDivisionError: no"
    assert feed.write(["k", "v"]).result == "ok"
    assert machine.applied_index == 3


def test_query_errors_are_values() -> None:
    class Broken(DictBackend):
        def query(self, query: Any) -> Any:
            if query == "boom":
                raise KeyError(query)
            return super().query(query)

    machine = new_machine(backend=Broken())
    assert machine.query("boom").error == "backend_error: KeyError: 'boom'"
    assert machine.query(["list", 5]).error == "bad_command: list prefix must be str or bytes"
    assert machine.query(lambda d: len(d)).value == 0


def test_backend_may_answer_plain_values() -> None:
    """A backend that returns a bare result (no ApplyResult) and a bare query value."""

    class Counter:
        def init(self, peer_id: str) -> None:
            self.n = 0

        def query(self, query: Any) -> Any:
            return self.n

        def apply(self, command: Any) -> Any:
            self.n += command
            return self.n

        def apply_in_session(self, command: Any, session_id: str) -> Any:
            return self.apply(command)

        def expire_session(self, session_id: str) -> list[Any]:
            return []

        def snapshot(self) -> Any:
            raise NotImplementedError

        def snapshot_done(self) -> None: ...

        def snapshot_failed(self, reason: str) -> None: ...

        def install_snapshot(self, directory: Path) -> None: ...

    machine = new_machine(backend=Counter())
    assert Feeder(machine).write(5).result == 5
    assert machine.query(None).value == 5


def test_snapshot_every_max_log_count_then_restore(tmp_path: Path) -> None:
    """zraft_fsm eunit snapshot: 10 applies -> snapshot at 10; a restart reloads it."""
    machine = new_machine(max_log_count=10)
    feed = Feeder(machine)
    for i in range(1, 10):
        feed.write([str(i), str(i)])
        assert not machine.should_snapshot()
    feed.write(["10", "10"])
    assert machine.should_snapshot()
    image = machine.take_snapshot()
    assert image.index == 10 and image.term == 1 and image.is_async
    assert machine.snapshot_in_progress and not machine.should_snapshot()
    with pytest.raises(RuntimeError):
        machine.take_snapshot()
    worker = threading.Thread(target=image.write, args=(tmp_path,))
    worker.start()
    assert machine.query("5").value == "5"  # reads still work during the snapshot
    feed.write(["11", "after"])  # and applies continue
    worker.join(timeout=30)
    machine.snapshot_done(image)
    assert machine.snapshot_index == 10 and not machine.should_snapshot()
    assert (tmp_path / SESSIONS_FILE).exists()

    restarted = new_machine(max_log_count=10)
    assert restarted.restore(tmp_path) == (10, 1)
    assert restarted.applied_index == 10 and restarted.snapshot_index == 10
    assert not restarted.should_snapshot()  # log_count 0 after reload
    assert restarted.query("10").value == "10"
    assert restarted.query("11").value is NOT_FOUND  # applied after the image was taken
    # the log continues after the snapshot
    Feeder(restarted).write(["11", "again"])
    assert restarted.applied_index == 11


def test_failed_snapshot_is_retried(tmp_path: Path) -> None:
    machine = new_machine(max_log_count=2)
    feed = Feeder(machine)
    feed.write(["a", 1])
    feed.write(["b", 2])
    image = machine.take_snapshot()
    machine.snapshot_failed(image, "disk full")
    assert machine.snapshot_index == 0 and machine.should_snapshot()


def test_sync_backend_snapshot_runs_inline(tmp_path: Path) -> None:
    calls: list[str] = []

    class SyncDict(DictBackend):
        def snapshot(self) -> Any:
            job = super().snapshot()
            return job._replace(mode="sync")

        def snapshot_done(self) -> None:
            calls.append("done")

    machine = new_machine(backend=SyncDict())
    Feeder(machine).write(["k", "v"])
    image = machine.take_snapshot()
    assert not image.is_async
    image.write(tmp_path)
    machine.snapshot_done(image)
    assert calls == ["done"]
    restored = new_machine()
    restored.restore(tmp_path)
    assert restored.query("k").value == "v"


def test_restore_refuses_damaged_snapshots(tmp_path: Path) -> None:
    machine = new_machine()
    Feeder(machine).write(["k", "v"])
    image = machine.take_snapshot()
    image.write(tmp_path)
    target = new_machine()
    Feeder(target).write(["mine", 1])
    (tmp_path / SESSIONS_FILE).write_bytes(b"\x93garbage")
    with pytest.raises(SnapshotCorrupted):
        target.restore(tmp_path)
    (tmp_path / SESSIONS_FILE).unlink()
    with pytest.raises(SnapshotCorrupted):
        target.restore(tmp_path)
    assert target.applied_index == 1 and target.query("mine").value == 1


def test_stats() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 100)
    feed.swrite("s1", 1, ["t", 1], temporary=True)
    stats = machine.stats()
    assert stats["applied_index"] == 2
    assert stats["sessions"] == 1 and stats["cached_replies"] == 1
    assert stats["temporary_keys"] == 1 and stats["watchers"] == 0


def test_session_tables_survive_a_snapshot(tmp_path: Path) -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 100, time=0)
    feed.swrite("s1", 1, ["eph", 1], time=1, temporary=True)
    feed.swrite("s1", 2, ["put", "c", 1], time=2)
    image = machine.take_snapshot()
    image.write(tmp_path)
    machine.snapshot_done(image)

    restored = new_machine()
    restored.restore(tmp_path)
    again = Feeder(restored)
    again.write(["c", 9], time=3)
    # the cached reply is replayed, not re-applied (c keeps the later value)
    assert again.swrite("s1", 2, ["put", "c", 1], time=3).result == "ok"
    assert restored.query("c").value == 9
    # and the temporary key still belongs to s1: it goes when s1 expires (at 3 + 100)
    assert again.noop(time=103).events[0].sid == "s1"
    assert restored.query("eph").value is NOT_FOUND


def test_restore_drops_watches_of_sessions_the_snapshot_does_not_have(tmp_path: Path) -> None:
    source = new_machine()
    Feeder(source).connect("kept", 1000)
    image = source.take_snapshot()
    image.write(tmp_path)

    machine = new_machine()
    machine.set_leader(True)
    feed = Feeder(machine)
    feed.connect("kept", 1000)
    feed.connect("gone", 1000)
    machine.query("k", sid="kept", watch_ref="w1")
    machine.query("k", sid="gone", watch_ref="w2")
    machine.restore(tmp_path)
    assert machine.watches.watches() == [("kept", "w1")]


def _snapshot_now(machine: Any, directory: Path) -> int:
    """Take and write a snapshot inline; returns its size on disk."""
    image = machine.take_snapshot()
    image.write(directory)
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    machine.snapshot_done(image, size)
    return size


def test_next_snapshot_waits_for_log_bytes_worth_the_state(tmp_path: Path) -> None:
    """After a snapshot of S bytes the next one needs max_log_count entries AND S x ratio
    command bytes: writing a big state every max_log_count entries is not free."""
    machine = new_machine(max_log_count=10, snapshot_log_ratio=1.0)
    feed = Feeder(machine)
    for i in range(200):  # a state of 200 keys with 100-byte values
        feed.write([f"k{i}", "v" * 100])
    size = _snapshot_now(machine, tmp_path / "s1")
    assert machine.snapshot_bytes == size > 20_000
    applied = 0
    while not machine.should_snapshot():  # overwrite one small key: tiny commands
        feed.write(["small", applied])
        applied += 1
    assert applied > 10  # the count alone would have snapshotted after 10
    assert machine.log_bytes >= size
    # with the ratio off, the count rules again (zraft_lib)
    plain = new_machine(max_log_count=10, snapshot_log_ratio=0)
    pfeed = Feeder(plain)
    for i in range(200):
        pfeed.write([f"k{i}", "v" * 100])
    _snapshot_now(plain, tmp_path / "s2")
    for i in range(10):
        assert not plain.should_snapshot()
        pfeed.write(["small", i])
    assert plain.should_snapshot()


def test_restore_and_failed_snapshot_keep_the_byte_budget_right(tmp_path: Path) -> None:
    machine = new_machine(max_log_count=2, snapshot_log_ratio=1.0)
    feed = Feeder(machine)
    for i in range(50):
        feed.write([f"k{i}", "v" * 100])
    before = machine.log_bytes
    image = machine.take_snapshot()
    machine.snapshot_failed(image, "disk full")
    assert machine.log_bytes == before and machine.should_snapshot()
    size = _snapshot_now(machine, tmp_path)
    restarted = new_machine(max_log_count=2, snapshot_log_ratio=1.0)
    restarted.restore(tmp_path)
    # the restored snapshot's size sets the budget: its content is not replayed for free
    assert restarted.snapshot_bytes >= size and restarted.log_bytes == 0
    rfeed = Feeder(restarted)
    rfeed.write(["x", 1])
    rfeed.write(["y", 2])
    assert not restarted.should_snapshot()
