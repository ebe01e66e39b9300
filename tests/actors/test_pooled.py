"""PooledActor and Dispatcher: many actors on few threads with Pykka's semantics.

No timing assertions: every wait is an Event/Condition with a generous bound."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from supervisors import Backoff, ChildSpec, OneForOneSupervisor, Restart
from tests.transport.helpers import wait_for
from zraft.actors.pooled import Dispatcher, PooledActor, blocking

WAIT = 10.0


@pytest.fixture
def pool() -> Iterator[Dispatcher]:
    d = Dispatcher("test", size=2, budget=4, max_spare=8)
    yield d
    pykka.ActorRegistry.stop_all(timeout=5)
    d.close()


def actor_class(d: Dispatcher, **body: Any) -> type[PooledActor]:
    return type("T", (PooledActor,), {"dispatcher": d, **body})


class Recorder:
    """Thread-safe record of what actors handled, with a wait."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[Any] = []
        self.threads: dict[Any, set[str]] = {}
        self.running: set[Any] = set()
        self.overlap = False

    def add(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, pred: Any) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.items), WAIT), self.items[-10:]


def test_many_actors_on_few_threads_keep_order_and_never_run_twice_at_once(pool) -> None:
    rec = Recorder()
    lock = threading.Lock()

    def on_receive(self: Any, msg: Any) -> None:
        with lock:  # one actor on two workers at once would show here
            if self.key in rec.running:
                rec.overlap = True
            rec.running.add(self.key)
        rec.add((self.key, msg))
        with lock:
            rec.running.discard(self.key)

    def init(self: Any, key: int) -> None:
        PooledActor.__init__(self)
        self.key = key

    cls = actor_class(pool, __init__=init, on_receive=on_receive)
    before = threading.active_count()
    refs = [cls.start(i) for i in range(200)]
    assert threading.active_count() == before  # no thread per actor
    senders = []
    for part in range(4):  # four threads tell concurrently, each its own sequence numbers
        def send(part: int = part) -> None:
            for n in range(50):
                for ref in refs:
                    ref.tell((part, n))
        senders.append(threading.Thread(target=send))
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    rec.wait(lambda items: len(items) == 200 * 200)
    assert not rec.overlap
    for i in range(200):
        seen = [m for k, m in rec.items if k == i]
        for part in range(4):
            assert [n for p, n in seen if p == part] == list(range(50))


def test_a_busy_actor_yields_to_a_quiet_one(pool) -> None:
    """Fairness: one worker, a busy actor with a deep inbox; a message to a quiet actor
    is handled after at most ``budget`` more of the busy one's."""
    one = Dispatcher("one", size=1, budget=4)
    rec = Recorder()
    gate = threading.Event()

    def on_receive(self: Any, msg: Any) -> None:
        if msg == "gate":
            gate.wait(WAIT)
        rec.add((self.name, msg))

    def init(self: Any, name: str) -> None:
        PooledActor.__init__(self)
        self.name = name

    cls = actor_class(one, __init__=init, on_receive=on_receive)
    busy, quiet = cls.start("busy"), cls.start("quiet")
    busy.tell("gate")  # holds the only worker while we queue
    rec.wait(lambda items: True)
    for n in range(100):
        busy.tell(n)
    quiet.tell("hello")
    gate.set()
    rec.wait(lambda items: ("quiet", "hello") in items)
    at = rec.items.index(("quiet", "hello"))
    busy_before = sum(1 for k, m in rec.items[:at] if k == "busy" and m != "gate")
    assert busy_before <= one.budget
    rec.wait(lambda items: len(items) == 102)
    busy.stop(), quiet.stop()
    one.close()


def test_ask_proxy_future_and_exceptions_like_pykka(pool) -> None:
    class Calc(PooledActor):
        dispatcher = pool
        value = 5

        def add(self, a: int, b: int) -> int:
            return a + b

        def on_receive(self, msg: Any) -> Any:
            if msg == "boom":
                raise ValueError("asked")
            return msg * 2

    ref = Calc.start()
    assert ref.ask(21, timeout=WAIT) == 42
    assert ref.proxy().add(1, 2).get(timeout=WAIT) == 3
    assert ref.proxy().value.get(timeout=WAIT) == 5
    with pytest.raises(ValueError, match="asked"):  # an asked exception goes to the asker
        ref.ask("boom", timeout=WAIT)
    assert ref.is_alive()
    assert ref.stop(timeout=WAIT) is True
    assert ref.stop(timeout=WAIT) is False
    with pytest.raises(pykka.ActorDeadError):
        ref.tell(1)
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_stop_while_messages_queued_answers_the_rest_dead(pool) -> None:
    gate = threading.Event()
    handled: list[Any] = []

    class Slow(PooledActor):
        dispatcher = pool

        def on_receive(self, msg: Any) -> Any:
            if msg == "gate":
                gate.wait(WAIT)
            handled.append(msg)
            return msg

    ref = Slow.start()
    ref.tell("gate")
    first = ref.ask("before", block=False)
    stopped = ref.stop(block=False)
    late = [ref.ask(n, block=False) for n in range(3)]  # queued behind the stop
    gate.set()
    assert first.get(timeout=WAIT) == "before"
    assert stopped.get(timeout=WAIT) is True
    for f in late:
        with pytest.raises(pykka.ActorDeadError):
            f.get(timeout=WAIT)
    assert handled == ["gate", "before"]


