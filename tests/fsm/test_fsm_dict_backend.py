"""The reference dict backend on its own (zraft_dict_backend semantics)."""

from __future__ import annotations

import operator
import threading
from pathlib import Path

import pytest

from zraft.backends.dict import STATE_FILE, DictBackend
from zraft.fsm import NOT_FOUND, ApplyResult, Backend, BadCommand, QueryResult, SnapshotCorrupted


@pytest.fixture
def backend() -> DictBackend:
    b = DictBackend()
    b.init("p1@127.0.0.1:9000")
    return b


def test_it_is_a_backend(backend: DictBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.peer_id == "p1@127.0.0.1:9000"


def test_zraft_lib_pair_write_and_read(backend: DictBackend) -> None:
    assert backend.apply(["k", "v"]) == ApplyResult("ok", ("k",))
    assert backend.query("k") == QueryResult("v", ("k",))
    assert backend.query(["get", "k"]) == QueryResult("v", ("k",))


def test_missing_key_is_not_found_and_differs_from_stored_none(backend: DictBackend) -> None:
    assert backend.query("nothing").value is NOT_FOUND
    backend.apply(["put", "n", None])
    assert backend.query("n").value is None
    assert backend.query("n").value is not NOT_FOUND


def test_put_delete(backend: DictBackend) -> None:
    assert backend.apply(["put", "a", 1]) == ApplyResult("ok", ("a",))
    assert backend.apply(["delete", "a"]) == ApplyResult("ok", ("a",))
    assert backend.query("a").value is NOT_FOUND
    # deleting a missing key changes nothing and triggers nothing
    assert backend.apply(["delete", "a"]) == ApplyResult(NOT_FOUND, ())


def test_the_key_named_delete_needs_put(backend: DictBackend) -> None:
    backend.apply(["put", "delete", "x"])
    assert backend.query("delete").value == "x"
    backend.apply(["x", 1])
    backend.apply(["delete", "x"])  # a 2-item write starting with "delete" deletes
    assert backend.query("x").value is NOT_FOUND
    assert backend.query("delete").value == "x"


def test_cas_success_and_failure(backend: DictBackend) -> None:
    assert backend.apply(["cas", "c", NOT_FOUND, 1]) == ApplyResult("ok", ("c",))
    assert backend.apply(["cas", "c", NOT_FOUND, 2]) == ApplyResult(["cas_failed", 1], ())
    assert backend.apply(["cas", "c", 1, 2]) == ApplyResult("ok", ("c",))
    assert backend.apply(["cas", "c", 1, 3]) == ApplyResult(["cas_failed", 2], ())
    assert backend.query("c").value == 2


def test_cas_equality_is_exact(backend: DictBackend) -> None:
    backend.apply(["k", 1])
    assert backend.apply(["cas", "k", True, 5]).result == ["cas_failed", 1]
    assert backend.apply(["cas", "k", 1.0, 5]).result == ["cas_failed", 1]
    backend.apply(["l", [1, "a"]])
    assert backend.apply(["cas", "l", [1, "a"], "new"]).result == "ok"


def test_cas_to_not_found_deletes(backend: DictBackend) -> None:
    backend.apply(["k", "v"])
    assert backend.apply(["cas", "k", "v", NOT_FOUND]) == ApplyResult("ok", ("k",))
    assert backend.query("k").value is NOT_FOUND
    assert backend.apply(["cas", "k", NOT_FOUND, NOT_FOUND]) == ApplyResult("ok", ())


def test_list_prefix(backend: DictBackend) -> None:
    for key in ["app/b", "app/a", "other", b"app/bytes", "ap"]:
        backend.apply([key, key.upper() if isinstance(key, str) else key])
    answer = backend.query(["list", "app/"])
    assert answer.value == [["app/a", "APP/A"], ["app/b", "APP/B"]]
    assert answer.watch_keys == ()
    assert answer.watch_prefixes == ("app/",)
    assert backend.query(["list", b"app"]).value == [[b"app/bytes", b"app/bytes"]]
    with pytest.raises(BadCommand):
        backend.query(["list", 3])


def test_keys_from_msgpack_lists_become_tuples(backend: DictBackend) -> None:
    backend.apply([["a", 1], "v"])
    assert backend.query(["get", ("a", 1)]).value == "v"
    assert backend.query(["get", ["a", 1]]).watch_keys == (("a", 1),)
    assert backend.query(("a", 1)).value == "v"


def test_bytes_and_str_keys_differ(backend: DictBackend) -> None:
    backend.apply([b"k", 1])
    assert backend.query("k").value is NOT_FOUND
    assert backend.query(b"k").value == 1


@pytest.mark.parametrize(
    "command",
    [
        "just-a-string",
        ["only-one"],
        ["a", "b", "c", "d", "e"],
        ["put", {"map": 1}, "v"],
        ["put", "k", NOT_FOUND],
        [NOT_FOUND, 1],
        ["cas", "k", 1],
    ],
)
def test_bad_commands_raise_bad_command(backend: DictBackend, command: object) -> None:
    with pytest.raises(BadCommand):
        backend.apply(command)
    assert backend.size() == 0


def test_callable_query_sees_a_read_only_view(backend: DictBackend) -> None:
    backend.apply(["a", 1])
    assert backend.query(lambda d: sorted(d.items())) == [("a", 1)]
    with pytest.raises(TypeError):
        backend.query(lambda d: operator.setitem(d, "b", 2))


def test_temporary_ownership_and_expiry(backend: DictBackend) -> None:
    assert backend.apply_in_session(["t1", 1], "s1") == ApplyResult("ok", ("t1",))
    backend.apply_in_session(["put", "t2", 2], "s1")
    backend.apply_in_session(["t3", 3], "s2")
    backend.apply(["plain", 0])
    assert backend.owner_of("t1") == "s1" and backend.owner_of("plain") is None
    assert backend.query("t1").value == 1  # the owner is hidden from readers
    assert backend.temporary_count() == 3
    assert backend.expire_session("s1") == ["t1", "t2"]
    assert backend.query("t1").value is NOT_FOUND
    assert backend.query("t3").value == 3 and backend.query("plain").value == 0
    assert backend.expire_session("s1") == []
    assert backend.temporary_count() == 1


def test_plain_write_makes_a_temporary_key_permanent(backend: DictBackend) -> None:
    backend.apply_in_session(["k", 1], "s1")
    backend.apply(["k", 2])
    assert backend.owner_of("k") is None
    assert backend.expire_session("s1") == []
    assert backend.query("k").value == 2


def test_session_write_takes_ownership_from_another_session(backend: DictBackend) -> None:
    backend.apply_in_session(["k", 1], "s1")
    backend.apply_in_session(["k", 2], "s2")
    assert backend.expire_session("s1") == []
    assert backend.expire_session("s2") == ["k"]


def test_delete_forgets_ownership(backend: DictBackend) -> None:
    backend.apply_in_session(["k", 1], "s1")
    backend.apply(["delete", "k"])
    backend.apply(["k", "plain"])
    assert backend.expire_session("s1") == []
    assert backend.query("k").value == "plain"


def test_cas_in_session_owns_the_new_value(backend: DictBackend) -> None:
    assert backend.apply_in_session(["cas", "lock", NOT_FOUND, "me"], "s1").result == "ok"
    assert backend.apply_in_session(["cas", "lock", NOT_FOUND, "you"], "s2").result == [
        "cas_failed",
        "me",
    ]
    assert backend.expire_session("s1") == ["lock"]
    assert backend.apply_in_session(["cas", "lock", NOT_FOUND, "you"], "s2").result == "ok"


def _snapshot_into(backend: DictBackend, directory: Path) -> None:
    job = backend.snapshot()
    assert job.mode == "async"
    job.write(directory)


def test_snapshot_round_trip(backend: DictBackend, tmp_path: Path) -> None:
    backend.apply(["s", "str"])
    backend.apply([b"b", b"\x00bytes"])
    backend.apply([["tuple", 1], {"map": [1, 2]}])
    backend.apply(["none", None])
    backend.apply_in_session(["t", 1], "s1")
    _snapshot_into(backend, tmp_path)
    backend.snapshot_done()
    other = DictBackend()
    other.init("p2@127.0.0.1:9001")
    other.install_snapshot(tmp_path)
    assert other.items() == backend.items()
    assert other.query(("tuple", 1)).value == {"map": [1, 2]}
    assert other.query("none").value is None
    assert other.owner_of("t") == "s1"
    assert other.expire_session("s1") == ["t"]


def test_snapshot_files_are_canonical(backend: DictBackend, tmp_path: Path) -> None:
    for i in range(50):
        backend.apply([f"k{i}", i])
    backend.apply_in_session(["t", 1], "s1")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _snapshot_into(backend, tmp_path / "a")
    restored = DictBackend()
    restored.init("x")
    restored.install_snapshot(tmp_path / "a")
    _snapshot_into(restored, tmp_path / "b")
    assert (tmp_path / "a" / STATE_FILE).read_bytes() == (tmp_path / "b" / STATE_FILE).read_bytes()


def test_async_snapshot_sees_an_immutable_view(backend: DictBackend, tmp_path: Path) -> None:
    for i in range(1000):
        backend.apply([i, i])
    backend.apply_in_session(["t", "x"], "s1")
    job = backend.snapshot()
    # mutate everything the job could see, before and while it runs on another thread
    backend.apply([0, "changed"])
    backend.apply(["delete", 1])
    backend.expire_session("s1")
    worker = threading.Thread(target=job.write, args=(tmp_path,))
    worker.start()
    for i in range(2, 500):
        backend.apply(["delete", i])
    worker.join(timeout=30)
    assert not worker.is_alive()
    restored = DictBackend()
    restored.init("x")
    restored.install_snapshot(tmp_path)
    assert restored.query(0).value == 0
    assert restored.query(1).value == 1
    assert restored.query(499).value == 499
    assert restored.owner_of("t") == "s1"
    assert backend.query(0).value == "changed"
    assert backend.query(499).value is NOT_FOUND


def test_install_missing_snapshot_is_a_clear_error(backend: DictBackend, tmp_path: Path) -> None:
    with pytest.raises(SnapshotCorrupted, match="cannot read"):
        backend.install_snapshot(tmp_path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_corrupt_snapshot_is_refused_and_state_kept(
    backend: DictBackend, tmp_path: Path, damage: str
) -> None:
    backend.apply(["k", "v" * 100])
    _snapshot_into(backend, tmp_path)
    path = tmp_path / STATE_FILE
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) - 7]
    elif damage == "magic":
        raw[0:4] = b"NOPE"
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    target = DictBackend()
    target.init("x")
    target.apply(["mine", 1])
    with pytest.raises(SnapshotCorrupted):
        target.install_snapshot(tmp_path)
    assert target.items() == [("mine", 1)]


