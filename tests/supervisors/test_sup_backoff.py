"""Backoff children: a crash loop slows that child down and never makes the supervisor
give up (and stop every sibling), whatever the restart intensity."""

from __future__ import annotations

import dataclasses

import pykka
from sup_testkit import (
    WAIT_S,
    EventLog,
    ExitCatcher,
    FakeClock,
    Worker,
    wait_until,
    worker_spec,
)

from supervisors import Backoff, ChildSpec, OneForOneSupervisor

FAST = Backoff(initial_s=0.01, max_s=0.05, reset_after_s=60.0)


def _row(sup: pykka.ActorProxy, name: str):
    return next(r for r in sup.which_children().get(timeout=WAIT_S) if r.name == name)


def test_backoff_delays_double_up_to_the_cap():
    backoff = Backoff(initial_s=0.5, max_s=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_crash_looping_child_never_makes_the_supervisor_give_up():
    log = EventLog()
    gave_up = ExitCatcher()
    crashing = dataclasses.replace(worker_spec(log, "crashing"), backoff=FAST)
    root = OneForOneSupervisor.start([worker_spec(log, "sibling"), crashing],
                                     name="root", max_restarts=1, period_s=60,
                                     on_give_up=gave_up)
    sup = root.proxy()
    try:
        handle = sup.child_handle("crashing").get(timeout=WAIT_S)
        for _ in range(6):  # far past max_restarts=1 within the period
            before = log.count("started", "crashing")
            handle.wait_started(WAIT_S).tell("crash")
            assert log.wait_count("started", "crashing", before + 1)
        assert not gave_up.event.is_set() and root.is_alive()
        assert log.count("started", "sibling") == 1  # never touched
        assert _row(sup, "crashing").restarts == 6
    finally:
        root.stop()


class _Switch:
    fail = False


class FlakyWorker(Worker):
    """Starts or fails to start as a shared switch says."""

    def __init__(self, log: EventLog, name: str, switch: type[_Switch]) -> None:
        super().__init__(log, name)
        self.fail_start = switch.fail


def test_a_child_that_cannot_start_any_more_is_retried_while_siblings_run():
    log = EventLog()
    gave_up = ExitCatcher()
    spec = ChildSpec("flaky", FlakyWorker, args=(log, "flaky", _Switch), backoff=FAST,
                     shutdown_s=1.0)
    root = OneForOneSupervisor.start([worker_spec(log, "sibling"), spec], name="root",
                                     max_restarts=1, period_s=60, on_give_up=gave_up)
    sup = root.proxy()
    try:
        running = sup.child_handle("flaky").get(timeout=WAIT_S).wait_started(WAIT_S)
        _Switch.fail = True
        running.tell("crash")
        assert log.wait_count("start_failed", "flaky", 5)  # retried, again and again
        assert not gave_up.event.is_set() and root.is_alive()
        assert log.count("started", "sibling") == 1
        _Switch.fail = False
        assert log.wait_count("started", "flaky", 2)
    finally:
        _Switch.fail = False
        root.stop()


def test_delays_grow_and_a_long_healthy_run_starts_the_count_again():
    log = EventLog()
    clock = FakeClock()
    gave_up = ExitCatcher()
    spec = dataclasses.replace(worker_spec(log, "w"),
                               backoff=Backoff(initial_s=5.0, max_s=100.0, reset_after_s=60))
    root = OneForOneSupervisor.start([spec], name="root", clock=clock, max_restarts=0,
                                     on_give_up=gave_up)
    sup = root.proxy()
    try:
        handle = sup.child_handle("w").get(timeout=WAIT_S)
        delays = []
        for n in range(4):
            if n == 3:
                clock.advance(61.0)  # this incarnation ran a healthy minute
            handle.wait_started(WAIT_S).tell("crash")
            assert wait_until(lambda: _row(sup, "w").restart_in_s is not None)
            delays.append(_row(sup, "w").restart_in_s)
            sup.restart_child("w").get(timeout=WAIT_S)  # by hand, at once: cancels it
            assert _row(sup, "w").restart_in_s is None
        assert delays == [5.0, 10.0, 20.0, 5.0]
        sup.terminate_child("w").get(timeout=WAIT_S)
        assert not gave_up.event.is_set()
    finally:
        root.stop()