def test_on_start_runs_first_and_on_stop_on_failure_on_workers(pool) -> None:
    rec = Recorder()

    class Life(PooledActor):
        dispatcher = pool

        def on_start(self) -> None:
            rec.add(("start", threading.current_thread().name))

        def on_receive(self, msg: Any) -> Any:
            rec.add(("msg", msg))
            if msg == "crash":
                raise RuntimeError("told")

        def on_stop(self) -> None:
            rec.add(("stop", None))

        def on_failure(self, *exc: Any) -> None:
            rec.add(("failure", str(exc[1])))

    ref = Life.start()
    ref.tell("one")
    ref.tell("crash")
    rec.wait(lambda items: ("failure", "told") in items)
    kinds = [k for k, _ in rec.items]
    assert kinds == ["start", "msg", "msg", "failure"]
    assert rec.items[0][1].startswith("zraft-pool-test-")
    assert not ref.is_alive()

    ref2 = Life.start()
    ref2.stop(timeout=WAIT)
    rec.wait(lambda items: ("stop", None) in items)


def test_failure_in_on_start_stops_the_actor(pool) -> None:
    class Bad(PooledActor):
        dispatcher = pool

        def on_start(self) -> None:
            raise RuntimeError("no")

    ref = Bad.start()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("x", timeout=WAIT)


def test_supervisor_restarts_a_crashed_pooled_child(pool) -> None:
    """One-for-one restart and Backoff work unchanged with pooled children."""
    rec = Recorder()

    class Child(PooledActor):
        dispatcher = pool

        def on_start(self) -> None:
            rec.add("started")

        def on_receive(self, msg: Any) -> Any:
            if msg == "crash":
                raise RuntimeError("crash")
            return "pong"

    for backoff in (None, Backoff(initial_s=0.01, max_s=0.05)):
        rec.items.clear()
        sup = OneForOneSupervisor.start(
            [ChildSpec("c", Child, restart=Restart.TRANSIENT, backoff=backoff)],
            name="t", max_restarts=5, period_s=60)
        handle = sup.proxy().child_handle("c").get(timeout=WAIT)
        rec.wait(lambda items: items.count("started") == 1)
        first = handle.ref
        first.tell("crash")
        rec.wait(lambda items: items.count("started") == 2)
        wait_for(lambda h=handle, f=first: h.resolve() not in (None, f), WAIT)
        assert handle.ask("ping", timeout=WAIT) == "pong"
        assert sup.proxy().which_children().get(timeout=WAIT)[0].restarts == 1
        sup.stop(timeout=WAIT)
        assert not first.is_alive()


def test_pooled_actors_asking_each_other_never_deadlock_the_pool(pool) -> None:
    """Every worker blocks in ask().get() on another pooled actor: the pool starts spare
    workers for the managed blocks, so the asked actors still run."""
    class Leaf(PooledActor):
        dispatcher = pool

        def on_receive(self, msg: Any) -> Any:
            return msg + 1

    class Asker(PooledActor):
        dispatcher = pool

        def __init__(self, leaf: Any) -> None:
            super().__init__()
            self.leaf = leaf

        def on_receive(self, msg: Any) -> Any:
            if msg == "stop leaf":  # blocks this worker until the leaf has stopped
                return self.leaf.stop(timeout=WAIT)
            return self.leaf.ask(msg, timeout=WAIT)  # blocks this worker

    leaves = [Leaf.start() for _ in range(6)]
    askers = [Asker.start(leaf) for leaf in leaves]  # 6 > size 2: all workers block
    futures = [a.ask(i, block=False) for i, a in enumerate(askers)]
    assert [f.get(timeout=WAIT) for f in futures] == [i + 1 for i in range(6)]
    assert pool.spares_started >= 1
    # a pooled parent stopping its pooled children (what a peer does) from every worker
    parents = [Asker.start(leaf) for leaf in leaves]
    stops = [p.ask("stop leaf", block=False) for p in parents]
    assert [s.get(timeout=WAIT) for s in stops] == [True] * 6


def test_blocking_context_compensates_and_spares_leave(pool) -> None:
    release = threading.Event()
    entered = Recorder()

    class Waiter(PooledActor):
        dispatcher = pool

        def on_receive(self, msg: Any) -> Any:
            with blocking():
                entered.add(msg)
                release.wait(WAIT)
            return msg

    class Quick(PooledActor):
        dispatcher = pool

        def on_receive(self, msg: Any) -> Any:
            return msg

    waiters = [Waiter.start() for _ in range(3)]
    futures = [w.ask(i, block=False) for i, w in enumerate(waiters)]
    entered.wait(lambda items: len(items) == 3)  # 3 blocked on a 2-worker pool
    assert Quick.start().ask("still runs", timeout=WAIT) == "still runs"
    assert pool.threads >= 4
    release.set()
    assert [f.get(timeout=WAIT) for f in futures] == [0, 1, 2]
