"""Ready-made replicated objects: Counter, Dict, List, Queue, Set (PySyncObj's batteries).

Each is a plain replicated class (``@replicated`` / ``@query``); a node runs it as the
backend ``zraft.objects:<Name>`` (allow that name in ``node.backends``), a client reaches it
with ``zraft.connect_object(peers, zraft.objects.<Name>)``.

Rules (the same on every replica, so every refusal is a ``BadCommand`` that changes nothing):
- Keys (Dict), members (Set) are str, bytes or int: not bool or float (Python would make
  ``1``, ``1.0`` and ``True`` one key, msgpack keeps them apart), not arrays or maps.
- Values are any msgpack value; they arrive decoded (arrays as lists).
- Counters hold 64-bit signed ints: an increment past the range is refused.
- Orders are insertion orders (Python dicts keep them, and so do snapshots): never a set's
  hash order, which differs between processes.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from zraft.fsm.backend import BadCommand
from zraft.fsm.codec import packb
from zraft.objects.methods import query, replicated
from zraft.transport.sentinels import NOT_FOUND

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise BadCommand(f"{what} must be an int, not {type(value).__name__}")
    return value


def _in_range(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadCommand("the result is outside the 64-bit signed range")
    return value


def _key(value: Any, what: str = "a key") -> Any:
    kind = type(value)
    if kind is str or kind is bytes or kind is int:
        return value
    raise BadCommand(f"{what} must be str, bytes or int, not {kind.__name__}")


def _same(current: Any, expected: Any) -> bool:
    """msgpack equality: ``1``, ``1.0`` and ``True`` differ (as for every other client)."""
    if current is NOT_FOUND or expected is NOT_FOUND:
        return current is expected
    return type(current) is type(expected) and packb(current) == packb(expected)


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise BadCommand(f"{what} must be an array, not {type(value).__name__}")
    return value


class Counter:
    """An integer: ``incr``, ``decr``, ``set``, ``compare_and_set``; read with ``get``."""

    zraft_backend_name = "zraft.objects:Counter"

    def __init__(self) -> None:
        self.value = 0

    @replicated
    def incr(self, delta: int = 1) -> int:
        """Add ``delta``; the new value."""
        self.value = _in_range(self.value + _int(delta, "delta"))
        return self.value

    @replicated
    def decr(self, delta: int = 1) -> int:
        self.value = _in_range(self.value - _int(delta, "delta"))
        return self.value

    @replicated
    def set(self, value: int) -> int:
        """Set the value; the previous one."""
        previous, self.value = self.value, _in_range(_int(value, "value"))
        return previous

    @replicated
    def compare_and_set(self, expected: int, new: int) -> bool:
        """Set ``new`` if the value is ``expected``; whether it did."""
        _int(expected, "expected")
        new = _in_range(_int(new, "new"))
        if self.value != expected:
            return False
        self.value = new
        return True

    @query
    def get(self) -> int:
        return self.value


class Dict:
    """A map (keys str, bytes or int). ``cas`` compares with msgpack-decoded values;
    ``zraft.NOT_FOUND`` as ``expected`` means "absent"."""

    zraft_backend_name = "zraft.objects:Dict"

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    @replicated
    def set(self, key: Any, value: Any) -> None:
        self.data[_key(key)] = value

    @replicated
    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self.data.setdefault(_key(key), default)

    @replicated
    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove ``key``; its value, or ``default`` if it was absent."""
        return self.data.pop(_key(key), default)

    @replicated
    def update(self, items: dict[Any, Any]) -> int:
        """Set every pair of ``items``; the new size."""
        if type(items) is not dict:
            raise BadCommand(f"items must be a map, not {type(items).__name__}")
        for key in items:
            _key(key)
        self.data.update(items)
        return len(self.data)

    @replicated
    def cas(self, key: Any, expected: Any, new: Any) -> bool:
        """Set ``key`` to ``new`` if its value equals ``expected`` (``NOT_FOUND``: absent);
        ``new`` = ``NOT_FOUND`` deletes it. Whether it did."""
        key = _key(key)
        if not _same(self.data.get(key, NOT_FOUND), expected):
            return False
        if new is NOT_FOUND:
            self.data.pop(key, None)
        else:
            self.data[key] = new
        return True

    @replicated
    def incr(self, key: Any, delta: int = 1) -> int:
        """Add ``delta`` to an int value (absent = 0); the new value."""
        key = _key(key)
        current = self.data.get(key, 0)
        if type(current) is not int:
            raise BadCommand(f"the value is a {type(current).__name__}, not an int")
        self.data[key] = value = _in_range(current + _int(delta, "delta"))
        return value

    @replicated
    def clear(self) -> int:
        """Remove everything; how many keys there were."""
        count = len(self.data)
        self.data.clear()
        return count

    @query
    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(_key(key), default)

    @query
    def contains(self, key: Any) -> bool:
        return _key(key) in self.data

    @query
    def keys(self) -> list[Any]:
        return list(self.data)

    @query
    def items(self) -> list[list[Any]]:
        return [[k, v] for k, v in self.data.items()]

    @query
    def size(self) -> int:
        return len(self.data)

    @query
    def to_dict(self) -> dict[Any, Any]:
        return dict(self.data)


