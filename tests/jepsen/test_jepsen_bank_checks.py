"""The bank checks on hand-made histories (no cluster): a correct history passes, and each
planted defect (a total off by one, a stale read with the right total, a lost or doubled
acked transfer, a refusal the balances contradict) fails the check meant for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zraft.testing.jepsen.bank import REFUSED, TRANSFER, BankConfig, classify_transfer
from zraft.testing.jepsen.bank_check import check_bank
from zraft.testing.jepsen.history import FAIL, OK, READ, UNKNOWN, Op

CFG = BankConfig(accounts=3, initial=10)


def xfer(process: str, t0: float, t1: float | None, src: int, dst: int, n: int, xid: str,
         outcome: str = OK, result: Any = "ok") -> Op:
    return Op(process, TRANSFER, "bank0", [src, dst, n, xid], invoke=t0, complete=t1,
              outcome=outcome, result=result)


def read(process: str, t0: float, t1: float, balances: list[int]) -> Op:
    return Op(process, READ, "bank0", invoke=t0, complete=t1, outcome=OK, result=balances)


def state(accounts: list[int], ledger: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    return {"accounts": [[0, i, b] for i, b in enumerate(accounts)],
            "ledger": [[seq + 1, x, 0, s, d, n] for seq, (x, s, d, n) in enumerate(ledger)],
            "barriers": []}


def good_history() -> tuple[list[Op], dict[str, dict[str, Any]]]:
    ops = [
        xfer("a", 1.0, 2.0, 0, 1, 4, "a.1"),  # [6, 14, 10]
        read("b", 1.5, 2.5, [6, 14, 10]),  # concurrent: sees it
        xfer("a", 3.0, 4.0, 2, 0, 30, "a.2", result=REFUSED),  # 10 < 30: refused
        xfer("c", 3.0, None, 1, 2, 5, "c.1", outcome=UNKNOWN),  # applied (in the ledger)
        xfer("d", 3.0, None, 0, 2, 1, "d.1", outcome=UNKNOWN),  # never applied
        xfer("e", 3.2, 3.3, 2, 0, 1, "e.1", outcome=FAIL, result=None),
        read("b", 5.0, 5.5, [6, 9, 15]),
    ]
    final = state([6, 9, 15], [("a.1", 0, 1, 4), ("c.1", 1, 2, 5)])
    return ops, {"p1": final, "p2": final}


def test_a_correct_history_passes_and_unknowns_are_resolved_by_the_ledger(
        tmp_path: Path) -> None:
    ops, states = good_history()
    verdict, checked = check_bank(ops, states, CFG, tmp_path, at=10.0)
    assert verdict.ok, verdict.violations
    assert (verdict.transfers_acked, verdict.transfers_refused) == (1, 1)
    assert (verdict.transfers_unknown, verdict.unknown_applied) == (2, 1)
    assert verdict.banks_checked == 1 and verdict.gave_up == 0 and verdict.reads == 2
    resolved = {op.value[3]: op.outcome for op in checked if op.kind == TRANSFER}
    assert resolved["c.1"] == OK and resolved["d.1"] == FAIL
    assert sum(1 for op in checked if op.process.startswith("final:")) == 2


def test_a_read_with_the_total_off_by_one_fails(tmp_path: Path) -> None:
    ops, states = good_history()
    ops[1] = read("b", 1.5, 2.5, [6, 14, 11])
    verdict, _ = check_bank(ops, states, CFG, tmp_path, at=10.0)
    assert verdict.bad_reads and "total must be 30" in verdict.bad_reads[0]
    assert verdict.nonlinearizable and not verdict.ok


def test_a_stale_read_with_the_right_total_is_not_linearizable(tmp_path: Path) -> None:
    ops, states = good_history()
    ops[1] = read("b", 2.1, 2.5, [10, 10, 10])  # after a.1 was acked: must see it
    verdict, _ = check_bank(ops, states, CFG, tmp_path, at=10.0)
    assert not verdict.bad_reads  # the totals alone cannot see it
    assert verdict.nonlinearizable and not verdict.ok
    assert verdict.window_file is not None and Path(verdict.window_file).exists()


def test_a_lost_acked_transfer_fails(tmp_path: Path) -> None:
    ops, _ = good_history()
    lost = state([10, 5, 15], [("c.1", 1, 2, 5)])  # a.1 was acked, its effect is gone
    verdict, _ = check_bank(ops, {"p1": lost}, CFG, tmp_path, at=10.0)
    assert verdict.lost == ["a.1"] and not verdict.ok
    assert any("acked transfers lost" in v for v in verdict.violations)


def test_a_transfer_applied_twice_fails(tmp_path: Path) -> None:
    ops, _ = good_history()
    doubled = state([2, 13, 15], [("a.1", 0, 1, 4), ("a.1", 0, 1, 4), ("c.1", 1, 2, 5)])
    verdict, _ = check_bank(ops, {"p1": doubled}, CFG, tmp_path, at=10.0)
    assert verdict.duplicated == ["a.1"] and not verdict.ok


def test_balances_that_disagree_with_the_ledger_fail(tmp_path: Path) -> None:
    ops, _ = good_history()
    off = state([6, 9, 16], [("a.1", 0, 1, 4), ("c.1", 1, 2, 5)])
    verdict, _ = check_bank(ops, {"p1": off}, CFG, tmp_path, at=10.0)
    assert verdict.ledger_mismatch and not verdict.ok


def test_a_refusal_the_balances_contradict_is_not_linearizable(tmp_path: Path) -> None:
    ops, states = good_history()
    ops[2] = xfer("a", 3.0, 4.0, 2, 0, 3, "a.2", result=REFUSED)  # 10 >= 3 at any point
    verdict, _ = check_bank(ops, states, CFG, tmp_path, at=10.0)
    assert verdict.nonlinearizable and not verdict.ok


def test_a_ledger_row_of_a_refused_or_unissued_transfer_fails(tmp_path: Path) -> None:
    ops, _ = good_history()
    extra = state([6, 9, 15], [("a.1", 0, 1, 4), ("c.1", 1, 2, 5), ("zz.9", 0, 1, 0)])
    verdict, _ = check_bank(ops, {"p1": extra}, CFG, tmp_path, at=10.0)
    assert verdict.phantom == ["zz.9"] and not verdict.ok


def test_an_overdraft_answer_is_an_ok_refusal_other_errors_are_not() -> None:
    check = {"message": "IntegrityError: CHECK constraint failed: balance >= 0"}
    assert classify_transfer("bad_command", check) == (OK, REFUSED)
    assert classify_transfer("not_leader", {"leader": None}) == (FAIL, None)
    assert classify_transfer("timeout", None) == (UNKNOWN, None)
    assert classify_transfer("bad_command", {"message": "OperationalError: x"})[0] == UNKNOWN
