"""A seeded, in-memory network for the simulator.

Rules:
- All randomness comes from the ``random.Random`` handed in; nothing iterates an unordered
  collection, so one seed always gives one run.
- Messages sit in one in-flight list until the scheduler delivers one: the oldest (FIFO) or,
  with probability ``reorder``, a random one (reordering and delay in one mechanism).
- ``replay`` re-queues a delivered message behind everything in flight: a stale duplicate,
  the kind that arrives after newer messages on the same link.
- ``drop`` and ``duplicate`` apply when a message is sent; partitions apply both when it is
  sent and when it is delivered, so messages already in flight across a new cut are lost
  too, and healing never resurrects a message sent across a cut.
- Links are directed: ``cut(a, b)`` blocks both ways, ``cut_one_way(a, b)`` only a -> b.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple


class Envelope(NamedTuple):
    src: str
    dst: str
    msg: Any
    payload: Any  # out-of-band data (the state-machine image of an InstallSnapshot)


class SimNetwork:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.in_flight: list[Envelope] = []
        self.blocked: set[tuple[str, str]] = set()
        self.drop = 0.0
        self.duplicate = 0.0
        self.reorder = 0.0
        self.replay = 0.0  # chance a delivered message comes again later (a stale duplicate)
        self.sent = 0
        self.dropped = 0
        # Lost messages that carried a payload: their sender must hear of the failure.
        self.lost: list[Envelope] = []

    def send(self, src: str, dst: str, msg: Any, payload: Any = None) -> None:
        self.sent += 1
        rng = self.rng
        envelope = Envelope(src, dst, msg, payload)
        if (self.drop and rng.random() < self.drop) or (
            self.blocked and (src, dst) in self.blocked
        ):
            self._lose(envelope)
            return
        self.in_flight.append(envelope)
        if self.duplicate and rng.random() < self.duplicate:
            self.in_flight.append(envelope)

    def take(self, fifo: bool = False) -> Envelope | None:
        """Remove and return the next message to deliver (None when nothing is in flight).
        A message across a blocked link is lost: it is removed and None is returned."""
        queue = self.in_flight
        if not queue:
            return None
        if fifo or not self.reorder or self.rng.random() >= self.reorder:
            envelope = queue.pop(0)
        else:
            envelope = queue.pop(self.rng.randrange(len(queue)))
        if self.blocked and (envelope.src, envelope.dst) in self.blocked:
            self._lose(envelope)
            return None
        if self.replay and envelope.payload is None and self.rng.random() < self.replay:
            queue.append(envelope)  # arrives again after everything now in flight
        return envelope

    def _lose(self, envelope: Envelope) -> None:
        self.dropped += 1
        if envelope.payload is not None:
            self.lost.append(envelope)

    def can_reach(self, src: str, dst: str) -> bool:
        return (src, dst) not in self.blocked

    # -- faults -----------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        self.blocked.add((a, b))
        self.blocked.add((b, a))

    def cut_one_way(self, src: str, dst: str) -> None:
        self.blocked.add((src, dst))

    def partition(self, side_a: list[str], side_b: list[str]) -> None:
        for a in side_a:
            for b in side_b:
                self.cut(a, b)

    def isolate(self, node: str, others: list[str]) -> None:
        self.partition([node], [o for o in others if o != node])

    def heal(self) -> None:
        self.blocked.clear()

    def calm(self) -> None:
        """No loss, duplication or reordering from now on (partitions stay)."""
        self.drop = self.duplicate = self.reorder = self.replay = 0.0

    def discard_to(self, node: str) -> None:
        """A crashed node's inbound messages die with its sockets."""
        keep = []
        for envelope in self.in_flight:
            if envelope.dst != node:
                keep.append(envelope)
            elif envelope.payload is not None:
                self.lost.append(envelope)
        self.in_flight = keep
