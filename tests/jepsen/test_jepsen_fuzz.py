"""Protocol fuzzing against a live node process: hostile input never crashes or hangs it,
and every connection it closes for bad input is named in its log."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster
from zraft.testing.jepsen.fuzz import (
    CaseResult,
    FuzzTarget,
    mutated_frames,
    random_case,
    run_case,
    wrong_type_frames,
)
from zraft.transport.frame_auth import RECORD_OVERHEAD

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    directory = tmp_path_factory.mktemp("fuzz")
    cluster = LocalCluster(directory, 1, election_timeout=300)
    cluster.start()
    pool = ConnectionPool(cluster.cookie.encode())
    try:
        api.create(cluster.peers, "dict", timeout=20.0, pool=pool)
        node = cluster.nodes[0]
        assert node.pid is not None
        yield FuzzTarget("127.0.0.1", node.port, cluster.cookie.encode(), node.pid,
                         node.directory / "log" / "console.log")
        assert api.write(cluster.peers[0], ["after-fuzz", 1], timeout=10.0, pool=pool)[0] == "ok"
    finally:
        pool.close()
        cluster.stop()


def assert_survived(result: CaseResult, closed_must_log: bool = True) -> None:
    assert not result.crashed, f"node crashed on {result}"
    assert result.serving, f"node stopped serving after {result}"
    assert result.outcome != "hung", f"connection hung: {result}"
    if result.outcome == "closed" and closed_must_log:
        assert result.logged, f"node closed {result.client_address} without a log line: {result}"


@FUZZ
@given(frame=wrong_type_frames())
def test_frames_with_wrong_types_and_values(target: FuzzTarget, frame: list) -> None:
    assert_survived(run_case(target, "wrong_types", frame))


@FUZZ
@given(data=mutated_frames())
def test_mutated_frames(target: FuzzTarget, data: bytes) -> None:
    assert_survived(run_case(target, "mutated", data, deadline=2.0))


@FUZZ
@given(data=st.binary(min_size=1, max_size=300))
def test_unauthenticated_garbage_is_refused(target: FuzzTarget, data: bytes) -> None:
    result = run_case(target, "garbage", data)
    assert result.outcome == "closed", result
    assert_survived(result)


# the smallest refused length: a 64 MiB body in a record (28 bytes more), plus one
@pytest.mark.parametrize("length", [2**32 - 1, 2**31, 64 * 2**20 + RECORD_OVERHEAD + 1])
def test_huge_length_headers_close_the_connection(target: FuzzTarget, length: int) -> None:
    result = run_case(target, "huge_length", length)
    assert result.outcome == "closed", result
    assert_survived(result)


def test_truncated_stream_is_cleaned_up(target: FuzzTarget) -> None:
    rng = random.Random(3)
    for _ in range(10):
        _kind, data = random_case_of(rng, "truncated")
        result = run_case(target, "truncated", data, log_wait=2.0)
        assert result.outcome == "closed", result
        assert_survived(result)


def test_truncated_stream_is_logged(target: FuzzTarget) -> None:
    result = run_case(target, "truncated", b"\x00\x00\x00\x20\x94\x02", log_wait=2.0)
    assert result.outcome == "closed", result
    assert_survived(result)


def test_replayed_handshake_is_refused(target: FuzzTarget) -> None:
    for _ in range(3):
        result = run_case(target, "replayed_auth", None)
        assert result.outcome == "closed", result
        assert_survived(result)


def test_handshake_again_after_authenticating_closes(target: FuzzTarget) -> None:
    result = run_case(target, "handshake_again", None)
    assert result.outcome == "closed", result
    assert_survived(result)


def test_wrong_cookie_and_bad_auth_messages_are_refused(target: FuzzTarget) -> None:
    result = run_case(target, "wrong_cookie", None)
    assert result.outcome == "closed", result
    assert_survived(result)
    rng = random.Random(9)
    for _ in range(8):
        _kind, payload = random_case_of(rng, "bad_auth")
        result = run_case(target, "bad_auth", payload)
        assert result.outcome == "closed", result
        assert_survived(result)


def test_unauthenticated_valid_frame_is_refused(target: FuzzTarget) -> None:
    result = run_case(target, "unauth_frame", [2, 1, "stat", ["zraft"]])
    assert result.outcome == "closed", result
    assert_survived(result)


def random_case_of(rng: random.Random, kind: str) -> tuple[str, object]:
    while True:
        case = random_case(rng)
        if case[0] == kind:
            return case


def test_fuzz_log_file_is_the_nodes(target: FuzzTarget) -> None:
    assert Path(target.log_file).exists()


def test_random_campaign_cli_reports_outcomes(tmp_path: Path, capsys) -> None:
    from zraft.testing.jepsen.fuzz import main

    assert main(["--cases", "25", "--seed", "4", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '"cases": 25' in out and '"crashed": false' in out and '"serving": true' in out
