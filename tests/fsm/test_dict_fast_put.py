"""The dict backend's fast path for ``[key, value]`` and ``["put", key, value]`` writes
answers and changes state exactly as the general parse does, for every command shape
(hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zraft.backends.dict import DictBackend
from zraft.fsm import NOT_FOUND, BadCommand

keys = st.one_of(st.sampled_from(["a", "b", "multi", "delete", "put"]), st.integers(0, 3),
                 st.binary(max_size=2), st.lists(st.integers(0, 2), max_size=2))
values = st.one_of(st.integers(), st.text(max_size=3), st.just(NOT_FOUND), st.none())
pairs = st.lists(st.one_of(keys, values), min_size=0, max_size=4)
commands = st.one_of(
    st.tuples(keys, values).map(list),
    st.tuples(st.just("delete"), keys).map(list),
    st.tuples(st.sampled_from(["put", "cas", "incr"]), keys, values).map(list),
    st.tuples(st.just("multi"), st.lists(st.tuples(keys, values).map(list), max_size=2)).map(list),
    pairs,
    st.tuples(keys, values),  # a tuple, not a list: the general path
)
steps = st.lists(st.tuples(st.booleans(), st.sampled_from(["s1", "s2"]), commands), max_size=25)


def _run(backend: DictBackend, session: bool, sid: str, command: Any, general: bool) -> Any:
    try:
        if session:
            return ("ok", backend.apply_in_session(command, sid))
        if general:
            return ("ok", backend._write(command, None))
        return ("ok", backend.apply(command))
    except BadCommand as exc:
        return ("bad", str(exc))
    except TypeError as exc:
        return ("type", str(exc))


@settings(max_examples=300, deadline=None)
@given(steps)
def test_fast_put_matches_the_general_path(program: list[tuple[bool, str, Any]]) -> None:
    fast, general = DictBackend(), DictBackend()
    fast.init("p"), general.init("p")
    frozen: tuple[dict[Any, Any], dict[Any, Any]] | None = None
    for i, (session, sid, command) in enumerate(program):
        if i == len(program) // 2:  # a snapshot in the middle: copy-on-write must hold
            fast.snapshot(), general.snapshot()
            frozen = (fast._data, dict(fast._data))
        assert _run(fast, session, sid, command, False) == \
            _run(general, session, sid, command, True)
        assert fast._data == general._data
        assert fast._owner == general._owner and fast._owned == general._owned
    if frozen is not None:
        assert frozen[0] == frozen[1], "a write changed the tables a snapshot job reads"
