"""Client-side handles of replicated objects: call their methods by name.

    counter = zraft.connect_object(peers, Counter, cookie_file="cluster/cookie")
    counter.incr(5)                 # a replicated write; blocks, returns the method's result
    f = counter.incr.future(5)      # a pykka future of it
    await counter.incr.aio(5)       # the same from asyncio (no thread per call)
    counter.get()                   # a linearizable read (through the leader)
    counter.get.local()             # a possibly stale read of one peer's own copy
    counter.close()

Rules:
- A handle owns a zraft Session (unless given one): writes are exactly-once (the session
  re-sends a write across leader changes under the same message id and the cluster applies
  it once), reads are linearizable. A write that fails with ``Timeout`` may still be
  applied (once); ``SessionExpired`` fails every later call: ``reconnect()`` starts a new
  session (a lock's holder then has lost its locks).
- Calls are checked here before anything is sent: an unknown method is ``AttributeError``,
  arguments that do not fit the signature or cannot be packed are ``TypeError``. A
  ``@replicated(session=True)`` method is sent as a temporary session write (the node gives
  it the session id).
- Errors from the cluster raise the ``zraft.errors`` classes (``BadCommand`` for a call the
  object refused, ``BackendError`` if the method raised, ``Timeout``, ``SessionExpired``).
- A replicated method may not be named like the handle's own API (``close``, ``reconnect``,
  ``session``, ``with_timeout``, ...): ``connect_object`` refuses such a class.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pykka

from zraft.client import api
from zraft.client.checks import check_timeout
from zraft.client.connection import ConnectionPool
from zraft.client.session import Session
from zraft.client.session_actor import QueryRequest, WriteRequest
from zraft.client.watcher import SessionState
from zraft.errors import ZRaftError
from zraft.ids import PeerId, peer_str
from zraft.objects.calls import encode_call
from zraft.objects.futures import NotifyingFuture, wait_async
from zraft.objects.methods import COMMAND, MethodSpec, backend_name, methods_of

Peer = PeerId | str
_GRACE = 5.0  # a blocking call waits this much longer than its timeout for the answer


class MethodCall:
    """``handle.name``: call it (blocking), or ``.future(...)``, ``.aio(...)``, ``.local(...)``."""

    def __init__(self, handle: ObjectHandle, spec: MethodSpec) -> None:
        self._handle = handle
        self._spec = spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        timeout = self._handle._timeout
        return self.future(*args, **kwargs).get(timeout=timeout + _GRACE)

    def future(self, *args: Any, **kwargs: Any) -> pykka.Future[Any]:
        """Send the call; a pykka future of its result."""
        return self._handle._send(self._spec, args, kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Send the call now; a coroutine to await for its result (from asyncio)."""
        future = self._handle._send(self._spec, args, kwargs)
        return wait_async(future)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """A query answered by one peer's own copy, without asking the leader (it may be
        stale; the peer is ``local_peer`` of ``connect_object``, else the first peer)."""
        if self._spec.kind == COMMAND:
            raise TypeError(f"{self._handle._owner}.{self._spec.name} is a command: it cannot "
                            "be read locally")
        h = self._handle
        call = encode_call(h._owner, self._spec, args, kwargs)
        return api.query_local(h._local_peer, call, h._timeout, pool=h._pool)

    def __repr__(self) -> str:
        return f"<{self._spec.kind} {self._handle._owner}.{self._spec.name}>"


