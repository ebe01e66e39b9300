"""One-shot watches: the registry alone, and read-watch scenarios through the machine."""

from __future__ import annotations

from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.fsm import DATA_CHANGED, LEADER_CHANGED, NOT_FOUND, SessionEvent, WatchTrigger
from zraft.fsm.commands import encode_connect, encode_session_write, encode_write
from zraft.fsm.watches import WatchRegistry


def test_registry_fires_once_per_watch_and_removes_it_everywhere() -> None:
    reg = WatchRegistry()
    reg.register("s1", "w1", ["a", "b"])
    reg.register("s1", "w1", ["a"])  # exact duplicate ignored
    reg.register("s2", "w2", ["a"])
    assert reg.fire(["a", "b"]) == [
        WatchTrigger("s1", "w1", DATA_CHANGED),
        WatchTrigger("s2", "w2", DATA_CHANGED),
    ]
    assert len(reg) == 0
    assert reg.fire(["b"]) == []  # w1 is gone from "b" as well (no duplicate trigger)


def test_registry_unrelated_keys_do_not_fire() -> None:
    reg = WatchRegistry()
    reg.register("s1", "w", ["a"])
    assert reg.fire(["b", ("a",), b"a"]) == []
    assert len(reg) == 1


def test_registry_prefixes_match_same_type_only() -> None:
    reg = WatchRegistry()
    reg.register("s1", "str", [], ["app/"])
    reg.register("s1", "bytes", [], [b"app/"])
    assert reg.fire(["other", b"zzz"]) == []
    assert reg.fire(["app/new"]) == [WatchTrigger("s1", "str", DATA_CHANGED)]
    assert reg.fire([b"app/x"]) == [WatchTrigger("s1", "bytes", DATA_CHANGED)]


def test_registry_drop_session_and_leader_lost() -> None:
    reg = WatchRegistry()
    reg.register("s1", 1, ["a"])
    reg.register("s2", 2, ["a"])
    reg.register("s2", 3, [], ["p"])
    reg.drop_session("s1")
    assert reg.leader_lost() == [
        WatchTrigger("s2", 2, LEADER_CHANGED),
        WatchTrigger("s2", 3, LEADER_CHANGED),
    ]
    assert len(reg) == 0 and reg.fire(["a", "p1"]) == []


def test_registry_empty_registration_is_not_kept() -> None:
    reg = WatchRegistry()
    reg.register("s1", "w", [])
    assert len(reg) == 0


def _leader_with_session(timeout: int = 1000) -> tuple:
    machine = new_machine()
    machine.set_leader(True)
    feed = Feeder(machine)
    feed.connect("s1", timeout)
    return machine, feed


def test_watched_read_without_session_is_refused() -> None:
    """zraft_fsm eunit read-watch: a watched read without a session -> disconnected."""
    machine = new_machine()
    machine.set_leader(True)
    assert machine.query("k", sid="nobody", watch_ref="w").error == "session_expired"
    assert machine.query("k", sid=None, watch_ref="w").error == "session_expired"
    assert len(machine.watches) == 0


def test_watched_read_with_expired_session_at_leader_time_is_refused() -> None:
    machine, _ = _leader_with_session(timeout=10)
    assert machine.query("k", sid="s1", watch_ref="w", now_ms=9).ok
    assert machine.query("k", sid="s1", watch_ref="w2", now_ms=10).error == "session_expired"


def test_watched_read_needs_leadership() -> None:
    machine = new_machine()
    Feeder(machine).connect("s1", 1000)
    assert machine.query("k", sid="s1", watch_ref="w").error == "not_leader"
    # plain reads work everywhere and need no session
    assert machine.query("k").value is NOT_FOUND


def test_read_watch_triggers_before_the_write_reply_and_is_one_shot() -> None:
    """zraft_fsm eunit read-watch: reply + watcher registered; a write to the watched key
    triggers (delivered before the write reply) and removes the watcher."""
    machine, feed = _leader_with_session()
    feed.write(["k", "v1"])
    reply = machine.query("k", sid="s1", watch_ref=["caller", 7])
    assert reply.value == "v1"
    assert machine.watches.watches() == [("s1", ("caller", 7))]
    batch = feed.apply(encode_write(["k", "v2"]))
    assert batch.triggers == [WatchTrigger("s1", ("caller", 7), DATA_CHANGED)]
    assert batch.replies[0].result == "ok"
    assert len(machine.watches) == 0
    assert feed.apply(encode_write(["k", "v3"])).triggers == []


def test_writes_to_other_keys_and_failed_cas_do_not_trigger() -> None:
    machine, feed = _leader_with_session()
    feed.write(["k", 1])
    machine.query(["get", "k"], sid="s1", watch_ref="w")
    assert feed.apply(encode_write(["other", 1])).triggers == []
    assert feed.apply(encode_write(["cas", "k", 999, 2])).triggers == []
    assert feed.apply(encode_write(["delete", "k"])).triggers == [
        WatchTrigger("s1", "w", DATA_CHANGED)
    ]


