"""Sessions through the StateMachine: connect, exactly-once writes, acc_upto, ping, expiry,
close, temporary data; and the SessionTable on its own."""

from __future__ import annotations

import pytest

from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.fsm import NOT_FOUND, SessionEvent
from zraft.fsm import commands as cmd
from zraft.fsm.sessions import CachedReply, SessionTable


def _disconnected(sid: str) -> SessionEvent:
    return SessionEvent("disconnected", sid)


def test_zraft_fsm_session_write_scenario() -> None:
    """zraft_fsm eunit "session write": connect at 0 with timeout 10; writes refresh the
    expiry; a repeated message id answers from the cache; ping acc_upto 2 clears the cache;
    at time 15 the session expires -> disconnected and empty tables."""
    machine = new_machine()
    feed = Feeder(machine)
    assert feed.connect("s1", 10, time=0).result == "ok"
    session = machine.sessions.get("s1")
    assert session is not None and (session.timeout_ms, session.expires_at) == (10, 10)

    assert feed.swrite("s1", 1, ["k1", "v1"], time=2).result == "ok"
    assert machine.sessions.get("s1").expires_at == 12  # type: ignore[union-attr]
    assert feed.swrite("s1", 2, ["delete", "nothing"], time=3).result is NOT_FOUND
    # a repeated message id is answered from the cache and not applied again
    feed.write(["k1", "changed-by-someone-else"], time=4)
    assert feed.swrite("s1", 1, ["k1", "v1-retry"], time=5).result == "ok"
    assert machine.query("k1").value == "changed-by-someone-else"
    assert sorted(machine.sessions.get("s1").replies) == [1, 2]  # type: ignore[union-attr]

    assert feed.ping("s1", 2, time=6).result == "ok"
    assert machine.sessions.get("s1").replies == {}  # type: ignore[union-attr]
    assert machine.sessions.get("s1").expires_at == 16  # type: ignore[union-attr]

    batch = feed.noop(time=16)
    assert batch.events == [_disconnected("s1")]
    assert len(machine.sessions) == 0 and machine.sessions.cached_reply_count() == 0


def test_write_after_expiry_is_refused_and_not_applied() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 10, time=0)
    batch = feed.apply(
        cmd.encode_session_write("s1", 1, 0, ["k", "v"]),
        time=10,
    )
    assert batch.replies[0].error == "session_expired"
    assert batch.events == [_disconnected("s1")]
    assert machine.query("k").value is NOT_FOUND


def test_unknown_session_write_and_ping_are_refused() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    batch = feed.apply(cmd.encode_ping("ghost", 0))
    assert batch.replies[0].error == "session_expired"
    assert batch.events == [_disconnected("ghost")]
    assert feed.swrite("ghost", 1, ["k", "v"]).error == "session_expired"
    assert machine.query("k").value is NOT_FOUND


def test_expiry_boundary_is_entry_time_at_or_after_expires_at() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 10, time=100)
    assert feed.swrite("s1", 1, ["k", 1], time=109).ok  # alive (109 < 110): now expires at 119
    assert feed.noop(time=118).events == []
    assert feed.noop(time=119).events == [_disconnected("s1")]


def test_acc_upto_starts_at_zero_and_never_wipes_unacknowledged_replies() -> None:
    """zraft_lib's acc_upto began as `undefined` and wiped the cache; here 0 keeps it."""
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 1000)
    feed.swrite("s1", 1, ["a", 1], acc_upto=0)
    feed.ping("s1", 0)
    feed.swrite("s1", 2, ["b", 1], acc_upto=0)
    assert sorted(machine.sessions.get("s1").replies) == [1, 2]  # type: ignore[union-attr]
    feed.swrite("s1", 3, ["c", 1], acc_upto=1)
    assert sorted(machine.sessions.get("s1").replies) == [2, 3]  # type: ignore[union-attr]
    # acc_upto never goes backwards
    feed.ping("s1", 0)
    assert machine.sessions.get("s1").acked_upto == 1  # type: ignore[union-attr]


