"""Verdicts of a bank run: totals, the ledger, and linearizability under a bank model.

Rules:
- Every ok read of a bank must show ``accounts`` balances, none negative, summing to the
  bank's initial total (``bad_reads``).
- The final ledger (every member's, after convergence) decides unknown transfers: a
  transfer is applied iff its ``xfer`` id has a ledger row. An acked transfer must have
  exactly one row (none: ``lost``; more: ``duplicated``), a refused or failed one none, and
  no row may name a transfer nobody issued (``phantom``). Each bank's final balances must
  equal its initial ones plus its ledger's transfers (``ledger_mismatch``).
- Linearizability: per bank, ``zraft.testing.linearizability.check_history`` (Lowe's
  memoised Wing & Gong search) with ``BankModel``: the state is the tuple of balances; a
  transfer applies only if the source covers it, a refused one only where it does not; a
  read must see the state. Unknown transfers found in the ledger become ok with their
  completion at the final read (they did apply, some time before it); the others are
  dropped (they never applied). Each member's final balances are appended as reads.
  Search bound: one bank holds ``period`` seconds of ops (a few hundred), and after the
  ledger resolution only concurrency among in-flight ops branches; a bank whose search
  passes ``max_states`` memoised configurations is counted as ``gave up``, never as
  linearizable or not.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zraft.testing.jepsen.bank import REFUSED, TRANSFER, BankConfig, bank_key, bank_of
from zraft.testing.jepsen.history import FAIL, OK, READ, UNKNOWN, Op, offending_window, save_ops
from zraft.testing.linearizability import Operation, check_history


class BankModel:
    """Balances of one bank as a tuple; see the module rules."""

    def __init__(self, cfg: BankConfig) -> None:
        self.start = (cfg.initial,) * cfg.accounts

    def initial(self, key: Any) -> Any:
        return self.start

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        if op.kind == READ:
            return isinstance(op.result, list) and tuple(op.result) == state, state
        src, dst, amount = op.value[0], op.value[1], op.value[2]
        covered = state[src] >= amount
        if op.result == REFUSED:
            return not covered, state
        if not covered:
            return False, state  # the database would have refused it
        balances = list(state)
        balances[src] -= amount
        balances[dst] += amount
        return True, tuple(balances)


@dataclass
class BankVerdict:
    reads: int = 0
    bad_reads: list[str] = field(default_factory=list)
    transfers_acked: int = 0
    transfers_refused: int = 0
    transfers_unknown: int = 0
    unknown_applied: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    ledger_mismatch: list[str] = field(default_factory=list)
    banks_checked: int = 0
    gave_up: int = 0
    nonlinearizable: list[str] = field(default_factory=list)
    window_file: str | None = None

    @property
    def violations(self) -> list[str]:
        out = [*self.bad_reads[:5], *self.ledger_mismatch[:5], *self.nonlinearizable[:5]]
        for what, items in (("acked transfers lost", self.lost),
                            ("transfers applied twice", self.duplicated),
                            ("ledger rows of transfers never issued or refused", self.phantom)):
            if items:
                out.append(f"{what} ({len(items)}): {items[:5]}")
        return out

    @property
    def ok(self) -> bool:
        return not self.violations

    def figures(self) -> dict[str, int]:
        return {"reads": self.reads, "transfers_acked": self.transfers_acked,
                "transfers_refused": self.transfers_refused,
                "transfers_unknown": self.transfers_unknown,
                "unknown_applied": self.unknown_applied, "banks_checked": self.banks_checked,
                "gave_up": self.gave_up}


def check_reads(ops: list[Op], cfg: BankConfig, verdict: BankVerdict) -> None:
    for op in ops:
        if op.kind != READ or op.outcome != OK:
            continue
        verdict.reads += 1
        got = op.result
        if (not isinstance(got, list) or len(got) != cfg.accounts
                or any(not isinstance(b, int) or b < 0 for b in got) or sum(got) != cfg.total):
            verdict.bad_reads.append(f"{op.process} read {op.key} at {op.invoke:.3f} from "
                                     f"{op.node}: {str(got)[:200]} (total must be {cfg.total})")


def check_ledger(ops: list[Op], ledger: list[list[Any]], accounts: list[list[Any]],
                 cfg: BankConfig, verdict: BankVerdict) -> set[str]:
    """The ledger checks; returns the ids of applied transfers."""
    rows = Counter(str(r[1]) for r in ledger)
    issued = {str(op.value[3]): op for op in ops if op.kind == TRANSFER}
    for xfer, op in issued.items():
        n = rows.get(xfer, 0)
        if op.outcome == OK and op.result == "ok":
            verdict.transfers_acked += 1
            if n == 0:
                verdict.lost.append(xfer)
        elif op.outcome == OK:
            verdict.transfers_refused += 1
        elif op.outcome == UNKNOWN:
            verdict.transfers_unknown += 1
            verdict.unknown_applied += 1 if n else 0
        if n > 1:
            verdict.duplicated.append(xfer)
        if n and (op.outcome == FAIL or op.result == REFUSED):
            verdict.phantom.append(xfer)
    verdict.phantom.extend(x for x in rows if x not in issued)
    expected: dict[int, list[int]] = defaultdict(lambda: [cfg.initial] * cfg.accounts)
    for _seq, _xfer, bank, src, dst, amount in ledger:
        balances = expected[int(bank)]
        balances[int(src)] -= int(amount)
        balances[int(dst)] += int(amount)
    actual: dict[int, list[int]] = defaultdict(lambda: [cfg.initial] * cfg.accounts)
    for bank, account, balance in accounts:
        actual[int(bank)][int(account)] = balance
    for bank in sorted(set(expected) | set(actual)):
        if expected[bank] != actual[bank]:
            verdict.ledger_mismatch.append(f"bank {bank}: balances {actual[bank]} but initial "
                                           f"+ ledger gives {expected[bank]}")
    return {x for x in rows if x in issued}


def final_reads(states: dict[str, dict[str, Any]], ops: list[Op], cfg: BankConfig,
                at: float) -> list[Op]:
    """Every member's final balances of every bank the history touched, as reads."""
    keys = sorted({op.key for op in ops}, key=bank_of)
    finals = []
    for peer, state in states.items():
        balances: dict[int, list[int]] = defaultdict(lambda: [cfg.initial] * cfg.accounts)
        for bank, account, balance in state["accounts"]:
            balances[int(bank)][int(account)] = balance
        for key in keys:
            finals.append(Op(f"final:{peer}", READ, key, invoke=at, complete=at + 1e-6,
                             outcome=OK, result=list(balances[bank_of(key)]), node=peer))
    return finals