def test_session_writes_trigger_too_and_cached_replays_do_not() -> None:
    machine, feed = _leader_with_session()
    machine.query("k", sid="s1", watch_ref="w")
    batch = feed.apply(encode_session_write("s1", 1, 0, ["k", 1]))
    assert batch.triggers == [WatchTrigger("s1", "w", DATA_CHANGED)]
    machine.query("k", sid="s1", watch_ref="w")
    assert feed.apply(encode_session_write("s1", 1, 0, ["k", 1])).triggers == []


def test_list_watch_fires_on_a_new_key_under_the_prefix() -> None:
    machine, feed = _leader_with_session()
    assert machine.query(["list", "dir/"], sid="s1", watch_ref="children").value == []
    assert feed.apply(encode_write(["elsewhere", 1])).triggers == []
    assert feed.apply(encode_write(["dir/new", 1])).triggers == [
        WatchTrigger("s1", "children", DATA_CHANGED)
    ]


def test_expiry_deletes_temporary_keys_and_fires_their_watches() -> None:
    machine, feed = _leader_with_session()
    feed.apply(encode_connect("eph", 10))
    feed.swrite("eph", 1, ["lock", "eph"], temporary=True)
    assert machine.query("lock", sid="s1", watch_ref="lock-watch").value == "eph"
    machine.query("anything", sid="eph", watch_ref="eph-own")
    batch = feed.noop(time=10)
    assert batch.events == [SessionEvent("disconnected", "eph")]
    # the expired session's own watch is dropped silently; the other one fires
    assert batch.triggers == [WatchTrigger("s1", "lock-watch", DATA_CHANGED)]
    assert machine.watches.watches() == []
    assert machine.query("lock").value is NOT_FOUND


def test_losing_leadership_fires_leader_changed_and_clears() -> None:
    machine, feed = _leader_with_session()
    machine.query("a", sid="s1", watch_ref=1)
    machine.query("b", sid="s1", watch_ref=2)
    assert machine.set_leader(True) == []
    assert machine.set_leader(False) == [
        WatchTrigger("s1", 1, LEADER_CHANGED),
        WatchTrigger("s1", 2, LEADER_CHANGED),
    ]
    assert len(machine.watches) == 0
    assert machine.set_leader(False) == []
    assert feed.apply(encode_write(["a", 1])).triggers == []


def test_watch_not_supported_for_plain_answers() -> None:
    machine, _ = _leader_with_session()
    assert machine.query(lambda d: 1, sid="s1", watch_ref="w").error == "watch_not_supported"
    assert len(machine.watches) == 0


def test_unhashable_watch_ref_is_a_bad_command() -> None:
    machine, _ = _leader_with_session()
    assert machine.query("k", sid="s1", watch_ref={"a": 1}).error == "bad_command"


def test_registry_indexes_stay_consistent() -> None:
    reg = WatchRegistry()
    for i in range(5):
        reg.register(f"s{i % 2}", i, [f"k{i}", "shared"], [f"p{i}"])
    reg.drop_session("s0")
    assert sorted(reg.watches()) == [("s1", 1), ("s1", 3)]
    assert reg.fire(["shared"]) == [
        WatchTrigger("s1", 1, DATA_CHANGED),
        WatchTrigger("s1", 3, DATA_CHANGED),
    ]
    assert (reg._by_key, reg._by_prefix, reg._watches, reg._by_session) == ({}, {}, {}, {})


def test_watch_needs_keys_and_hashable_ones() -> None:
    from typing import Any

    from zraft.backends.dict import DictBackend
    from zraft.fsm import QueryResult

    class OddKeys(DictBackend):
        def query(self, query: Any) -> Any:
            if query == "none":
                return QueryResult("v")
            if query == "unhashable":
                return QueryResult("v", ({"a": 1},))
            return super().query(query)

    machine = new_machine(backend=OddKeys())
    machine.set_leader(True)
    Feeder(machine).connect("s1", 1000)
    assert machine.query("none", sid="s1", watch_ref="w").error == "watch_not_supported"
    assert machine.query("none").value == "v"
    assert machine.query("unhashable", sid="s1", watch_ref="w").error == (
        "backend_error: TypeError: a map cannot be used as a key")
    assert machine.query("unhashable").value == "v"  # unwatched reads ignore the keys
    assert len(machine.watches) == 0


def test_unhashable_trigger_key_from_a_backend_is_skipped_and_the_write_stands() -> None:
    from typing import Any

    from zraft.backends.dict import DictBackend
    from zraft.fsm import ApplyResult

    class OddTriggers(DictBackend):
        def apply(self, command: Any) -> Any:
            super().apply(command)
            return ApplyResult("ok", ({"a": 1}, command[0]))

    machine = new_machine(backend=OddTriggers())
    machine.set_leader(True)
    feed = Feeder(machine)
    feed.connect("s1", 1000)
    feed.write(["k", "v1"])
    assert machine.query("k", sid="s1", watch_ref="w").value == "v1"
    batch = feed.apply(encode_write(["k", "v2"]))
    assert batch.replies[0].result == "ok" and batch.replies[0].error is None
    assert batch.triggers == [WatchTrigger("s1", "w", DATA_CHANGED)]  # the hashable key fired
    assert machine.query("k").value == "v2"
