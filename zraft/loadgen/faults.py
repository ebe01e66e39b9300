"""Faults a bench run injects on schedule: ``--fault SECONDS:ACTION`` on a local cluster.

Rules: actions go through LocalCluster and zraft.cluster.admin (so they are recorded in the
cluster's fault log and appear on the plot like faults injected from another shell); a
failing action is reported, never fatal to the run. Actions: kill-leader, pause-leader,
isolate-leader, heal, resume (every paused node), restart (start every node that is down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from zraft.cluster import admin
from zraft.cluster.local import LocalCluster, wait_until

ACTIONS = ("kill-leader", "pause-leader", "isolate-leader", "heal", "resume", "restart")


@dataclass(frozen=True)
class Fault:
    at: float
    action: str

    @classmethod
    def parse(cls, text: str) -> Fault:
        at, sep, action = text.partition(":")
        if not sep or action not in ACTIONS:
            raise ValueError(f"--fault {text!r}: want SECONDS:ACTION, ACTION one of "
                             f"{', '.join(ACTIONS)}")
        return cls(float(at), action)


def apply(cluster_dir: str, action: str) -> str:
    """Do one action now; returns what was done."""
    cluster = LocalCluster.load(cluster_dir)
    pool = admin.pool_for(cluster)
    try:
        if action in ("kill-leader", "pause-leader", "isolate-leader"):
            leader = admin.find_leader(pool, cluster)
            if leader is None:
                return f"{action}: no leader"
            if action == "kill-leader":
                cluster.kill(leader)
            elif action == "pause-leader":
                cluster.pause(leader)
            else:
                admin.partition(pool, cluster, [[leader]])
            return f"{action}: node {leader.index}"
        if action == "heal":
            admin.heal(pool, cluster)
        elif action == "resume":
            for n in cluster.nodes:
                cluster.resume(n)
        elif action == "restart":
            for n in cluster.nodes:
                if not n.alive():
                    cluster.record_fault("restart", n)
                    cluster.start_node(n)
                    wait_until(lambda n=n: admin.stat(pool, cluster, n, 0.5), 15.0,
                                     f"node {n.index} to answer")
                    admin.reapply_partition(pool, cluster, n)
        return action
    finally:
        pool.close()


class FaultSchedule:
    """Runs faults at their offsets from ``start`` (monotonic) on a background thread."""

    def __init__(self, cluster_dir: str, faults: list[Fault],
                 report: Callable[[str], None]) -> None:
        self.cluster_dir = cluster_dir
        self.faults = sorted(faults, key=lambda f: f.at)
        self.report = report
        self.done: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, start: float) -> None:
        if self.faults:
            self._thread = threading.Thread(target=self._run, args=(start,), daemon=True,
                                            name="zraft-bench-faults")
            self._thread.start()

    def _run(self, start: float) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, start + fault.at - time.monotonic())):
                return
            try:
                what = apply(self.cluster_dir, fault.action)
            except Exception as exc:  # a failed fault must not end the run
                what = f"{fault.action} failed: {type(exc).__name__}: {exc}"
            self.done.append(what)
            self.report(f"t={fault.at:g}s {what}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
