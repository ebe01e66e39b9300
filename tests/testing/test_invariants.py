"""The safety checker catches each broken property and accepts correct histories."""

from __future__ import annotations

import pytest

from zraft.core.entries import DATA, NOOP, Entry
from zraft.testing.sim.invariants import InvariantViolation, SafetyChecker, ShadowLog


def e(index, term, data=b"x", etype=DATA):
    return Entry(index, term, etype, data, 0)


def log_of(*terms, base=0, base_term=0):
    return ShadowLog(base, base_term, list(terms))


def test_shadow_log_append_truncates_conflicts():
    log = log_of(1, 1, 1)
    log.append([e(3, 2), e(4, 2)])
    assert log.terms == [1, 1, 2, 2] and log.last_index == 4
    assert log.term(0) == 0 and log.term(5) is None


def test_shadow_log_rejects_gaps():
    with pytest.raises(InvariantViolation, match="gap"):
        log_of(1).append([e(3, 1)])


def test_shadow_log_snapshot_keeps_matching_suffix_only():
    log = log_of(1, 1, 2, 2)
    log.install_snapshot(2, 1)
    assert (log.base, log.base_term, log.terms) == (2, 1, [2, 2])
    log.install_snapshot(5, 3)
    assert (log.base, log.terms) == (5, [])
    log.compact(4)  # below the base: nothing happens
    assert log.base == 5


def test_shadow_log_compact():
    log = log_of(1, 1, 2, 2)
    log.compact(3)
    assert (log.base, log.base_term, log.terms) == (3, 2, [2])
    assert log.term(2) is None


def test_election_safety():
    c = SafetyChecker()
    c.leader_elected("a", 3, log_of())
    c.leader_elected("a", 3, log_of())  # the same leader twice is fine
    with pytest.raises(InvariantViolation, match="election safety"):
        c.leader_elected("b", 3, log_of())


def test_log_matching_same_index_term_different_entry():
    c = SafetyChecker()
    la, lb = log_of(), log_of()
    la.append([e(1, 1, b"a")])
    c.appended("a", [e(1, 1, b"a")], la)
    lb.append([e(1, 1, b"b")])
    with pytest.raises(InvariantViolation, match="log matching"):
        c.appended("b", [e(1, 1, b"b")], lb)


def test_log_matching_same_entry_different_predecessor():
    c = SafetyChecker()
    la, lb = log_of(1), log_of(2)
    la.append([e(2, 3)])
    c.appended("a", [e(2, 3)], la)
    lb.append([e(2, 3)])
    with pytest.raises(InvariantViolation, match="log matching"):
        c.appended("b", [e(2, 3)], lb)


def test_state_machine_safety_and_monotonic_apply():
    c = SafetyChecker()
    c.applied("a", 1, e(1, 1, b"x"))
    c.applied("b", 1, e(1, 1, b"x"))
    with pytest.raises(InvariantViolation, match="state-machine safety"):
        c.applied("c", 2, e(1, 2, b"y"))
    with pytest.raises(InvariantViolation, match="backwards or skipped"):
        c.applied("a", 1, e(3, 1))
    c.reset_applied("a", 5)  # restarted from a snapshot at 5
    c.applied("a", 1, e(6, 1))


def test_leader_completeness():
    c = SafetyChecker()
    for i in (1, 2):
        c.applied("a", 2, e(i, 1 if i == 1 else 2, etype=NOOP, data=None))
    c.leader_elected("b", 3, log_of(1, 2))  # has both: fine
    c.leader_elected("x", 2, log_of(1))  # same term as the commit: not required
    with pytest.raises(InvariantViolation, match="leader completeness"):
        c.leader_elected("c", 4, log_of(1))
    with pytest.raises(InvariantViolation, match="leader completeness"):
        c.leader_elected("d", 5, log_of(1, 1))
    c.leader_elected("e", 6, log_of(base=2, base_term=2))  # covered by its snapshot
    with pytest.raises(InvariantViolation, match="snapshot"):
        c.leader_elected("f", 7, log_of(base=2, base_term=1))


def test_acknowledged_writes_must_be_everywhere():
    c = SafetyChecker()
    c.applied("a", 1, e(1, 1))
    c.check_acknowledged([(1, 1)], {"a": 1, "b": 3})
    with pytest.raises(InvariantViolation, match="missing acknowledged"):
        c.check_acknowledged([(1, 1)], {"a": 1, "b": 0})
    with pytest.raises(InvariantViolation, match="not the entry"):
        c.check_acknowledged([(1, 2)], {"a": 1})
    with pytest.raises(InvariantViolation, match="not the entry"):
        c.check_acknowledged([(9, 1)], {"a": 1})


def test_commit_never_goes_backwards_within_an_incarnation():
    c = SafetyChecker()
    c.commit_observed("a", 3)
    c.commit_observed("a", 3)
    with pytest.raises(InvariantViolation, match="commit went backwards"):
        c.commit_observed("a", 2)
    c.restarted("a", 1)  # commit is volatile: a new incarnation starts low again
    c.commit_observed("a", 1)
    c.applied("a", 1, e(2, 1))
