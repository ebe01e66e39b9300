"""Joining threads another thread may be starting at the same moment.

A thread is registered (so close() can find it) before ``start()`` returns; joining it in
that window raises "cannot join thread before it is started". close() joins best-effort
within a deadline, so a thread not started yet is simply not waited for.
"""

from __future__ import annotations

import threading
import time


def join_started(threads: list[threading.Thread | object | None], deadline: float) -> None:
    """Join every started thread of ``threads`` (others are skipped) until ``deadline``."""
    me = threading.current_thread()
    for thread in threads:
        if not isinstance(thread, threading.Thread) or thread is me or thread.ident is None:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["join_started"]
