"""The cluster's timeline: node EVENT lines merged with the faults this tooling injected.

Rules: node events come from every ``DIR/node*/log/console.log*`` line of the form
``... EVENT {json}`` (zraft.node.events), faults from ``DIR/faults.jsonl``; both carry
``t`` (wall-clock seconds). The merged list is sorted by time. A ``role`` event with role
``leader`` is a leader change; everything else is shown as it was logged. Unreadable lines
are skipped: the timeline is a diagnosis aid, never a reason to fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from zraft.cluster.local import FAULTS_FILE

FAULT_KINDS = frozenset({"kill", "stop", "pause", "resume", "restart", "partition", "heal",
                         "add", "remove", "down", "up"})
_MARK = "EVENT "


def _node_logs(directory: Path) -> Iterator[Path]:
    for node_dir in sorted(directory.glob("node*")):
        log_dir = node_dir / "log"
        # rotated files first (oldest has the highest suffix); order does not matter: we sort
        yield from sorted(log_dir.glob("console.log.*"))
        if (log_dir / "console.log").exists():
            yield log_dir / "console.log"


def _event_of(line: str) -> Any:
    """The event of a text line (``... EVENT {json}``) or a JSON log line (its ``event``)."""
    try:
        if line.startswith("{"):  # [logging] format = "json"
            record = json.loads(line)
            return record.get("event") if isinstance(record, dict) else None
        at = line.find(_MARK)
        return json.loads(line[at + len(_MARK):]) if at >= 0 else None
    except ValueError:
        return None


def node_events(directory: str | Path) -> list[dict[str, Any]]:
    events = []
    for path in _node_logs(Path(directory)):
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    event = _event_of(line)
                    if isinstance(event, dict) and "t" in event:
                        events.append(event)
        except OSError:
            continue
    return events


def fault_events(directory: str | Path) -> list[dict[str, Any]]:
    events = []
    try:
        with open(Path(directory) / FAULTS_FILE) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "t" in event:
                    events.append(event)
    except OSError:
        pass
    return events


def timeline(directory: str | Path, since: float | None = None,
             until: float | None = None) -> list[dict[str, Any]]:
    """Every event of the cluster in time order, each tagged ``category``: ``fault``,
    ``leader`` (a peer became leader), ``election``, ``config``, ``snapshot`` or ``node``."""
    merged = [*node_events(directory), *fault_events(directory)]
    out = []
    for event in merged:
        t = float(event["t"])
        if (since is not None and t < since) or (until is not None and t > until):
            continue
        event["category"] = category(event)
        out.append(event)
    out.sort(key=lambda e: float(e["t"]))
    return out


def category(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if event.get("source") == "cluster" or kind in ("partition", "heal"):
        return "fault"
    if kind == "role":
        if event.get("role") == "leader":
            return "leader"
        return "election" if event.get("role") in ("candidate", "precandidate") else "role"
    if kind == "config":
        return "config"
    if kind and str(kind).startswith("snapshot"):
        return "snapshot"
    return "node"


def leader_changes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("category") == "leader"]


def describe(event: dict[str, Any]) -> str:
    """One human line for an event."""
    kind = event.get("kind")
    who = event.get("peer") or event.get("node") or ""
    if event.get("source") == "cluster":
        if kind == "partition":
            groups = " | ".join(",".join(str(i) for i in g) for g in event.get("groups", []))
            return f"partition {groups}"
        if kind in ("heal", "down", "up"):
            return f"{kind} (zraft cluster)"
        return f"{kind} node {event.get('index')} ({who})"
    if kind == "role":
        if event.get("role") == "leader":
            return f"{who} became LEADER (term {event.get('term')})"
        leader = event.get("leader")
        extra = f", leader {leader}" if leader else ""
        return f"{who} is {event.get('role')} (term {event.get('term')}{extra})"
    if kind == "config":
        peers = ",".join(event.get("peers") or [])
        return f"{who} config at index {event.get('index')}: {peers}"
    if kind == "partition":
        return f"node {event.get('node')} blocks {','.join(event.get('blocked') or [])}"
    if kind == "heal":
        return f"node {event.get('node')} healed"
    fields = {k: v for k, v in event.items()
              if k not in ("t", "kind", "node", "peer", "category", "source")}
    rest = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return f"{kind} {who} {rest}".strip()


def render(events: list[dict[str, Any]]) -> str:
    lines = []
    for e in events:
        stamp = datetime.fromtimestamp(float(e["t"])).strftime("%H:%M:%S.%f")[:-3]
        lines.append(f"{stamp}  {e['category']:<8}  {describe(e)}")
    return "\n".join(lines)
