"""The liveness check of quiescence: a quiesced group whose leader dies gets a new one.

After a run's faults (and only for seeds with quiescence on): heal and calm everything
(signals too: no loss from now on), converge, let the group go quiet (every live member
quiesced), crash the leader for good when the others keep a majority, then require a new
leader within ``max_delay`` (the signal's bound) + ``ELECTION_STEPS``. The failure signal
about the crashed leader is what wakes its quiesced followers: the
``quiesce_ignore_failure`` mutation must fail here.
"""

from __future__ import annotations

from zraft.testing.sim.cluster import SimCluster

QUIET_STEPS = 20_000  # to converge, then to go quiet (an idle group must)
ELECTION_STEPS = 2_000  # an election with a few split votes, at ~1 tick per 3 steps


def quiet_failover(cluster: SimCluster) -> tuple[str, str] | None:
    """None when the check passes (or does not apply), else (kind, explanation)."""
    signals = cluster.signals
    signals.loss = 0.0
    if not cluster.stabilize(QUIET_STEPS):
        return None  # the sweep's own stabilize reports it

    def quiet() -> bool:
        leader = cluster.leader()
        if leader is None:
            return False
        return all(cluster.nodes[p].core.quiesced for p in cluster.members()
                   if cluster.nodes[p].up)

    if not cluster.run(QUIET_STEPS, quiet, check_every=10):
        return ("quiescence", f"an idle group did not go quiet in {QUIET_STEPS} steps: "
                              f"{cluster.describe()}")
    leader = cluster.leader()
    members = cluster.members()
    if leader is None or len(members) < 3 or leader not in members:
        return None  # crashing the leader would leave no majority
    cluster.crash(leader)
    bound = signals.max_delay + ELECTION_STEPS
    if not cluster.run(bound, lambda: cluster.leader() is not None):
        return ("liveness", f"no leader {bound} steps after the quiesced leader {leader} "
                            f"crashed: {cluster.describe()}")
    return None
