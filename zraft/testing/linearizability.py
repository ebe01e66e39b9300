"""A Wing & Gong linearizability checker for key/value register histories.

Rules:
- A history is a list of ``Operation`` records, one per client call, whatever produced it (the
  simulator, or real node processes). Times are any comparable numbers; only their order counts.
- ``outcome`` is ``ok`` (took effect, ``result`` is what the caller saw), ``fail`` (definitely
  did NOT take effect: dropped before checking) or ``unknown`` (may take effect at any moment
  after ``invoke_time``, or never). Unknown reads carry no information and are dropped.
- The history is split per key (P-compositionality: a register history is linearizable iff
  each key's sub-history is), and each key is searched with Wing & Gong's backtracking as
  refined by Lowe (memoise ``(linearized set, model state)``; revisit nothing).
- Calls sort before returns at equal times, so touching operations count as concurrent (the
  permissive reading; the simulator never produces equal times anyway).
- The model is pluggable (``RegisterModel`` by default). A search stops after ``max_states``
  memoised configurations and reports ``timed_out`` instead of a verdict.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

READ = "read"
WRITE = "write"
CAS = "cas"

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"

_INFINITY = float("inf")


@dataclass(slots=True)
class Operation:
    """One client call. ``value`` is what a write/cas stores, ``expected`` what a cas compares
    against; ``result`` is a read's value or a cas's success flag (``True``/``False``)."""

    process: Any
    kind: str
    key: Any
    value: Any = None
    expected: Any = None
    invoke_time: float = 0
    complete_time: float | None = None
    outcome: str = UNKNOWN
    result: Any = None


class Model(Protocol):
    def initial(self, key: Any) -> Any: ...

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        """Apply ``op`` to ``state``: (is this outcome possible here, state after)."""
        ...


class RegisterModel:
    """A register per key; ``None`` means absent (the initial value)."""

    def __init__(self, initial_value: Any = None) -> None:
        self.initial_value = initial_value

    def initial(self, key: Any) -> Any:
        return self.initial_value

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        kind = op.kind
        if kind == WRITE:
            return True, op.value
        if kind == READ:
            return op.result == state, state
        if kind == CAS:
            matched = op.expected == state
            if op.outcome == UNKNOWN:
                # An unknown cas that does not match has no effect: same as never happening.
                return True, (op.value if matched else state)
            if bool(op.result) != matched:
                return False, state
            return True, (op.value if matched else state)
        raise ValueError(f"unknown operation kind {kind!r}")


@dataclass
class KeyVerdict:
    key: Any
    ok: bool
    timed_out: bool
    operations: int
    states: int
    stuck_on: Operation | None = None  # a completed op no linearization could place
    history: list[Operation] = field(default_factory=list, repr=False)

    def window(self, before: int = 12) -> list[Operation]:
        """The ops invoked up to the stuck one (the last ``before`` of them), for reports."""
        if self.stuck_on is None:
            return []
        ordered = sorted(self.history, key=lambda o: o.invoke_time)
        cut = ordered.index(self.stuck_on) + 1
        return ordered[max(0, cut - before) : cut]


@dataclass
class CheckResult:
    ok: bool
    timed_out: bool
    verdicts: list[KeyVerdict] = field(default_factory=list)

    @property
    def failures(self) -> list[KeyVerdict]:
        return [v for v in self.verdicts if not v.ok and not v.timed_out]

    def explain(self) -> str:
        """``describe()`` plus, per failing key, the operations leading up to the stuck one."""
        lines = [self.describe()]
        for verdict in self.failures:
            lines.append(f"  key {verdict.key!r}, operations up to the one that cannot be placed:")
            for op in verdict.window():
                lines.append(
                    f"    [{op.invoke_time} .. {op.complete_time}] p{op.process} {op.kind} "
                    f"value={op.value} expected={op.expected} -> {op.outcome} {op.result}"
                )
        return "\n".join(lines)

    def describe(self) -> str:
        if self.ok:
            return f"linearizable ({len(self.verdicts)} keys)"
        parts = []
        for v in self.verdicts:
            if v.timed_out:
                parts.append(f"key {v.key!r}: search gave up after {v.states} states")
            elif not v.ok:
                parts.append(
                    f"key {v.key!r}: NOT linearizable ({v.operations} ops); "
                    f"cannot place {v.stuck_on}"
                )
        return "; ".join(parts)


def check_history(
    history: list[Operation], model: Model | None = None, max_states: int = 2_000_000
) -> CheckResult:
    """Check a whole history, one key at a time. ``ok`` is False on a violation or timeout."""
    model = model or RegisterModel()
    by_key: dict[Any, list[Operation]] = defaultdict(list)
    for op in history:
        if op.outcome == FAIL or (op.kind == READ and op.outcome != OK):
            continue
        by_key[op.key].append(op)
    verdicts = []
    for key in sorted(by_key, key=repr):
        verdicts.append(check_key(key, by_key[key], model, max_states))
    ok = all(v.ok for v in verdicts)
    return CheckResult(ok, any(v.timed_out for v in verdicts), verdicts)


def check_key(key: Any, ops: list[Operation], model: Model, max_states: int) -> KeyVerdict:
    """Lowe's memoised Wing & Gong search over one key's operations."""
    n = len(ops)
    if n == 0:
        return KeyVerdict(key, True, False, 0, 0)
    # Events: call of op i is node 2i+1, its return node 2i+2; node 0 is the list head.
    events: list[tuple[float, int, int, int]] = []
    unknown = [False] * n
    for i, op in enumerate(ops):
        done = op.complete_time if op.outcome == OK and op.complete_time is not None else None
        unknown[i] = done is None
        events.append((op.invoke_time, 0, i, 2 * i + 1))
        events.append((_INFINITY if done is None else done, 1, i, 2 * i + 2))
    events.sort()
    size = 2 * n + 1
    nxt = [0] * (size + 1)
    prv = [0] * (size + 1)
    end = size  # sentinel tail
    order = [0] + [e[3] for e in events] + [end]
    for a, b in pairwise(order):
        nxt[a] = b
        prv[b] = a

    def lift(call: int) -> None:
        ret = call + 1
        nxt[prv[call]] = nxt[call]
        prv[nxt[call]] = prv[call]
        nxt[prv[ret]] = nxt[ret]
        prv[nxt[ret]] = prv[ret]

    def unlift(call: int) -> None:
        ret = call + 1
        prv[nxt[ret]] = ret
        nxt[prv[ret]] = ret
        prv[nxt[call]] = call
        nxt[prv[call]] = call

    state = model.initial(key)
    linearized = 0
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []
    best_depth = -1
    stuck: Operation | None = None
    entry = nxt[0]
    step = model.step
    while nxt[0] != end:
        if entry & 1:  # a call
            i = entry >> 1
            possible, new_state = step(state, ops[i])
            if possible:
                new_linearized = linearized | (1 << i)
                memo = (new_linearized, new_state)
                if memo not in seen:
                    seen.add(memo)
                    if len(seen) > max_states:
                        return KeyVerdict(key, False, True, n, len(seen))
                    stack.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:  # a return whose call is not linearized yet
            i = (entry >> 1) - 1
            if unknown[i]:
                break  # only never-returning (unknown) ops remain: they need not take effect
            if len(stack) > best_depth:
                best_depth = len(stack)
                stuck = ops[i]
            if not stack:
                return KeyVerdict(key, False, False, n, len(seen), stuck, ops)
            entry, state = stack.pop()
            linearized &= ~(1 << (entry >> 1))
            unlift(entry)
            entry = nxt[entry]
    return KeyVerdict(key, True, False, n, len(seen))