def resolve_unknowns(ops: list[Op], applied: set[str], at: float) -> list[Op]:
    """Unknown transfers found in the ledger: ok, completed by ``at``; the rest: failed."""
    out = []
    for op in ops:
        if op.kind == TRANSFER and op.outcome == UNKNOWN:
            if str(op.value[3]) in applied:
                op = replace(op, outcome=OK, result="ok", complete=at - 1e-3, error="resolved")
            else:
                op = replace(op, outcome=FAIL, error="resolved: never applied")
        out.append(op)
    return out


def check_linearizable(ops: list[Op], cfg: BankConfig, verdict: BankVerdict,
                       window_dir: Path | None, max_states: int = 300_000) -> None:
    model = BankModel(cfg)
    result = check_history([op.to_operation() for op in ops], model, max_states=max_states)
    verdict.banks_checked = len(result.verdicts)
    verdict.gave_up = sum(1 for v in result.verdicts if v.timed_out)
    failures = [v for v in result.verdicts if not v.ok and not v.timed_out]
    verdict.nonlinearizable = [f"{v.key}: cannot place {v.stuck_on}" for v in failures]
    if failures and window_dir is not None:
        first = failures[0]
        window_dir.mkdir(parents=True, exist_ok=True)
        path = window_dir / f"nonlinearizable-{first.key}.jsonl"
        save_ops(offending_window(ops, first.key, first.stuck_on), path)
        verdict.window_file = str(path)


def check_bank(ops: list[Op], states: dict[str, dict[str, Any]], cfg: BankConfig,
               window_dir: Path | None = None, at: float | None = None
               ) -> tuple[BankVerdict, list[Op]]:
    """Every check of a bank history against the members' converged final ``states``
    (equal on every member: ``safety.converge`` reports any difference). Returns the
    verdict and the history as checked (unknowns resolved, final reads appended)."""
    at = time.monotonic() if at is None else at
    verdict = BankVerdict()
    check_reads(ops, cfg, verdict)
    reference = next(iter(states.values()))
    applied = check_ledger(ops, reference["ledger"], reference["accounts"], cfg, verdict)
    checked = resolve_unknowns(ops, applied, at) + final_reads(states, ops, cfg, at)
    check_linearizable(checked, cfg, verdict, window_dir)
    return verdict, checked


__all__ = ["BankModel", "BankVerdict", "bank_key", "check_bank", "check_ledger",
           "check_linearizable", "check_reads", "final_reads", "resolve_unknowns"]
