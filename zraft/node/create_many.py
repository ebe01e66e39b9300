"""``create_peers [peer_names, backend, cluster_ids?, mode?]``: many blank peers in one request.

Creating groups one by one costs a request, a slow-op thread and a backend probe per peer;
a batch costs one of each per node. Rules (the schema in ``zraft.node.requests`` has
already checked every name, the count (at most ``MAX_CREATE_BATCH``) and every id's form):
- ``cluster_ids``, when given, has one id per name; a name given twice is refused
  (``bad_request``); nothing is started for a refused request.
- The backend is checked once, before anything exists (as ``create_peer`` does).
- Under the node's create lock, every name is checked first: if any peer exists already
  the answer is ``already_present`` naming (at most ``SHOWN``) them and their count, and
  nothing is started. ``mode`` ``check`` stops there (``ok``, nothing started): clients
  check every node before creating on any.
- Peers then start in order, still under the lock (another creation on this node waits
  for the batch: the check above must stay true); the answer is ``ok`` with their ids.
  If one fails to start, the answer is ``error`` with the ids started before it
  (``created``): those exist, the rest do not.
"""

from __future__ import annotations

import logging
from typing import Any

from zraft.errors import BackendError
from zraft.fsm.registry import canonical_name
from zraft.ids import PeerId

log = logging.getLogger("zraft.node.create_many")

SHOWN = 5  # names quoted in an already_present message


def create_peers(node: Any, conn: Any, req_id: int, args: list[Any]) -> None:
    """Run on a slow-op thread of ``node`` (a ``zraft.node.server.Node``)."""
    names: list[str] = args[0]
    backend: str = args[1]
    cluster_ids: list[str] = args[2] if args[2] is not None else [""] * len(names)
    mode = args[3] or "create"
    refusal = _refusal(names, cluster_ids)
    if refusal:
        node.reply(conn, req_id, "bad_request", {"message": f"create_peers: {refusal}"})
        return
    created: list[str] = []
    try:
        node._check_backend(backend, str(PeerId.parse(f"{names[0]}@{node.address}")))
        with node._create_lock:
            present = [n for n in names if node._check_exists(n)[0] != "ok"]
            if present:
                shown = ", ".join(present[:SHOWN]) + (", ..." if len(present) > SHOWN else "")
                node.reply(conn, req_id, "already_present",
                           {"message": f"{len(present)} of the {len(names)} peers exist "
                                       f"already on node {node.address}: {shown}",
                            "present": present[:SHOWN], "count": len(present)})
                return
            if mode == "check":
                node.reply(conn, req_id, "ok", [])
                return
            spec = canonical_name(backend)
            for name, cluster_id in zip(names, cluster_ids, strict=True):
                peer_id = str(PeerId.parse(f"{name}@{node.address}"))
                node._start_peer(name, peer_id, spec, cluster_id)
                created.append(peer_id)
        node.reply(conn, req_id, "ok", created)
    except BackendError as exc:
        node.reply(conn, req_id, exc.code, {"message": str(exc)})
    except Exception as exc:
        log.exception("create_peers failed after %d of %d peers", len(created), len(names))
        node.reply(conn, req_id, "error",
                   {"message": f"create_peers: {type(exc).__name__} after {len(created)} of "
                               f"{len(names)} peers were started", "created": created})


def _refusal(names: list[str], cluster_ids: list[str]) -> str | None:
    """Why the request is refused before anything is looked at, or None."""
    if len(cluster_ids) != len(names):
        return (f"cluster_ids must have one id per peer name ({len(names)} names, "
                f"{len(cluster_ids)} ids)")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f"peer name {name} is given twice"  # a validated name: safe to show
        seen.add(name)
    return None