def test_multi_applies_everything_in_order(backend: DictBackend) -> None:
    backend.apply(["a", 1])
    answer = backend.apply(
        [
            "multi",
            [["check", "a", 1], ["put", "b", 2], ["cas", "b", 2, 3], ["delete", "a"], ["c", 4]],
        ]
    )
    assert answer == ApplyResult(["ok", "ok", "ok", "ok", "ok"], ("b", "a", "c"))
    assert backend.items() == [("b", 3), ("c", 4)]


def test_multi_is_all_or_nothing(backend: DictBackend) -> None:
    backend.apply(["a", 1])
    answer = backend.apply(["multi", [["put", "x", 1], ["delete", "a"], ["check", "a", 1]]])
    # the check sees the earlier delete in the same multi
    assert answer == ApplyResult(["multi_failed", 2, NOT_FOUND], ())
    assert backend.items() == [("a", 1)]
    assert backend.apply(["multi", [["cas", "a", 2, 3]]]).result == ["multi_failed", 0, 1]


def test_multi_validates_before_applying(backend: DictBackend) -> None:
    for bad in (["multi", "x"], ["multi", [["k", 1], ["multi", []]]], ["multi", [["k", 1], 5]]):
        with pytest.raises(BadCommand):
            backend.apply(bad)
    with pytest.raises(BadCommand):
        backend.apply(["check", "k", 1])  # check only inside multi
    assert backend.size() == 0
    assert backend.apply(["multi", []]) == ApplyResult([], ())


def test_multi_in_session_owns_what_it_writes(backend: DictBackend) -> None:
    backend.apply_in_session(["multi", [["cas", "lock", NOT_FOUND, "s1"], ["info", "x"]]], "s1")
    assert backend.expire_session("s1") == ["lock", "info"]


def test_copy_on_write_only_while_a_job_may_read(backend: DictBackend, tmp_path: Path) -> None:
    backend.apply(["a", 1])
    before = backend._data
    job = backend.snapshot()
    backend.apply(["b", 2])
    assert backend._data is not before  # copied: the job still reads `before`
    job.write(tmp_path)
    backend.snapshot_done()
    current = backend._data
    backend.apply(["c", 3])
    assert backend._data is current  # no job left: written in place
