"""Per-replica surroundings: each replica's backend sees its own clock, random and urandom.

Why: a backend that reads the clock or draws random numbers in ``apply`` gives the same
answers on every replica of one machine most of the time (same second, same seedless
generator consumed in turn), so comparing replicas proves nothing unless their
surroundings differ. While a replica's backend method runs (``Surroundings.active``), on
that thread only:

- ``time.time``/``time_ns``/``monotonic``/``perf_counter`` (and their ``_ns`` forms),
  ``localtime``/``gmtime``/``ctime``/``strftime`` without a time argument,
  ``datetime.datetime.now``/``utcnow``/``today`` and ``datetime.date.today`` read a fake
  clock: each replica starts at its own date and advances by its own step per read, so
  any answer derived from the time differs between replicas, and the same seed always
  replays the same values;
- the global ``random`` generator (``random.random()``, ``from random import randint``...)
  runs on the replica's own seeded state (``Surroundings.world``, around a whole replica
  run: replicas run one after another in a process, or each in its own);
- ``os.urandom`` (so ``uuid.uuid4``) returns bytes from the replica's own seeded stream.

Outside an active call everything answers as usual (the checker's own code, other
threads). ``install()`` puts the wrappers in place (module attributes), ``uninstall()``
restores the originals; a module that did ``from time import time`` before ``install``
keeps the real function, which is why worker processes install before importing the
backend (``zraft.testing.check_backend.worker``). Each read is counted by name, so a report
can say which command read the clock.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_REAL_DATETIME = _dt.datetime
_REAL_DATE = _dt.date
_REAL: dict[str, Any] = {}


class Clock:
    """A replica's fake clock: ``start`` seconds since the epoch, ``step`` seconds per read."""

    def __init__(self, start: float, step: float, mono_start: float) -> None:
        self.wall = start
        self.mono = mono_start
        self.step = step

    def read_wall(self) -> float:
        self.wall += self.step
        return self.wall

    def read_mono(self) -> float:
        self.mono += self.step
        return self.mono


class Surroundings:
    """What one replica's backend sees (see the module docstring)."""

    def __init__(self, name: str, clock: Clock, random_seed: int) -> None:
        self.name = name
        self.clock = clock
        self._random_seed = random_seed
        self._urandom = random.Random(random_seed ^ 0x5EED)
        self.reads: Counter[str] = Counter()

    @contextmanager
    def world(self) -> Iterator[None]:
        """Around a whole replica run: the global random generator runs on this replica's
        seed (and is put back afterwards)."""
        saved = random.getstate()
        random.seed(self._random_seed)
        try:
            yield
        finally:
            random.setstate(saved)

    @contextmanager
    def active(self) -> Iterator[Counter[str]]:
        """Run the body in this replica's surroundings; yields the reads it made (by name:
        ``time.time``, ``random.randint``, ``os.urandom``...)."""
        global _ACTIVE
        previous = _ACTIVE
        self.reads = Counter()
        _ACTIVE = (threading.get_ident(), self)
        try:
            yield self.reads
        finally:
            _ACTIVE = previous

    def urandom(self, n: int) -> bytes:
        return self._urandom.randbytes(n)


_ACTIVE: tuple[int, Surroundings] | None = None


def _current() -> Surroundings | None:
    active = _ACTIVE
    if active is not None and active[0] == threading.get_ident():
        return active[1]
    return None


def _wall(name: str) -> float | None:
    env = _current()
    if env is None:
        return None
    env.reads[name] += 1
    return env.clock.read_wall()


def _mono(name: str) -> float | None:
    env = _current()
    if env is None:
        return None
    env.reads[name] += 1
    return env.clock.read_mono()


def _fake_time() -> float:
    t = _wall("time.time")
    return _REAL["time"]() if t is None else t


def _fake_time_ns() -> int:
    t = _wall("time.time_ns")
    return _REAL["time_ns"]() if t is None else int(t * 1e9)


def _mono_fn(real: str, ns: bool) -> Callable[[], Any]:
    label = f"time.{real}"

    def read() -> Any:
        t = _mono(label)
        if t is None:
            return _REAL[real]()
        return int(t * 1e9) if ns else t

    read.__name__ = real
    return read


def _with_now(real: str) -> Callable[..., Any]:
    """``localtime``/``gmtime``/``ctime``/``strftime``: the fake time when none is given."""
    label = f"time.{real}"

    def call(*args: Any) -> Any:
        wants_now = len(args) == (1 if real == "strftime" else 0) or (
            len(args) == (2 if real == "strftime" else 1) and args[-1] is None)
        if wants_now:
            t = _wall(label)
            if t is not None and real == "strftime":
                args = (args[0], _REAL["localtime"](t))
            elif t is not None:
                args = (t,)
        return _REAL[real](*args)

    call.__name__ = real
    return call


