"""Running the client's retrying calls (``zraft.client.calls``) on an asyncio event loop.

Rules: a call is the blocking client's own ``PeerCall`` / ``RingCall`` state machine (same
redirects, retries, error mapping and fixed deadline), driven by the loop: the loop is its
scheduler, replies come from the connection's reader task, its result lands in an asyncio
future. No thread is involved. Cancelling the awaiting task cancels the call: no more
retries, its request is forgotten by the connection (its reply is dropped, the connection
and every other call go on). A cancelled write may still be applied: it may already be in
the leader's log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from zraft.client.calls import RetryingCall


class LoopFuture:
    """The ``set`` / ``set_exception`` face of an asyncio future (what the client's state
    machines complete). Completing a cancelled or completed future does nothing."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def set(self, value: Any = None) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def set_exception(self, exc_info: Any = None) -> None:
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if not self.future.done():
            self.future.set_exception(exc)


def new_future() -> tuple[asyncio.Future[Any], LoopFuture]:
    future = asyncio.get_running_loop().create_future()
    return future, LoopFuture(future)


async def run(call: RetryingCall) -> Any:
    """Start ``call`` (built with ``scheduler=loop`` and ``future=`` a LoopFuture of
    ``future``) and wait for its result; cancelling the wait cancels the call."""
    future = call.future.future  # type: ignore[attr-defined]
    call.start()
    try:
        return await future
    except asyncio.CancelledError:
        call.cancel()
        raise


def call_kwargs() -> dict[str, Any]:
    """``scheduler`` and ``future`` for a call made to be awaited with ``run``."""
    _future, completion = new_future()
    return {"scheduler": asyncio.get_running_loop(), "future": completion}
