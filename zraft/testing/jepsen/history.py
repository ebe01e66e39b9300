"""Histories of client operations against real node processes, and their checks.

Rules:
- Every operation is recorded twice: at invoke (before the request leaves) and at completion,
  with ``time.monotonic()`` stamps. CLOCK_MONOTONIC is system-wide on Linux, so histories
  written by separate client processes merge on one time line.
- Outcomes: ``ok`` (took effect, ``result`` is what the client saw), ``fail`` (certainly not
  applied) and ``unknown`` (timeout, connection lost: may take effect at any later moment, or
  never). An operation never completed (its client died) stays ``unknown``.
- Kinds: ``read``/``write``/``cas`` on register keys go to the linearizability checker (per
  key); ``insert`` puts a fresh write-once key and feeds the crash-safety check (every
  acknowledged insert must be on every live node at the end).
- ``None`` stands for "absent" (the backend's NOT_FOUND) in values and results.
- Histories are saved as JSON lines (one op per line) so a failing window can be replayed
  by ``check_file``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zraft.testing.linearizability import (
    CAS,
    FAIL,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    CheckResult,
    Operation,
    check_history,
)

INSERT = "insert"
REGISTER_KINDS = (READ, WRITE, CAS)


@dataclass(slots=True)
class Op:
    """One recorded client call (JSON-friendly)."""

    process: str
    kind: str
    key: str
    value: Any = None
    expected: Any = None
    invoke: float = 0.0
    complete: float | None = None
    outcome: str = UNKNOWN
    result: Any = None
    node: str = ""
    error: str = ""

    def to_operation(self) -> Operation:
        return Operation(self.process, self.kind, self.key, self.value, self.expected,
                         self.invoke, self.complete, self.outcome, self.result)


class History:
    """A thread-safe, append-only list of ``Op`` records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = []

    def invoke(self, process: str, kind: str, key: str, value: Any = None,
               expected: Any = None, node: str = "") -> Op:
        op = Op(process, kind, key, value, expected, time.monotonic(), node=node)
        with self._lock:
            self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, outcome: str, result: Any = None, error: str = "") -> None:
        op.complete = time.monotonic()
        op.outcome = outcome
        op.result = result
        op.error = error

    def extend(self, ops: list[Op]) -> None:
        with self._lock:
            self.ops.extend(ops)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def counts(self) -> dict[str, int]:
        out = {OK: 0, FAIL: 0, UNKNOWN: 0}
        for op in self.snapshot():
            out[op.outcome] = out.get(op.outcome, 0) + 1
        return out

    def save(self, path: str | Path) -> None:
        save_ops(self.snapshot(), path)


def save_ops(ops: list[Op], path: str | Path) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(json.dumps(asdict(op)) + "\n")


def load_ops(path: str | Path) -> list[Op]:
    ops = []
    with open(path) as f:
        for line in f:
            if line.strip():
                ops.append(Op(**json.loads(line)))
    return ops


@dataclass
class LinearizabilityReport:
    ok: bool
    keys: int
    operations: int
    timed_out_keys: int
    failures: list[str]
    window_file: str | None = None


def check_linearizable(ops: list[Op], window_dir: Path | None = None,
                       max_states: int = 500_000) -> LinearizabilityReport:
    """Check the register operations per key. A key whose search gives up counts as
    ``timed_out`` (not a violation). On a violation the key's history is saved to
    ``window_dir/nonlinearizable-<key>.jsonl``."""
    register = [op for op in ops if op.kind in REGISTER_KINDS]
    result: CheckResult = check_history([op.to_operation() for op in register],
                                        max_states=max_states)
    failures = [v for v in result.verdicts if not v.ok and not v.timed_out]
    report = LinearizabilityReport(not failures, len(result.verdicts), len(register),
                                   sum(1 for v in result.verdicts if v.timed_out),
                                   [f"key {v.key}: cannot place {v.stuck_on}" for v in failures])
    if failures and window_dir is not None:
        window_dir.mkdir(parents=True, exist_ok=True)
        first = failures[0]
        path = window_dir / f"nonlinearizable-{first.key}.jsonl"
        save_ops(offending_window(register, first.key, first.stuck_on), path)
        report.window_file = str(path)
    return report


def offending_window(ops: list[Op], key: Any, stuck: Operation | None,
                     context: float = 5.0) -> list[Op]:
    """The key's operations overlapping ``context`` seconds around the op that could not be
    placed (the whole key if unknown), sorted by invoke time."""
    mine = sorted((op for op in ops if op.key == key), key=lambda o: o.invoke)
    if stuck is None:
        return mine
    lo = stuck.invoke_time - context
    hi = (stuck.complete_time or stuck.invoke_time) + context
    return [op for op in mine if (op.complete or float("inf")) >= lo and op.invoke <= hi]


def check_file(path: str | Path) -> LinearizabilityReport:
    """Re-check a saved history or window."""
    return check_linearizable(load_ops(path))


def acknowledged_inserts(ops: list[Op]) -> dict[str, Any]:
    """Write-once keys whose insert was acknowledged, with the value written."""
    return {op.key: op.value for op in ops if op.kind == INSERT and op.outcome == OK}


def possible_inserts(ops: list[Op]) -> dict[str, Any]:
    """Write-once keys that may exist (acknowledged or unknown)."""
    return {op.key: op.value for op in ops if op.kind == INSERT and op.outcome != FAIL}


__all__ = [
    "CAS",
    "FAIL",
    "INSERT",
    "OK",
    "READ",
    "UNKNOWN",
    "WRITE",
    "History",
    "LinearizabilityReport",
    "Op",
    "acknowledged_inserts",
    "check_file",
    "check_linearizable",
    "load_ops",
    "possible_inserts",
    "save_ops",
]
