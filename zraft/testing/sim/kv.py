"""The simulator's state machine: a tiny key/value register store.

Rules: a command is one DATA entry whose bytes are ``kind|key|value|expected|op_id`` (``~``
for None), so applying is deterministic from the log alone. Kinds: ``w`` write, ``c``
compare-and-set. ``apply`` returns (op_id, result): None for writes, a bool for cas.
"""

from __future__ import annotations

from zraft.testing.linearizability import CAS, WRITE

_NONE = "~"


def encode(kind: str, key: str, value: object, expected: object, op_id: int) -> bytes:
    code = "w" if kind == WRITE else "c"
    exp = _NONE if expected is None else str(expected)
    return f"{code}|{key}|{value}|{exp}|{op_id}".encode()


def decode_op_id(data: bytes) -> int:
    return int(data.rsplit(b"|", 1)[1])


class KeyValueMachine:
    __slots__ = ("applied", "data")

    def __init__(self, data: dict[str, int] | None = None, applied: int = 0) -> None:
        self.data: dict[str, int] = data if data is not None else {}
        self.applied = applied

    def apply(self, index: int, payload: bytes) -> tuple[int, bool | None]:
        code, key, value, expected, op_id = payload.decode().split("|")
        self.applied = index
        if code == "w":
            self.data[key] = int(value)
            return int(op_id), None
        current = self.data.get(key)
        want = None if expected == _NONE else int(expected)
        if current == want:
            self.data[key] = int(value)
            return int(op_id), True
        return int(op_id), False

    def skip(self, index: int) -> None:
        """A non-DATA entry (NOOP, CONFIG) was applied."""
        self.applied = index

    def image(self) -> dict[str, int]:
        return dict(self.data)


__all__ = ["CAS", "WRITE", "KeyValueMachine", "decode_op_id", "encode"]
