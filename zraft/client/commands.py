"""The ``zraft`` command's client subcommands: write, read, watch, conf get/set/
transfer-leader, stat (create, delete, conf add/remove: ``admin_commands``).

Every subcommand takes ``--peers name@host:port,...`` (or ``ZRAFT_PEERS``), ``--cookie`` /
``--cookie-file`` (or ``ZRAFT_COOKIE`` / ``ZRAFT_COOKIE_FILE``), ``--timeout`` (seconds) and
``--json`` (one JSON document per result, for scripts). ``--dir DIR`` (or
``ZRAFT_CLUSTER_DIR``) reads peers, cookie file and election timeout from a local cluster's
``DIR/cluster.json`` (see ``load_cluster_dir``).

Rules: exit 0 on success; exit 1 when the operation failed, printing the error's class name
and message to stderr (``--json``: ``{"error": name, "message": ...}`` on stdout); exit 2
for bad usage (argparse, including a timeout that is not finite and > 0). Values: ``VALUE``
is parsed as JSON when it is valid JSON (numbers, lists, true, null, "quoted strings"), else
taken as a plain string; ``--string`` forces a string. ``read`` of a missing key exits 3
with nothing on stdout and ``not found: KEY`` on stderr, so a stored string "NOT_FOUND" (exit
0) is told apart; with ``--json`` it exits 0 and the document says ``"found": false``.
"""

from __future__ import annotations

import argparse
import queue
import sys
from typing import Any

from zraft.client import api
from zraft.client.checks import timeout_arg
from zraft.client.cli_support import (
    EXIT_NOT_FOUND,
    Target,
    _common,
    _emit,
    _first_answer,
    _parse_value,
    _runner,
    _show,
    _split_peers,
    peer_arg,
    peers_arg,
)
from zraft.client.watcher import SessionState
from zraft.errors import SessionExpired, ZRaftError
from zraft.ids import PeerId
from zraft.transport.sentinels import NOT_FOUND

# -- commands ---------------------------------------------------------------------------


def cmd_write(args: argparse.Namespace, t: Target) -> int:
    key, value = _parse_value(args.key, True), _parse_value(args.value, args.string)
    result, session = api.write(t.session(), [key, value], t.timeout, pool=t.pool)
    _emit(args, {"result": result, "leader": session.leader}, _show(result))
    return 0


def cmd_read(args: argparse.Namespace, t: Target) -> int:
    value, session = api.query(t.session(), ["get", args.key], t.timeout, pool=t.pool)
    found = value is not NOT_FOUND
    if not found and not args.json:
        print(f"not found: {args.key}", file=sys.stderr)
        return EXIT_NOT_FOUND
    _emit(args, {"key": args.key, "found": found, "value": value, "leader": session.leader},
          _show(value))
    return 0


def cmd_watch(args: argparse.Namespace, t: Target) -> int:
    """Print the value, then every change, re-arming the one-shot watch each time."""
    from zraft.client.session import Session

    events: queue.Queue[Any] = queue.Queue()

    def on_state(state: SessionState) -> None:
        if state == SessionState.EXPIRED:
            events.put(state)

    session = Session.start(t.peers, args.session_timeout, pool=t.pool, listeners=[on_state],
                            election_timeout=t.election_timeout)
    try:
        seen = 0
        value = session.query_sync(["get", args.key], watch=events, timeout=t.timeout)
        _emit(args, {"key": args.key, "event": "value", "value": value}, _show(value))
        while args.count is None or seen < args.count:
            event = events.get()
            if event == SessionState.EXPIRED:
                raise SessionExpired(session.info.expired_reason or "session expired")
            seen += 1
            value = session.query_sync(["get", args.key], watch=events, timeout=t.timeout)
            _emit(args, {"key": args.key, "event": event.reason, "value": value},
                  f"{event.reason}: {_show(value)}")
    finally:
        session.stop()
    return 0


def cmd_conf_get(args: argparse.Namespace, t: Target) -> int:
    leader, peers = _first_answer(t, lambda peer: api.get_conf(peer, t.timeout, pool=t.pool))
    _emit(args, {"leader": leader, "peers": peers},
          f"leader: {leader}\npeers: {','.join(peers)}")
    return 0


