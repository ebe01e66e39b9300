"""Every way a Pykka actor can end, and what the supervisor does about it."""

from __future__ import annotations

import threading

import pykka
import pytest
from sup_testkit import (
    WAIT_S,
    EventLog,
    ExitCatcher,
    PlainWorker,
    live_urns,
    wait_until,
    worker_spec,
)

from supervisors import ChildSpec, ExitKind, OneForOneSupervisor, Restart


def _child_row(sup: pykka.ActorProxy, name: str):
    rows = [row for row in sup.which_children().get(timeout=WAIT_S) if row.name == name]
    return rows[0] if rows else None


def _settled(sup: pykka.ActorProxy, name: str) -> bool:
    """The supervisor has processed the child's exit (row gone or not running)."""
    row = _child_row(sup, name)
    return row is None or (row.ref is None and row.last_exit is not None)


def test_told_message_exception_restarts_child_and_name_reaches_new_actor() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "w")], name="root")
    sup = root.proxy()
    handle = sup.child_handle("w").get(timeout=WAIT_S)
    first = handle.wait_started(WAIT_S)

    first.tell("crash")

    assert log.wait_count("started", "w", 2)
    second = handle.wait_started(WAIT_S)
    assert second.actor_urn != first.actor_urn
    assert not first.is_alive()
    assert sup.get_child("w").get(timeout=WAIT_S).actor_urn == second.actor_urn
    assert handle.ask("whoami", timeout=WAIT_S) == second.actor_urn
    row = _child_row(sup, "w")
    assert row.restarts == 1
    assert row.last_exit.kind is ExitKind.ABNORMAL
    assert "boom" in row.last_exit.reason
    assert log.count("failed", "w") == 1  # the child's own on_failure still ran


def test_on_start_failure_restarts_then_gives_up_and_reports_to_parent() -> None:
    before = live_urns()
    log = EventLog()
    gave_up = ExitCatcher()
    inner = ChildSpec(
        "inner",
        OneForOneSupervisor,
        args=([worker_spec(log, "bad", fail_start=True)],),
        kwargs={"name": "inner", "max_restarts": 2, "period_s": 60},
    )
    root = OneForOneSupervisor.start([inner], name="root", max_restarts=0, on_give_up=gave_up)

    exit_info = gave_up.wait()

    assert exit_info.kind is ExitKind.ABNORMAL
    assert "inner" in exit_info.reason and "intensity" in exit_info.reason
    assert log.count("start_failed", "bad") == 3  # first start + 2 restarts, then give up
    assert log.count("started", "bad") == 0
    assert wait_until(lambda: not root.is_alive())
    assert wait_until(lambda: live_urns() <= before)  # the whole tree is down


def test_inner_give_up_is_restarted_by_parent_within_its_intensity() -> None:
    log = EventLog()
    inner = ChildSpec(
        "inner",
        OneForOneSupervisor,
        args=([worker_spec(log, "bad", fail_start=True)],),
        kwargs={"name": "inner", "max_restarts": 1, "period_s": 60},
    )
    gave_up = ExitCatcher()
    OneForOneSupervisor.start(
        [inner], name="root", max_restarts=1, period_s=60, on_give_up=gave_up
    )

    gave_up.wait()

    # inner runs twice (start + one restart by root), each time 2 start attempts
    assert log.count("start_failed", "bad") == 4


@pytest.mark.parametrize(
    ("restart", "restarted"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, False), (Restart.TEMPORARY, False)],
)
def test_external_stop_is_a_normal_exit(restart: Restart, restarted: bool) -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "w", restart=restart)], name="root")
    sup = root.proxy()
    first = sup.child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S)

    first.stop()  # by someone other than the supervisor

    if restarted:
        assert log.wait_count("started", "w", 2)
        assert _child_row(sup, "w").last_exit.kind is ExitKind.NORMAL
        return
    assert wait_until(lambda: _settled(sup, "w"))
    row = _child_row(sup, "w")
    if restart is Restart.TEMPORARY:
        assert row is None  # temporary children are forgotten when they exit
    else:
        assert row.ref is None and row.last_exit.kind is ExitKind.NORMAL
    assert log.count("started", "w") == 1


@pytest.mark.parametrize(
    ("restart", "restarted"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, True), (Restart.TEMPORARY, False)],
)
def test_abnormal_exit_follows_restart_type(restart: Restart, restarted: bool) -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "w", restart=restart)], name="root")
    sup = root.proxy()
    sup.child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S).tell("crash")

    if restarted:
        assert log.wait_count("started", "w", 2)
    else:
        assert wait_until(lambda: _settled(sup, "w"))
        assert _child_row(sup, "w") is None
        assert log.count("started", "w") == 1


def test_stop_abnormally_restarts_a_transient_child() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "w", restart=Restart.TRANSIENT)], name="root"
    )
    root.proxy().child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S).tell("quit")

    assert log.wait_count("started", "w", 2)
    assert "asked to quit" in _child_row(root.proxy(), "w").last_exit.reason


def test_base_exception_in_a_message_is_reported_fatal_to_the_top() -> None:
    before = live_urns()
    log = EventLog()
    gave_up, exited = ExitCatcher(), ExitCatcher()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "a"), worker_spec(log, "w")],
        name="root", on_give_up=gave_up, on_exit=exited,
    )
    root.proxy().child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S).tell("interrupt")

    exit_info = gave_up.wait()

    assert exit_info.kind is ExitKind.FATAL
    assert "'w'" in exit_info.reason and "KeyboardInterrupt" in exit_info.reason
    exited.wait()  # the root itself ended too (Pykka's stop_all, or our give-up)
    assert wait_until(lambda: live_urns() <= before)
    assert len(gave_up.exits) == 1  # reported once, not once per level
    assert log.count("started", "w") == 1  # a fatal exit is never restarted


