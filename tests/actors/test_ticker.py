"""The node-wide deadline timer and the peers' tick clocks (zraft/actors/ticker.py)."""

from __future__ import annotations

import threading
import time

from tests.node.node_fakes import Conn, peer_context, wait
from zraft.actors.messages import ClientBatch, ClientRequest
from zraft.actors.peer import RaftPeerActor
from zraft.actors.ticker import DeadlineTimer, TickClock

WAIT = 10.0


def test_timer_fires_in_deadline_order_replaces_and_cancels() -> None:
    timer = DeadlineTimer().start()
    fired: list[str] = []
    done = threading.Event()

    def cb(name: str):
        def call() -> None:
            fired.append(name)
            if name == "last":
                done.set()
        return call

    now = time.monotonic()
    timer.schedule("b", now + 0.04, cb("b"))
    timer.schedule("a", now + 0.02, cb("a"))
    timer.schedule("gone", now + 0.01, cb("gone"))
    timer.cancel("gone")
    timer.schedule("c", now + 0.01, cb("c-old"))
    timer.schedule("c", now + 0.03, cb("c"))  # replaces c's first deadline
    timer.schedule("last", now + 0.06, cb("last"))
    assert done.wait(WAIT)
    timer.stop()
    assert fired == ["a", "c", "b", "last"]
    assert len(timer) == 0


def test_timer_heap_stays_bounded_when_deadlines_are_replaced() -> None:
    timer = DeadlineTimer()  # not started: nothing fires
    far = time.monotonic() + 3600
    for i in range(10_000):
        timer.schedule("k", far - i, lambda: None)  # each one earlier than the last
    assert len(timer) == 1 and len(timer._heap) <= 64 + 4


def test_tick_clock_counts_real_time_and_caps_a_burst() -> None:
    clock = TickClock(10, max_burst=5)
    clock.base -= 0.035  # 3.5 ticks ago
    assert clock.due() == 3 and clock.due() == 0
    clock.base -= 10.0  # a long pause: at most max_burst, the rest dropped
    assert clock.due() == 5 and clock.due() == 0
    assert abs(clock.at(2) - (clock.base + (clock.done + 2) * 0.01)) < 1e-9
    grid = time.monotonic() - 1.0  # a node's epoch: clocks made later share its ticks
    late = TickClock(10, max_burst=5, base=grid)
    assert late.base == grid and late.done >= 100
    steps = (late.at(1) - grid) / 0.01  # its deadlines fall on the grid's ticks
    assert abs(steps - round(steps)) < 1e-6


def test_a_peer_is_woken_by_the_timer_only_when_a_tick_is_due(tmp_path) -> None:
    """A peer with the node's timer leads without anyone telling it a Tick; a blank peer
    (which never campaigns) is woken about once per election timeout, not every tick."""
    timer = DeadlineTimer().start()
    failures: list[str] = []
    ctx = peer_context(tmp_path / "a", failures, name="a")
    ctx.timer = timer
    blank_ctx = peer_context(tmp_path / "b", failures, name="b")
    blank_ctx.timer = timer
    ref = RaftPeerActor.start(ctx)
    blank = RaftPeerActor.start(blank_ctx)
    conn = Conn()
    try:
        ref.tell(ClientBatch([ClientRequest(conn, 1, "bootstrap", ["a"])]))
        wait(lambda: ref.proxy().stat().get(timeout=5).get("role") == "leader",
             "the peer to lead on timer wake-ups alone")
        fired = timer.fired
        blank_clock = blank._actor_weakref()._clock  # its ticks so far (read-only peek)
        start = blank_clock.done
        wait(lambda: blank_clock.done - start >= 40, "40 ticks of the blank peer")
        ticks = blank_clock.done - start
        # election_ticks 4: its timer is 6..9 ticks, so at most ticks/6 + 1 wake-ups
        blank_wakes = timer.fired - fired - _leader_wakes_bound(ticks)
        assert blank_wakes <= ticks // 6 + 2, (blank_wakes, ticks)
        assert failures == []
    finally:
        for r in (ref, blank):
            r.stop(timeout=WAIT)
        timer.stop()


def _leader_wakes_bound(ticks: int) -> int:
    """The one-node leader (heartbeat_ticks 1) may be woken every tick meanwhile (a few
    more: its clock and the blank one's are not aligned)."""
    return ticks + 4
