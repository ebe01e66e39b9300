"""What every ``zraft`` client subcommand shares: the target cluster (``--peers`` /
``--dir`` / environment, cookie, timeout), argument types, output (``--json`` or text) and
the mapping of failures to exit codes (see ``zraft.client.commands`` for the rules).
Its own module so that each subcommand module imports it, not each other."""


from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from zraft.client import api
from zraft.client.checks import timeout_arg
from zraft.client.connection import ConnectionPool, resolve_cookie, resolve_tls
from zraft.client.light_session import LightSession
from zraft.errors import ZRaftError
from zraft.ids import PeerId
from zraft.transport.sentinels import NOT_FOUND


class ClusterDir(NamedTuple):
    peers: list[str]
    cookie_file: str | None
    election_timeout: float | None  # seconds, to tune the client's leader tracking
    tls: dict[str, str] | None = None  # "ca", "cert", "key" files of a TLS cluster


ClusterDirLoader = Callable[[str], ClusterDir]


def load_cluster_dir(path: str) -> ClusterDir:
    """Peers, cookie file and election timeout of a local cluster directory.

    Extension point for the local-cluster tooling (``zraft.cluster.local`` writes this file):
    ``DIR/cluster.json`` with ``"peers"`` (peer ids, or objects with a ``"peer"`` field),
    ``"cookie_file"`` (absolute, or relative to DIR) and optionally ``"election_timeout"``
    (ms). Replace ``CLUSTER_DIR_LOADER`` to read another layout.
    """
    data = json.loads((Path(path) / "cluster.json").read_text())
    peers = [p if isinstance(p, str) else p.get("peer") or p.get("id") for p in data["peers"]]
    cookie_file = data.get("cookie_file")
    if cookie_file and not os.path.isabs(cookie_file):
        cookie_file = str(Path(path) / cookie_file)
    et = data.get("election_timeout")
    election_timeout = float(et) / 1000 if isinstance(et, (int, float)) and et > 0 else None
    tls = data.get("tls")
    tls = {k: str(Path(path) / v) for k, v in tls.items() if isinstance(v, str) and v} \
        if isinstance(tls, dict) else None
    return ClusterDir([str(p) for p in peers], cookie_file, election_timeout, tls or None)


CLUSTER_DIR_LOADER: ClusterDirLoader = load_cluster_dir


EXIT_NOT_FOUND = 3  # `zraft read`: the cluster answered that the key does not exist

# -- option handling --------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("cluster")
    group.add_argument("--peers", help="peer ids name@host:port, comma separated "
                       "(default: $ZRAFT_PEERS)")
    group.add_argument("--cookie", help="cluster cookie (default: $ZRAFT_COOKIE)")
    group.add_argument("--cookie-file", help="file whose first line is the cookie")
    group.add_argument("--dir", help="local cluster directory (reads DIR/cluster.json; "
                       "default: $ZRAFT_CLUSTER_DIR when no peers are given)")
    group.add_argument("--tls-ca", help="TLS: the cluster CA certificate (PEM) the nodes' "
                       "certificates are checked against (default: $ZRAFT_TLS_CA, or "
                       "the --dir cluster's); without one the client speaks plaintext")
    group.add_argument("--tls-cert", help="TLS: client certificate (PEM), for nodes that "
                       "verify clients (default: $ZRAFT_TLS_CERT)")
    group.add_argument("--tls-key", help="TLS: the client certificate's private key "
                       "(default: $ZRAFT_TLS_KEY)")
    group.add_argument("--timeout", type=timeout_arg, default=api.DEFAULT_TIMEOUT,
                       help="seconds per operation (default 5)")
    group.add_argument("--json", action="store_true", help="JSON output for scripts")
    return common


def _split_peers(text: str) -> list[str]:
    peers = [p.strip() for p in text.split(",") if p.strip()]
    for peer in peers:
        PeerId.parse(peer)
    return peers


