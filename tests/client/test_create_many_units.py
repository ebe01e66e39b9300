"""create_many's plan, without a node: names, the spread of first peers, refusals."""

from __future__ import annotations

import pytest

from zraft.client import api
from zraft.client.create_many import _by_node, group_names, groups_on
from zraft.errors import NoPeers

NODES = ["zraft@127.0.0.1:7001", "zraft@127.0.0.1:7002", "zraft@127.0.0.1:7003"]


def test_names_are_numbered_from_one_and_padded() -> None:
    assert group_names(3) == ["g00001", "g00002", "g00003"]
    assert group_names(2, "shard-") == ["shard-00001", "shard-00002"]
    assert group_names(123_456)[-1] == "g123456"


def test_each_group_starts_on_the_next_node() -> None:
    groups = groups_on(NODES, group_names(4))
    assert [g[0] for g in groups] == ["g00001@127.0.0.1:7001", "g00002@127.0.0.1:7002",
                                      "g00003@127.0.0.1:7003", "g00004@127.0.0.1:7001"]
    assert all(sorted(g) == [f"{g[0].split('@')[0]}@127.0.0.1:700{i}" for i in (1, 2, 3)]
               for g in groups)


def test_a_plan_naming_a_peer_twice_or_an_empty_group_is_refused() -> None:
    by_node = _by_node([["a@h:1", "a@h:2"], ["b@h:1"]])
    assert [name for name, _ in by_node["h:1"]] == ["a", "b"]
    ids = {cid for items in by_node.values() for _n, cid in items}
    assert len(ids) == 2  # one cluster identity per group
    with pytest.raises(ValueError, match="peer a@h:1 is named twice"):
        _by_node([["a@h:1"], ["a@h:1", "a@h:2"]])
    with pytest.raises(NoPeers):
        _by_node([["a@h:1"], []])
    assert api.create_many([], "dict", pool=object()) == []  # type: ignore[arg-type]
