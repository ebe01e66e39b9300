"""Start/stop order, shutdown timeouts, restart intensity, the dynamic API and handles."""

from __future__ import annotations

import logging
import threading
import time

import pykka
import pytest
from sup_testkit import (
    WAIT_S,
    EventLog,
    ExitCatcher,
    FakeClock,
    PlainWorker,
    Worker,
    wait_until,
    worker_spec,
)

from supervisors import (
    ChildAlreadyExistsError,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRunningError,
    ChildSpec,
    ChildStartError,
    ExitKind,
    OneForOneSupervisor,
    Restart,
    SupervisedMixin,
)
from supervisors.directory import ChildDirectory
from supervisors.link import ChildLink, ExitSink
from supervisors.mixin import with_supervised_mixin


def test_children_start_in_order_and_stop_in_reverse_order() -> None:
    log = EventLog()
    exited, gave_up = ExitCatcher(), ExitCatcher()
    root = OneForOneSupervisor.start(
        [worker_spec(log, n) for n in ("a", "b", "c")],
        name="root", on_exit=exited, on_give_up=gave_up,
    )
    assert log.wait_count("started", "c", 1)
    assert log.of("started") == ["a", "b", "c"]  # each on_start ran before the next began

    assert root.stop(timeout=WAIT_S)

    assert log.of("stopped") == ["c", "b", "a"]
    assert exited.wait().kind is ExitKind.NORMAL
    assert not gave_up.event.is_set()  # a requested stop is not a give-up


def test_next_child_starts_only_after_the_previous_on_start_returned() -> None:
    log = EventLog()
    gate = threading.Event()
    OneForOneSupervisor.start(
        [worker_spec(log, "a", start_gate=gate), worker_spec(log, "b")], name="root"
    )
    try:
        assert log.wait_count("starting", "a", 1)
        assert not log.wait_count("starting", "b", 1, timeout=0.3)  # held behind a
    finally:
        gate.set()
    assert log.wait_count("started", "b", 1)
    assert log.of("started") == ["a", "b"]


def test_a_slow_on_start_only_delays_the_next_child_by_start_timeout() -> None:
    log = EventLog()
    gate = threading.Event()
    slow = ChildSpec("a", Worker, args=(log, "a"), kwargs={"start_gate": gate},
                     start_timeout_s=0.1)
    OneForOneSupervisor.start([slow, worker_spec(log, "b")], name="root")
    try:
        assert log.wait_count("started", "b", 1)  # while a is still inside on_start
        assert log.count("started", "a") == 0
    finally:
        gate.set()
    assert log.wait_count("started", "a", 1)


def test_a_stuck_child_does_not_hang_the_supervisor_stop() -> None:
    log = EventLog()
    entered, release = threading.Event(), threading.Event()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "a"), worker_spec(log, "stuck", shutdown_s=0.2)], name="root"
    )
    try:
        stuck = root.proxy().child_handle("stuck").get(timeout=WAIT_S).wait_started(WAIT_S)
        stuck.tell(("block", entered, release))
        assert entered.wait(WAIT_S)

        began = time.monotonic()
        assert root.stop(timeout=WAIT_S)
        elapsed = time.monotonic() - began

        assert elapsed < 2.0  # ~0.2 s: the stuck child is abandoned, not waited for
        assert log.of("stopped") == ["a"]  # the others are still stopped, in order
        assert stuck.is_alive()  # abandoned, not killed: Pykka can not kill a thread
    finally:
        release.set()
    assert log.wait_count("stopped", "stuck", 1)  # it stops once it is unblocked


def test_restart_intensity_counts_only_restarts_inside_the_window() -> None:
    log = EventLog()
    clock = FakeClock()
    gave_up = ExitCatcher()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "w")], name="root", max_restarts=2, period_s=10,
        clock=clock, on_give_up=gave_up,
    )
    handle = root.proxy().child_handle("w").get(timeout=WAIT_S)

    def crash_and_wait_restart(expected_starts: int) -> None:
        handle.wait_started(WAIT_S).tell("crash")
        assert log.wait_count("started", "w", expected_starts)

    crash_and_wait_restart(2)
    crash_and_wait_restart(3)  # 2 restarts within 10 s: still allowed
    clock.advance(11)  # both fall out of the window
    crash_and_wait_restart(4)
    clock.advance(5)
    crash_and_wait_restart(5)  # 2 restarts in the current window
    assert not gave_up.event.is_set()

    handle.wait_started(WAIT_S).tell("crash")  # the 3rd within 10 s: too many

    exit_info = gave_up.wait()
    assert exit_info.kind is ExitKind.ABNORMAL
    assert "intensity" in exit_info.reason and "'w'" in exit_info.reason
    assert log.count("started", "w") == 5
    assert wait_until(lambda: not root.is_alive())


