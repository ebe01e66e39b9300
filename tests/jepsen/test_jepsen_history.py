"""The Jepsen history layer: outcome classification, per-key checking of recorded ops,
offending windows, and the crash-safety bookkeeping of write-once keys."""

from __future__ import annotations

from pathlib import Path

from zraft.fsm.codec import NOT_FOUND
from zraft.testing.jepsen.history import (
    CAS,
    FAIL,
    INSERT,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    History,
    Op,
    acknowledged_inserts,
    check_file,
    check_linearizable,
    load_ops,
    possible_inserts,
    save_ops,
)
from zraft.testing.jepsen.workload import classify, never_sent


def op(kind: str, key: str, invoke: float, complete: float | None, outcome: str = OK,
       value=None, expected=None, result=None, process: str = "p") -> Op:
    return Op(process, kind, key, value, expected, invoke, complete, outcome, result)


# -- classification ----------------------------------------------------------------------


def test_ok_answers_become_results() -> None:
    assert classify(READ, "ok", NOT_FOUND) == (OK, None)
    assert classify(READ, "ok", 7) == (OK, 7)
    assert classify(WRITE, "ok", "ok") == (OK, "ok")
    assert classify(CAS, "ok", "ok") == (OK, True)
    assert classify(CAS, "ok", ["cas_failed", 3]) == (OK, False)
    assert classify(CAS, "ok", "something else") == (UNKNOWN, None)


def test_only_certain_refusals_are_failures() -> None:
    assert classify(WRITE, "not_leader", {"leader": None}) == (FAIL, None)
    assert classify(WRITE, "leader_changed", {"message": "entry replaced"}) == (FAIL, None)
    assert classify(INSERT, "loading", {}) == (FAIL, None)
    for status in ("timeout", "local_timeout", "error", "session_expired"):
        assert classify(WRITE, status, {"message": "x"}) == (UNKNOWN, None)
    # a lost connection may have carried the request: unknown; a refused connect: failure
    lost = {"message": "node 127.0.0.1:1 closed the connection"}
    assert classify(CAS, "noproc", lost) == (UNKNOWN, None)
    refused = {"message": "cannot reach node 127.0.0.1:1: [Errno 111] Connection refused"}
    assert never_sent("noproc", refused)
    assert classify(CAS, "noproc", refused) == (FAIL, None)
    no_peer = {"message": "no running peer 'zraft' on 127.0.0.1:1"}
    assert classify(WRITE, "noproc", no_peer) == (FAIL, None)


def test_reads_that_did_not_answer_ok_are_failures() -> None:
    assert classify(READ, "timeout", None) == (FAIL, None)
    assert classify(READ, "local_timeout", None) == (FAIL, None)


# -- checking recorded histories ---------------------------------------------------------


def test_stale_read_after_acknowledged_write_is_caught(tmp_path: Path) -> None:
    ops = [
        op(WRITE, "k", 0, 1, value=1),
        op(WRITE, "k", 2, 3, value=2),
        op(READ, "k", 4, 5, result=1),  # 2 was acknowledged before this read began
        op(READ, "j", 0, 1, result=None),
    ]
    report = check_linearizable(ops, tmp_path)
    assert not report.ok
    assert report.keys == 2
    assert report.failures and "key k" in report.failures[0]
    assert report.window_file is not None
    window = load_ops(report.window_file)
    assert {o.key for o in window} == {"k"}
    assert not check_file(report.window_file).ok  # the saved window alone shows it


def test_unknown_write_may_take_effect_late_and_failed_write_never() -> None:
    late = [
        op(WRITE, "k", 0, None, UNKNOWN, value=1),
        op(READ, "k", 1, 2, result=None),
        op(READ, "k", 10, 11, result=1),  # the unknown write landed after the first read
    ]
    assert check_linearizable(late).ok
    failed = [
        op(WRITE, "k", 0, 1, FAIL, value=1),
        op(READ, "k", 2, 3, result=1),  # a write that certainly failed cannot be read
    ]
    assert not check_linearizable(failed).ok


def test_cas_results_must_match_the_register() -> None:
    good = [
        op(WRITE, "k", 0, 1, value=1),
        op(CAS, "k", 2, 3, value=2, expected=1, result=True),
        op(CAS, "k", 4, 5, value=3, expected=1, result=False),
        op(READ, "k", 6, 7, result=2),
    ]
    assert check_linearizable(good).ok
    bad = [
        op(WRITE, "k", 0, 1, value=1),
        op(CAS, "k", 2, 3, value=2, expected=1, result=False),  # it held 1: must succeed
    ]
    assert not check_linearizable(bad).ok


def test_inserts_are_left_to_the_crash_check() -> None:
    ops = [
        op(INSERT, "u.a", 0, 1, OK, value=1),
        op(INSERT, "u.b", 0, None, UNKNOWN, value=2),
        op(INSERT, "u.c", 0, 1, FAIL, value=3),
    ]
    assert check_linearizable(ops).keys == 0
    assert acknowledged_inserts(ops) == {"u.a": 1}
    assert possible_inserts(ops) == {"u.a": 1, "u.b": 2}


def test_history_records_invoke_and_completion_and_round_trips(tmp_path: Path) -> None:
    h = History()
    a = h.invoke("t1", WRITE, "k", 5, node="n1")
    b = h.invoke("t2", READ, "k")
    History.complete(a, OK, "ok")
    History.complete(b, FAIL, None, "not_leader")
    assert a.complete is not None and a.complete >= a.invoke
    assert h.counts() == {OK: 1, FAIL: 1, UNKNOWN: 0}
    h.save(tmp_path / "h.jsonl")
    again = load_ops(tmp_path / "h.jsonl")
    assert again == h.snapshot()
    save_ops(again, tmp_path / "h2.jsonl")
    assert (tmp_path / "h.jsonl").read_text() == (tmp_path / "h2.jsonl").read_text()
