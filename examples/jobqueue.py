"""A replicated job queue whose claims are leases on client sessions.

A producer submits jobs; a worker claims the oldest pending job through its session (a
*temporary* write), does the work and finishes it. If the worker dies, its session expires
and every job it held goes back to the front of the queue, in job order, on every replica
at the same log entry: no job is lost and none is done twice by two live workers.

Writes (plain or through a session):
    ["submit", payload]          -> the new job's id (1, 2, ...)
Temporary writes (``session.write(cmd, temporary=True)``: the claim is the session's):
    ["claim", worker]            -> [job_id, payload], or None when nothing is pending
    ["finish", job_id, result]   -> "ok"; BadCommand unless this session holds the claim
                                    (a worker whose session expired while it worked cannot
                                    finish a job another worker holds now)
Queries:
    "stats"                      -> {"pending": n, "claimed": n, "done": n}
    ["job", job_id]              -> the job as a map, or zraft.NOT_FOUND
    "pending"                    -> pending job ids, oldest first; watchable: fires when a
                                    job is submitted or comes back
Start a cluster running it (README.md):
    zraft cluster up --dir jobs --backend examples.jobqueue:JobQueue --python-path .
"""

from __future__ import annotations

from typing import Any

from zraft.fsm import NOT_FOUND, ApplyResult, BadCommand, QueryResult, SimpleBackend

PENDING = "pending"  # the watch key of the pending list


class JobQueue(SimpleBackend):
    snapshot_version = 1

    def init(self, peer_id: str) -> None:
        super().init(peer_id)
        self.next_id = 1
        self.jobs: dict[int, dict[str, Any]] = {}  # id -> job
        self.pending: list[int] = []  # FIFO; a list, never a set: iteration order matters
        self.claims: dict[str, list[int]] = {}  # session id -> the jobs it holds (derived)

    # -- writes ---------------------------------------------------------------------------

    def apply(self, command: Any, *, time_ms: int) -> Any:
        match command:
            case ["submit", payload]:
                job_id, self.next_id = self.next_id, self.next_id + 1
                self.jobs[job_id] = {"id": job_id, "payload": payload, "state": "pending",
                                     "submitted_ms": time_ms}
                self.pending.append(job_id)
                return ApplyResult(job_id, (PENDING,))
        raise BadCommand("jobqueue writes: ['submit', payload] (claim and finish are "
                         "temporary writes)")

    def apply_in_session(self, command: Any, session_id: str, *, time_ms: int) -> Any:
        match command:
            case ["claim", str(worker)]:
                if not self.pending:
                    return None
                job = self.jobs[self.pending.pop(0)]
                job.update(state="claimed", owner=session_id, worker=worker,
                           claimed_ms=time_ms, claims=job.get("claims", 0) + 1)
                self.claims.setdefault(session_id, []).append(job["id"])
                return [job["id"], job["payload"]]
            case ["finish", int(job_id), result]:
                job = self.jobs.get(job_id)
                if job is None or job.get("owner") != session_id:
                    raise BadCommand(f"job {job_id} is not claimed by this session")
                self.claims[session_id].remove(job_id)  # checked first: no partial change
                job.update(state="done", result=result, finished_ms=time_ms, owner=None)
                return "ok"
        raise BadCommand("jobqueue temporary writes: ['claim', worker], "
                         "['finish', id, result]")

    def expire_session(self, session_id: str) -> list[str]:
        """The session's claims lapse: its jobs go back to the front of the queue, oldest
        first (a sorted list of ints: the same order on every replica)."""
        back = sorted(self.claims.pop(session_id, []))
        for job_id in back:
            self.jobs[job_id].update(state="pending", owner=None, worker=None)
        self.pending[:0] = back
        return [PENDING] if back else []

    # -- reads ----------------------------------------------------------------------------

    def query(self, query: Any) -> Any:
        match query:
            case "stats":
                states = [j["state"] for j in self.jobs.values()]
                return {s: states.count(s) for s in ("pending", "claimed", "done")}
            case "pending":
                return QueryResult(list(self.pending), watch_keys=(PENDING,))
            case ["job", int(job_id)]:
                return dict(self.jobs[job_id]) if job_id in self.jobs else NOT_FOUND
        raise BadCommand("jobqueue queries: 'stats', 'pending', ['job', id]")

    # -- snapshots (SimpleBackend does the files) -----------------------------------------

    def get_state(self) -> Any:
        return {"next_id": self.next_id, "pending": self.pending,
                "jobs": list(self.jobs.values())}

    def set_state(self, state: Any) -> None:
        self.next_id = state["next_id"]
        self.pending = list(state["pending"])
        self.jobs = {job["id"]: job for job in state["jobs"]}
        # rebuilt, not stored: its lists are only read sorted or searched, so the order
        # they are rebuilt in cannot make this replica answer differently
        self.claims = {}
        for job in state["jobs"]:
            if job["state"] == "claimed":
                self.claims.setdefault(job["owner"], []).append(job["id"])
