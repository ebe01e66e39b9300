"""Comparing the replicas' traces: the first thing that went wrong, in log order.

The reference for each key (entry, query, checkpoint) is what replica n1 observed first
(then n2, then n3, for a key n1 never reached). Every other observation of that key, by any
replica and any replay of it after a crash, must be the same bytes. The first problem is
the smallest key among those mismatches and the replicas' own findings; at one key a
finding (the more precise cause: a mutated command, an unencodable result) comes first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zraft.fsm.codec import unpackb
from zraft.saferepr import safe_repr
from zraft.testing.check_backend.probe import Finding
from zraft.testing.check_backend.replica import (
    ENTRY,
    PREVIEW_BYTES,
    QUERY,
    STATE,
    Observation,
    Trace,
    file_difference,
)
from zraft.testing.check_backend.scenario import Scenario, describe_entry

ANSWERS_DIFFER = "answers_differ"
STATES_DIFFER = "states_differ"

_CAUSES = (
    "apply (or expire_session) must depend only on the backend's state and the command: "
    "not on the clock, randomness, a set's or dict's iteration order, the node it runs on "
    "(peer_id) or I/O. Each replica ran with its own fake clock, random and urandom streams "
    "and PYTHONHASHSEED; put any time or random value the command needs into the command "
    "itself, and iterate in a defined order (sorted)."
)


class Problem(NamedTuple):
    key: tuple[int, int, int]
    kind: str
    text: str  # the report's body: what, where, each replica's view, why


def _unpack(data: Any) -> Any:
    if isinstance(data, bytes):
        try:
            return unpackb(data)
        except Exception:
            return data
    return data


def _show_call(method: str, raw: bytes) -> str:
    detail = _unpack(raw)
    if method == "reply":
        return ""
    if isinstance(detail, list) and detail and detail[0] in ("raised", "raised BadCommand"):
        return f"{method} raised {safe_repr(detail[1])}"
    if method == "expire_session":
        return f"expire_session({detail[1]!r}) deleted {safe_repr(_unpack(detail[0]))}"
    result, triggers = _unpack(detail[0]), _unpack(detail[1])
    if detail[0] is None:
        result = "<not msgpack-encodable>"
    return f"{method} -> {safe_repr(result)}, trigger keys {safe_repr(triggers)}"


def _show_entry(detail: bytes) -> str:
    parts = []
    for item in _unpack(detail):
        if item[0] == "reply":
            error, value = item[1], _unpack(item[2])
            parts.append(f"client gets error {error!r}" if error else
                         f"client gets {safe_repr(value)}")
        else:
            parts.append(_show_call(item[0], item[1]))
    return "; ".join(p for p in parts if p) or "no backend call"


def _show_query(detail: bytes) -> str:
    answer, error = _unpack(detail)
    if error:
        return f"error {error!r}"
    answer = _unpack(answer)
    if isinstance(answer, list) and answer and answer[0] in ("raised", "raised BadCommand"):
        return f"query raised {safe_repr(answer[1])}"
    if isinstance(answer, list) and len(answer) == 3:
        return (f"{safe_repr(answer[0])} (watch keys {safe_repr(answer[1])}, prefixes "
                f"{safe_repr(answer[2])})")
    return safe_repr(answer[0] if isinstance(answer, list) and answer else answer)


def _reads(info: Any) -> str:
    reads = info[0] if info else []
    return ", ".join(f"{name} x{count}" for name, count in reads)


def _show_state(obs: Observation, other: Observation) -> list[str]:
    lines = []
    previews, state = obs.info[1] or {}, obs.info[2]
    other_previews, other_state = other.info[1] or {}, other.info[2]
    if state != other_state:
        a, b = _unpack(other_state), _unpack(state)
        lines.append(f"state_of: {safe_repr(a)} vs {safe_repr(b)}")
        lines.append(f"state_of first differs at {value_difference(a, b)}")
        if _unpack(obs.detail)[0] == _unpack(other.detail)[0]:
            return lines  # the compared files agree: only the backend's bytes are unsorted
    if previews != other_previews:
        lines.append(f"snapshot files: {file_difference(other_previews, previews)}")
    elif _unpack(obs.detail)[0] != _unpack(other.detail)[0]:
        lines.append(f"snapshot files differ after their first {PREVIEW_BYTES} bytes")
    return lines


def value_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two decoded values first differ: ``[2][0]: 'c' vs 'f'``."""
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return value_difference(x, y, f"{path}[{i}]")
        if len(a) != len(b):
            return f"{path or 'the top'}: {len(a)} vs {len(b)} items"
    elif isinstance(a, dict) and isinstance(b, dict) and list(a) == list(b):
        for k in a:
            if a[k] != b[k]:
                return value_difference(a[k], b[k], f"{path}[{safe_repr(k)}]")
    return f"{path or 'the top'}: {safe_repr(a)} vs {safe_repr(b)}"


