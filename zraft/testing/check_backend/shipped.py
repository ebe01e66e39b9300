"""Command generators for the ready-made replicated objects (``zraft.objects``), so the
checker knows how to drive every backend zraft ships (``generators.DEFAULTS``; the example
apps' generators are in the tests).

A replicated object's call is ``[method, args]`` (``zraft.objects.calls``). Each generator
mixes valid calls, calls the object must refuse (wrong types, unknown keys) so its error
path is compared on every replica too, and reads. Values are small and repeat, so that
writes collide (cas hits and misses, pops of present and absent keys).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from zraft.testing.check_backend.ops import Op, query, write

_KEYS: tuple[Any, ...] = ("a", "b", "c", "k/1", "k/\u00e9", 1, 2, b"x")
_VALUES: tuple[Any, ...] = (0, 1, 2, -5, "v", "", b"\x00", None, True, [1, "x"], {"m": 1})


def _key(rng: random.Random) -> Any:
    return rng.choice(_KEYS)


def _value(rng: random.Random) -> Any:
    return rng.choice(_VALUES)


def _int(rng: random.Random) -> Any:
    return rng.randint(-3, 5) if rng.random() < 0.95 else rng.choice(["1", 1.5, None])


def counter_commands(rng: random.Random) -> Op:
    r = rng.random()
    if r < 0.3:
        return write(["incr", [_int(rng)]])
    if r < 0.4:
        return write(["decr", [_int(rng)]])
    if r < 0.5:
        return write(["set", [_int(rng)]])
    if r < 0.65:
        return write(["compare_and_set", [rng.randint(-3, 8), rng.randint(-3, 8)]])
    if r < 0.68:
        return write(["nope", []])
    return query(["get"])


def dict_object_commands(rng: random.Random) -> Op:
    r = rng.random()
    if r < 0.2:
        return write(["set", [_key(rng), _value(rng)]])
    if r < 0.27:
        return write(["setdefault", [_key(rng), _value(rng)]])
    if r < 0.35:
        return write(["pop", [_key(rng)]])
    if r < 0.4:
        return write(["update", [{"a": _value(rng), "z": _value(rng)}]])
    if r < 0.5:
        return write(["cas", [_key(rng), _value(rng), _value(rng)]])
    if r < 0.58:
        return write(["incr", [_key(rng), _int(rng)]])
    if r < 0.6:
        return write(["clear"])
    return query(rng.choice([["get", [_key(rng)]], ["contains", [_key(rng)]], ["keys"],
                             ["items"], ["size"], ["to_dict"]]))


def list_commands(rng: random.Random) -> Op:
    r = rng.random()
    index = rng.randint(-4, 6)
    if r < 0.25:
        return write(["append", [_value(rng)]])
    if r < 0.3:
        return write(["extend", [[_value(rng), _value(rng)]]])
    if r < 0.37:
        return write(["insert", [index, _value(rng)]])
    if r < 0.44:
        return write(["set", [index, _value(rng)]])
    if r < 0.52:
        return write(["pop", [index]] if rng.random() < 0.5 else ["pop"])
    if r < 0.57:
        return write(["remove", [_value(rng)]])
    if r < 0.59:
        return write(["clear"])
    return query(rng.choice([["get", [index]], ["slice", [rng.randint(0, 3)]], ["size"],
                             ["to_list"]]))


def queue_commands(rng: random.Random) -> Op:
    r = rng.random()
    if r < 0.3:
        return write(["put", [_value(rng)]])
    if r < 0.36:
        return write(["put_many", [[_value(rng), _value(rng)]]])
    if r < 0.55:
        return write(["get"])
    if r < 0.62:
        return write(["get_many", [_int(rng)]])
    return query(rng.choice([["peek"], ["size"], ["to_list"]]))


def set_commands(rng: random.Random) -> Op:
    r = rng.random()
    if r < 0.3:
        return write(["add", [_key(rng)]])
    if r < 0.45:
        return write(["discard", [_key(rng)]])
    if r < 0.52:
        return write(["update", [[_key(rng), _key(rng), _key(rng)]]])
    if r < 0.55:
        return write(["clear"])
    if r < 0.57:
        return write(["add", [[1, 2]]])  # not hashable as a member: refused alike
    # members() of a set: the answer's order must not depend on the replica's hash seed
    return query(rng.choice([["contains", [_key(rng)]], ["members"], ["size"]]))


def lock_commands(rng: random.Random) -> Op:
    """Locks are session methods: plain writes are refused (the same way everywhere);
    session and temporary writes take and release them, and expiry frees them."""
    name = rng.choice(["L1", "L2", "L3"])
    r = rng.random()
    if r < 0.45:
        return write(["acquire", [name]])
    if r < 0.75:
        return write(["release", [name]])
    return query(rng.choice([["owner", [name]], ["locks"]]))


SHIPPED: dict[str, Callable[[random.Random], Op]] = {
    "zraft.objects:Counter": counter_commands,
    "zraft.objects:Dict": dict_object_commands,
    "zraft.objects:List": list_commands,
    "zraft.objects:Queue": queue_commands,
    "zraft.objects:Set": set_commands,
    "zraft.objects:LockManager": lock_commands,
}

__all__ = ["SHIPPED"]