def cmd_conf_set(args: argparse.Namespace, t: Target) -> int:
    new = _split_peers(args.new_peers)
    if args.old:
        old = _split_peers(args.old)
        start = t.peers[0]
    else:
        start, old = _first_answer(t, lambda peer: api.get_conf(peer, t.timeout, pool=t.pool))
    peers = api.set_new_conf(start, new, old, t.timeout, pool=t.pool)
    _emit(args, {"peers": peers, "old": sorted(old)}, f"peers: {','.join(peers)}")
    return 0


def cmd_conf_transfer_leader(args: argparse.Namespace, t: Target) -> int:
    try:
        to = str(PeerId.parse(args.to)) if args.to else None
        if args.peer:
            PeerId.parse(args.peer)
    except ValueError as exc:
        args.parser.error(str(exc))  # exits 2
    if args.peer:
        leader = api.transfer_leader(args.peer, to, t.timeout, pool=t.pool)
    else:
        leader = _first_answer(
            t, lambda peer: api.transfer_leader(peer, to, t.timeout, pool=t.pool))
    _emit(args, {"leader": leader}, f"leader: {leader}")
    return 0


def cmd_stat(args: argparse.Namespace, t: Target) -> int:
    if args.peer:
        info = api.stat(args.peer, t.timeout, pool=t.pool)
        _emit(args, {args.peer: info}, _format_stat(args.peer, info))
        return 0
    report: dict[str, Any] = {}
    failed = 0
    for peer in t.peers:
        try:
            report[peer] = api.stat(peer, t.timeout, pool=t.pool)
        except ZRaftError as exc:
            failed += 1
            report[peer] = {"error": type(exc).__name__, "message": str(exc)}
    _emit(args, report, "\n".join(_format_stat(p, i) for p, i in report.items()))
    return 1 if failed == len(t.peers) else 0


def _format_stat(peer: str, info: Any) -> str:
    if not isinstance(info, dict):
        return f"{peer}: {_show(info)}"
    lines = [f"{peer}:"]
    lines += [f"  {k}: {_show(v)}" for k, v in sorted(info.items(), key=lambda kv: str(kv[0]))]
    return "\n".join(lines)


# -- registration ------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    common = _common()

    def add(name: str, body: Any, help_text: str, parent: Any = subparsers) -> Any:
        p = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=_runner(body), parser=p)
        return p

    p = add("write", cmd_write, "write KEY=VALUE through the leader (dict backend)")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--string", action="store_true", help="take VALUE as a string, not JSON")

    p = add("read", cmd_read, "read KEY through the leader (linearizable); a missing key "
            "exits 3 (not found: KEY on stderr)")
    p.add_argument("key")

    p = add("watch", cmd_watch, "print KEY's value and every change (a session watch)")
    p.add_argument("key")
    p.add_argument("--count", type=int, help="stop after this many changes")
    p.add_argument("--session-timeout", type=timeout_arg, default=10.0)

    conf = subparsers.add_parser("conf", help="cluster membership")
    conf_sub = conf.add_subparsers(dest="conf_command",
                                   metavar="get|set|add|remove|transfer-leader", required=True)
    add("get", cmd_conf_get, "show the leader and the committed peers", conf_sub)
    p = add("set", cmd_conf_set, "change the peers (joint consensus)", conf_sub)
    p.add_argument("new_peers", metavar="PEER,PEER,...", type=peers_arg)
    p.add_argument("--old", type=peers_arg,
                   help="expected current peers (default: read them first)")
    p = add("transfer-leader", cmd_conf_transfer_leader, "hand leadership to --to (default: "
            "the most up-to-date member); writes pause meanwhile (clients retry)", conf_sub)
    p.add_argument("--peer", type=peer_arg, help="member to ask (default: each of --peers in turn)")
    p.add_argument("--to", type=peer_arg, help="the new leader's peer id")

    p = add("stat", cmd_stat, "status of one peer, or of every peer in --peers")
    p.add_argument("peer", nargs="?", type=peer_arg)
    p.set_defaults(peer_is_target=True)  # `zraft stat PEER` needs no --peers

    from zraft.client import admin_commands  # create, delete, conf add/remove

    admin_commands.register(subparsers, conf_sub, add)
