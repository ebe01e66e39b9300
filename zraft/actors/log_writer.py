"""LogWriterActor: the peer's durable log. It writes a whole batch and fsyncs once.

Rules: nothing is acknowledged before the fsync (votes and append replies travel with the
write that makes them true, as ``WriteOps.after``, and leave right after its fsync, or the
peer releases them on ``Persisted``); the peer keeps at most one WriteOps in flight and
merges the Ready batches produced meanwhile, so each message here is already a group commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pykka

from zraft.actors.messages import ChildFailed, Persisted, StorageFailed, WriteOps
from zraft.actors.peer_metrics import PeerMetrics
from zraft.actors.pooled import PooledActor
from zraft.storage import LogWriter
from zraft.storage.errors import DiskStorageError

log = logging.getLogger(__name__)


class LogWriterActor(PooledActor):
    dispatcher = "io"  # fsyncs block: on the I/O pool, never the peers' (pooled.py)

    def __init__(self, storage: Any, peer: pykka.ActorRef[Any], name: str,
                 stats: dict[str, Any] | None = None,
                 send_raft: Callable[[list[Any]], None] | None = None,
                 metrics: PeerMetrics | None = None, dispatcher: Any = "io") -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.writer = LogWriter(storage)
        self.peer = peer
        self.name = name
        self.send_raft = send_raft
        self.batches = 0
        self.entries = 0
        self.seconds = 0.0
        self.published = stats if stats is not None else {}
        self.metrics = metrics if metrics is not None else PeerMetrics()
        self.failed = False
        # Test-only slow disk (ZRAFT_TEST_DISK_DELAY_MS): legal behaviour that widens the
        # window in which a deliberately broken rule (ack before fsync) can lose data.
        self.delay_s = int(os.environ.get("ZRAFT_TEST_DISK_DELAY_MS", "0") or 0) / 1000

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WriteOps):
            if self.failed:
                return None  # the peer is tearing us down (see StorageFailed)
            if self.delay_s:
                time.sleep(self.delay_s)
            started = time.perf_counter()
            try:
                last_index = self.writer.write_ops(message.ops)
            except (OSError, DiskStorageError) as exc:
                # disk full, read-only, I/O error: tell the peer, which waits and retries
                # (storage_failure.py); crashing would only make a restart loop
                self.failed = True
                reason = str(exc) if isinstance(exc, DiskStorageError) else (
                    f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc))
                log.error("log writer of %s: write failed: %s", self.name, reason)
                with contextlib.suppress(pykka.ActorDeadError):
                    self.peer.tell(StorageFailed(reason, self.writer.storage.last_index()))
                return None
            took = time.perf_counter() - started
            self.seconds += took
            self.batches += 1
            appended = sum(len(arg) for op, arg in message.ops if op == "append")
            self.entries += appended
            metrics = self.metrics
            metrics.fsync_seconds.observe(took)
            metrics.entries_written += appended
            if message.after and self.send_raft is not None:
                self.send_raft(message.after)
            self.published[self.name] = self.stats()
            with contextlib.suppress(pykka.ActorDeadError):  # the peer is stopping
                self.peer.tell(Persisted(message.number, last_index))
            return None
        if message == "stats":
            return self.stats()
        return None

    def stats(self) -> dict[str, Any]:
        return {"fsync_batches": self.batches, "entries_written": self.entries,
                "write_seconds": round(self.seconds, 3),
                "entries_per_fsync": round(self.entries / self.batches, 2) if self.batches else 0}

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        log.error("log writer of %s failed: %s", self.name, exc)
        if self.peer.is_alive():
            self.peer.tell(ChildFailed("log_writer", f"{exc_type.__name__}: {exc}"))
