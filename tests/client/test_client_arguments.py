"""Arguments of the public client API are checked before anything is sent.

- Timeouts: ``inf`` used to raise OverflowError after the write had been sent (and applied),
  ``nan`` made deadlines compare false (sometimes a success, sometimes a timeout), 0 and
  negatives could only time out. Every timeout argument of every public call (module
  functions, light sessions, Session, the Client actor and its proxy) must be finite,
  > 0 and <= a day, else ValueError naming it, and nothing reaches a node.
- No cookie: a ``NoCookie`` (a ZRaftError, still a ValueError) saying how to give one.
- ``zraft.configure()`` reaches ``Session.start`` and ``Client.start``: without a cookie or
  pool they use the default pool (and leave it open when they stop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import zraft
from tests.client.fake_node import FakeCluster
from zraft.client import api
from zraft.client.client_actor import Client, connect
from zraft.client.connection import ConnectionPool
from zraft.client.light_session import LightSession
from zraft.client.session import Session
from zraft.errors import NoCookie, ZRaftError

BAD = [math.inf, -math.inf, math.nan, 0, 0.0, -1, 86_400.5, 10**400, True, "5"]


def _api_calls(peer: str, peers: list[str], pool: ConnectionPool
               ) -> dict[str, Callable[[Any], Any]]:
    light = LightSession.new(peers)
    return {
        "write": lambda t: api.write(peer, ["k", "v"], t, pool=pool),
        "write(light)": lambda t: api.write(light, ["k", "v"], timeout=t, pool=pool),
        "query": lambda t: api.query(peer, "k", t, pool=pool),
        "query_local": lambda t: api.query_local(peer, "k", t, pool=pool),
        "get_conf": lambda t: api.get_conf(peer, t, pool=pool),
        "set_new_conf": lambda t: api.set_new_conf(peer, peers, peers, t, pool=pool),
        "check_exists": lambda t: api.check_exists(peer, t, pool=pool),
        "create_peer": lambda t: api.create_peer(peer, "dict", t, pool=pool),
        "bootstrap": lambda t: api.bootstrap(peer, t, pool=pool),
        "stat": lambda t: api.stat(peer, t, pool=pool),
        "create": lambda t: api.create(peers, "dict", t, pool=pool),
        "light_session": lambda t: api.light_session(peer, timeout=t, pool=pool),
    }


@pytest.mark.parametrize("bad", BAD, ids=lambda v: repr(v)[:12])
def test_module_functions_refuse_bad_timeouts_before_sending(
    fake: FakeCluster, pool: ConnectionPool, bad: Any
) -> None:
    for name, call in _api_calls(fake.leader_id(), fake.peers, pool).items():
        with pytest.raises(ValueError, match="timeout"):
            call(bad)
        assert fake.requests == [], name
    assert fake.applied == []


def test_inf_no_longer_applies_then_overflows(fake: FakeCluster, pool: ConnectionPool) -> None:
    with pytest.raises(ValueError, match=r"timeout must be finite.*got inf"):
        api.write(fake.leader_id(), ["k", "v"], math.inf, pool=pool)
    assert fake.data == {} and fake.requests == []
    assert api.write(fake.leader_id(), ["k", "v"], 86_400, pool=pool)[0] == "ok"  # the bound


@pytest.mark.parametrize("name", ["fail_timeout", "election_timeout"])
def test_light_session_timeouts(name: str) -> None:
    for bad in BAD:
        with pytest.raises(ValueError, match=name):
            LightSession.new(["a@127.0.0.1:1"], **{name: bad})


@pytest.mark.parametrize("name", ["session_timeout", "fail_timeout", "election_timeout"])
def test_session_start_refuses_bad_timeouts(fake: FakeCluster, name: str) -> None:
    for bad in (math.inf, math.nan, -2.0, 0) + ((None,) if name == "session_timeout" else ()):
        kw: dict[str, Any] = {"cookie": fake.cookie}
        if name == "session_timeout":
            args: tuple[Any, ...] = (fake.peers, bad)
        else:
            args, kw[name] = (fake.peers, 10.0), bad
        with pytest.raises(ValueError, match=name):
            Session.start(*args, **kw)
    assert fake.requests == []


def test_session_calls_refuse_bad_timeouts(fake: FakeCluster) -> None:
    s = Session.start(fake.peers, 10.0, cookie=fake.cookie)
    try:
        sent = len(fake.requests)
        for call in (lambda t: s.write(["k", "v"], timeout=t),
                     lambda t: s.write_sync(["k", "v"], timeout=t),
                     lambda t: s.query("k", timeout=t),
                     lambda t: s.query_sync("k", timeout=t),
                     lambda t: s.data_watch("k", timeout=t)):
            for bad in (math.inf, math.nan, 0, -1):
                with pytest.raises(ValueError, match="timeout"):
                    call(bad)
        with pytest.raises(ValueError, match="timeout"):
            s.stop(timeout=math.nan)
        assert [r for r in fake.requests[sent:] if r[1] != "propose" or r[2][2] is None] == []
        assert fake.applied == []
        assert s.write_sync(["k", "v"], timeout=5) == "ok"  # still a working session
    finally:
        s.stop()


@pytest.mark.parametrize("name", ["timeout", "fail_timeout", "election_timeout",
                                  "attempt_timeout"])
def test_client_start_refuses_bad_timeouts(fake: FakeCluster, name: str) -> None:
    for bad in (math.inf, math.nan, -1, 0):
        with pytest.raises(ValueError, match=name):
            Client.start(fake.peers, cookie=fake.cookie, **{name: bad})
        with pytest.raises(ValueError, match=name), connect(fake.peers, cookie=fake.cookie,
                                                            **{name: bad}):
            pass
    assert fake.requests == []


def test_client_proxy_calls_refuse_bad_timeouts(fake: FakeCluster) -> None:
    client = Client.start(fake.peers, cookie=fake.cookie).proxy()
    calls = {
        "write": lambda t: client.write(["k", "v"], timeout=t),
        "query": lambda t: client.query("k", timeout=t),
        "get_conf": lambda t: client.get_conf(timeout=t),
        "set_new_conf": lambda t: client.set_new_conf(fake.peers, fake.peers, timeout=t),
        "create": lambda t: client.create(fake.peers, "dict", timeout=t),
        "stat": lambda t: client.stat(timeout=t),
        "write_sync": lambda t: client.write_sync(["k", "v"], timeout=t),
    }
    for name, call in calls.items():
        for bad in (math.inf, math.nan, -1, 0, "1"):
            with pytest.raises(ValueError, match="timeout"):
                call(bad)
        assert fake.requests == [], name
    assert client.write_sync(["k", "v"]) == "ok"  # None: the client's default
    client.stop()


# -- cookies and the default pool ---------------------------------------------------------


@pytest.fixture
def no_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cookie anywhere, and no default pool yet (restored after the test)."""
    monkeypatch.delenv("ZRAFT_COOKIE", raising=False)
    monkeypatch.delenv("ZRAFT_COOKIE_FILE", raising=False)
    saved = api._default_pool
    api._default_pool = None
    yield
    if api._default_pool is not None:
        api._default_pool.close()
    api._default_pool = saved