def test_acknowledged_message_is_never_applied_again() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 1000)
    feed.swrite("s1", 1, ["counter", 1])
    feed.ping("s1", 1)
    feed.write(["counter", 5])
    stale = feed.swrite("s1", 1, ["counter", 1])
    assert stale.error == "duplicate"
    assert machine.query("counter").value == 5


def test_cached_error_results_are_replayed() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 1000)
    refused = feed.swrite("s1", 1, ["x", "y", "z", "w", "v"]).error
    assert refused == "bad_command: unknown dict backend write of 5 items"
    assert feed.swrite("s1", 1, ["k", "v"]).error == refused  # the cached reply, reason too
    assert machine.query("k").value is NOT_FOUND


def test_connect_exists_and_reconnect_after_expiry() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    assert feed.connect("s1", 10, time=0).ok
    assert feed.connect("s1", 10, time=5).error == "exists"
    feed.swrite("s1", 1, ["tmp", 1], time=6, temporary=True)
    # expiry at 16; a connect at 16 finds it gone (expired just before), re-registers
    batch = feed.apply(cmd.encode_connect("s1", 50), time=16)
    assert batch.replies[0].result == "ok"
    assert machine.query("tmp").value is NOT_FOUND
    session = machine.sessions.get("s1")
    assert session is not None and session.expires_at == 66 and session.replies == {}


def test_connect_on_expired_but_registered_session_drops_old_data() -> None:
    """The explicit path: registered but expired at the connect's own time."""
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 10, time=0)
    feed.swrite("s1", 1, ["tmp", 1], time=1, temporary=True)
    # bypass the pre-entry scan to reach the branch: expire state by hand
    machine.sessions.get("s1").expires_at = 5  # type: ignore[union-attr]
    batch = feed.apply(cmd.encode_connect("s1", 10), time=5)
    assert batch.replies[0].result == "ok"
    assert batch.events == []  # the reconnecting client is not told "disconnected"
    assert machine.query("tmp").value is NOT_FOUND
    assert machine.sessions.is_alive("s1", 14)
    assert feed.swrite("s1", 1, ["new", 1], time=14).ok


def test_close_expires_now_and_deletes_temporary_data() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 1000)
    feed.swrite("s1", 1, ["eph", 1], temporary=True)
    feed.swrite("s1", 2, ["perm", 1])
    batch = feed.apply(cmd.encode_close("s1"))
    assert batch.replies[0].result == "ok"
    assert batch.events == [_disconnected("s1")]
    assert machine.query("eph").value is NOT_FOUND
    assert machine.query("perm").value == 1
    assert "s1" not in machine.sessions
    assert feed.close("s1").result == "ok"  # closing again is harmless


def test_temporary_data_of_one_session_survives_another_expiring() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("short", 10)
    feed.connect("long", 1000)
    feed.swrite("short", 1, ["a", 1], temporary=True)
    feed.swrite("long", 1, ["b", 1], temporary=True)
    feed.swrite("short", 2, ["c", 1], temporary=True)
    feed.write(["c", "now-permanent"])
    batch = feed.noop(time=10)
    assert batch.events == [_disconnected("short")]
    assert machine.query("a").value is NOT_FOUND
    assert machine.query("b").value == 1
    assert machine.query("c").value == "now-permanent"


def test_expire_check_command() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("s1", 10, time=0)
    assert machine.next_expiry() == (10, "s1")
    assert feed.expire_check("s1", time=5).result == "alive"
    assert feed.expire_check("nobody", time=5).result == "gone"
    batch = feed.apply(cmd.encode_expire_check("s1"), time=10)
    assert batch.events == [_disconnected("s1")]
    # the scan before the entry expired it; the check itself finds it gone
    assert batch.replies[0].result == "gone"
    assert machine.next_expiry() is None


