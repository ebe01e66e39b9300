"""Many independent requests over one ``ConnectionPool``, at most ``window`` in flight.

Rules: no thread per request and no retry; every request is answered or given up at one
deadline (``timeout`` from the call): those not answered by then get ``("timeout", None)``
and are cancelled, those not sent by then are not sent. Callbacks run on the pool's reader
thread and only record the answer and send the next request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from zraft.client.connection import ConnectionPool

Request = tuple[str, str, list[Any]]  # (peer id, op, args)


def fan_out(pool: ConnectionPool, requests: Sequence[Request], timeout: float,
            window: int = 256) -> list[tuple[str, Any]]:
    """Every request's ``(status, payload)`` in order; ``("timeout", None)`` for those not
    answered by the deadline (not sent at all past it)."""
    results: list[tuple[str, Any] | None] = [None] * len(requests)
    lock = threading.Lock()
    done = threading.Event()
    state = {"next": 0, "answered": 0}
    deadline = time.monotonic() + timeout
    cancels: dict[int, Any] = {}
    here = threading.local()  # a reply given inside pool.request (a dead connection)

    def pump(n: int) -> None:
        """Send ``n`` more; a reply called back from inside ``pool.request`` on this
        thread adds to the count instead of recursing (thousands of requests to a dead
        node would otherwise nest that deep)."""
        if getattr(here, "active", False):
            here.owed += n
            return
        here.active, here.owed = True, n
        try:
            while here.owed > 0:
                here.owed -= 1
                with lock:
                    i = state["next"]
                    if i >= len(requests) or time.monotonic() > deadline:
                        return
                    state["next"] = i + 1
                peer, op, args = requests[i]
                cancels[i] = pool.request(peer, op, args,
                                          lambda s, p, i=i: on_reply(i, s, p))
        finally:
            here.active = False

    def on_reply(i: int, status: str, payload: Any) -> None:
        with lock:
            results[i] = (status, payload)
            state["answered"] += 1
            finished = state["answered"] >= len(requests)
        if finished:
            done.set()
        else:
            pump(1)

    if not requests:
        return []
    pump(min(window, len(requests)))
    done.wait(max(0.0, deadline - time.monotonic()))
    for i, cancel in list(cancels.items()):
        if results[i] is None:
            cancel()
    return [r if r is not None else ("timeout", None) for r in results]
