"""``create_peers``: a batch refused as a whole starts nothing (names given twice, ids
that do not match the names, a peer that exists already); ``check`` starts nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from node_fakes import Conn, wait

from zraft.config import NodeConfig
from zraft.node.server import Node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(NodeConfig(cookie="c", log_dir=str(tmp_path), snapshot_dir=str(tmp_path)))


def ask(node: Node, args: list[Any]) -> tuple[str, Any]:
    conn = Conn()
    node._node_op(conn, 1, "create_peers", [*args, None, None][:4])
    return wait(lambda: conn.replies.get(1), "the create_peers reply")


def started(node: Node, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(node, "_start_peer", lambda name, *a: calls.append(name))
    return calls


def test_a_name_given_twice_or_ids_not_matching_start_nothing(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = started(node, monkeypatch)
    status, payload = ask(node, [["a", "b", "a"], "dict"])
    assert (status, payload["message"]) == ("bad_request",
                                            "create_peers: peer name a is given twice")
    status, payload = ask(node, [["a", "b"], "dict", ["c1"]])
    assert status == "bad_request" and "one id per peer name (2 names, 1 ids)" in \
        payload["message"]
    assert calls == []


def test_an_existing_peer_refuses_the_whole_batch(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = started(node, monkeypatch)
    node.peers["b"] = object()  # type: ignore[assignment]
    status, payload = ask(node, [["a", "b", "c"], "dict"])
    assert status == "already_present"
    assert payload["present"] == ["b"] and payload["count"] == 1
    assert payload["message"].startswith("1 of the 3 peers exist already on node ")
    assert calls == []


def test_check_starts_nothing_and_create_starts_each_in_order(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = started(node, monkeypatch)
    assert ask(node, [["a", "b"], "dict", ["c1", "c2"], "check"]) == ("ok", [])
    assert calls == []
    status, payload = ask(node, [["a", "b"], "dict", ["c1", "c2"], "create"])
    assert status == "ok" and calls == ["a", "b"]
    assert payload == [f"a@{node.address}", f"b@{node.address}"]


def test_a_backend_the_node_may_not_run_starts_nothing(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = started(node, monkeypatch)
    status, payload = ask(node, [["a"], "os:system"])
    assert status == "backend_not_allowed" and calls == []
    assert "\n" not in payload["message"]


def test_a_start_failing_midway_says_which_peers_exist(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def start(name: str, *_a: Any) -> None:
        if name == "b":
            raise RuntimeError("no threads left")
        calls.append(name)

    monkeypatch.setattr(node, "_start_peer", start)
    status, payload = ask(node, [["a", "b", "c"], "dict"])
    assert status == "error" and calls == ["a"]
    assert payload["created"] == [f"a@{node.address}"]
    assert payload["message"] == ("create_peers: RuntimeError after 1 of 3 peers were "
                                  "started")
