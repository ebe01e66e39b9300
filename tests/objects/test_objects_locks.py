"""The lock manager on real nodes: a lock belongs to its holder's session, so it is freed
when the holder closes (at once) or its process dies (when the cluster expires the
session: within the session timeout after the last keepalive, plus an election bound)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import psutil
import pytest

import zraft
from tests.acceptance.harness import ET, ROOT, SESSION_TIMEOUT, _line, wait_for
from tests.objects.conftest import Objects
from zraft.objects import LockManager

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LEEWAY = 1.0  # seconds
HOLDER = textwrap.dedent("""
    import sys
    import zraft
    from zraft.objects import LockManager
    peers, cookie_file, timeout, et, name = sys.argv[1:6]
    locks = zraft.connect_object(peers.split(","), LockManager, cookie_file=cookie_file,
                                 session_timeout=float(timeout), election_timeout=float(et))
    assert locks.acquire(name) is True
    print("held", locks.session.sid, flush=True)
    sys.stdin.read()                      # until killed
""")


def _handle(acc: Objects, peers: list[str], **kw: Any) -> Any:
    handle = zraft.connect_object(peers, LockManager, pool=acc.pool, election_timeout=ET, **kw)
    acc.sessions.append(handle.session)
    return handle


def _start_holder(acc: Objects, peers: list[str], name: str) -> tuple[psutil.Popen, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = acc.own(psutil.Popen(
        [sys.executable, "-c", HOLDER, ",".join(peers), acc.cookie_file,
         str(SESSION_TIMEOUT), str(ET), name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))
    words = _line(proc, 20.0).split()
    assert words[0] == "held", words
    return proc, words[1]


def test_killing_the_holders_process_frees_its_lock_within_the_session_bound(
        shared_objects: Objects) -> None:
    acc = shared_objects
    peers = acc.create_object("locks1", LockManager)
    holder, sid = _start_holder(acc, peers, "job")
    locks = _handle(acc, peers)
    assert locks.owner("job") == sid and locks.acquire("job") is False
    assert locks.locks() == {"job": sid}
    holder.kill()  # SIGKILL: no close, no more keepalives
    killed = time.monotonic()
    holder.wait(5)
    wait_for(lambda: locks.owner("job") is None, SESSION_TIMEOUT + 2 * ET + 5, "the release")
    freed_after = time.monotonic() - killed
    # the lease: the session timeout, an election bound, and LEEWAY for the polled reads
    # and a loaded machine (it still catches a lock kept for another session timeout)
    bound = SESSION_TIMEOUT + 2 * ET + LEEWAY
    print(f"lock freed {freed_after:.2f}s after SIGKILL (bound {bound:.2f}s)")
    assert freed_after <= bound, f"took {freed_after:.2f}s"
    assert locks.acquire("job") is True and locks.is_mine("job")
    # the lock counts as the session's temporary data in stat (each replica, once applied)
    for peer in peers:
        wait_for(lambda peer=peer: acc.stat(peer)["fsm"]["temporary_keys"] == 1, 10,
                 f"{peer} to count the lock")


def test_a_waiter_gets_the_lock_as_soon_as_the_holder_closes(shared_objects: Objects) -> None:
    acc = shared_objects
    peers = acc.create_object("locks2", LockManager)
    first = _handle(acc, peers)
    second = _handle(acc, peers)
    got: list[float] = []
    with first.hold("door", timeout=5):
        assert first.is_mine("door") and not second.is_mine("door")
        with pytest.raises(zraft.Timeout, match=r"not acquired within 0\.2s"):
            second.wait_acquire("door", timeout=0.2)
        waiter = threading.Thread(
            target=lambda: got.append(second.wait_acquire("door", timeout=10) and 1.0))
        waiter.start()
        time.sleep(0.1)  # the waiter polls meanwhile (not synchronisation: it must wait)
        assert not got
    waiter.join(10)
    assert got and second.is_mine("door")
    second.close()  # closing the session frees what it held, at once
    assert first.owner("door") is None
