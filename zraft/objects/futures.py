"""A Pykka future that can also be awaited from asyncio without a thread per call.

``NotifyingFuture`` is a ``pykka.ThreadingFuture`` that runs callbacks once it is completed
(Pykka's own futures have no done-callbacks); ``wait_async(future)`` hands its outcome to
the running event loop with ``loop.call_soon_threadsafe``. This is the interim ``await``
form of object handles until ``zraft.aio`` offers native async sessions.

Rules: callbacks run on the thread that completes the future (a session actor): they must
be quick and never raise (``wait_async``'s only schedules a call on the loop). Cancelling
the awaiting task does not cancel the call: a write may still be applied, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

T = TypeVar("T")


class NotifyingFuture(pykka.ThreadingFuture[T]):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[NotifyingFuture[T]], None]] | None = []

    def set(self, value: T | None = None) -> None:
        super().set(value)
        self._notify()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info)
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            with contextlib.suppress(Exception):
                fn(self)

    def add_done_callback(self, fn: Callable[[NotifyingFuture[T]], None]) -> None:
        """``fn(future)`` once the future is completed (now, if it already is)."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(fn)
                return
        fn(self)


async def wait_async(future: NotifyingFuture[T]) -> T:
    """The future's value (or exception) in the running event loop."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def settle(done: NotifyingFuture[T]) -> None:
        try:
            value = done.get(timeout=0)
        except BaseException as exc:  # handed to the awaiting task, never raised here
            _call(loop, _set_exception, waiter, exc)
        else:
            _call(loop, _set_result, waiter, value)

    future.add_done_callback(settle)
    return await waiter


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(fn, *args)


def _set_result(waiter: asyncio.Future[Any], value: Any) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _set_exception(waiter: asyncio.Future[Any], exc: BaseException) -> None:
    if not waiter.done():
        waiter.set_exception(exc)


__all__ = ["NotifyingFuture", "wait_async"]
