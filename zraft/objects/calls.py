"""The wire shape of a method call on a replicated object, both ends.

A call is the msgpack array ``[name, args, kwargs]``: ``name`` a str, ``args`` an array,
``kwargs`` a map with str keys. Trailing empty parts are left out (``["get"]``,
``["incr", [5]]``), so the smallest call is one short array. The same shape is a command
(a write, applied by every replica) or a query (a read); which one is the method's mark.

Rules:
- The client binds the arguments to the method's signature before anything is sent (a
  wrong call raises ``TypeError`` at once, as a local call would) and packs the call (a
  value msgpack cannot carry raises ``TypeError`` naming its type). Arguments arrive
  msgpack-decoded: tuples become lists, ``str`` and ``bytes`` stay apart.
- The node trusts nothing: ``decode_call`` refuses any other shape with ``BadCommand``, and
  the backend binds the arguments again. Messages quote a client's values only through
  ``safe_repr``.
"""

from __future__ import annotations

from typing import Any

from zraft.fsm.backend import BadCommand
from zraft.fsm.codec import packb
from zraft.objects.methods import MethodSpec
from zraft.saferepr import safe_repr

SESSION_PLACEHOLDER = "<session>"  # stands for the session id when the client binds


def encode_call(owner: str, spec: MethodSpec, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> list[Any]:
    """The call as sent; raises ``TypeError`` for arguments that do not fit or cannot be
    packed (nothing is sent then)."""
    lead = (None, SESSION_PLACEHOLDER) if spec.session else (None,)
    try:
        spec.signature.bind(*lead, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{owner}.{spec.name}(): {exc}") from None
    call: list[Any] = [spec.name]
    if args or kwargs:
        call.append(list(args))
    if kwargs:
        call.append(dict(kwargs))
    try:
        packb(call)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{owner}.{spec.name}(): an argument cannot be sent ({exc})") from None
    return call


def decode_call(raw: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """``(name, args, kwargs)`` of a received call; ``BadCommand`` if it is not one."""
    if type(raw) is not list or not 1 <= len(raw) <= 3:
        raise BadCommand("a call is [method, args, kwargs]")
    name = raw[0]
    if type(name) is not str:
        raise BadCommand(f"a method name is a str, not {type(name).__name__}")
    args = raw[1] if len(raw) > 1 else []
    if type(args) is not list:
        raise BadCommand(f"a call's args are an array, not {type(args).__name__}")
    kwargs = raw[2] if len(raw) > 2 else {}
    if type(kwargs) is not dict or any(type(k) is not str for k in kwargs):
        raise BadCommand("a call's kwargs are a map with str keys")
    return name, args, kwargs


def unknown_method(owner: str, name: str) -> BadCommand:
    return BadCommand(f"{owner} has no method {safe_repr(name)}")


__all__ = ["SESSION_PLACEHOLDER", "decode_call", "encode_call", "unknown_method"]
