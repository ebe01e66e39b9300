"""Shared helpers for the fsm tests: build entries and feed them to a StateMachine."""

from __future__ import annotations

from typing import Any

from zraft.backends.dict import DictBackend
from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry
from zraft.fsm import commands as cmd
from zraft.fsm.machine import ApplyBatch, Reply, StateMachine


def new_machine(max_log_count: int = 1000, backend: Any = None,
                snapshot_log_ratio: float = 1.0) -> StateMachine:
    backend = backend if backend is not None else DictBackend()
    return StateMachine(backend, "p1@127.0.0.1:9000", max_log_count=max_log_count,
                        snapshot_log_ratio=snapshot_log_ratio)


class Feeder:
    """Appends entries after the machine's applied index, one per call, at a given time."""

    def __init__(self, machine: StateMachine, term: int = 1) -> None:
        self.machine = machine
        self.term = term

    def entry(self, data: Any, time: int, etype: int = DATA) -> Entry:
        return Entry(self.machine.applied_index + 1, self.term, etype, data, time)

    def apply(self, data: bytes, time: int = 0) -> ApplyBatch:
        return self.machine.apply([self.entry(data, time)])

    def reply(self, data: bytes, time: int = 0) -> Reply:
        batch = self.apply(data, time)
        assert len(batch.replies) == 1
        return batch.replies[0]

    def noop(self, time: int = 0) -> ApplyBatch:
        return self.machine.apply([self.entry(None, time, NOOP)])

    def config(self, time: int = 0) -> ApplyBatch:
        conf = ClusterConfig.stable(["p1@127.0.0.1:9000"])
        return self.machine.apply([self.entry(conf, time, CONFIG)])

    # command shortcuts -------------------------------------------------------------
    def write(self, payload: Any, time: int = 0) -> Reply:
        return self.reply(cmd.encode_write(payload), time)

    def connect(self, sid: str, timeout_ms: int, time: int = 0) -> Reply:
        return self.reply(cmd.encode_connect(sid, timeout_ms), time)

    def ping(self, sid: str, acc_upto: int, time: int = 0) -> Reply:
        return self.reply(cmd.encode_ping(sid, acc_upto), time)

    def swrite(
        self,
        sid: str,
        msg_id: int,
        payload: Any,
        time: int = 0,
        acc_upto: int = 0,
        temporary: bool = False,
    ) -> Reply:
        return self.reply(cmd.encode_session_write(sid, msg_id, acc_upto, payload, temporary), time)

    def close(self, sid: str, time: int = 0) -> Reply:
        return self.reply(cmd.encode_close(sid), time)

    def expire_check(self, sid: str, time: int = 0) -> Reply:
        return self.reply(cmd.encode_expire_check(sid), time)
