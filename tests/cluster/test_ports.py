"""Free ports for local nodes: never where an outgoing connection can take them first, and
never the same port for two processes choosing at once (the acceptance flake: a node chose
a kernel-ephemeral port, a client connection took it as its local port, the node exited 2
"Address already in use" and the test waited 20 s for a node that was gone)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from zraft.cluster import ports
from zraft.cluster.ports import ephemeral_range, free_port


def test_free_ports_lie_outside_the_kernels_ephemeral_range() -> None:
    low, high = ephemeral_range()
    chosen = [free_port() for _ in range(50)]
    assert not [p for p in chosen if low <= p <= high]
    assert len(set(chosen)) == len(chosen)  # reserved: this process never gets one twice


def test_a_port_reserved_here_is_refused_to_another_process() -> None:
    port = free_port()
    probe = ("import sys; from zraft.cluster import ports; "
             f"sys.exit(0 if ports._reserve({port}) else 3)")
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 3
    ports._release(port)
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


def test_a_port_with_a_listener_is_never_chosen(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # every candidate is the listener's port until the tenth try
        picks = iter([taken] * 9 + [None])
        real_choice = ports.random.SystemRandom.choice

        def choice(self, seq):  # type: ignore[no-untyped-def]
            pick = next(picks, None) if isinstance(seq, range) else None
            return pick if pick is not None else real_choice(self, seq)

        monkeypatch.setattr(ports.random.SystemRandom, "choice", choice)
        monkeypatch.setattr(ports, "candidate_ranges", lambda: [range(taken, taken + 1000)])
        assert free_port() != taken


@pytest.mark.integration
def test_a_node_that_cannot_start_fails_the_acceptance_wait_at_once(tmp_path) -> None:
    from tests.acceptance.harness import Acceptance
    from zraft.cluster import LocalCluster

    cluster = LocalCluster(tmp_path / "c", 1)
    acc = Acceptance(cluster)
    with socket.socket() as busy:  # the node's port, taken (as a client connection would)
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", cluster.nodes[0].port))
        busy.listen()
        try:
            with pytest.raises(AssertionError, match="exited before it was ready"):
                acc.start_nodes([1], timeout=60.0)
        finally:
            acc.close()
