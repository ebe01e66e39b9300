"""A counter whose snapshots are slow (written on another thread after a pause), and fail
while the file named by ``$SLOW_SNAPSHOT_FAIL`` exists: backups then meet a snapshot in
progress, taken at an older index, and failed snapshots. Writes ``["add", n]``; query
``"get"``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from zraft.fsm import BadCommand, SimpleBackend, SnapshotJob

PAUSE_S = 0.4


class SlowCounter(SimpleBackend):
    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.value = 0

    def apply(self, command: Any) -> Any:
        match command:
            case ["add", int(n)]:
                self.value += n
                return self.value
        raise BadCommand("slow counter writes: ['add', n]")

    def query(self, query: Any) -> Any:
        return self.value

    def get_state(self) -> Any:
        return self.value

    def set_state(self, state: Any) -> None:
        self.value = int(state)

    def snapshot(self) -> SnapshotJob:
        job = super().snapshot()
        fail = os.environ.get("SLOW_SNAPSHOT_FAIL")

        def write(directory: Path) -> None:
            time.sleep(PAUSE_S)
            if fail and os.path.exists(fail):
                raise OSError("disk full (test)")
            job.write(directory)

        return SnapshotJob("async", write)