def test_fatal_from_a_grandchild_reaches_the_root() -> None:
    log = EventLog()
    gave_up = ExitCatcher()
    inner = ChildSpec(
        "inner", OneForOneSupervisor, args=([worker_spec(log, "w")],),
        kwargs={"name": "inner"},
    )
    root = OneForOneSupervisor.start([inner], name="root", on_give_up=gave_up)
    handle = root.proxy().child_handle("inner").get(timeout=WAIT_S).child("w")
    handle.wait_started(WAIT_S).tell("interrupt")

    exit_info = gave_up.wait()

    assert exit_info.kind is ExitKind.FATAL
    assert "'w'" in exit_info.reason


def test_base_exception_in_on_start_is_fatal_and_leaves_no_live_actor() -> None:
    before = live_urns()
    log = EventLog()
    gave_up = ExitCatcher()
    OneForOneSupervisor.start(
        [worker_spec(log, "w", fail_start=True, start_error=SystemExit)],
        name="root", on_give_up=gave_up,
    )

    exit_info = gave_up.wait()

    assert exit_info.kind is ExitKind.FATAL
    assert "SystemExit" in exit_info.reason
    assert wait_until(lambda: live_urns() <= before)


def test_plain_actor_from_a_factory_is_seen_by_the_watcher_and_restarted() -> None:
    log = EventLog()
    spec = ChildSpec("p", lambda: PlainWorker.start(log, "p"))  # not adapted: polled
    root = OneForOneSupervisor.start([spec], name="root", poll_interval_s=0.01)
    sup = root.proxy()
    assert log.wait_count("started", "p", 1)
    first = sup.get_child("p").get(timeout=WAIT_S)

    first.tell("crash")

    assert log.wait_count("started", "p", 2)
    row = _child_row(sup, "p")
    assert row.last_exit.kind is ExitKind.ABNORMAL
    assert "not a SupervisedMixin" in row.last_exit.reason


def test_plain_transient_actor_from_a_factory_stopped_from_outside_counts_as_abnormal(
) -> None:
    # Documented limit: without the mixin the reason is unknown, so transient restarts.
    log = EventLog()
    spec = ChildSpec("p", lambda: PlainWorker.start(log, "p"), restart=Restart.TRANSIENT)
    root = OneForOneSupervisor.start([spec], name="root", poll_interval_s=0.01)
    assert log.wait_count("started", "p", 1)
    root.proxy().get_child("p").get(timeout=WAIT_S).stop()

    assert log.wait_count("started", "p", 2)


def test_plain_actor_class_gets_the_mixin_and_exact_exit_reasons() -> None:
    log = EventLog()
    specs = [
        ChildSpec("p", PlainWorker, args=(log, "p")),
        ChildSpec("t", PlainWorker, args=(log, "t"), restart=Restart.TRANSIENT),
    ]
    root = OneForOneSupervisor.start(specs, name="root", poll_interval_s=10)  # no polling
    sup = root.proxy()
    assert log.wait_count("started", "t", 1)
    p_ref = sup.get_child("p").get(timeout=WAIT_S)
    assert isinstance(p_ref.proxy().label.get(timeout=WAIT_S), str)
    assert p_ref.actor_class.__name__ == "PlainWorker"
    assert issubclass(p_ref.actor_class, PlainWorker)

    p_ref.tell("crash")
    sup.get_child("t").get(timeout=WAIT_S).stop()

    assert log.wait_count("started", "p", 2)  # seen at once, through on_failure
    assert "plain boom" in _child_row(sup, "p").last_exit.reason
    assert wait_until(lambda: _settled(sup, "t"))
    assert _child_row(sup, "t").last_exit.kind is ExitKind.NORMAL  # not restarted
    assert log.count("started", "t") == 1


def test_child_stuck_in_on_stop_is_reported_after_its_shutdown_timeout() -> None:
    log = EventLog()
    gate = threading.Event()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "w", shutdown_s=0.2, stop_gate=gate)],
        name="root", poll_interval_s=0.01,
    )
    try:
        first = root.proxy().child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S)
        first.stop(block=False)  # its on_stop now hangs on the gate

        assert log.wait_count("started", "w", 2)  # replaced while the old one is stuck
        assert log.count("stopped", "w") == 0
        row = _child_row(root.proxy(), "w")
        assert "did not finish" in row.last_exit.reason
    finally:
        gate.set()
    assert log.wait_count("stopped", "w", 1)


def test_initial_child_that_can_not_be_built_fails_the_supervisor() -> None:
    before = live_urns()
    log = EventLog()
    gave_up = ExitCatcher()

    def broken_factory() -> pykka.ActorRef:
        raise OSError("port in use")

    OneForOneSupervisor.start(
        [worker_spec(log, "a"), ChildSpec("b", broken_factory), worker_spec(log, "c")],
        name="root", on_give_up=gave_up,
    )

    exit_info = gave_up.wait()

    assert exit_info.kind is ExitKind.ABNORMAL
    assert "port in use" in exit_info.reason
    assert log.wait_count("stopped", "a", 1)  # the already started child is stopped
    assert log.count("started", "c") == 0
    assert wait_until(lambda: live_urns() <= before)
