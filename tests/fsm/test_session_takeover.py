"""A new leader renews every session (issue 11, section 3).

The defect: a session pinging every timeout/2 lost its temporary key when the leader was
SIGKILLed, because the time without a leader counted against the session: the new leader's
first expiry check carried a time past the session's deadline. The rule (ZooKeeper's and
etcd's): before the first DATA entry of a new term is applied, every session gets at least a
full timeout from that entry's time. It is decided from the log only, so every replica,
however its entries were batched and whether or not it restored a snapshot in between,
renews and expires the same sessions at the same entries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.core.entries import DATA, NOOP, Entry
from zraft.fsm import commands as cmd
from zraft.fsm.machine import DISCONNECTED, SessionEvent, StateMachine
from zraft.fsm.sessions import SessionTable


def _owner(timeout_ms: int = 1000) -> tuple[StateMachine, Feeder]:
    """Term 1: session s1 connects at 0, writes a temporary key, last pings at 500."""
    machine = new_machine()
    feed = Feeder(machine, term=1)
    assert feed.connect("s1", timeout_ms, time=0).ok
    assert feed.swrite("s1", 1, ["eph", "owned"], time=0, temporary=True).ok
    assert feed.ping("s1", 1, time=500).ok
    return machine, feed


def test_a_takeover_after_the_deadline_does_not_expire_a_live_session() -> None:
    machine, feed = _owner()
    assert machine.sessions.get("s1").expires_at == 1500
    feed.term = 2                      # the leader died at ~600; a new one took over
    assert feed.noop(time=500).events == []  # a NOOP carries the previous entry's time
    # the new leader's expiry check, proposed once its clock passed 1500: the first DATA
    # entry of term 2 renews s1 before anything expires at its time
    check = feed.reply(cmd.encode_expire_check("s1"), time=1600)
    assert (check.error, check.result) == (None, "alive")
    assert machine.sessions.get("s1").expires_at == 1600 + 1000
    assert machine.sessions.leader_term == 2
    assert machine.query("eph").value == "owned"
    assert feed.ping("s1", 1, time=2400).ok  # the client reached the new leader in time


def test_without_the_rule_the_same_log_expired_it() -> None:
    """The same entries as above, all in term 1 (no takeover): s1 expires at 1600 as it
    should, since its deadline passed under one leader."""
    machine, feed = _owner()
    batch = feed.apply(cmd.encode_expire_check("s1"), time=1600)
    assert batch.replies[0].result == "gone"
    assert batch.events == [SessionEvent(DISCONNECTED, "s1")]
    assert machine.query("eph").value is not None and "s1" not in machine.sessions


def test_the_renewal_is_once_per_term_and_never_shortens() -> None:
    machine, feed = _owner(timeout_ms=1000)
    assert feed.connect("long", 60_000, time=500).ok      # expires at 60500
    feed.term = 2
    assert feed.write(["k", 1], time=700).ok              # first DATA of term 2: renewal
    assert machine.sessions.get("s1").expires_at == 1700
    assert machine.sessions.get("long").expires_at == 60_700
    assert feed.write(["k", 2], time=1650).ok            # same term: no second renewal
    assert machine.sessions.get("s1").expires_at == 1700
    batch = feed.apply(cmd.encode_expire_check("s1"), time=1800)
    assert batch.events == [SessionEvent(DISCONNECTED, "s1")]  # s1 never pinged again
    assert "long" in machine.sessions


def test_noop_and_config_of_a_new_term_do_not_renew() -> None:
    machine, feed = _owner()
    feed.term = 2
    feed.noop(time=500)
    feed.config(time=500)
    assert machine.sessions.leader_term == 1
    assert machine.sessions.get("s1").expires_at == 1500
    # a NOOP whose time is past a deadline (the new leader's log held a later entry of the
    # old term) still expires what was due under the old leader
    feed.term = 3
    assert feed.noop(time=1500).events == [SessionEvent(DISCONNECTED, "s1")]


def test_a_connect_opening_the_term_renews_the_others_first() -> None:
    machine, feed = _owner()
    feed.term = 2
    assert feed.connect("s2", 300, time=2000).ok
    assert machine.sessions.get("s1").expires_at == 3000
    assert machine.sessions.get("s2").expires_at == 2300


def _takeover_log() -> list[Entry]:
    """Term 1: two sessions; term 2: NOOP, an expiry check past both deadlines, pings;
    term 3: a NOOP, then nothing from s2 for longer than its timeout."""
    items = [
        (1, DATA, cmd.encode_connect("s1", 1000), 0),
        (1, DATA, cmd.encode_connect("s2", 400), 0),
        (1, DATA, cmd.encode_session_write("s1", 1, 0, ["a", 1], True), 10),
        (1, DATA, cmd.encode_session_write("s2", 1, 0, ["b", 2], True), 10),
        (2, NOOP, None, 10),
        (2, DATA, cmd.encode_expire_check("s2"), 2000),
        (2, DATA, cmd.encode_ping("s1", 1), 2100),
        (2, DATA, cmd.encode_ping("s2", 1), 2300),
        (3, NOOP, None, 2300),
        (3, DATA, cmd.encode_write(["c", 3]), 2350),
        (3, DATA, cmd.encode_expire_check("s2"), 3200),
    ]
    return [Entry(i, term, kind, data, time)
            for i, (term, kind, data, time) in enumerate(items, start=1)]


def _outcome(machine: StateMachine) -> tuple[bytes, list[str]]:
    return machine.sessions.to_bytes(), sorted(str(k) for k, _ in machine.backend.items())


def test_every_replica_decides_alike_whatever_the_batches_and_snapshots() -> None:
    entries = _takeover_log()
    reference = new_machine()
    ref_batch = reference.apply(entries)
    # s1 survived both takeovers; s2 survived the first (renewed at 2000) and then expired
    # in term 3: renewed to 2750 at 2350, not pinged since 2300
    assert sorted(reference.sessions) == ["s1"]
    assert ref_batch.events == [SessionEvent(DISCONNECTED, "s2")]
    assert _outcome(reference)[1] == ["a", "c"]
    for cut in range(len(entries) + 1):
        one_by_one = new_machine()
        events = [e for entry in entries for e in one_by_one.apply([entry]).events]
        assert events == ref_batch.events
        split = new_machine()
        split.apply(entries[:cut])
        image = split.take_snapshot()
        with tempfile.TemporaryDirectory() as tmp:
            image.write(Path(tmp))
            split.snapshot_done(image)
            restored = new_machine()
            restored.restore(Path(tmp))
        assert restored.sessions.leader_term == split.sessions.leader_term
        assert restored.apply(entries[cut:]).replies == split.apply(entries[cut:]).replies
        assert _outcome(restored) == _outcome(split) == _outcome(reference)


def test_the_session_table_keeps_leader_term_and_reads_format_1() -> None:
    table = SessionTable()
    table.register("s1", 1000, 0)
    table.register("s2", 1000, 900)
    table.new_leader(7, 100)
    assert table.get("s1").expires_at == 1100
    assert table.get("s2").expires_at == 1900  # an earlier time never shortens a deadline
    assert table.next_deadline() == (1100, "s1")
    copy = SessionTable.from_bytes(table.to_bytes())
    assert copy.leader_term == 7 and copy.to_bytes() == table.to_bytes()
    from zraft.fsm.codec import packb

    old = SessionTable.from_bytes(packb([1, [["s1", 1000, 1100, 0, []]]]))
    assert old.leader_term == 0 and old.get("s1").expires_at == 1100
