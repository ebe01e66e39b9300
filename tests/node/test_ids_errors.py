from __future__ import annotations

import pytest

from zraft.errors import NotLeader, PeersChanged, ZRaftError, error_from_code
from zraft.ids import PeerId, node_of, peer_str


def test_peer_id_round_trip() -> None:
    p = PeerId.parse("test1@127.0.0.1:7001")
    assert p == PeerId("test1", "127.0.0.1", 7001)
    assert str(p) == "test1@127.0.0.1:7001" and p.node == "127.0.0.1:7001"
    assert peer_str(p) == "test1@127.0.0.1:7001"
    assert node_of("a@h:1") == "h:1"


@pytest.mark.parametrize(
    "bad", ["", "nohost", "a@", "a@h", "a@h:x", "a@h:70000", "@h:1", "a b@h:1"]
)
def test_bad_peer_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="bad peer id"):
        PeerId.parse(bad)


def test_error_codes_map_to_classes() -> None:
    err = error_from_code("not_leader", leader="x@h:1")
    assert isinstance(err, NotLeader) and err.leader == "x@h:1"
    assert isinstance(error_from_code("peers_changed"), PeersChanged)
    odd = error_from_code("something_new")
    assert isinstance(odd, ZRaftError) and odd.code == "something_new"


def test_too_large_and_bad_request_are_exported_zraft_errors() -> None:
    import zraft

    assert issubclass(zraft.TooLarge, ZRaftError) and zraft.TooLarge.code == "too_large"
    assert issubclass(zraft.BadRequest, ZRaftError) and zraft.BadRequest.code == "bad_request"
    assert isinstance(error_from_code("too_large", "x"), zraft.TooLarge)
