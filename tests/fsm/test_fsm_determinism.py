"""Determinism: replicas fed the same entries agree on every result and on their state,
whatever the batching, and a replica restored from a snapshot mid-way agrees too."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fsm.fsm_helpers import new_machine
from zraft.core.entries import DATA, NOOP, Entry
from zraft.fsm import NOT_FOUND
from zraft.fsm import commands as cmd
from zraft.fsm.codec import packb
from zraft.fsm.machine import Reply, StateMachine

SIDS = st.sampled_from(["a", "b"])
KEYS = st.sampled_from(["k1", "k2", b"k1", ["t", 1]])
VALUES = st.one_of(st.none(), st.integers(-2, 2), st.text(max_size=2), st.binary(max_size=2))
EXPECTED = st.one_of(VALUES, st.just(NOT_FOUND))

SIMPLE_OPS = st.one_of(
    st.tuples(KEYS, VALUES).map(list),
    st.tuples(st.just("put"), KEYS, VALUES).map(list),
    st.tuples(st.just("delete"), KEYS).map(list),
    st.tuples(st.just("cas"), KEYS, EXPECTED, EXPECTED).map(list),
)
PAYLOADS = st.one_of(
    SIMPLE_OPS,
    st.lists(
        st.one_of(SIMPLE_OPS, st.tuples(st.just("check"), KEYS, EXPECTED).map(list)), max_size=4
    ).map(lambda ops: ["multi", ops]),
    st.just(["put", {"map": 1}, 1]),  # bad key -> bad_command
    st.just("nonsense"),
)

SESSION_WRITES = st.builds(
    cmd.encode_session_write, SIDS, st.integers(1, 5), st.integers(0, 5), PAYLOADS, st.booleans()
)

# weighted towards sessions: expiry, temporary data and dedup are where replicas could drift
COMMANDS = st.one_of(
    PAYLOADS.map(cmd.encode_write),
    st.builds(cmd.encode_connect, SIDS, st.integers(1, 25)),
    st.builds(cmd.encode_connect, SIDS, st.integers(1, 25)),
    st.builds(cmd.encode_ping, SIDS, st.integers(0, 5)),
    SESSION_WRITES,
    SESSION_WRITES,
    SESSION_WRITES,
    st.builds(cmd.encode_close, SIDS),
    st.builds(cmd.encode_expire_check, SIDS),
    st.binary(max_size=12),  # garbage
    st.none(),  # a NOOP entry
)


# always start with live sessions, cached replies and temporary data, so that every
# snapshot taken mid-way has something in each table
PRELUDE = [
    cmd.encode_connect("a", 40),
    cmd.encode_connect("b", 15),
    cmd.encode_session_write("a", 1, 0, ["k1", "eph"], True),
    cmd.encode_session_write("b", 1, 0, ["k2", "perm"], False),
]


@st.composite
def logs(draw: Any) -> list[Entry]:
    items = draw(st.lists(st.tuples(COMMANDS, st.integers(0, 10)), min_size=1, max_size=60))
    items = [(data, 0) for data in PRELUDE] + items
    entries, time = [], 0
    for index, (data, step) in enumerate(items, start=1):
        time += step
        etype = NOOP if data is None else DATA
        entries.append(Entry(index, 1 + index // 20, etype, data, time))
    return entries


def fingerprint(machine: StateMachine) -> bytes:
    backend: Any = machine.backend
    owned = [[sid, list(keys)] for sid, keys in backend._owned.items()]
    return packb(
        [
            machine.applied_index,
            machine.applied_term,
            machine.sessions.to_bytes(),
            [list(item) for item in backend.items()],
            owned,
        ]
    )


def run_in_batches(entries: list[Entry], cuts: list[int]) -> tuple[StateMachine, list[Reply]]:
    machine = new_machine()
    replies: list[Reply] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(entries)]:
        replies.extend(machine.apply(entries[start:cut]).replies)
        start = max(start, cut)
    return machine, replies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=logs(), data=st.data())
def test_batching_never_changes_results_or_state(entries: list[Entry], data: Any) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(entries)), max_size=8))
    whole, whole_replies = run_in_batches(entries, [])
    split, split_replies = run_in_batches(entries, cuts)
    one_by_one, single_replies = run_in_batches(entries, list(range(len(entries))))
    assert whole_replies == split_replies == single_replies
    assert len(whole_replies) == sum(1 for e in entries if e.type == DATA)
    assert fingerprint(whole) == fingerprint(split) == fingerprint(one_by_one)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=logs(), data=st.data())
def test_restored_replica_agrees_with_the_original(entries: list[Entry], data: Any) -> None:
    middle = data.draw(st.integers(0, len(entries)))
    original = new_machine()
    original.apply(entries[:middle])
    image = original.take_snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        image.write(Path(tmp))
        original.snapshot_done(image)
        restored = new_machine()
        assert restored.restore(Path(tmp)) == (original.applied_index, original.applied_term)
    assert fingerprint(restored) == fingerprint(original)
    rest = entries[middle:]
    assert restored.apply(rest).replies == original.apply(rest).replies
    assert fingerprint(restored) == fingerprint(original)


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=64))
def test_garbage_entries_never_raise(garbage: bytes) -> None:
    machine = new_machine()
    batch = machine.apply([Entry(1, 1, DATA, garbage, 0)])
    assert len(batch.replies) == 1 and machine.applied_index == 1


def _nested_key_command(depth: int) -> bytes:
    """A packed plain write ``[1, ["put", key, 1]]`` whose key nests ``depth`` arrays (built
    as bytes: deeper than the client's own packer would go)."""
    return b"\x92\x01\x93\xa3put" + b"\x91" * depth + b"\x00" + b"\x01"


def _apply_at_stack_depth(frames: int, data: bytes) -> Reply:
    """Apply ``data`` on a fresh machine from ``frames`` Python frames down (a replica's
    stack differs with its code path: thread, restart, recovery)."""
    if frames > 0:
        return _apply_at_stack_depth(frames - 1, data)
    machine = new_machine()
    return machine.apply([Entry(1, 1, DATA, data, 1)]).replies[0]


def test_deeply_nested_keys_get_the_same_answer_at_any_stack_depth() -> None:
    """A key nested past MAX_KEY_DEPTH is refused by a fixed rule (bad_command), not by
    Python's recursion limit, whose reach depends on how deep the applying thread's stack
    already is: replicas must never diverge on it."""
    from zraft.backends.dict import MAX_KEY_DEPTH  # the dict backend's (lower) bound

    # before the bound, a 350-deep key was stored at a shallow stack, a RecursionError
    # (backend_error) 300 frames deeper: the same entry, two results
    for depth, expected in ((MAX_KEY_DEPTH, None), (MAX_KEY_DEPTH + 1, "bad_command"),
                            (350, "bad_command"), (1000, "bad_command")):
        data = _nested_key_command(depth)
        answers = {_apply_at_stack_depth(frames, data).error for frames in (0, 300, 600)}
        assert len(answers) == 1, (depth, answers)  # one answer whatever the stack
        (answer,) = answers
        assert (answer or "").partition(":")[0] == (expected or ""), (depth, answer)
