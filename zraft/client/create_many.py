"""``create_many``: many groups at once, each as ``api.create`` makes one.

One group by ``create`` costs about 1.2 s, nearly all of it waiting for the bootstrapped
peer's election (``bench.many_groups``: check_exists x3 ~165 ms, create_peer x3 ~64 ms,
bootstrap ~2 ms, waiting for the leader ~1,200 ms, set_conf ~40 ms). Here the waits of
all groups overlap and the per-peer requests become one request per node per batch:

1. every node is asked ``create_peers [names, backend, cluster_ids, "check"]`` for all its
   peers (in batches of at most ``MAX_CREATE_BATCH``) before anything is created anywhere:
   a name taken or a backend the node cannot run fails the whole call, nothing created;
2. every node creates its peers (``create_peers ... "create"``), nodes in parallel;
3. each group's first peer is bootstrapped and the configuration set to all its peers
   (``bootstrap`` + ``set_new_conf``, asked again if the group's leader changed meanwhile,
   until ``timeout``), ``parallel`` groups at a time.

Each group gets a cluster identity of its own. Errors: the first check failure's class
(``.details["failures"]``: ``(node address, error)`` for each node that refused), a node's
create failure as it is (``.details["created"]``: the peer ids that node started), and
bootstrap / set_new_conf errors as ``create`` raises them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zraft.client.calls import PeerCall
from zraft.client.checks import check_timeout
from zraft.client.connection import PoolBase
from zraft.errors import NoPeers, ZRaftError
from zraft.ids import PeerId, new_cluster_id
from zraft.node.requests import MAX_CREATE_BATCH

PER_PEER_S = 0.1  # added to a create batch's timeout per peer it starts


def create_many(groups: Sequence[Sequence[PeerId | str]], backend: str, timeout: float,
                pool: PoolBase, parallel: int, join_new: Callable[..., list[str]],
                create_failure: Callable[[list[tuple[str, ZRaftError]]], ZRaftError]
                ) -> list[list[str]]:
    """Create every group (a list of its peers); returns each group's sorted peer ids.
    ``join_new`` and ``create_failure`` are zraft.client.api's (passed in: this module
    must not import its importer)."""
    check_timeout(timeout)
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    plan = [[str(PeerId.parse(str(p))) for p in group] for group in groups]
    if not plan:
        return []
    by_node = _by_node(plan)
    failures: list[tuple[str, ZRaftError]] = []
    for node, items in by_node.items():
        for chunk in _chunks(items):
            try:
                _call(pool, node, chunk, backend, "check", timeout)
            except ZRaftError as exc:
                failures.append((node, exc))
                break
    if failures:
        raise create_failure(failures)
    with ThreadPoolExecutor(max_workers=len(by_node)) as ex:
        for fut in [ex.submit(_create_on, pool, node, items, backend, timeout)
                    for node, items in by_node.items()]:
            fut.result()

    def join(ids: list[str]) -> list[str]:
        return join_new(ids, timeout, pool)

    with ThreadPoolExecutor(max_workers=min(parallel, len(plan))) as ex:
        return list(ex.map(join, plan))


def group_names(count: int, prefix: str = "g") -> list[str]:
    """The names ``zraft create --groups N`` gives (and ``zraft bench --groups N`` writes
    to): ``prefix`` and a number from 1, zero-padded to 5 digits (more past 99,999)."""
    width = max(5, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def groups_on(peers: Sequence[str], names: Sequence[str]) -> list[list[str]]:
    """One group per name with a peer on every node of ``peers``; group ``i`` lists its
    peers from node ``i % len(nodes)`` on, so the bootstrapped first peers (and the first
    leaders) are spread over the nodes."""
    nodes = list(dict.fromkeys(PeerId.parse(str(p)).node for p in peers))
    return [[f"{name}@{a}" for a in nodes[i % len(nodes):] + nodes[:i % len(nodes)]]
            for i, name in enumerate(names)]


def _by_node(plan: list[list[str]]) -> dict[str, list[tuple[str, str]]]:
    """Node address -> its ``(peer name, cluster id)``s; a group's peers share one new id."""
    by_node: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for ids in plan:
        if not ids:
            raise NoPeers("create_many: a group has no peers")
        cluster_id = new_cluster_id()
        for peer in ids:
            if peer in seen:
                raise ValueError(f"create_many: peer {peer} is named twice")
            seen.add(peer)
            parsed = PeerId.parse(peer)
            by_node.setdefault(parsed.node, []).append((parsed.name, cluster_id))
    return by_node


def _chunks(items: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    return [items[i:i + MAX_CREATE_BATCH] for i in range(0, len(items), MAX_CREATE_BATCH)]


def _call(pool: PoolBase, node: str, chunk: list[tuple[str, str]], backend: str, mode: str,
          timeout: float) -> Any:
    names = [name for name, _cid in chunk]
    ids = [cid for _name, cid in chunk]
    wait = timeout + (PER_PEER_S * len(chunk) if mode == "create" else 0.0)
    return PeerCall(pool, f"{names[0]}@{node}", "create_peers",
                    lambda _name: [names, backend, ids, mode], wait).run()


def _create_on(pool: PoolBase, node: str, items: list[tuple[str, str]], backend: str,
               timeout: float) -> None:
    for chunk in _chunks(items):
        try:
            _call(pool, node, chunk, backend, "create", timeout)
        except ZRaftError as exc:
            exc.details.setdefault("node", node)
            raise


__all__ = ["PER_PEER_S", "create_many", "group_names", "groups_on"]