def peer_arg(text: str) -> str:
    """argparse type of a peer id argument: a bad one is bad usage (exit 2), not a
    traceback."""
    try:
        return str(PeerId.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def peers_arg(text: str) -> str:
    """argparse type of a ``PEER,PEER,...`` argument (checked, kept as text)."""
    try:
        _split_peers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class Target:
    """Where a command goes: peers, and a connection pool holding the cookie."""

    def __init__(self, args: argparse.Namespace) -> None:
        # an explicit --dir names the cluster: $ZRAFT_PEERS (another one, maybe) must not
        # take its place, as $ZRAFT_COOKIE_FILE does not take the place of its cookie
        peers_text = args.peers or ("" if args.dir else os.environ.get("ZRAFT_PEERS", ""))
        cookie_file = args.cookie_file
        peers = _split_peers(peers_text) if peers_text else []
        self.election_timeout: float | None = None
        if not args.dir and not peers and os.environ.get("ZRAFT_CLUSTER_DIR"):
            args.dir = os.environ["ZRAFT_CLUSTER_DIR"]  # as `zraft cluster ...` does
        if args.dir:
            try:
                found = CLUSTER_DIR_LOADER(args.dir)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"--dir {args.dir}: no readable cluster.json ({exc})") from None
            peers = peers or found.peers
            cookie_file = cookie_file or found.cookie_file
            self.election_timeout = found.election_timeout
            tls_found = found.tls or {}
        else:
            tls_found = {}
        if not peers and getattr(args, "peer_is_target", False) and args.peer:
            peers = [args.peer]  # the command's own PEER argument is where it goes
        if not peers:
            raise UsageError("no peers: give --peers, --dir or $ZRAFT_PEERS")
        try:
            cookie = resolve_cookie(args.cookie, cookie_file)
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc)) from None
        try:
            tls = tls_context(getattr(args, "tls_ca", None), getattr(args, "tls_cert", None),
                              getattr(args, "tls_key", None), tls_found)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.peers = peers
        self.timeout: float = args.timeout
        self.pool = ConnectionPool(cookie, tls=tls)

    def session(self) -> LightSession:
        return api.light_session(self.peers, election_timeout=self.election_timeout)


class UsageError(Exception):
    pass


def tls_context(ca: str | None, cert: str | None, key: str | None,
                found: dict[str, str]) -> ssl.SSLContext | None:
    """The CLI's TLS context: the flags, else ``$ZRAFT_TLS_*``, else the cluster
    directory's files (as the cookie is found); None (plaintext) without a CA."""
    return resolve_tls(ca, cert, key, found)


def _jsonable(value: Any) -> Any:
    if value is NOT_FOUND:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    if value is NOT_FOUND:
        return "NOT_FOUND"
    if isinstance(value, str):
        return value
    return json.dumps(_jsonable(value))


def _emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(_jsonable(document), sort_keys=True), flush=True)
    else:
        print(text, flush=True)


def _parse_value(text: str, as_string: bool) -> Any:
    if as_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _runner(body: Callable[[argparse.Namespace, Target], int | None]
            ) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: build the target, map failures to exit codes, close connections."""

    def run(args: argparse.Namespace) -> int:
        try:
            target = Target(args)
        except (UsageError, ValueError) as exc:
            args.parser.error(str(exc))  # exits 2
        try:
            return int(body(args, target) or 0)
        except ZRaftError as exc:
            name = type(exc).__name__
            if args.json:
                print(json.dumps({"error": name, "code": exc.code, "message": str(exc)}))
            else:
                print(f"{name}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            target.pool.close()

    return run


def _first_answer(t: Target, ask: Callable[[str], Any]) -> Any:
    """Ask each peer in turn until one answers (the rest may be down)."""
    last: ZRaftError | None = None
    for peer in t.peers:
        try:
            return ask(peer)
        except ZRaftError as exc:
            last = exc
    assert last is not None
    raise last