class List:
    """A list; indexes as Python's (negative from the end)."""

    zraft_backend_name = "zraft.objects:List"

    def __init__(self) -> None:
        self.data: list[Any] = []

    def _index(self, index: Any, *, insert: bool = False) -> int:
        index = _int(index, "index")
        size = len(self.data)
        if insert:
            return index
        if not -size <= index < size:
            raise BadCommand(f"index {index} out of range (size {size})")
        return index

    @replicated
    def append(self, value: Any) -> int:
        """Append; the new size."""
        self.data.append(value)
        return len(self.data)

    @replicated
    def extend(self, values: list[Any]) -> int:
        self.data.extend(_list(values, "values"))
        return len(self.data)

    @replicated
    def insert(self, index: int, value: Any) -> int:
        self.data.insert(self._index(index, insert=True), value)
        return len(self.data)

    @replicated
    def set(self, index: int, value: Any) -> Any:
        """Replace the item at ``index``; the previous one."""
        index = self._index(index)
        previous, self.data[index] = self.data[index], value
        return previous

    @replicated
    def pop(self, index: int = -1) -> Any:
        if not self.data:
            raise BadCommand("pop from an empty list")
        return self.data.pop(self._index(index))

    @replicated
    def remove(self, value: Any) -> bool:
        """Remove the first item equal to ``value``; whether there was one."""
        try:
            self.data.remove(value)
        except ValueError:
            return False
        return True

    @replicated
    def clear(self) -> int:
        count = len(self.data)
        self.data.clear()
        return count

    @query
    def get(self, index: int) -> Any:
        return self.data[self._index(index)]

    @query
    def slice(self, start: int = 0, stop: int | None = None) -> list[Any]:
        start = _int(start, "start")
        if stop is not None:
            stop = _int(stop, "stop")
        return self.data[start:stop]

    @query
    def size(self) -> int:
        return len(self.data)

    @query
    def to_list(self) -> list[Any]:
        return list(self.data)


class Queue:
    """A FIFO queue. ``get`` is a command (it removes the head). Its deque is saved as a
    list through ``__getstate__`` / ``__setstate__``."""

    zraft_backend_name = "zraft.objects:Queue"

    def __init__(self) -> None:
        self.items: deque[Any] = deque()

    def __getstate__(self) -> list[Any]:
        return list(self.items)

    def __setstate__(self, state: list[Any]) -> None:
        self.items = deque(state)

    @replicated
    def put(self, value: Any) -> int:
        """Add at the tail; the new size."""
        self.items.append(value)
        return len(self.items)

    @replicated
    def put_many(self, values: list[Any]) -> int:
        self.items.extend(_list(values, "values"))
        return len(self.items)

    @replicated
    def get(self, default: Any = None) -> Any:
        """Remove and return the head; ``default`` if the queue is empty."""
        return self.items.popleft() if self.items else default

    @replicated
    def get_many(self, count: int) -> list[Any]:
        """Remove and return up to ``count`` items from the head."""
        count = _int(count, "count")
        return [self.items.popleft() for _ in range(min(max(count, 0), len(self.items)))]

    @query
    def peek(self, default: Any = None) -> Any:
        return self.items[0] if self.items else default

    @query
    def size(self) -> int:
        return len(self.items)

    @query
    def to_list(self) -> list[Any]:
        return list(self.items)


class Set:
    """A set of str, bytes or int, listed in insertion order (kept in a dict)."""

    zraft_backend_name = "zraft.objects:Set"

    def __init__(self) -> None:
        self.elements: dict[Any, None] = {}

    @replicated
    def add(self, value: Any) -> bool:
        """Add; whether it was new."""
        value = _key(value, "a member")
        if value in self.elements:
            return False
        self.elements[value] = None
        return True

    @replicated
    def discard(self, value: Any) -> bool:
        """Remove; whether it was there."""
        return self.elements.pop(_key(value, "a member"), NOT_FOUND) is not NOT_FOUND

    @replicated
    def update(self, values: list[Any]) -> int:
        """Add every value; how many were new."""
        new = [_key(v, "a member") for v in _list(values, "values")]
        before = len(self.elements)
        self.elements.update(dict.fromkeys(new))
        return len(self.elements) - before

    @replicated
    def clear(self) -> int:
        count = len(self.elements)
        self.elements.clear()
        return count

    @query
    def contains(self, value: Any) -> bool:
        return _key(value, "a member") in self.elements

    @query
    def members(self) -> list[Any]:
        return list(self.elements)

    @query
    def size(self) -> int:
        return len(self.elements)


__all__ = ["Counter", "Dict", "List", "Queue", "Set"]
