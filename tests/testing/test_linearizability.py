"""The linearizability checker on hand-made and generated histories."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from zraft.testing.linearizability import (
    CAS,
    FAIL,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    Operation,
    RegisterModel,
    check_history,
)


def op(kind, key, t0, t1, value=None, expected=None, result=None, outcome=OK, process=0):
    return Operation(process, kind, key, value, expected, t0, t1, outcome, result)


def test_empty_history_is_linearizable():
    assert check_history([]).ok


def test_sequential_write_then_read():
    h = [op(WRITE, "k", 0, 1, value=1), op(READ, "k", 2, 3, result=1)]
    assert check_history(h).ok


def test_stale_read_after_completed_write_is_not_linearizable():
    h = [op(WRITE, "k", 0, 1, value=1), op(READ, "k", 2, 3, result=None)]
    result = check_history(h)
    assert not result.ok and not result.timed_out
    assert result.failures[0].key == "k"
    assert "NOT linearizable" in result.describe()


def test_concurrent_read_may_see_old_or_new_value():
    for seen in (None, 1):
        h = [op(WRITE, "k", 0, 10, value=1), op(READ, "k", 2, 3, result=seen)]
        assert check_history(h).ok


def test_read_cannot_go_back_in_time():
    # Two reads during one write: once one sees the new value, a later one cannot see the old.
    h = [
        op(WRITE, "k", 0, 10, value=1),
        op(READ, "k", 1, 2, result=1, process=1),
        op(READ, "k", 3, 4, result=None, process=2),
    ]
    assert not check_history(h).ok


def test_failed_write_never_takes_effect():
    h = [op(WRITE, "k", 0, 1, value=1, outcome=FAIL), op(READ, "k", 2, 3, result=1)]
    assert not check_history(h).ok


def test_unknown_write_may_take_effect_late_or_never():
    w = op(WRITE, "k", 0, None, value=1, outcome=UNKNOWN)
    assert check_history([w, op(READ, "k", 50, 51, result=1)]).ok
    assert check_history([w, op(READ, "k", 50, 51, result=None)]).ok
    # ...but not before it was invoked.
    late = op(WRITE, "k", 20, None, value=1, outcome=UNKNOWN)
    assert not check_history([late, op(READ, "k", 5, 6, result=1)]).ok
    # ...and once seen it stays (no un-happening).
    h = [w, op(READ, "k", 5, 6, result=1), op(READ, "k", 7, 8, result=None)]
    assert not check_history(h).ok


def test_unknown_reads_are_ignored():
    h = [op(WRITE, "k", 0, 1, value=1), op(READ, "k", 2, None, result=7, outcome=UNKNOWN)]
    assert check_history(h).ok


def test_compare_and_set():
    ok_cas = [
        op(WRITE, "k", 0, 1, value=1),
        op(CAS, "k", 2, 3, value=2, expected=1, result=True),
        op(READ, "k", 4, 5, result=2),
    ]
    assert check_history(ok_cas).ok
    wrong_success = [op(WRITE, "k", 0, 1, value=1), op(CAS, "k", 2, 3, 2, expected=5, result=True)]
    assert not check_history(wrong_success).ok
    wrong_failure = [op(WRITE, "k", 0, 1, value=1), op(CAS, "k", 2, 3, 2, expected=1, result=False)]
    assert not check_history(wrong_failure).ok
    unknown = op(CAS, "k", 2, None, value=2, expected=1, outcome=UNKNOWN)
    for seen in (1, 2):
        assert check_history([op(WRITE, "k", 0, 1, value=1), unknown,
                              op(READ, "k", 9, 10, result=seen)]).ok


def test_keys_are_checked_independently():
    h = [
        op(WRITE, "a", 0, 1, value=1),
        op(WRITE, "b", 0, 1, value=2),
        op(READ, "a", 2, 3, result=1),
        op(READ, "b", 2, 3, result=1),  # b never held 1
    ]
    result = check_history(h)
    assert not result.ok
    assert [v.key for v in result.failures] == ["b"]


def test_initial_value_of_the_model():
    h = [op(READ, "k", 0, 1, result=0)]
    assert not check_history(h).ok
    assert check_history(h, RegisterModel(initial_value=0)).ok


def test_search_budget_reports_timeout_not_a_verdict():
    # Many concurrent unknown writes make the state space explode.
    h = [op(WRITE, "k", i, None, value=i, outcome=UNKNOWN) for i in range(30)]
    h.append(op(READ, "k", 100, 101, result=-1))
    result = check_history(h, max_states=500)
    assert not result.ok and result.timed_out and not result.failures


# ---------------------------------------------------------------------------------------
# Generated histories.

KEYS = ["a", "b", "c"]


def _apply(state, kind, value, expected):
    """Reference semantics: (result, new state)."""
    if kind == READ:
        return state, state
    if kind == WRITE:
        return None, value
    if state == expected:
        return True, value
    return False, state


def _generated(rng: random.Random, n: int, concurrent: bool, unknown_rate: float = 0.0):
    """A history built around real linearization points, so it is linearizable by design."""
    ops = []
    points = []
    state = {}
    for i in range(n):
        if concurrent:
            t0 = rng.uniform(0, n)
            point = t0 + rng.uniform(0, 3)
            t1 = point + rng.uniform(0, 3)
        else:
            t0, point, t1 = 3.0 * i, 3.0 * i + 1, 3.0 * i + 2
        kind = rng.choice([READ, WRITE, CAS])
        key = rng.choice(KEYS)
        o = Operation(i % 5, kind, key, i, rng.choice([None, *range(max(i - 3, 0), i)]),
                      t0, t1, OK, None)
        if kind == READ:
            o.expected = None
        if kind != READ and rng.random() < unknown_rate:
            o.outcome = UNKNOWN
            o.complete_time = None
            if rng.random() < 0.5:
                point = None  # never took effect
        ops.append(o)
        points.append(point)
    for i in sorted((i for i in range(n) if points[i] is not None), key=lambda i: points[i]):
        o = ops[i]
        result, state[o.key] = _apply(state.get(o.key), o.kind, o.value, o.expected)
        if o.kind != WRITE and o.outcome == OK:
            o.result = result
    return ops


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_sequential_histories_are_linearizable(seed, n):
    assert check_history(_generated(random.Random(seed), n, concurrent=False)).ok


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 80))
def test_concurrent_histories_with_unknowns_are_linearizable(seed, n):
    h = _generated(random.Random(seed), n, concurrent=True, unknown_rate=0.2)
    result = check_history(h)
    assert result.ok, result.describe()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 60), st.data())
def test_mutated_sequential_histories_are_caught(seed, n, data):
    h = _generated(random.Random(seed), n, concurrent=False)
    reads = [o for o in h if o.kind == READ]
    cases = [o for o in h if o.kind == CAS]
    if not reads and not cases:
        return
    victim = data.draw(st.sampled_from(reads + cases))
    if victim.kind == READ:
        victim.result = "never-written"
    else:
        victim.result = not victim.result
    assert not check_history(h).ok


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 60))
def test_swapping_two_sequential_writes_is_caught(seed, n):
    rng = random.Random(seed)
    h = [op(WRITE, "k", 3 * i, 3 * i + 1, value=i) for i in range(n)]
    h.append(op(READ, "k", 3 * n, 3 * n + 1, result=n - 1))
    assert check_history(h).ok
    h[-1].result = rng.randrange(n - 1)  # an overwritten value: stale read
    assert not check_history(h).ok


def test_thousands_of_operations_check_quickly():
    rng = random.Random(7)
    h = _generated(rng, 4000, concurrent=True, unknown_rate=0.05)
    started = time.perf_counter()
    result = check_history(h)
    elapsed = time.perf_counter() - started
    assert result.ok, result.describe()
    assert elapsed < 10, elapsed


def test_explain_shows_the_operations_before_the_stuck_one():
    h = [op(WRITE, "k", 0, 1, value=1), op(READ, "k", 2, 3, result=None, process=4)]
    text = check_history(h).explain()
    assert "cannot be placed" in text
    assert "p0 write value=1" in text and "p4 read" in text
    assert check_history([]).explain() == "linearizable (0 keys)"
