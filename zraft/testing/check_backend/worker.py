"""Replica processes: each replica runs in its own Python with its own PYTHONHASHSEED.

Why processes: a str's hash, and so the iteration order of a set of strs, is fixed when an
interpreter starts (PYTHONHASHSEED). Replicas in one process share it, and a backend whose
answers follow a set's order agrees with itself. Each worker also installs the fake
clocks (``env.install``) *before* importing the backend, so ``from time import time`` in
the backend's module binds the fake too.

Protocol (parent <-> worker, over the worker's stdin/stdout; frames are a 4-byte big-endian
length and msgpack): ``["init", backend_spec, state_of_spec, number, peer_id]`` ->
``["ready"]`` or ``["error", text]``; ``["run", scenario, seed, workdir, foreign,
schedule]`` -> ``["trace", trace]``; ``["stop"]``. The worker's own stdout is moved to its
stderr first, so a backend that prints cannot break the frames; stderr goes to a file the
parent shows if the worker dies.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from zraft.fsm.codec import packb, unpackb

_LEN = struct.Struct(">I")


class WorkerDied(RuntimeError):
    """A replica process exited or stopped answering."""


def _write_frame(out: IO[bytes], obj: Any) -> None:
    data = packb(obj)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None) -> Any:
    (size,) = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
    return unpackb(_read_exact(fd, size, deadline))


class Worker:
    """One replica process, as the parent sees it."""

    def __init__(self, number: int, hash_seed: int, backend: str, state_of: str | None,
                 peer_id: str, timeout: float) -> None:
        self.number = number
        self.hash_seed = hash_seed
        self.timeout = timeout
        # closed in close(): it outlives this call (the parent reads it if the worker dies)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = str(hash_seed)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["ZRAFT_MALLOC_TRIM"] = "0"  # no trimmer timers in a short-lived helper
        # -c, not -m: the package imports this module, and runpy warns when running it
        self.proc = subprocess.Popen(
            [sys.executable, "-c",
             "from zraft.testing.check_backend.worker import _main; _main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout.fileno()
        self._send(["init", backend, state_of, number, peer_id])

    def _send(self, obj: Any) -> None:
        try:
            _write_frame(self._in, obj)
        except (BrokenPipeError, OSError) as exc:
            raise self._died(f"cannot send to it ({type(exc).__name__})") from None

    def ready(self) -> None:
        # starting Python and importing the backend is not a backend call: on a busy
        # machine it may take longer than a short per-run timeout
        reply = self._receive(max(self.timeout, 60.0))
        if reply[0] != "ready":
            raise WorkerDied(str(reply[1]))

    def start_run(self, scenario: Any, seed: int, workdir: str, foreign: Any,
                  schedule: Any) -> None:
        self._send(["run", scenario, seed, workdir, foreign, schedule])

    def finish_run(self) -> Any:
        reply = self._receive(self.timeout)
        if reply[0] != "trace":
            raise WorkerDied(str(reply[1]))
        return reply[1]

    def _receive(self, timeout: float) -> Any:
        try:
            return _read_frame(self._out, time.monotonic() + timeout)
        except TimeoutError:
            self.proc.kill()  # it is stuck in a backend call: it would not read "stop"
            died = self._died(f"no answer in {timeout:g} s (a backend call that never "
                              "returns?); it was stopped")
            self.close()
            raise died from None
        except (EOFError, OSError):
            raise self._died("it exited") from None

    def _died(self, what: str) -> WorkerDied:
        try:
            code = self.proc.wait(timeout=5)  # its pipe closed first: let it finish exiting
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-3000:].decode(errors="replace")
        return WorkerDied(f"replica n{self.number + 1} (PYTHONHASHSEED={self.hash_seed}): "
                          f"{what}; exit code {code}\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                _write_frame(self._in, ["stop"])
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        if not self._stderr.closed:
            self._stderr.close()


def _main() -> None:
    from zraft.testing.check_backend import env

    env.install()  # before the backend module is imported: see the module docstring
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fd = sys.stdin.fileno()
    _, backend_spec, state_of_spec, number, peer_id = _read_frame(fd)
    try:
        from zraft.testing.check_backend.generators import backend_factory, load

        factory = backend_factory(backend_spec, load(backend_spec))
        state_of = load(state_of_spec) if state_of_spec else None
    except BaseException as exc:
        _write_frame(protocol_out, ["error", f"cannot import {backend_spec} in a replica "
                                    f"process: {type(exc).__name__}: {exc}"])
        return
    _write_frame(protocol_out, ["ready"])
    from zraft.testing.check_backend.replica import ReplicaRun, Schedule
    from zraft.testing.check_backend.scenario import Scenario

    while True:
        try:
            message = _read_frame(fd)
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, scenario, seed, workdir, foreign, schedule = message
        run = ReplicaRun(Scenario.from_wire(scenario), number, peer_id, seed, factory,
                         env.for_replica(number, seed), state_of, Path(workdir),
                         [(i, d) for i, d in foreign], Schedule(*schedule))
        _write_frame(protocol_out, ["trace", run.run().to_wire()])


if __name__ == "__main__":
    _main()
