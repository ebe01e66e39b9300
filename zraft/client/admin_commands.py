"""Operator subcommands: ``zraft create``, ``zraft delete KEY``, ``zraft conf add/remove``.

Same options, output and exit codes as ``zraft.client.commands`` (0 ok, 1 the operation
failed with the error named, 2 bad usage), plus: ``delete`` of a missing key exits 3 with
``not found: KEY`` on stderr (``--json``: exit 0, ``"deleted": false``), as ``read`` does;
``conf remove`` of a peer that is not a member exits 3 with ``not a member: PEER`` on
stderr (``--json``: exit 0, ``"changed": false``). ``conf add`` of a member changes
nothing and exits 0 (``"changed": false``), as ``conf set`` with the same peers does.

``create --groups N [--prefix P]`` creates N groups named P00001.. at once (``api.create_many``:
one request per node per batch, the groups' elections overlapped), each with a peer on every
node of ``--peers``.

``create --wait S`` retries for up to S seconds while some node cannot be reached yet
(nothing is created until every node answers); ``create --exist-ok`` exits 0 when every
peer exists already and the group's committed members are exactly ``--peers`` (a rerun of
a deployment's one-shot create job), and fails as without it in every other case.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from typing import Any

from zraft.client import api
from zraft.client.cli_support import (
    EXIT_NOT_FOUND,
    Target,
    _emit,
    _first_answer,
    _parse_value,
    peer_arg,
)
from zraft.client.create_many import group_names, groups_on
from zraft.errors import AlreadyPresent, Timeout, Unreachable, ZRaftError
from zraft.ids import PeerId
from zraft.transport.sentinels import NOT_FOUND

MAX_GROUPS = 100_000  # groups one `zraft create --groups` makes
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,40}")  # + 5-6 digits: a peer name (<= 64)


def cmd_create(args: argparse.Namespace, t: Target) -> int:
    if args.groups is not None:
        return _create_groups(args, t)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            peers = api.create(t.peers, args.backend, t.timeout, pool=t.pool)
            created = True
            break
        except AlreadyPresent as exc:
            if not args.exist_ok:
                raise
            peers = _created_before(t, exc)
            created = False
            break
        except ZRaftError as exc:
            if not _not_up_yet(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    leader = api.stat(peers[0], t.timeout, pool=t.pool) if args.json else None
    word = "created" if created else "exists already"
    _emit(args, {"peers": peers, "backend": args.backend, "created": created,
                 "cluster_id": (leader or {}).get("cluster_id")},
          f"{word}: {len(peers)} peers, backend {args.backend}\npeers: {','.join(peers)}")
    return 0


def _create_groups(args: argparse.Namespace, t: Target) -> int:
    """``--groups N``: N groups named PREFIX00001.., a peer of each on every node of
    --peers (the peers' names are not used), created in one go (``api.create_many``)."""
    if args.exist_ok:
        args.parser.error("--exist-ok is for one group: not with --groups")  # exits 2
    names = group_names(args.groups, args.prefix)
    groups = groups_on(t.peers, names)
    deadline = time.monotonic() + args.wait
    started = time.monotonic()
    while True:
        try:
            api.create_many(groups, args.backend, t.timeout, pool=t.pool)
            break
        except ZRaftError as exc:
            if not _not_up_yet(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    took = time.monotonic() - started
    nodes = len(groups[0])
    _emit(args, {"groups": len(names), "first": names[0], "last": names[-1],
                 "nodes": nodes, "backend": args.backend, "seconds": round(took, 3)},
          f"created {len(names)} groups ({names[0]}..{names[-1]}) of {nodes} peers, "
          f"backend {args.backend}, in {took:.1f}s")
    return 0


def group_count_arg(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_GROUPS:
        raise argparse.ArgumentTypeError(f"--groups must be 1..{MAX_GROUPS}")
    return value


def group_prefix_arg(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError("--prefix must be 1-40 of [A-Za-z0-9_.-]")
    return text


def _not_up_yet(exc: ZRaftError) -> bool:
    """A failure of create's checks only because some node does not answer yet (nothing
    was created anywhere: every peer is checked before any is started)."""
    failures = exc.details.get("failures")
    return bool(failures) and all(isinstance(e, (Unreachable, Timeout)) for _p, e in failures)


def _created_before(t: Target, exc: AlreadyPresent) -> list[str]:
    """``--exist-ok``: the peers if every one exists and the committed members are exactly
    them; else ``exc`` (the create's own error) or one saying what differs."""
    failures = exc.details.get("failures") or []
    if len(failures) != len(t.peers) or not all(isinstance(e, AlreadyPresent)
                                                for _p, e in failures):
        raise exc
    _leader, members = _conf(t)
    wanted = sorted(str(PeerId.parse(p)) for p in t.peers)
    if sorted(members) != wanted:
        raise AlreadyPresent(f"the peers exist, but the group's members are "
                             f"{','.join(members)}, not {','.join(wanted)}")
    return list(members)


def cmd_delete(args: argparse.Namespace, t: Target) -> int:
    key = _parse_value(args.key, True)
    result, session = api.write(t.session(), ["delete", key], t.timeout, pool=t.pool)
    deleted = result is not NOT_FOUND
    if not deleted and not args.json:
        print(f"not found: {args.key}", file=sys.stderr)
        return EXIT_NOT_FOUND
    _emit(args, {"key": args.key, "deleted": deleted, "leader": session.leader}, "ok")
    return 0


def _conf(t: Target) -> tuple[str, list[str]]:
    leader, peers = _first_answer(t, lambda peer: api.get_conf(peer, t.timeout, pool=t.pool))
    return str(leader), list(peers)


def cmd_conf_add(args: argparse.Namespace, t: Target) -> int:
    new = str(PeerId.parse(args.peer))
    leader, old = _conf(t)
    if new in old:
        _emit(args, {"peers": old, "changed": False}, f"peers: {','.join(old)}")
        return 0
    info = api.stat(leader, t.timeout, pool=t.pool)
    if not args.no_create:
        # a blank peer of this cluster, on its node: it catches up as a learner; one made
        # earlier (an `add` that failed later, or by hand) is used as it is
        with contextlib.suppress(AlreadyPresent):
            api.create_peer(new, str(info["backend"]), t.timeout, pool=t.pool,
                            cluster_id=info.get("cluster_id") or None)
    peers = api.set_new_conf(leader, [*old, new], old, t.timeout, pool=t.pool)
    _emit(args, {"peers": peers, "changed": True}, f"peers: {','.join(peers)}")
    return 0


def cmd_conf_remove(args: argparse.Namespace, t: Target) -> int:
    gone = str(PeerId.parse(args.peer))
    leader, old = _conf(t)
    if gone not in old:
        if args.json:
            _emit(args, {"peers": old, "changed": False}, "")
            return 0
        print(f"not a member: {args.peer}", file=sys.stderr)
        return EXIT_NOT_FOUND
    new = [p for p in old if p != gone]
    if not new:
        raise ZRaftError("cannot remove the last peer")
    peers = api.set_new_conf(leader, new, old, t.timeout, pool=t.pool)
    _emit(args, {"peers": peers, "changed": True}, f"peers: {','.join(peers)}")
    return 0


def register(subparsers: Any, conf_sub: Any, add: Any) -> None:
    """Called by ``zraft.client.commands.register`` with its ``add`` helper."""
    p = add("create", cmd_create, "create a group on running nodes: a peer on each of "
            "--peers, bootstrapped, then every one a member")
    p.add_argument("--backend", default="dict", metavar="SPEC",
                   help="dict, or package.module:Class (allowed by the nodes' backends)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="retry while some node does not answer yet, up to SECONDS")
    p.add_argument("--exist-ok", action="store_true",
                   help="exit 0 if this exact group exists already (every peer, same members)")
    p.add_argument("--groups", type=group_count_arg, metavar="N",
                   help="create N groups at once, PREFIX00001.., a peer of each on every "
                        "node of --peers")
    p.add_argument("--prefix", type=group_prefix_arg, default="g",
                   help="name prefix of --groups (default g)")
    p = add("delete", cmd_delete, "delete KEY through the leader (dict backend); a missing "
            "key exits 3 (not found: KEY on stderr)")
    p.add_argument("key")
    p = add("add", cmd_conf_add, "add PEER: create it on its node (blank, this cluster), "
            "then join it (a learner until caught up)", conf_sub)
    p.add_argument("peer", metavar="PEER", type=peer_arg)
    p.add_argument("--no-create", action="store_true",
                   help="the peer exists already on its node: only change the membership")
    p = add("remove", cmd_conf_remove, "remove PEER from the membership (a peer that is not a "
            "member exits 3)", conf_sub)
    p.add_argument("peer", metavar="PEER", type=peer_arg)


__all__ = ["cmd_conf_add", "cmd_conf_remove", "cmd_create", "cmd_delete", "group_count_arg",
           "group_prefix_arg", "register"]
