"""The comparison table: medians and ranges over repeats, and zraft's ratio to each peer.

Rules:
- ``METRICS`` names every figure, where it sits in a run's result, and which way is better;
  a ratio is always "how many times better zraft is" (> 1 means zraft wins): ours / theirs
  for rates, theirs / ours for times and sizes.
- PySyncObj's best settings: for each repeat and metric the better of its
  ``appendEntriesUseBatch`` runs is taken, then the median over repeats.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

HIGHER, LOWER = "higher", "lower"


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def read(run: dict[str, Any]) -> float | None:
        node: Any = run
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) \
            else None
    return read


def _max_of(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def read(run: dict[str, Any]) -> float | None:
        node: Any = run
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        vals = [v for v in node or [] if isinstance(v, (int, float)) and not math.isnan(v)]
        return max(vals) if vals else None
    return read


def _elections(run: dict[str, Any]) -> float | None:
    a, b = run.get("unplanned_elections"), (run.get("W5") or {}).get("unplanned_elections")
    vals = [v for v in (a, b) if isinstance(v, (int, float))]
    return float(sum(vals)) if vals else None


METRICS: list[tuple[str, Callable[[dict[str, Any]], float | None], str, str]] = [
    ("W1 seq write p50", _get("W1", "p50_ms"), LOWER, "ms"),
    ("W1 seq write p99", _get("W1", "p99_ms"), LOWER, "ms"),
    ("W1 seq write max", _get("W1", "max_ms"), LOWER, "ms"),
    ("W2 1x1000 writes", _get("W2", "1000", "ops_per_s"), HIGHER, "ops/s"),
    ("W2 1x1000 p50", _get("W2", "1000", "p50_ms"), LOWER, "ms"),
    ("W2 1x1000 p99", _get("W2", "1000", "p99_ms"), LOWER, "ms"),
    ("W2 1x10000 writes", _get("W2", "10000", "ops_per_s"), HIGHER, "ops/s"),
    ("W2 1x10000 p50", _get("W2", "10000", "p50_ms"), LOWER, "ms"),
    ("W2 1x10000 p99", _get("W2", "10000", "p99_ms"), LOWER, "ms"),
    ("W3 64x1 writes", _get("W3", "ops_per_s"), HIGHER, "ops/s"),
    ("W3 64x1 p99", _get("W3", "p99_ms"), LOWER, "ms"),
    ("W4 kill -9 -> first commit", _get("W4", "first_commit_s"), LOWER, "s"),
    ("W4 acked writes lost", _get("W4", "acked_lost"), LOWER, "writes"),
    ("W5 4KiB x1000 throughput", _get("W5", "mb_per_s"), HIGHER, "MB/s"),
    ("W5 RSS max per node after", _max_of("W5", "rss_mb"), LOWER, "MB"),
    ("W5 RSS max per node 2 s later", _max_of("W5", "rss_settled_mb"), LOWER, "MB"),
    ("W5 follower catch-up", _get("W5", "catch_up_s"), LOWER, "s"),
    ("W5 catch-up snapshot rate", _get("W5", "catch_up_mb_per_s"), HIGHER, "MB/s"),
    ("W5 snapshot transfer: leader sendfile", _get("W5", "transfer_sendfile_mb_per_s"),
     HIGHER, "MB/s"),
    ("W5 snapshot transfer: follower receive+verify+fsync",
     _get("W5", "transfer_receive_mb_per_s"), HIGHER, "MB/s"),
    ("W5 full snapshot sends in catch-up", _get("W5", "catch_up_sends"), LOWER, "sends"),
    ("W5 raw loopback sendfile", _get("W5", "sendfile_mb_per_s"), HIGHER, "MB/s"),
    ("W6 linearizable reads", _get("W6", "ops_per_s"), HIGHER, "ops/s"),
    ("RSS max per node after W1-W6", _max_of("rss_mb"), LOWER, "MB"),
    ("unplanned elections", _elections, LOWER, "terms"),
]


def _better(a: float | None, b: float | None, direction: str) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if direction == HIGHER else min(a, b)


def series(runs: list[dict[str, Any]], read: Callable[[dict[str, Any]], float | None],
           direction: str) -> list[float]:
    """One value per repeat; several runs in one repeat (batch settings): the better."""
    by_rep: dict[int, float | None] = {}
    for run in runs:
        rep = int(run.get("rep", 0))
        by_rep[rep] = _better(by_rep.get(rep), read(run), direction)
    return [v for _, v in sorted(by_rep.items()) if v is not None]


def _fmt(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(values: list[float]) -> tuple[str, float | None]:
    if not values:
        return "-", None
    med = statistics.median(values)
    if len(values) == 1:
        return _fmt(med), med
    return f"{_fmt(med)} ({_fmt(min(values))}-{_fmt(max(values))})", med


def ratio(ours: float | None, theirs: float | None, direction: str) -> str:
    if ours is None or theirs is None:
        return "-"
    if direction == HIGHER:
        return f"{ours / theirs:.1f}x" if theirs > 0 else "inf"
    if ours <= 0:
        return "inf" if theirs > 0 else "="
    return f"{theirs / ours:.1f}x"


def table(groups: dict[str, list[dict[str, Any]]]) -> str:
    """``groups``: column label -> runs (first column is zraft). Markdown."""
    labels = list(groups)
    head = ["metric", "unit", *[h for lab in labels for h in
                                ([lab] if lab == labels[0] else [lab, "zraft x"])]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, read, direction, unit in METRICS:
        row = [name, unit]
        ours_cell, ours = cell(series(groups[labels[0]], read, direction))
        row.append(ours_cell)
        for lab in labels[1:]:
            text, theirs = cell(series(groups[lab], read, direction))
            row += [text, ratio(ours, theirs, direction)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def durability_lines(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    for lab, runs in groups.items():
        kinds = sorted({r.get("durability", "?") for r in runs})
        out.append(f"- {lab}: {'; '.join(kinds)}")
    return out