class ObjectHandle:
    """The client side of one replicated object (see the module docstring)."""

    def __init__(self, cls: type, session: Session, pool: ConnectionPool, *,
                 peers: Sequence[str], timeout: float = api.DEFAULT_TIMEOUT,
                 local_peer: str | None = None, own_session: bool = False,
                 own_pool: bool = False, session_options: dict[str, Any] | None = None
                 ) -> None:
        # every attribute is private: a public one would hide a method of the same name
        self._cls = cls
        self._owner = cls.__qualname__
        self._methods = methods_of(cls)
        check_reserved(cls, type(self))
        self._session = session
        self._pool = pool
        self._peers = list(peers)
        self._timeout = check_timeout(timeout)
        self._local_peer = local_peer or self._peers[0]
        self._own_session = own_session
        self._own_pool = own_pool
        self._session_options = dict(session_options or {})
        self._calls: dict[str, MethodCall] = {}

    def __getattr__(self, name: str) -> MethodCall:
        if name.startswith("_"):
            raise AttributeError(name)
        call = self._calls.get(name)
        if call is None:
            spec = self._methods.get(name)
            if spec is None:
                raise AttributeError(f"{self._owner} has no @replicated or @query method "
                                     f"{name!r}")
            call = self._calls[name] = MethodCall(self, spec)
        return call

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._methods})

    @property
    def session(self) -> Session:
        """The handle's session (its id is the owner of session-owned data, e.g. locks)."""
        return self._session

    @property
    def object_class(self) -> type:
        return self._cls

    def with_timeout(self, timeout: float) -> ObjectHandle:
        """A handle on the same session whose calls wait at most ``timeout`` seconds."""
        return type(self)(self._cls, self._session, self._pool, peers=self._peers,
                          timeout=timeout, local_peer=self._local_peer)

    def _send(self, spec: MethodSpec, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> NotifyingFuture[Any]:
        call = encode_call(self._owner, spec, args, kwargs)
        future: NotifyingFuture[Any] = NotifyingFuture()
        if spec.kind == COMMAND:
            message: Any = WriteRequest(future, call, spec.session, self._timeout)
        else:
            message = QueryRequest(future, call, None, self._timeout)
        self._session._tell(message, future)
        return future

    def reconnect(self) -> None:
        """Replace an expired (or any) session of this handle by a new one."""
        if not self._own_session:
            raise ZRaftError("this handle was given its session: start a new one yourself")
        old = self._session
        self._session = Session.start(self._peers, pool=self._pool, **self._session_options)
        old.stop(timeout=1.0)

    def close(self) -> None:
        """Stop the handle's own session (its session-owned data, e.g. locks, goes now)."""
        if self._own_session:
            self._session.stop()
        if self._own_pool:
            self._pool.close()

    def __enter__(self) -> ObjectHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._owner} (session {self._session.sid})>"


def check_reserved(cls: type, handle_cls: type) -> None:
    """Refuse a class whose method names the handle's own API would hide."""
    own = {name for name in dir(handle_cls) if not name.startswith("_")}
    clash = sorted(own & set(methods_of(cls)))
    if clash:
        raise TypeError(f"{cls.__qualname__}: method {clash[0]!r} has the name of a "
                        f"{handle_cls.__name__} attribute ({', '.join(sorted(own))}): rename "
                        "it")


def connect_object(
    peers: Peer | Sequence[Peer],
    cls: type,
    *,
    cookie: str | bytes | None = None,
    cookie_file: str | None = None,
    pool: ConnectionPool | None = None,
    session: Session | None = None,
    session_timeout: float = 10.0,
    timeout: float = api.DEFAULT_TIMEOUT,
    election_timeout: float | None = None,
    local_peer: Peer | None = None,
    listeners: Sequence[Callable[[SessionState], Any]] = (),
) -> Any:
    """A handle on the replicated object ``cls`` held by the cluster of ``peers``.

    The cluster must run ``cls`` as its backend (``zraft.objects.create(peers, cls)``). The
    handle starts its own session (``session_timeout``, ``election_timeout``, listeners)
    unless given ``session=``. The class's ``zraft_handle`` (e.g. the lock manager's)
    chooses a richer handle."""
    if not methods_of(cls):
        raise TypeError(f"{cls.__qualname__} has no @replicated or @query method")
    given = [peers] if isinstance(peers, (str, PeerId)) else list(peers)
    peer_ids = [peer_str(p) for p in given]
    handle_cls = getattr(cls, "zraft_handle", ObjectHandle)
    check_reserved(cls, handle_cls)
    own_session = session is None
    pool, own_pool = api.pool_for(pool, cookie, cookie_file)
    options = {"session_timeout": session_timeout, "election_timeout": election_timeout,
               "listeners": listeners}
    try:
        if session is None:
            session = Session.start(peer_ids, pool=pool, **options)
    except BaseException:
        if own_pool:
            pool.close()
        raise
    return handle_cls(cls, session, pool, peers=peer_ids, timeout=timeout,
                      local_peer=peer_str(local_peer) if local_peer is not None else None,
                      own_session=own_session, own_pool=own_pool, session_options=options)


def create(peers: Sequence[Peer], cls: type, *, timeout: float = api.DEFAULT_TIMEOUT,
           cookie: str | bytes | None = None, cookie_file: str | None = None,
           pool: ConnectionPool | None = None) -> list[str]:
    """Create a cluster of ``peers`` whose state machine is ``cls`` (``zraft.create`` with
    the class's backend name; every node must allow it in ``node.backends``)."""
    pool, own_pool = api.pool_for(pool, cookie, cookie_file)
    try:
        return api.create(peers, backend_name(cls), timeout, pool=pool)
    finally:
        if own_pool:
            pool.close()


__all__ = ["MethodCall", "ObjectHandle", "check_reserved", "connect_object", "create"]
