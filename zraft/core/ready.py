"""The Ready batch: everything a core asks its driver to do, ordered by obligation.

A driver handles a Ready in this order (etcd's Ready, raft-rs's numbered Ready with
persisted messages):

1. write ``hard_state``, install ``snapshot``, append ``entries`` (truncating first when
   ``entries[0].index`` is at or below the last stored index) and mark entries up to
   ``compact_to`` as droppable; this may run asynchronously (the log writer);
2. send ``messages`` now (a leader's appends may go out while its own write is in flight);
3. once this Ready and every earlier one are durable, send ``persisted_messages`` (votes,
   append replies) and call ``core.persisted(number)``;
4. apply ``committed`` entries in order, answer ``reads`` once applied, handle ``events``;
5. call ``core.advance(ready)`` before asking for the next Ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zraft.core.entries import Entry, HardState, SnapshotMeta


@dataclass(slots=True)
class Ready:
    number: int
    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = field(default_factory=list)
    compact_to: int = 0
    messages: list[Any] = field(default_factory=list)
    persisted_messages: list[Any] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)

    @property
    def must_persist(self) -> bool:
        """True when the driver has storage work to do before persisted_messages may go."""
        return self.hard_state is not None or self.snapshot is not None or bool(self.entries)
