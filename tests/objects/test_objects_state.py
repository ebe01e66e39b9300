"""Snapshots of replicated objects: msgpack only, checked when taken, versioned, verified
when read."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest

import zraft
from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.fsm.backend import SnapshotCorrupted
from zraft.objects import Dict, ObjectBackend, Queue
from zraft.objects import state as object_state


class Notes:
    def __init__(self) -> None:
        self.items: Any = []
        self.extra: Any = None

    @zraft.replicated
    def add(self, text: str) -> int:
        self.items.append(text)
        return len(self.items)

    @zraft.replicated
    def store(self, what: str) -> None:  # deliberately stores values msgpack cannot carry
        self.extra = {"tuple": (1, 2), "set": {1}, "big": 2**70, "bytes": bytearray(b"x"),
                      "tuple_key": {(1, 2): 3},
                      "nested": {"a": [1, {2}]}, "view": [memoryview(b"x")]}[what]


def _snapshot(backend: ObjectBackend, directory: Path) -> None:
    job = backend.snapshot()
    directory.mkdir(parents=True, exist_ok=True)
    job.write(directory)


def test_attributes_round_trip_and_a_restored_copy_answers_the_same(tmp_path: Path) -> None:
    src = ObjectBackend(Notes)
    for text in ("a", "b", "c"):
        src.apply(["add", [text]])
    _snapshot(src, tmp_path)
    dst = ObjectBackend(Notes)
    dst.install_snapshot(tmp_path)
    assert vars(dst.obj) == vars(src.obj) == {"items": ["a", "b", "c"], "extra": None}
    assert dst.apply(["add", ["d"]]) == 4


def test_getstate_and_setstate_carry_what_msgpack_cannot(tmp_path: Path) -> None:
    src = ObjectBackend(Queue)
    src.apply(["put_many", [[1, "two", None, zraft.NOT_FOUND]]])
    _snapshot(src, tmp_path)
    dst = ObjectBackend(Queue)
    dst.install_snapshot(tmp_path)
    assert isinstance(dst.obj.items, deque)
    assert dst.query(["to_list"]) == [1, "two", None, zraft.NOT_FOUND]


@pytest.mark.parametrize(("what", "message"), [
    ("tuple", "attribute 'extra' holds a tuple"),
    ("set", "attribute 'extra' holds a set"),
    ("big", "attribute 'extra' holds an int outside msgpack's 64-bit range"),
    ("bytes", "attribute 'extra' holds a bytearray"),
    ("tuple_key", "attribute 'extra' (a key) holds a tuple"),
    ("nested", "attribute 'extra'['a'][1] holds a set"),
    ("view", "attribute 'extra'[0] holds a memoryview"),
])
def test_a_state_msgpack_cannot_carry_exactly_fails_the_snapshot_naming_it(
        tmp_path: Path, what: str, message: str) -> None:
    backend = ObjectBackend(Notes)
    backend.apply(["store", [what]])
    job = backend.snapshot()
    assert job.mode == "sync"  # fails at once, on the state machine's thread
    with pytest.raises(object_state.StateNotClean) as info:
        job.write(tmp_path)
    assert str(info.value).startswith(f"Notes cannot be snapshotted: {message} that msgpack "
                                      "cannot carry exactly")
    assert not (tmp_path / object_state.STATE_FILE).exists()


def test_the_state_machine_reports_a_failed_snapshot_and_keeps_applying(tmp_path: Path) -> None:
    machine = new_machine(max_log_count=2, backend=ObjectBackend(Notes))
    feeder = Feeder(machine)
    feeder.write(["store", ["set"]])
    feeder.write(["add", ["x"]])
    assert machine.should_snapshot()
    image = machine.take_snapshot()
    with pytest.raises(object_state.StateNotClean):
        image.write(tmp_path / "snap")
    machine.snapshot_failed(image, "not clean")
    assert feeder.write(["add", ["y"]]).result == 2


class V1:
    def __init__(self) -> None:
        self.names: list[str] = []

    @zraft.replicated
    def add(self, name: str) -> None:
        self.names.append(name)


class V2:
    """V1's state under a new layout: names -> a count per name."""

    zraft_state_version = 2

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @classmethod
    def zraft_upgrade_state(cls, state: Any, from_version: int) -> Any:
        assert from_version == 1
        counts: dict[str, int] = {}
        for name in state["names"]:
            counts[name] = counts.get(name, 0) + 1
        return {"counts": counts}

    @zraft.query
    def count(self, name: str) -> int:
        return self.counts.get(name, 0)


class V2NoUpgrade(V1):
    zraft_state_version = 2


def test_state_versions_upgrade_or_refuse(tmp_path: Path) -> None:
    old = ObjectBackend(V1)
    for name in ("a", "b", "a"):
        old.apply(["add", [name]])
    _snapshot(old, tmp_path)
    new = ObjectBackend(V2)
    new.install_snapshot(tmp_path)
    assert new.query(["count", ["a"]]) == 2
    with pytest.raises(SnapshotCorrupted, match="state version 1, the class has 2 and no "
                                                "zraft_upgrade_state"):
        ObjectBackend(V2NoUpgrade).install_snapshot(tmp_path)
    _snapshot(new, tmp_path / "v2")
    with pytest.raises(SnapshotCorrupted, match=r"state version 2, the class has 1$"):
        ObjectBackend(V1).install_snapshot(tmp_path / "v2")


def test_damaged_or_foreign_files_are_refused_and_the_state_kept(tmp_path: Path) -> None:
    src = ObjectBackend(Dict)
    src.apply(["set", ["k", "v"]])
    _snapshot(src, tmp_path)
    path = tmp_path / object_state.STATE_FILE
    good = path.read_bytes()
    dst = ObjectBackend(Dict)
    dst.apply(["set", ["mine", 1]])
    for damaged, reason in [(good[:-1] + bytes([good[-1] ^ 1]), "checksum mismatch"),
                            (good[:20], "checksum mismatch"),
                            (b"nonsense" * 4, "bad header"), (b"", "bad header")]:
        path.write_bytes(damaged)
        with pytest.raises(SnapshotCorrupted, match=reason):
            dst.install_snapshot(tmp_path)
        assert dst.query(["to_dict"]) == {"mine": 1}
    path.unlink()
    with pytest.raises(SnapshotCorrupted, match="cannot read"):
        dst.install_snapshot(tmp_path)


def test_a_setstate_that_raises_is_a_corrupted_snapshot(tmp_path: Path) -> None:
    class Picky(Notes):
        def __setstate__(self, state: Any) -> None:
            raise ValueError("no thanks")

    _snapshot(ObjectBackend(Notes), tmp_path)
    with pytest.raises(SnapshotCorrupted, match=r"Picky\.__setstate__ failed: ValueError: no"):
        ObjectBackend(Picky).install_snapshot(tmp_path)


def test_a_bad_state_version_declaration_fails_at_load() -> None:
    class Bad(V1):
        zraft_state_version = "2"

    with pytest.raises(TypeError, match="zraft_state_version must be an int >= 1"):
        ObjectBackend(Bad)