def test_zero_max_restarts_gives_up_on_the_first_exit() -> None:
    log = EventLog()
    gave_up = ExitCatcher()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "a"), worker_spec(log, "w")], name="root", max_restarts=0,
        on_give_up=gave_up,
    )
    root.proxy().child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S).tell("crash")

    assert gave_up.wait().kind is ExitKind.ABNORMAL
    assert log.wait_count("stopped", "a", 1)  # siblings are stopped on give-up
    assert log.count("started", "w") == 1


def test_dynamic_children_like_otp() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "a")], name="root")
    sup = root.proxy()

    ref = sup.start_child(worker_spec(log, "b")).get(timeout=WAIT_S)
    assert log.count("started", "b") == 1  # start_child returns after on_start
    assert ref.actor_urn == sup.get_child("b").get(timeout=WAIT_S).actor_urn
    with pytest.raises(ChildAlreadyExistsError):
        sup.start_child(worker_spec(log, "b")).get(timeout=WAIT_S)
    assert sup.count_children().get(timeout=WAIT_S) == {
        "specs": 2, "active": 2, "supervisors": 0, "workers": 2,
    }

    with pytest.raises(ChildRunningError):
        sup.delete_child("b").get(timeout=WAIT_S)
    sup.terminate_child("b").get(timeout=WAIT_S)
    assert log.count("stopped", "b") == 1
    assert sup.get_child("b").get(timeout=WAIT_S) is None
    assert sup.count_children().get(timeout=WAIT_S)["active"] == 1
    assert [r.name for r in sup.which_children().get(timeout=WAIT_S)] == ["a", "b"]

    again = sup.restart_child("b").get(timeout=WAIT_S)
    assert again.actor_urn != ref.actor_urn
    with pytest.raises(ChildRunningError):
        sup.restart_child("b").get(timeout=WAIT_S)
    sup.terminate_child("b").get(timeout=WAIT_S)
    sup.delete_child("b").get(timeout=WAIT_S)
    assert [r.name for r in sup.which_children().get(timeout=WAIT_S)] == ["a"]
    with pytest.raises(ChildNotFoundError):
        sup.terminate_child("b").get(timeout=WAIT_S)

    sup.start_child(worker_spec(log, "t", restart=Restart.TEMPORARY)).get(timeout=WAIT_S)
    sup.terminate_child("t").get(timeout=WAIT_S)  # temporary: forgotten once terminated
    assert [r.name for r in sup.which_children().get(timeout=WAIT_S)] == ["a"]


def test_a_dynamic_child_is_stopped_before_the_initial_ones() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "a")], name="root")
    root.proxy().start_child(worker_spec(log, "z")).get(timeout=WAIT_S)

    root.stop(timeout=WAIT_S)

    assert log.of("stopped") == ["z", "a"]


def test_start_child_reports_a_factory_failure_and_adds_nothing() -> None:
    def broken() -> pykka.ActorRef:
        raise RuntimeError("no")

    root = OneForOneSupervisor.start([], name="root")
    with pytest.raises(ChildStartError):
        root.proxy().start_child(ChildSpec("x", broken)).get(timeout=WAIT_S)
    assert root.proxy().which_children().get(timeout=WAIT_S) == []


def test_restart_whose_factory_raises_is_retried_until_the_intensity_gives_up() -> None:
    log = EventLog()
    calls = {"n": 0}

    def first_time_only() -> pykka.ActorRef:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("dependency gone")
        return Worker.start(log, "f")

    gave_up = ExitCatcher()
    root = OneForOneSupervisor.start(
        [ChildSpec("f", first_time_only)], name="root", max_restarts=3, period_s=60,
        on_give_up=gave_up,
    )
    root.proxy().child_handle("f").get(timeout=WAIT_S).wait_started(WAIT_S).tell("crash")

    assert "intensity" in gave_up.wait().reason
    assert calls["n"] == 4  # first start + 3 restart attempts


def test_handles_walk_nested_supervisors_and_survive_restarts() -> None:
    log = EventLog()
    inner = ChildSpec(
        "inner", OneForOneSupervisor, args=([worker_spec(log, "w")],),
        kwargs={"name": "inner"},
    )
    root = OneForOneSupervisor.start([inner], name="root")
    sup = root.proxy()
    handle = sup.child_handle("inner").get(timeout=WAIT_S).child("w")
    first = handle.wait_started(WAIT_S)

    first.tell("crash")  # inner restarts w
    assert log.wait_count("started", "w", 2)
    second = handle.wait_started(WAIT_S)
    assert second.actor_urn != first.actor_urn

    sup.get_child("inner").get(timeout=WAIT_S).stop()  # root restarts inner (and so w)
    assert log.wait_count("started", "w", 3)
    third = handle.wait_started(WAIT_S)
    assert third.actor_urn not in {first.actor_urn, second.actor_urn}
    assert handle.ask("whoami", timeout=WAIT_S) == third.actor_urn
    assert sup.count_children().get(timeout=WAIT_S) == {
        "specs": 1, "active": 1, "supervisors": 1, "workers": 0,
    }