def test_next_expiry_follows_refreshes_and_order() -> None:
    machine = new_machine()
    feed = Feeder(machine)
    feed.connect("b", 100, time=0)
    feed.connect("a", 100, time=0)
    assert machine.next_expiry() == (100, "a")
    feed.ping("a", 0, time=50)
    assert machine.next_expiry() == (100, "b")
    batch = feed.noop(time=200)
    assert batch.events == [_disconnected("b"), _disconnected("a")]


def test_expiry_does_not_depend_on_batching() -> None:
    """A temporary key of an expired session is gone for the entry that comes after the
    deadline, whether the entries arrive in one batch or one by one."""
    from zraft.core.entries import DATA, Entry
    from zraft.fsm.commands import encode_connect, encode_session_write, encode_write

    datas = [
        (encode_connect("s", 10), 0),
        (encode_session_write("s", 1, 0, ["lock", "s"], True), 1),
        (encode_write(["cas", "lock", "s", "taken"]), 20),
    ]
    entries = [Entry(i + 1, 1, DATA, d, t) for i, (d, t) in enumerate(datas)]
    one_batch = new_machine()
    replies_a = one_batch.apply(entries).replies
    one_by_one = new_machine()
    replies_b = [r for e in entries for r in one_by_one.apply([e]).replies]
    assert replies_a == replies_b
    assert replies_a[2].result == ["cas_failed", NOT_FOUND]


def test_session_table_round_trip() -> None:
    table = SessionTable()
    table.register("b", 10, 0)
    table.register("a", 20, 5)
    table.finish_write("a", 3, 0, CachedReply(None, ["cas_failed", NOT_FOUND]))
    table.finish_write("a", 4, 0, CachedReply("bad_command", None))
    table.acknowledge("b", 7)
    raw = table.to_bytes()
    copy = SessionTable.from_bytes(raw)
    assert copy.to_bytes() == raw
    assert copy.cached("a", 3) == CachedReply(None, ["cas_failed", NOT_FOUND])
    assert copy.cached("a", 3).value[1] is NOT_FOUND  # type: ignore[union-attr]
    assert copy.get("b").acked_upto == 7  # type: ignore[union-attr]
    assert copy.next_deadline() == (10, "b")


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"\x92\x02\x90", b"\x92\x01\x91\x91\x01"])
def test_session_table_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        SessionTable.from_bytes(raw)


def test_session_table_heap_stays_bounded() -> None:
    table = SessionTable()
    table.register("s", 10, 0)
    for t in range(1, 10_000):
        table.touch("s", t)
    assert len(table._deadlines) < 200
    assert table.next_deadline() == (10_009, "s")


def test_table_connect_outcomes() -> None:
    table = SessionTable()
    assert table.connect("s", 10, 0) == "ok"
    assert table.connect("s", 99, 9) == "exists"
    assert table.get("s").timeout_ms == 10  # type: ignore[union-attr]
    table.finish_write("s", 1, 0, CachedReply(None, "ok"))
    assert table.connect("s", 20, 10) == "renewed"
    session = table.get("s")
    assert session is not None and session.expires_at == 30 and session.replies == {}


def test_table_write_decisions() -> None:
    table = SessionTable()
    assert table.start_write("s", 1, 0).action == "dead"
    table.connect("s", 10, 0)
    assert table.start_write("s", 1, 5).action == "apply"
    assert table.get("s").expires_at == 15  # type: ignore[union-attr]
    table.finish_write("s", 1, 0, CachedReply(None, "r1"))
    assert table.start_write("s", 1, 6) == ("cached", CachedReply(None, "r1"))
    table.finish_write("s", 1, 1)
    assert table.start_write("s", 1, 7) == ("duplicate", CachedReply("duplicate", None))
    assert table.start_write("s", 2, 8).action == "apply"
    assert table.start_write("s", 2, 18).action == "dead"  # expired at 18
    assert not table.ping("s", 0, 18)
    assert "s" in table  # the table reports; the machine expires
