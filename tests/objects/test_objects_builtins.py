"""The ready-made objects' semantics (in process), and the client side of a call: argument
checks, reserved names, the await bridge."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import zraft
from zraft.fsm.backend import BadCommand
from zraft.objects import Counter, Dict, List, LockManager, ObjectBackend, Queue, Set
from zraft.objects.calls import encode_call
from zraft.objects.futures import NotifyingFuture, wait_async
from zraft.objects.handle import ObjectHandle, connect_object
from zraft.objects.methods import methods_of


def _b(cls: type) -> ObjectBackend:
    return ObjectBackend(cls)


def _refused(backend: ObjectBackend, call: list[Any], message: str) -> None:
    with pytest.raises(BadCommand, match=message):
        backend.apply(call) if methods_of(backend.cls)[call[0]].kind == "command" \
            else backend.query(call)


def test_counter() -> None:
    c = _b(Counter)
    assert [c.apply(["incr"]), c.apply(["incr", [5]]), c.apply(["decr", [2]])] == [1, 6, 4]
    assert c.apply(["set", [10]]) == 4 and c.query(["get"]) == 10
    assert c.apply(["compare_and_set", [9, 1]]) is False
    assert c.apply(["compare_and_set", [10, 1]]) is True and c.query(["get"]) == 1
    _refused(c, ["incr", [True]], "delta must be an int, not bool")
    _refused(c, ["incr", [1.5]], "delta must be an int, not float")
    c.apply(["set", [2**63 - 1]])
    _refused(c, ["incr"], "outside the 64-bit signed range")
    assert c.query(["get"]) == 2**63 - 1


def test_dict() -> None:
    d = _b(Dict)
    assert d.apply(["set", ["a", [1, 2]]]) is None
    assert d.apply(["setdefault", ["a", 0]]) == [1, 2]
    assert d.apply(["update", [{"b": 2, 3: "three", b"c": None}]]) == 4
    assert d.query(["keys"]) == ["a", "b", 3, b"c"]
    assert d.query(["get", ["missing"]]) is None
    assert d.query(["get", ["missing", zraft.NOT_FOUND]]) is zraft.NOT_FOUND
    assert d.query(["contains", [b"c"]]) is True
    assert d.apply(["cas", ["new", zraft.NOT_FOUND, 1]]) is True
    assert d.apply(["cas", ["new", zraft.NOT_FOUND, 2]]) is False
    assert d.apply(["cas", ["new", True, 2]]) is False  # msgpack equality: True is not 1
    assert d.apply(["cas", ["new", 1, zraft.NOT_FOUND]]) is True  # deleted
    assert d.apply(["incr", ["hits", 3]]) == 3
    _refused(d, ["incr", ["a"]], "the value is a list, not an int")
    assert d.apply(["pop", ["b"]]) == 2 and d.apply(["pop", ["b", "gone"]]) == "gone"
    for key, name in ((1.0, "float"), (True, "bool"), (None, "NoneType"), ([1], "list")):
        _refused(d, ["set", [key, 1]], f"a key must be str, bytes or int, not {name}")
    _refused(d, ["update", [{"ok": 1, 2.5: 1}]], "not float")
    assert d.query(["size"]) == 4 and d.apply(["clear"]) == 4 and d.query(["items"]) == []


def test_list_and_queue() -> None:
    lst = _b(List)
    assert lst.apply(["append", ["a"]]) == 1 and lst.apply(["extend", [["b", "c"]]]) == 3
    assert lst.apply(["insert", [0, "z"]]) == 4 and lst.query(["to_list"]) == ["z", "a", "b", "c"]
    assert lst.apply(["set", [-1, "C"]]) == "c" and lst.query(["get", [-1]]) == "C"
    assert lst.apply(["pop"]) == "C" and lst.apply(["pop", [0]]) == "z"
    assert lst.apply(["remove", ["b"]]) is True and lst.apply(["remove", ["b"]]) is False
    assert lst.query(["slice", [0, 5]]) == ["a"]
    _refused(lst, ["get", [5]], r"index 5 out of range \(size 1\)")
    _refused(lst, ["extend", ["abc"]], "values must be an array, not str")
    assert lst.apply(["clear"]) == 1
    _refused(lst, ["pop"], "pop from an empty list")

    q = _b(Queue)
    assert q.apply(["put", [1]]) == 1 and q.apply(["put_many", [[2, 3, 4]]]) == 4
    assert q.query(["peek"]) == 1 and q.apply(["get"]) == 1
    assert q.apply(["get_many", [2]]) == [2, 3] and q.query(["size"]) == 1
    assert q.apply(["get_many", [-1]]) == [] and q.apply(["get"]) == 4
    assert q.apply(["get"]) is None and q.apply(["get", ["empty"]]) == "empty"


def test_set_keeps_insertion_order() -> None:
    s = _b(Set)
    assert s.apply(["add", ["b"]]) is True and s.apply(["add", ["b"]]) is False
    assert s.apply(["update", [["a", 3, "b", b"z"]]]) == 3
    assert s.query(["members"]) == ["b", "a", 3, b"z"]
    assert s.apply(["discard", ["a"]]) is True and s.apply(["discard", ["a"]]) is False
    assert s.query(["contains", [3]]) is True and s.query(["size"]) == 3
    _refused(s, ["add", [1.5]], "a member must be str, bytes or int, not float")
    assert s.apply(["clear"]) == 3


def test_lock_manager_names_and_reentry() -> None:
    locks = _b(LockManager)
    assert locks.apply_in_session(["acquire", ["L"]], "s1") is True
    assert locks.apply_in_session(["acquire", ["L"]], "s1") is True  # the holder again
    assert locks.apply_in_session(["release", ["L"]], "s1") is True  # one release frees it
    assert locks.query(["owner", ["L"]]) is None
    for bad in ("", "x" * 1025, 5):
        with pytest.raises(BadCommand, match="a lock name is a str of 1-1024 characters"):
            locks.apply_in_session(["acquire", [bad]], "s1")
    locks.apply_in_session(["acquire", ["A"]], "s1")
    locks.apply_in_session(["acquire", ["B"]], "s2")
    locks.expire_session("s1")
    assert locks.query(["locks"]) == {"B": "s2"} and locks.obj.held == {"s2": {"B": None}}


def test_calls_are_checked_before_anything_is_sent() -> None:
    spec = methods_of(Dict)["set"]
    assert encode_call("Dict", spec, ("k", 1), {}) == ["set", ["k", 1]]
    assert encode_call("Dict", methods_of(Dict)["keys"], (), {}) == ["keys"]
    assert encode_call("Dict", methods_of(Dict)["get"], ("k",), {"default": 0}) == [
        "get", ["k"], {"default": 0}]
    with pytest.raises(TypeError, match=r"Dict.set\(\): missing a required argument"):
        encode_call("Dict", spec, ("k",), {})
    with pytest.raises(TypeError, match=r"Dict.set\(\): an argument cannot be sent"):
        encode_call("Dict", spec, ("k", {1, 2}), {})
    acquire = methods_of(LockManager)["acquire"]
    assert encode_call("LockManager", acquire, ("L",), {}) == ["acquire", ["L"]]
    with pytest.raises(TypeError, match="too many positional arguments"):
        encode_call("LockManager", acquire, ("sid", "L"), {})


class Clashing:
    @zraft.replicated
    def close(self) -> None: ...


def test_a_method_named_like_the_handles_own_api_is_refused() -> None:
    with pytest.raises(TypeError, match="method 'close' has the name of a ObjectHandle "
                                        "attribute"):
        connect_object(["p@127.0.0.1:1"], Clashing, cookie="c")
    with pytest.raises(TypeError, match="has no @replicated or @query method"):
        connect_object(["p@127.0.0.1:1"], dict, cookie="c")
    assert "with_timeout" in dir(ObjectHandle)


def test_the_await_form_gets_the_value_or_the_error_from_another_thread() -> None:
    async def main() -> list[Any]:
        done: NotifyingFuture[int] = NotifyingFuture()
        done.set(1)  # completed before anyone waits
        later: NotifyingFuture[int] = NotifyingFuture()
        failing: NotifyingFuture[int] = NotifyingFuture()
        threading.Timer(0.01, later.set, args=(2,)).start()
        threading.Timer(0.01, failing.set_exception,
                        args=((zraft.BadCommand, zraft.BadCommand("no"), None),)).start()
        results: list[Any] = [await wait_async(done), await wait_async(later)]
        try:
            await wait_async(failing)
        except zraft.BadCommand as exc:
            results.append(str(exc))
        return results

    assert asyncio.run(main()) == [1, 2, "no"]


def test_a_cancelled_await_leaves_the_future_to_complete_harmlessly() -> None:
    future: NotifyingFuture[int] = NotifyingFuture()

    async def main() -> None:
        task = asyncio.ensure_future(wait_async(future))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    future.set(5)  # the loop is closed: the callback is dropped, nothing raises
    assert future.get(timeout=0) == 5