def first_problem(scenario: Scenario, traces: list[Trace], names: list[str],
                  every: int = 16) -> tuple[Problem | None, int]:
    """The first problem in log order and how many problems there are in all (``every``:
    the replicas' checkpoint interval, in entries)."""
    reference: dict[tuple[int, int, int], tuple[Observation, int]] = {}
    for trace in traces:
        for obs in trace.observations:
            reference.setdefault(obs.key, (obs, trace.replica))
    candidates: list[tuple[tuple[Any, ...], Any]] = []
    for trace in traces:
        for finding in trace.findings:
            candidates.append(((finding.key, 0, trace.replica), (finding, trace.replica)))
        for obs in trace.observations:
            ref, ref_replica = reference[obs.key]
            if obs.detail != ref.detail:
                candidates.append(((obs.key, 1, trace.replica),
                                   (obs, trace.replica, ref, ref_replica)))
    if not candidates:
        return None, 0
    candidates.sort(key=lambda c: c[0])
    _, first = candidates[0]
    if isinstance(first[0], Finding):
        finding, replica = first
        index, phase, _ = finding.key
        where = ""
        if phase == ENTRY and 0 < index <= len(scenario.entries):
            where = f"\n  at {describe_entry(scenario.entries[index - 1])}"
        text = f"replica {names[replica]}: {finding.message}{where}"
        history = _history(traces[replica], names[replica], index)
        return Problem(finding.key, finding.kind,
                       text + (f"\n{history}" if history else "")), len(candidates)
    obs, replica, ref, ref_replica = first
    problem = _divergence(scenario, obs, replica, ref, ref_replica, names, every)
    histories = [h for h in (_history(traces[ref_replica], names[ref_replica], obs.key[0]),
                             _history(traces[replica], names[replica], obs.key[0])) if h]
    if histories:
        problem = problem._replace(text=problem.text + "\n" + "\n".join(histories)
                                   + "\n(if only a replica that restored a snapshot differs, "
                                   "suspect the snapshot or restore)")
    return problem, len(candidates)


def _history(trace: Trace, name: str, index: int) -> str:
    """The crashes and installs of a replica before ``index``, latest three."""
    events = [text for at, text in trace.events if at <= index]
    if not events:
        return ""
    return f"  before this, {name} " + "; then ".join(events[-3:])


def _divergence(scenario: Scenario, obs: Observation, replica: int, ref: Observation,
                ref_replica: int, names: list[str], every: int) -> Problem:
    index, phase, sub = obs.key
    a, b = names[ref_replica], names[replica]
    if phase == ENTRY:
        entry = scenario.entries[index - 1]
        lines = [f"the replicas answered {describe_entry(entry)} differently:",
                 f"  {a}: {_show_entry(ref.detail)}", f"  {b}: {_show_entry(obs.detail)}"]
        for name, o in ((a, ref), (b, obs)):
            if _reads(o.info):
                lines.append(f"  during this entry {name}'s backend read: {_reads(o.info)}")
        lines.append(_CAUSES)
        return Problem(obs.key, ANSWERS_DIFFER, "\n".join(lines))
    if phase == QUERY:
        q = scenario.queries[sub]
        lines = [f"the replicas answered the query {safe_repr(q.query)} (after log entry "
                 f"{index}) differently:", f"  {a}: {_show_query(ref.detail)}",
                 f"  {b}: {_show_query(obs.detail)}"]
        for name, o in ((a, ref), (b, obs)):
            if _reads(o.info):
                lines.append(f"  during this query {name}'s backend read: {_reads(o.info)}")
        lines.append("query must depend only on the state (no clock, randomness or set "
                     "order); or the states differ already: " + _CAUSES)
        return Problem(obs.key, ANSWERS_DIFFER, "\n".join(lines))
    assert phase == STATE
    lines = [f"after log entry {index} every answer so far agreed, but the states of "
             f"{a} and {b} differ:", *(f"  {line}" for line in _show_state(obs, ref)),
             "The entry that made them differ:" if every == 1 else
             "The entries since the previous checkpoint (the last ten):"]
    since = [e for e in scenario.entries if index - every < e.index <= index]
    lines += [f"  {describe_entry(e)}" for e in since[-10:]]
    queries = [q for q in scenario.queries if index - every < q.after <= index]
    if queries:
        lines.append("  and the queries " + ", ".join(safe_repr(q.query) for q in queries[:6])
                     + " (a query must not change the state: only the leader runs it)")
    lines.append("Causes: an apply whose effect on the state (not its answer) depends on "
                 "the clock, randomness, iteration order or the node; a query that changes "
                 "state; a snapshot restored in another order than it was taken (a replica "
                 "that restored answers differently later); or a snapshot whose bytes are not "
                 "canonical (e.g. a set written in its iteration order: write it sorted, or "
                 "pass state_of). " + _CAUSES)
    return Problem(obs.key, STATES_DIFFER, "\n".join(lines))


__all__ = ["ANSWERS_DIFFER", "STATES_DIFFER", "Problem", "first_problem", "value_difference"]
