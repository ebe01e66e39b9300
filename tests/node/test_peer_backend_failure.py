"""A peer whose backend cannot run stops alone and answers why (actors/backend_failure.py):
never a crash loop, never a peer running Raft with no state machine."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from node_fakes import Conn, peer_context, wait

from zraft.actors.messages import ClientBatch, ClientRequest, Tick
from zraft.actors.peer import RaftPeerActor
from zraft.backends.dict import DictBackend
from zraft.fsm.registry import BackendLoadError


class InitRaises(DictBackend):
    def init(self, peer_id: str) -> None:
        raise PermissionError(f"cannot open the state of {peer_id}")


def _start(tmp_path, **changes: Any) -> tuple[Any, list[str], list[str]]:
    failures: list[str] = []
    told: list[str] = []
    ctx = dataclasses.replace(peer_context(tmp_path, failures), **changes,
                              backend_failed=lambda name, text: told.append(text))
    return RaftPeerActor.start(ctx), failures, told


def _ask(ref: Any, op: str, args: list[Any]) -> tuple[str, Any]:
    conn = Conn()
    ref.tell(ClientBatch([ClientRequest(conn, 1, op, args)]))
    return wait(lambda: conn.replies.get(1), f"an answer to {op}")


def _missing_module() -> Any:
    raise BackendLoadError("ModuleNotFoundError: No module named 'gone'")


@pytest.mark.parametrize("make_backend, cause", [
    (_missing_module, "backend dict cannot be loaded: ModuleNotFoundError: No module named 'gone'"),
    (InitRaises, "backend dict: InitRaises.init raised PermissionError: cannot open the state "
                 "of p@127.0.0.1:7999"),
])
def test_a_backend_that_cannot_run_stops_the_peer_alone(tmp_path, make_backend, cause) -> None:
    ref, failures, told = _start(tmp_path, make_backend=make_backend)
    try:
        text = f"peer p@127.0.0.1:7999 is stopped: {cause}; fix the backend, then restart the node"
        wait(lambda: told, "the node to be told")
        assert told == [text]
        status, info = _ask(ref, "stat", ["p"])
        assert status == "ok" and info["role"] == "down"
        assert info["backend_failed"]["error"] == cause
        for op, args in (("query", ["p", "k", None, None]), ("bootstrap", ["p"]),
                         ("get_conf", ["p"])):
            assert _ask(ref, op, args) == ("backend_failed", {"message": text, "leader": None})
        ref.tell(Tick(0))
        assert ref.is_alive() and failures == [], "a backend failure is not a crash"
    finally:
        ref.stop(timeout=10)


def test_a_backend_that_cannot_load_never_creates_the_peer_log(tmp_path) -> None:
    opened: list[Any] = []

    def open_storage(discard_after: Any = None) -> Any:
        opened.append(discard_after)
        raise AssertionError("the log must not be opened")

    ref, failures, told = _start(tmp_path, make_backend=_missing_module,
                                 open_storage=open_storage)
    try:
        wait(lambda: told, "the node to be told")
        assert opened == [] and failures == []
    finally:
        ref.stop(timeout=10)
