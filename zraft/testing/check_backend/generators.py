"""Command generators: the operations the checker feeds a backend.

An operation is ``("write", payload)`` (the checker sends it as a plain write, a session
write or a temporary session write) or ``("query", query)``; payloads and queries are what
a client would send (msgpack values). A generator is either

- a function ``gen(rng: random.Random) -> operation`` (no dependency; reproducible from the
  seed), or
- a hypothesis strategy of operations (hypothesis then shrinks a failure to a short list),

or a zero-argument callable returning one of those. ``resolve`` finds the generator of a
backend: the one given, else the backend's default (``DEFAULTS`` by ``module:Class``, or a
``check_commands`` attribute on the class), else it says what to pass.

``dict_commands`` covers the dict backend: puts in both forms, deletes, cas (hits and
misses, ``NOT_FOUND`` on both sides), incr (also on non-ints), multi with checks, gets,
bare-key reads and list queries over str, bytes, int and array keys, and commands it must
refuse (float keys, unknown shapes) so its ``BadCommand`` path is compared too. Most keys
are str on purpose: their hashes (so a set's order) change with PYTHONHASHSEED.
"""

from __future__ import annotations

import importlib
import inspect
import random
from collections.abc import Callable
from typing import Any

from zraft.fsm.codec import NOT_FOUND
from zraft.fsm.registry import BUILTIN_BACKENDS
from zraft.testing.check_backend.ops import Op, query, write
from zraft.testing.check_backend.shipped import SHIPPED
from zraft.testing.check_backend.sqlite_commands import sqlite_commands

_STR_KEYS = ("a", "b", "c", "k/1", "k/2", "k/10", "k/\u00e9", "zz")
_OTHER_KEYS: tuple[Any, ...] = (b"a", b"k/1", 7, -1, ["t", 1], ["t", ["u", b"v"]])
_VALUES: tuple[Any, ...] = (0, 1, 2, 3, -7, 2**40, "v", "", b"\x00\xff", None, True, 1.5,
                            [1, "x"], {"m": [1, 2]}, {"z": 1, "a": 2})
_PREFIXES: tuple[Any, ...] = ("", "k/", "k/1", "zz", b"", b"k")


def _key(rng: random.Random) -> Any:
    return rng.choice(_STR_KEYS) if rng.random() < 0.8 else rng.choice(_OTHER_KEYS)


def _value(rng: random.Random) -> Any:
    return rng.choice(_VALUES) if rng.random() < 0.7 else rng.randint(-3, 3)


def _expected(rng: random.Random) -> Any:
    return NOT_FOUND if rng.random() < 0.25 else _value(rng)


def _simple(rng: random.Random, *, in_multi: bool) -> list[Any]:
    r = rng.random()
    key = _key(rng)
    if r < 0.35:
        return ["put", key, _value(rng)]
    if r < 0.5:
        return ["delete", key]
    if r < 0.75:
        return ["cas", key, _expected(rng), _expected(rng)]
    if in_multi:
        return ["check", key, _expected(rng)]
    return ["incr", key, rng.randint(-2, 5)]


def dict_commands(rng: random.Random) -> Op:
    """One operation for ``zraft.backends.dict.DictBackend`` (see the module docstring)."""
    r = rng.random()
    if r < 0.15:
        key = rng.choice(_STR_KEYS)
        return write([key, _value(rng)])  # the two-item put (its fast path)
    if r < 0.55:
        return write(_simple(rng, in_multi=False))
    if r < 0.63:
        return write(["multi", [_simple(rng, in_multi=True) for _ in range(rng.randint(0, 4))]])
    if r < 0.66:
        return write(rng.choice((["put", 1.5, 1], ["incr", "a", "x"], ["frobnicate", 1, 2, 3],
                                 ["multi", [["incr", "a", 1]]], "nonsense", [])))
    if r < 0.78:
        return query(["get", _key(rng)])
    if r < 0.86:
        return query(rng.choice(_STR_KEYS))
    if r < 0.99:
        return query(["list", rng.choice(_PREFIXES)])
    return query(["list", 5])  # refused: a prefix is str or bytes


DEFAULTS: dict[str, Callable[[random.Random], Op]] = {
    BUILTIN_BACKENDS["dict"]: dict_commands,
    BUILTIN_BACKENDS["sqlite"]: sqlite_commands,
    **SHIPPED,
}


def load(spec: str) -> Any:
    """The object named ``module:attribute`` (dotted attributes allowed)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected module:name, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def backend_factory(spec: str | None, cls: type) -> Callable[[], Any]:
    """What makes a fresh backend: the node's own loader (``zraft.fsm.registry``) when the
    class has a plain ``module:Class`` name, so the checker runs what a node would run
    (e.g. a class the registry wraps in an adapter), else the class itself."""
    from zraft.fsm.registry import load_backend

    if spec is not None and "." not in spec.partition(":")[2]:
        return lambda: load_backend(spec, [spec])
    return cls


def is_strategy(obj: Any) -> bool:
    try:
        from hypothesis.strategies import SearchStrategy
    except ImportError:
        return False
    return isinstance(obj, SearchStrategy)


def _takes_rng(fn: Callable[..., Any]) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                         p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) == 1


def as_generator(obj: Any) -> tuple[str, Any]:
    """``("function", gen)`` or ``("strategy", strategy)`` for a generator as given."""
    if isinstance(obj, str):
        obj = load(obj)
    if is_strategy(obj):
        return "strategy", obj
    if callable(obj) and _takes_rng(obj):
        return "function", obj
    if callable(obj):
        made = obj()
        if is_strategy(made):
            return "strategy", made
        if callable(made):
            return "function", made
    raise TypeError("a command generator is a function(rng) -> ('write'|'query', value), a "
                    "hypothesis strategy of those, or a callable returning one of them")


def resolve(backend_name: str, backend_class: type, commands: Any) -> tuple[str, Any]:
    """The generator to use for a backend (see the module docstring)."""
    if commands is not None:
        return as_generator(commands)
    if backend_name in DEFAULTS:
        return "function", DEFAULTS[backend_name]
    own = getattr(backend_class, "check_commands", None)
    if own is not None:
        return as_generator(own)
    raise ValueError(f"no command generator for {backend_name}: pass one (--commands "
                     "module:callable, or commands= in check()), or give the class a "
                     "check_commands attribute")


__all__ = ["DEFAULTS", "Op", "as_generator", "backend_factory", "dict_commands", "is_strategy",
           "load", "query", "resolve", "write"]
