"""Ephemeral (temporary) data lives exactly as long as its session.

- The owner runs in a child Python process; SIGKILL on it (no close, no more pings) makes
  the key disappear within session_timeout + 2 x election_timeout, and a watch on the key
  held by another session fires ``data_changed``.
- While the owner lives, the key stays: across a leader kill and for longer than a whole
  session timeout after the new leader took over.
"""

from __future__ import annotations

import os
import queue
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.acceptance.conftest import ET, Acceptance, wait_for
from zraft.client import api
from zraft.client.watcher import SessionState, WatchEvent
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SESSION_TIMEOUT = 1.5
ROOT = str(Path(__file__).resolve().parents[2])

OWNER = textwrap.dedent("""
    import sys
    from zraft.client.session import Session
    peers, cookie_file, timeout, et, key = sys.argv[1:6]
    s = Session.start(peers.split(","), float(timeout), cookie_file=cookie_file,
                      election_timeout=float(et))
    assert s.write_sync([key, "owned"], temporary=True) == "ok"
    print("ready", s.sid, flush=True)
    sys.stdin.read()  # alive until killed
""")


def _start_owner(acc: Acceptance, key: str) -> psutil.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = acc.own(psutil.Popen(
        [sys.executable, "-c", OWNER, ",".join(acc.peers), acc.cookie_file,
         str(SESSION_TIMEOUT), str(ET), key],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # read "ready" with a deadline, not a blocking read
        readable, _, _ = select.select([proc.stdout], [], [], 0.1)
        if readable:
            line = proc.stdout.readline().decode()
            assert line.startswith("ready"), line
            return proc
        assert proc.poll() is None, "the owner process died"
    raise AssertionError("the owner process did not write its key in time")


def _read(acc: Acceptance, key: str) -> object:
    return api.query(acc.light(), key, timeout=5, pool=acc.pool)[0]


def _stays_for(acc: Acceptance, key: str, seconds: float) -> int:
    """Read ``key`` for ``seconds`` (no gaps longer than one read); every read must find it."""
    reads = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert _read(acc, key) == "owned", f"{key} vanished while its session lives"
        reads += 1
    return reads


def test_ephemeral_key_goes_when_its_session_process_is_killed(make_cluster) -> None:
    acc = make_cluster()
    owner = _start_owner(acc, "eph")
    states: list[tuple[float, SessionState]] = []
    watcher = acc.session(session_timeout=10.0,
                          listeners=[lambda st: states.append((time.monotonic(), st))])
    fired: queue.Queue[WatchEvent] = queue.Queue()
    assert watcher.query_sync("eph", watch=fired) == "owned"
    assert _stays_for(acc, "eph", SESSION_TIMEOUT + 2 * ET) > 5  # pings keep it alive

    while not fired.empty():  # a (spurious) leader change meanwhile: re-arm while it lives
        assert fired.get().reason == "leader_changed"
        print(f"leader_changed before the kill; watcher states {states}")
        assert watcher.query_sync("eph", watch=fired) == "owned"
    owner.kill()  # SIGKILL: no close, no more pings
    killed = time.monotonic()
    owner.wait(5)
    wait_for(lambda: _read(acc, "eph") is NOT_FOUND, SESSION_TIMEOUT + 2 * ET + 5,
             "the ephemeral key to go")
    gone_after = time.monotonic() - killed
    print(f"ephemeral key gone {gone_after:.2f}s after SIGKILL "
          f"(bound {SESSION_TIMEOUT + 2 * ET:.2f}s)")
    assert gone_after <= SESSION_TIMEOUT + 2 * ET, f"took {gone_after:.2f}s"
    event = fired.get(timeout=5)
    while event.reason == "leader_changed":
        # the watcher's session believed the leader changed (zraft_lib fires every watch
        # then); re-arm like a client must. Reported in the run's output for diagnosis.
        print(f"leader_changed before data_changed; watcher states {states}, "
              f"leader terms {[acc.stat(p).get('term') for p in acc.peers]}")
        if watcher.query_sync("eph", watch=fired) is NOT_FOUND:
            pytest.skip("the key went while the watch was being re-armed")
        event = fired.get(timeout=5)
    assert (event.reason, event.query) == ("data_changed", "eph")
    leader = acc.leader()
    assert acc.stat(leader)["fsm"]["temporary_keys"] == 0


def test_ephemeral_key_survives_a_leader_change_while_its_session_lives(make_cluster) -> None:
    acc = make_cluster()
    states: list[SessionState] = []
    owner = acc.session(session_timeout=SESSION_TIMEOUT, listeners=[states.append])
    assert owner.write_sync(["eph", "owned"], temporary=True) == "ok"
    leader = acc.leader()
    acc.kill(leader)
    new = acc.leader(exclude=leader)
    assert _read(acc, "eph") == "owned"
    # longer than a whole session timeout under the new leader: still there
    assert _stays_for(acc, "eph", 2 * SESSION_TIMEOUT) > 5
    assert acc.stat(new)["fsm"]["temporary_keys"] == 1
    assert owner.state == SessionState.CONNECTED and SessionState.EXPIRED not in states
    # and it still goes with its session
    owner.stop()
    wait_for(lambda: _read(acc, "eph") is NOT_FOUND, 5, "the key to go with its session")


PAUSABLE_OWNER = textwrap.dedent("""
    import sys
    from zraft.client.session import Session
    peers, cookie_file, timeout, et, key = sys.argv[1:6]
    s = Session.start(peers.split(","), float(timeout), cookie_file=cookie_file,
                      election_timeout=float(et))
    assert s.write_sync([key, "owned"], temporary=True) == "ok"
    print("ready", s.sid, flush=True)
    for line in sys.stdin:                 # "state" or "write": answer one line each
        if line.strip() == "state":
            print(s.state.value, flush=True)
        else:
            try:
                print(s.write_sync([key, "again"], temporary=True, timeout=2), flush=True)
            except Exception as exc:
                print(type(exc).__name__, flush=True)
""")


def _ask(proc: psutil.Popen, command: str, timeout: float = 10.0) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{command}\n".encode())
    proc.stdin.flush()
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, f"no answer to {command!r}"
    return proc.stdout.readline().decode().strip()


def test_a_session_frozen_longer_than_its_timeout_is_expired(make_cluster) -> None:
    """The owner process is frozen (SIGSTOP): no pings, but its TCP connections stay open.
    The cluster expires it from its own clock, deletes the key, and when the process runs
    again the session knows it is EXPIRED and refuses to write."""
    acc = make_cluster()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    owner = acc.own(psutil.Popen(
        [sys.executable, "-c", PAUSABLE_OWNER, ",".join(acc.peers), acc.cookie_file,
         str(SESSION_TIMEOUT), str(ET), "frozen"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))
    assert owner.stdout is not None
    readable, _, _ = select.select([owner.stdout], [], [], 20)
    assert readable and owner.stdout.readline().startswith(b"ready")
    assert _ask(owner, "state") == "CONNECTED"

    owner.suspend()
    frozen = time.monotonic()
    try:
        wait_for(lambda: _read(acc, "frozen") is NOT_FOUND, SESSION_TIMEOUT + 2 * ET + 5,
                 "the frozen session's key to go")
        took = time.monotonic() - frozen
        assert took <= SESSION_TIMEOUT + 2 * ET, f"took {took:.2f}s"
    finally:
        owner.resume()
    wait_for(lambda: _ask(owner, "state") == "EXPIRED", 10, "the owner to see EXPIRED")
    assert _ask(owner, "write") == "SessionExpired"
    assert _read(acc, "frozen") is NOT_FOUND  # the late session wrote nothing
