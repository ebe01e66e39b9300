"""The structure-aware frame fuzzer (``zraft.testing.jepsen.frame_fuzz``) in short: a few
hundred authenticated frames of every op and message type against a live 3-node cluster,
each answered as its kind says, while a witness client keeps writing. ``make soak`` runs
it long (``--cases 20000``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zraft.node.requests import OPS
from zraft.testing.jepsen.frame_fuzz import campaign

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_short_campaign_every_frame_fails_alone(tmp_path: Path) -> None:
    result = campaign(600, seed=20261204, workdir=tmp_path)
    assert result["failures"] == []
    kinds = " ".join(result["by_kind"])
    for op in OPS:  # every op of the schema was tried
        assert f"{op}:" in kinds, op
    for label in ("raft:foreign", "raft:from_client", "raft:bad_field", "nested_array",
                  "too_large", "snapshot_control"):
        assert label in kinds, label
    assert result["witness_writes"] > 100 and not result["witness_errors"]


def test_the_fuzzer_catches_a_node_that_lets_clients_step_its_core(tmp_path: Path) -> None:
    # with the test mutation a client connection's Raft frames are routed, not refused
    result = campaign(300, seed=5, workdir=tmp_path,
                      env={"ZRAFT_TEST_MUTATIONS": "client_peer_frames"})
    assert any("raft:from_client" in f and "not closed" in f for f in result["failures"])
