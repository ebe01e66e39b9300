"""``zraft snapshot save`` and ``zraft snapshot restore`` (backup and restore).

``save --peers ... FILE`` (or ``--dir``/``$ZRAFT_PEERS``): exit 0 and one line (``--json``:
the header as a document); 1 when the cluster fails (the error named, as other commands).
``restore FILE --dir NEW``: seeds a local cluster directory (``--nodes`` N, default 3) that
``zraft cluster up --dir NEW`` starts; ``restore FILE --dir DATA --peers P,... --member P``
seeds one member's node data directory (run once per member, same FILE and --peers).
A corrupt or truncated FILE, or a target that already holds a cluster: one line on stderr,
exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zraft.backup.fileformat import BackupCorrupt, BackupHeader, read_backup
from zraft.backup.restore import RestoreRefused, restore_member, seed_peer
from zraft.backup.save import save
from zraft.client import commands as client_commands
from zraft.client.cli_support import Target, _emit, _runner
from zraft.ids import PeerId, new_cluster_id

EXIT_REFUSED = 2


def _summary(header: BackupHeader) -> dict[str, Any]:
    return {"index": header.index, "term": header.term, "cluster_id": header.cluster_id,
            "backend": header.backend, "source": header.source,
            "peers": list(header.config[0]), "bytes": header.body_size}


def cmd_save(args: argparse.Namespace, t: Target) -> int:
    folder = Path(args.file).resolve().parent
    if not folder.is_dir():  # before the leader takes a snapshot for nothing
        args.parser.error(f"{args.file}: no directory {folder}")  # exits 2
    try:
        header = save(t.session(), args.file, t.timeout, t.pool)
    except OSError as exc:  # this machine's disk, not the cluster
        print(f"zraft snapshot save: cannot write {args.file}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    doc = {"file": args.file, **_summary(header)}
    _emit(args, doc, f"saved index {header.index} term {header.term} from {header.source} "
                     f"({header.body_size} bytes of {header.backend}) to {args.file}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        if args.peers:
            return _restore_member(args)
        return _restore_local(args)
    except (BackupCorrupt, RestoreRefused) as exc:
        what = f"{args.file}: " if isinstance(exc, BackupCorrupt) else ""
        print(f"zraft snapshot restore: {what}{exc}", file=sys.stderr)
        return EXIT_REFUSED


def _restore_member(args: argparse.Namespace) -> int:
    peers = [str(PeerId.parse(p.strip())) for p in args.peers.split(",") if p.strip()]
    if not args.member:
        raise RestoreRefused("--peers needs --member PEER: the member this directory is for")
    header, cid = restore_member(args.file, args.dir, peers, str(PeerId.parse(args.member)),
                                 args.cluster_id)
    doc = {"dir": args.dir, "member": args.member, "new_cluster_id": cid, **_summary(header),
           "peers": peers}
    _emit(args, doc, f"restored index {header.index} term {header.term} for {args.member} "
                     f"into {args.dir} (cluster {cid})")
    return 0


def _restore_local(args: argparse.Namespace) -> int:
    from zraft.cluster.local import CLUSTER_FILE, LocalCluster

    target = Path(args.dir)
    if (target / CLUSTER_FILE).exists() or (target.exists() and any(target.iterdir())):
        raise RestoreRefused(f"{args.dir} is not empty: restore into a new directory")
    if args.nodes < 1:
        raise RestoreRefused("--nodes must be at least 1")
    header = read_backup(args.file)  # before anything is created
    cluster = LocalCluster(target, args.nodes, backend=header.backend,
                           election_timeout=args.election_timeout,
                           peer_name=args.peer_name, python_path=args.python_path)
    cid = args.cluster_id or new_cluster_id()
    peers = cluster.peers
    for n in cluster.nodes:
        n.directory.mkdir(parents=True, exist_ok=True)
        seed_peer(n.directory / "data", cluster.peer_id(n), args.file, header, peers, cid)
    cluster.save()
    doc = {"dir": str(cluster.directory), "new_cluster_id": cid, **_summary(header),
           "peers": peers}
    _emit(args, doc, f"restored index {header.index} term {header.term} into {args.dir}: "
                     f"{len(peers)} nodes, cluster {cid}; start it with "
                     f"`zraft cluster up --dir {args.dir}`")
    return 0


def register(subparsers: Any) -> None:
    common = client_commands._common()
    snap = subparsers.add_parser("snapshot", help="backup and restore")
    sub = snap.add_subparsers(dest="snapshot_command", metavar="save|restore", required=True)
    text = "save a linearizable snapshot of the group, taken by its leader, to FILE"
    p = sub.add_parser("save", parents=[common], help=text, description=text)
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_runner(cmd_save), parser=p, timeout=60.0)

    text = ("seed a new cluster from FILE: a local cluster directory (start it with "
            "`zraft cluster up --dir NEW`), or with --peers/--member one member's data dir")
    p = sub.add_parser("restore", help=text, description=text)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--dir", required=True, metavar="NEW",
                   help="a new local cluster directory, or (with --peers) a node's data dir")
    p.add_argument("--peers", help="the new cluster's peer ids, comma separated (restore one "
                   "member, --member, into --dir: the node's log_dir and snapshot_dir)")
    p.add_argument("--member", metavar="PEER", help="with --peers: the member to seed")
    p.add_argument("--cluster-id", help="the new cluster's id (default: a new one; with "
                   "--peers, derived from FILE and the peers, the same on every member)")
    p.add_argument("--nodes", type=int, default=3, help="local cluster: nodes (default 3)")
    p.add_argument("--election-timeout", type=int, default=500, metavar="MS")
    p.add_argument("--peer-name", default="zraft")
    p.add_argument("--python-path", action="append", default=[], metavar="DIR",
                   help="local cluster: where the nodes import the backend from")
    p.add_argument("--json", action="store_true", help="JSON output for scripts")
    p.set_defaults(func=cmd_restore, parser=p)


__all__ = ["cmd_restore", "cmd_save", "register"]
