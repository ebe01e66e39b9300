"""The dict backend's key rule: keys are str, bytes or int, or arrays of them.

Python's dict makes ``1``, ``True`` and ``1.0`` one key, msgpack (and every other client
language) keeps them apart: before the rule, writing ``[True, "x"]`` overwrote key ``1``.
Floats, bools, nil, maps and ``NOT_FOUND`` are refused on every kind of command, with a
reason, and every replica refuses them alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.backends.dict import MAX_KEY_DEPTH, DictBackend
from zraft.fsm import NOT_FOUND, BadCommand

REFUSED: list[Any] = [True, False, 1.0, 0.5, float("nan"), None, {"a": 1}, NOT_FOUND,
                      ["a", True], ("a", 1.0), [["x", None]]]


def _commands(key: Any) -> list[Any]:
    """Every dict backend write that names a key."""
    return [
        [key, "v"],
        ["put", key, "v"],
        ["delete", key],
        ["cas", key, NOT_FOUND, "v"],
        ["incr", key, 1],
        ["multi", [["put", key, "v"]]],
        ["multi", [["put", "ok", 1], ["check", key, NOT_FOUND]]],
    ]


@pytest.fixture
def backend() -> DictBackend:
    b = DictBackend()
    b.init("p1@127.0.0.1:9000")
    return b


def test_one_true_and_one_point_zero_are_not_one_key(backend: DictBackend) -> None:
    backend.apply([1, "int"])
    for alias in (True, 1.0):
        with pytest.raises(BadCommand, match="must be str, bytes, int"):
            backend.apply([alias, "alias"])
        with pytest.raises(BadCommand):
            backend.query(alias)
    assert backend.items() == [(1, "int")]


@pytest.mark.parametrize("key", REFUSED, ids=repr)
def test_refused_keys_on_every_write_and_query(backend: DictBackend, key: Any) -> None:
    for command in _commands(key):
        with pytest.raises(BadCommand):
            backend.apply(command)
        with pytest.raises(BadCommand):
            backend.apply_in_session(command, "s1")
    for query in (key, ["get", key]):
        with pytest.raises(BadCommand):
            backend.query(query)
    assert backend.size() == 0 and backend.temporary_count() == 0


@pytest.mark.parametrize("key", ["k", b"k", 0, -7, 2**70, ["a", 1, b"b"], [[1, [2]], "x"]],
                         ids=repr)
def test_accepted_keys(backend: DictBackend, key: Any) -> None:
    assert backend.apply([key, "v"]).result == "ok"
    assert backend.query(["get", key]).value == "v"
    assert backend.apply(["incr", [key, "n"], 2]).result == 2
    assert backend.apply(["delete", key]).result == "ok"


def test_key_arrays_are_nested_at_most_max_depth(backend: DictBackend) -> None:
    deep: Any = "leaf"
    for _ in range(MAX_KEY_DEPTH):
        deep = [deep]
    assert backend.apply([deep, "v"]).result == "ok"
    with pytest.raises(BadCommand, match="nested"):
        backend.apply([[deep], "v"])
    very_deep: Any = "leaf"
    for _ in range(5000):  # no RecursionError: refused at the bound
        very_deep = [very_deep]
    with pytest.raises(BadCommand, match="nested"):
        backend.query(["get", very_deep])


def test_every_replica_refuses_alike_with_a_reason() -> None:
    """Writes, session writes and queries with refused keys, applied on two machines: the
    same replies (a bad_command with the reason), nothing stored, the same state."""
    replicas = [new_machine(), new_machine()]
    replies: list[list[Any]] = [[], []]
    for machine, out in zip(replicas, replies, strict=True):
        feed = Feeder(machine)
        feed.connect("s1", 10_000)
        msg_id = 0
        for key in REFUSED:
            for command in _commands(key):
                r = feed.write(command)
                msg_id += 1
                sr = feed.swrite("s1", msg_id, command, temporary=True)
                out.append((r.error, r.result, sr.error, sr.result))
            out.append(machine.query(["get", key]).error)
    assert replies[0] == replies[1]
    errors = [e for row in replies[0] for e in (row if isinstance(row, tuple) else (row,))
              if isinstance(e, str)]
    assert errors and all(e.startswith("bad_command: ") for e in errors)
    assert "bad_command: a key must be str, bytes, int or an array of them, not float" in errors
    for machine in replicas:
        assert machine.backend.size() == 0
    assert replicas[0].take_snapshot().sessions == replicas[1].take_snapshot().sessions
