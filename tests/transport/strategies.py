"""Hypothesis strategies for every frame the transport carries."""

from __future__ import annotations

from hypothesis import strategies as st

from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry, SnapshotMeta
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from zraft.transport.codec import (
    AdminRequest,
    ClientReply,
    ClientRequest,
    Push,
    SnapshotControl,
)
from zraft.transport.sentinels import NOT_FOUND

U64 = 2**64 - 1
uints = st.integers(min_value=0, max_value=U64)
small_uints = st.integers(min_value=0, max_value=2**40)
ids = st.text(min_size=0, max_size=24)
id_tuples = st.lists(ids, max_size=5).map(tuple)
configs = st.builds(ClusterConfig, id_tuples, id_tuples)
metas = st.builds(SnapshotMeta, uints, uints, uints, configs)


@st.composite
def entry_lists(draw: st.DrawFn, first_index: int) -> list[Entry]:
    n = draw(st.integers(0, 8))
    out = []
    for i in range(n):
        etype = draw(st.sampled_from([DATA, CONFIG, NOOP]))
        if etype == DATA:
            data = draw(st.binary(max_size=64))
        elif etype == CONFIG:
            data = draw(configs)
        else:
            data = None
        out.append(Entry(first_index + i, draw(uints), etype, data, draw(uints)))
    return out


clusters = st.text(max_size=64)


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    prev_index = draw(small_uints)
    return AppendEntries(
        draw(uints),
        draw(ids),
        draw(ids),
        prev_index,
        draw(uints),
        draw(entry_lists(prev_index + 1)),
        draw(uints),
        draw(uints),
        draw(uints),
        draw(clusters),
    )


raft_messages = st.one_of(
    st.builds(VoteRequest, uints, ids, ids, uints, uints, st.booleans(), clusters,
              st.booleans()),
    st.builds(TimeoutNow, uints, ids, ids, uints, uints, clusters),
    st.builds(VoteReply, uints, ids, ids, st.booleans(), st.booleans(), st.booleans(),
              clusters),
    append_entries(),
    st.builds(AppendReply, uints, ids, ids, st.booleans(), uints, uints, uints, uints,
              st.booleans(), clusters),
    st.builds(InstallSnapshot, uints, ids, ids, metas, uints, clusters),
)

# Any msgpack value as decoded (lists, not tuples), plus NOT_FOUND.
payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.just(NOT_FOUND),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | small_uints, inner, max_size=4),
    max_leaves=12,
)
ops = st.text(max_size=10) | small_uints

generic_frames = st.one_of(
    st.builds(ClientRequest, uints, ops, payloads),
    st.builds(ClientReply, uints, ops, payloads),
    st.builds(SnapshotControl, ops, payloads),
    st.builds(AdminRequest, uints, ops, payloads),
    st.builds(Push, ops, payloads),
)

frames = raft_messages | generic_frames