def test_handle_raises_while_the_child_is_not_running() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start(
        [worker_spec(log, "w", restart=Restart.TRANSIENT)], name="root"
    )
    handle = root.proxy().child_handle("w").get(timeout=WAIT_S)
    handle.wait_started(WAIT_S).stop()

    assert wait_until(lambda: not handle.is_running())
    with pytest.raises(ChildNotRunningError):
        handle.tell("whoami")
    with pytest.raises(ChildNotRunningError):
        handle.wait_started(0.05)


def test_a_child_reaches_its_sibling_by_name() -> None:
    log = EventLog()
    root = OneForOneSupervisor.start([worker_spec(log, "a"), worker_spec(log, "b")],
                                     name="root")
    sup = root.proxy()
    a = sup.child_handle("a").get(timeout=WAIT_S)
    b = sup.child_handle("b").get(timeout=WAIT_S)
    b_first = b.wait_started(WAIT_S)
    assert a.proxy().sibling_urn("b").get(timeout=WAIT_S) == b_first.actor_urn

    b_first.tell("crash")
    assert log.wait_count("started", "b", 2)
    b_second = b.wait_started(WAIT_S)
    assert a.proxy().sibling_urn("b").get(timeout=WAIT_S) == b_second.actor_urn


def test_invalid_specs_and_options_are_rejected() -> None:
    log = EventLog()
    with pytest.raises(ValueError):
        ChildSpec("", Worker)
    with pytest.raises(ValueError):
        ChildSpec("x", Worker, shutdown_s=0)
    with pytest.raises(TypeError):
        ChildSpec("x", Worker, restart="permanent")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OneForOneSupervisor.start([worker_spec(log, "a"), worker_spec(log, "a")])
    with pytest.raises(ValueError):
        OneForOneSupervisor.start([], max_restarts=-1)


def test_directory_never_hands_out_a_dead_ref() -> None:
    log = EventLog()
    directory = ChildDirectory()
    ref = Worker.start(log, "w")
    link = ChildLink("w", ref, directory, ExitSink(), 1.0)
    directory.publish("w", ref, link)
    handle = directory.handle("w")
    assert handle.resolve() is ref

    ref.stop()  # dead, but the directory was not updated yet

    assert handle.resolve() is None
    assert directory.lookup("w") is ref  # the raw map still has it; handles filter


class AsksBackOnStop(Worker):
    """Asks its supervisor while the supervisor waits for it to stop (the classic
    Pykka deadlock); the supervisor's bounded stop must break the cycle."""

    def on_stop(self) -> None:
        self.log.add("stopping", self.label)
        assert self.supervisor is not None
        try:
            self.supervisor.proxy().which_children().get(timeout=WAIT_S * 2)
        finally:
            self.log.add("stopped", self.label)


def test_a_child_that_asks_back_while_being_stopped_only_delays_the_stop() -> None:
    log = EventLog()
    spec = ChildSpec("w", AsksBackOnStop, args=(log, "w"), shutdown_s=0.2)
    root = OneForOneSupervisor.start([spec], name="root")
    assert log.wait_count("started", "w", 1)

    began = time.monotonic()
    assert root.stop(timeout=WAIT_S)

    assert time.monotonic() - began < 2.0
    assert log.wait_count("stopped", "w", 1)  # its ask failed once the supervisor ended


def test_restarts_are_logged_with_child_name_reason_and_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = EventLog()
    caplog.set_level(logging.INFO, logger="supervisors")
    root = OneForOneSupervisor.start([worker_spec(log, "w")], name="root")
    root.proxy().child_handle("w").get(timeout=WAIT_S).wait_started(WAIT_S).tell("crash")
    assert log.wait_count("started", "w", 2)

    restart_lines = [r.getMessage() for r in caplog.records if "restarting child" in
                     r.getMessage()]
    assert restart_lines, caplog.text
    assert "'w'" in restart_lines[0] and "#1" in restart_lines[0]
    assert "boom" in restart_lines[0]
    assert all(r.name.startswith("supervisors.") for r in caplog.records
               if "child 'w'" in r.getMessage())


def test_with_supervised_mixin_adapts_plain_classes_once_and_keeps_mixin_classes() -> None:
    adapted = with_supervised_mixin(PlainWorker)
    assert adapted is with_supervised_mixin(PlainWorker)
    assert issubclass(adapted, PlainWorker) and issubclass(adapted, SupervisedMixin)
    assert adapted.__name__ == "PlainWorker"
    assert with_supervised_mixin(Worker) is Worker


def test_a_mixin_actor_started_without_a_supervisor_works_alone() -> None:
    log = EventLog()
    ref = Worker.start(log, "solo")
    proxy = ref.proxy()
    assert proxy.supervisor.get(timeout=WAIT_S) is None
    assert proxy.supervised_name.get(timeout=WAIT_S) is None
    with pytest.raises(RuntimeError):
        proxy.sibling("x").get(timeout=WAIT_S)
    ref.tell("crash")  # nobody to report to: only logged
    assert log.wait_count("failed", "solo", 1)
    assert wait_until(lambda: not ref.is_alive())