def test_missing_cookie_is_a_zraft_error_that_says_how(
    fake: FakeCluster, no_default: None, tmp_path: Path
) -> None:
    attempts: list[Callable[[], Any]] = [
        lambda: api.write(fake.leader_id(), ["k", "v"]),
        lambda: Session.start(fake.peers, 5.0),
        lambda: Client.start(fake.peers),
        lambda: zraft.configure(),
    ]
    for attempt in attempts:
        with pytest.raises(NoCookie) as caught:
            attempt()
        err = caught.value
        assert isinstance(err, ZRaftError) and isinstance(err, ValueError)
        for how in ("configure(cookie_file=", "ZRAFT_COOKIE_FILE", "ZRAFT_COOKIE"):
            assert how in str(err)
    assert zraft.NoCookie is NoCookie
    with pytest.raises(NoCookie, match="cannot read the cookie file"):
        Session.start(fake.peers, 5.0, cookie_file=str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(NoCookie, match="is empty"):
        zraft.configure(cookie_file=str(tmp_path / "empty"))
    assert fake.requests == []


def test_configure_reaches_session_and_client(
    fake: FakeCluster, no_default: None, tmp_path: Path
) -> None:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(fake.cookie.decode() + "\n")
    pool = zraft.configure(cookie_file=str(cookie_file))
    s = Session.start(fake.peers, 5.0)
    assert s.write_sync(["from-session", 1]) == "ok"
    s.stop()
    ref = Client.start(fake.peers)
    assert ref.proxy().write_sync(["from-client", 2]) == "ok"
    ref.stop()
    with connect(fake.peers) as client:
        assert client.query_sync("from-session") == 1
    # neither closed the shared default pool when it stopped
    assert api.default_pool() is pool
    assert api.query(fake.leader_id(), "from-client")[0] == 2