class _SameClassMeta(type):
    """``isinstance(real_datetime, FakeDatetime)`` stays true while the fake is installed."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls._real)  # type: ignore[attr-defined]

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls._real)  # type: ignore[attr-defined]


class FakeDatetime(_REAL_DATETIME, metaclass=_SameClassMeta):
    _real = _REAL_DATETIME

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _REAL_DATETIME(*args, **kwargs)

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        t = _wall("datetime.now")
        return _REAL_DATETIME.now(tz) if t is None else _REAL_DATETIME.fromtimestamp(t, tz)

    @classmethod
    def utcnow(cls) -> Any:
        t = _wall("datetime.utcnow")
        if t is None:
            return _REAL_DATETIME.now(_dt.UTC).replace(tzinfo=None)
        return _REAL_DATETIME.fromtimestamp(t, _dt.UTC).replace(tzinfo=None)

    @classmethod
    def today(cls) -> Any:
        t = _wall("datetime.today")
        return _REAL_DATETIME.now() if t is None else _REAL_DATETIME.fromtimestamp(t)


class FakeDate(_REAL_DATE, metaclass=_SameClassMeta):
    _real = _REAL_DATE

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _REAL_DATE(*args, **kwargs)

    @classmethod
    def today(cls) -> Any:
        t = _wall("date.today")
        return _REAL_DATE.today() if t is None else _REAL_DATE.fromtimestamp(t)


def _fake_urandom(n: int) -> bytes:
    env = _current()
    if env is None:
        return _REAL["urandom"](n)
    env.reads["os.urandom"] += 1
    return env.urandom(n)


def _counted_random(name: str) -> Callable[..., Any]:
    """``random.<name>``, counted while a replica's backend runs."""
    real = getattr(random, name)
    label = f"random.{name}"

    def call(*args: Any, **kwargs: Any) -> Any:
        env = _current()
        if env is not None:
            env.reads[label] += 1
        return real(*args, **kwargs)

    call.__name__ = name
    return call


_RANDOM_NAMES = ("random", "uniform", "triangular", "randint", "choice", "randrange", "sample",
                 "shuffle", "choices", "normalvariate", "lognormvariate", "expovariate",
                 "vonmisesvariate", "gammavariate", "gauss", "betavariate", "paretovariate",
                 "weibullvariate", "getrandbits", "randbytes")
_TIME_NAMES = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
               "perf_counter_ns", "localtime", "gmtime", "ctime", "strftime")
_installed = 0


def install() -> None:
    """Put the wrappers in place (nested calls are counted; see ``uninstall``)."""
    global _installed
    _installed += 1
    if _installed > 1:
        return
    for name in _TIME_NAMES:
        _REAL[name] = getattr(time, name)
    _REAL["urandom"] = os.urandom
    for name in _RANDOM_NAMES:
        _REAL[f"random.{name}"] = getattr(random, name)
        setattr(random, name, _counted_random(name))
    time.time = _fake_time
    time.time_ns = _fake_time_ns
    for name in ("monotonic", "perf_counter"):
        setattr(time, name, _mono_fn(name, ns=False))
        setattr(time, f"{name}_ns", _mono_fn(f"{name}_ns", ns=True))
    for name in ("localtime", "gmtime", "ctime", "strftime"):
        setattr(time, name, _with_now(name))
    os.urandom = _fake_urandom
    _dt.datetime = FakeDatetime  # type: ignore[misc]
    _dt.date = FakeDate  # type: ignore[misc]


def uninstall() -> None:
    global _installed
    _installed -= 1
    if _installed > 0:
        return
    for name in _TIME_NAMES:
        setattr(time, name, _REAL[name])
    os.urandom = _REAL["urandom"]
    for name in _RANDOM_NAMES:
        setattr(random, name, _REAL[f"random.{name}"])
    _dt.datetime = _REAL_DATETIME  # type: ignore[misc]
    _dt.date = _REAL_DATE  # type: ignore[misc]


# Three replicas, three different worlds (dates far apart, different steps per read).
_DAY = 86400.0
CLOCKS = (
    (1_924_992_000.0, 0.001, 1_000.0),              # 2031-01-01, 1 ms per read
    (1_924_992_000.0 + 59 * _DAY, 1.0, 500_000.0),  # 2031-03-01, 1 s per read
    (1_910_908_800.0, 3600.0, 30_000_000.0),        # 2030-07-23, 1 h per read
)


def for_replica(number: int, seed: int) -> Surroundings:
    """The surroundings of replica ``number`` (0, 1, 2) in the run of ``seed``."""
    start, step, mono = CLOCKS[number % len(CLOCKS)]
    return Surroundings(f"n{number + 1}", Clock(start, step, mono),
                        random_seed=(seed * 1_000_003 + 7919 * (number + 1)) & 0xFFFFFFFF)


def describe(number: int) -> str:
    start, step, _ = CLOCKS[number % len(CLOCKS)]
    day = _REAL_DATETIME.fromtimestamp(start, _dt.UTC).date().isoformat()
    return f"clock from {day}, +{step:g} s per read, own random and urandom streams"


__all__ = ["Clock", "Surroundings", "describe", "for_replica", "install", "uninstall"]
