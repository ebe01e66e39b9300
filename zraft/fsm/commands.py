"""The commands carried by DATA entries (docs/architecture.md, "Commands in the log").

``entry.data`` is the msgpack encoding of one array:

    [1, payload]                                       plain write
    [2, sid, timeout_ms]                               session connect
    [3, sid, acc_upto]                                 session ping
    [4, sid, msg_id, acc_upto, temporary, payload]     session write, once per (sid, msg_id)
    [5, sid]                                           session close
    [6, sid]                                           leader's expiry check

Rules: ``sid`` is a non-empty str; ``timeout_ms`` an int > 0; ``acc_upto`` an int >= 0;
``msg_id`` an int >= 1; ``temporary`` a bool (ints are not bools, bools are not ints).
``decode_command`` checks all of it and raises ``BadCommand`` for anything else, so the
state machine can answer a deterministic ``"bad_command"``. The ``encode_*`` helpers are
what nodes and clients use to build entries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zraft.fsm.backend import BadCommand
from zraft.fsm.codec import packb, unpackb

WRITE = 1
CONNECT = 2
PING = 3
SESSION_WRITE = 4
CLOSE = 5
EXPIRE_CHECK = 6


class Write(NamedTuple):
    payload: Any


class Connect(NamedTuple):
    sid: str
    timeout_ms: int


class Ping(NamedTuple):
    sid: str
    acc_upto: int


class SessionWrite(NamedTuple):
    sid: str
    msg_id: int
    acc_upto: int
    temporary: bool
    payload: Any


class Close(NamedTuple):
    sid: str


class ExpireCheck(NamedTuple):
    sid: str


Command = Write | Connect | Ping | SessionWrite | Close | ExpireCheck


def encode_write(payload: Any) -> bytes:
    return packb([WRITE, payload])


def encode_connect(sid: str, timeout_ms: int) -> bytes:
    return packb([CONNECT, sid, timeout_ms])


def encode_ping(sid: str, acc_upto: int) -> bytes:
    return packb([PING, sid, acc_upto])


def encode_session_write(
    sid: str, msg_id: int, acc_upto: int, payload: Any, temporary: bool = False
) -> bytes:
    return packb([SESSION_WRITE, sid, msg_id, acc_upto, temporary, payload])


def encode_close(sid: str) -> bytes:
    return packb([CLOSE, sid])


def encode_expire_check(sid: str) -> bytes:
    return packb([EXPIRE_CHECK, sid])


def _int(value: Any, low: int, what: str) -> int:
    if type(value) is not int or value < low:
        raise BadCommand(f"{what} must be an int >= {low}")
    return value


def _sid(value: Any) -> str:
    if type(value) is not str or not value:
        raise BadCommand("session id must be a non-empty str")
    return value


_SHAPE = {WRITE: 1, CONNECT: 2, PING: 2, SESSION_WRITE: 5, CLOSE: 1, EXPIRE_CHECK: 1}


def decode_command(data: Any) -> Command:
    """Decode and validate entry data; raises ``BadCommand`` on anything malformed."""
    return command_from_raw(unpack_command(data))


def unpack_command(data: Any) -> Any:
    """Entry data -> the raw msgpack array (``[WRITE, payload]`` for a plain write, which
    the state machine applies without building a ``Write``); raises ``BadCommand``."""
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BadCommand("command data must be bytes")
        data = bytes(data)
    try:
        return unpackb(data)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise BadCommand(f"undecodable command ({type(exc).__name__})") from None


def command_from_raw(raw: Any) -> Command:
    """Validate an unpacked command; raises ``BadCommand``."""
    if not isinstance(raw, list) or not raw or type(raw[0]) is not int:
        raise BadCommand("a command is an array starting with an int code")
    code, args = raw[0], raw[1:]
    if code not in _SHAPE:
        raise BadCommand(f"unknown command code {code}")
    if len(args) != _SHAPE[code]:
        raise BadCommand(f"command {code} takes {_SHAPE[code]} arguments, got {len(args)}")
    if code == WRITE:
        return Write(args[0])
    sid = _sid(args[0])
    if code == CONNECT:
        return Connect(sid, _int(args[1], 1, "timeout_ms"))
    if code == PING:
        return Ping(sid, _int(args[1], 0, "acc_upto"))
    if code == SESSION_WRITE:
        msg_id = _int(args[1], 1, "msg_id")
        acc_upto = _int(args[2], 0, "acc_upto")
        if type(args[3]) is not bool:
            raise BadCommand("temporary must be a bool")
        return SessionWrite(sid, msg_id, acc_upto, args[3], args[4])
    if code == CLOSE:
        return Close(sid)
    return ExpireCheck(sid)


__all__ = [
    "CLOSE",
    "CONNECT",
    "EXPIRE_CHECK",
    "PING",
    "SESSION_WRITE",
    "WRITE",
    "Close",
    "Command",
    "Connect",
    "ExpireCheck",
    "Ping",
    "SessionWrite",
    "Write",
    "command_from_raw",
    "decode_command",
    "encode_close",
    "encode_connect",
    "encode_expire_check",
    "encode_ping",
    "encode_session_write",
    "encode_write",
    "unpack_command",
]
