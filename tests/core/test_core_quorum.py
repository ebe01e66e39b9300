"""core/quorum.py: truth tables and a hypothesis check against a naive reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zraft.core.entries import ClusterConfig
from zraft.core.quorum import LOST, PENDING, WON, committed_index, has_quorum, vote_result


def naive_commit(group: tuple[str, ...], match: dict[str, int]) -> int:
    """Largest index that more than half of the group reached (try every candidate)."""
    best = 0
    for candidate in {match.get(p, 0) for p in group} | {0}:
        if sum(1 for p in group if match.get(p, 0) >= candidate) * 2 > len(group):
            best = max(best, candidate)
    return best


def naive_vote(group: tuple[str, ...], votes: dict[str, bool]) -> str:
    if not group:
        return WON
    yes = sum(1 for p in group if votes.get(p) is True)
    no = sum(1 for p in group if votes.get(p) is False)
    if yes * 2 > len(group):
        return WON
    if (len(group) - no) * 2 <= len(group):
        return LOST
    return PENDING


PEERS = ["a", "b", "c", "d", "e", "f", "g"]
groups = st.lists(st.sampled_from(PEERS), min_size=1, max_size=7, unique=True).map(
    lambda ps: tuple(sorted(ps))
)


@settings(max_examples=150, deadline=None)
@given(old=groups, new=st.one_of(st.just(()), groups),
       match=st.dictionaries(st.sampled_from(PEERS), st.integers(0, 20)))
def test_committed_index_matches_naive(old, new, match):
    cfg = ClusterConfig(old, new)
    expected = naive_commit(old, match)
    if new:
        expected = min(expected, naive_commit(new, match))
    assert committed_index(cfg, lambda p: match.get(p, 0)) == expected


@settings(max_examples=150, deadline=None)
@given(old=groups, new=st.one_of(st.just(()), groups),
       votes=st.dictionaries(st.sampled_from(PEERS), st.booleans()))
def test_vote_result_matches_naive(old, new, votes):
    a, b = naive_vote(old, votes), naive_vote(new, votes)
    expected = WON if a == b == WON else LOST if LOST in (a, b) else PENDING
    assert vote_result(ClusterConfig(old, new), votes) == expected


def test_tables():
    cfg = ClusterConfig(("a", "b", "c"), ())
    assert committed_index(cfg, {"a": 5, "b": 3, "c": 1}.get) == 3
    assert committed_index(cfg, {"a": 5, "b": 1, "c": 1}.get) == 1
    joint = ClusterConfig(("a", "b", "c"), ("c", "d", "e"))
    m = {"a": 9, "b": 9, "c": 4, "d": 2, "e": 1}
    assert committed_index(joint, m.get) == 2  # new half holds it back
    assert committed_index(ClusterConfig(), m.get) == 0
    assert vote_result(joint, {"a": True, "b": True}) == PENDING
    assert vote_result(joint, {"a": True, "b": True, "c": True, "d": True}) == WON
    assert vote_result(joint, {"d": False, "e": False}) == LOST
    assert vote_result(ClusterConfig(), {}) == LOST
    assert has_quorum(cfg, {"a", "c"}) and not has_quorum(cfg, {"a"})
    assert not has_quorum(joint, {"a", "b"})
