"""Entry point of a node process.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 if the node's supervisor gave up, its
transport could not keep its serving threads alive, or its listen host name does not resolve
for the moment (a DNS failure that may pass; one line on stderr saying why), 2 for a
bad configuration, an unwritable directory, a port in use, a corrupt log, a cookie file
others can read, or a data directory another node holds or that belongs to another address
(one line on stderr saying what is wrong and what to do; nothing deleted).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

import pykka

from zraft.config import ConfigError, StartLater, ensure_dirs, load_config
from zraft.fsm.heap_trim import limit_arenas
from zraft.node.embedded import Node
from zraft.storage.errors import DiskStorageError

log = logging.getLogger("zraft.node")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zraft node", description="Run a zraft node.")
    parser.add_argument("--config", required=True, help="TOML config file")
    parser.add_argument("--listen", help="override node.listen (host:port)")
    parser.add_argument("--log-dir", help="override node.log_dir")
    parser.add_argument("--snapshot-dir", help="override node.snapshot_dir")
    parser.add_argument("--cookie-file", help="override node.cookie_file")
    parser.add_argument("--clear-recovering", metavar="PEER_NAME", action="append", default=[],
                        help="operator's decision: let this recovering peer vote and lead "
                             "again although its damaged log may have lost acknowledged "
                             "writes (when no majority of whole peers is left to repair it)")
    return parser


def clear_recovering(log_dir: str, name: str) -> None:
    """Clear a peer's ``recovering`` mark (``--clear-recovering``): it votes and leads again,
    with whatever its log still holds. Logged loudly; ConfigError if there is no such peer."""
    from dataclasses import replace

    from zraft.ids import PeerId
    from zraft.storage.meta import list_peers, write_meta
    from zraft.storage.naming import peer_log_path

    for meta in list_peers(log_dir):
        if PeerId.parse(meta.peer_id).name != name:
            continue
        if meta.recovering:
            write_meta(peer_log_path(log_dir, meta.peer_id), replace(meta, recovering=0))
            log.error("OPERATOR: peer %s no longer recovering (was: term %d): entries it "
                      "acknowledged and lost to storage damage are lost for good",
                      meta.peer_id, meta.recovering)
        else:
            log.warning("--clear-recovering %s: the peer is not recovering", name)
        return
    raise ConfigError(f"--clear-recovering: no peer named {name!r} in {log_dir}")


def main(argv: list[str] | None = None) -> int:
    # One malloc arena, before any thread exists: each arena keeps its own freed pages, and
    # the GIL serialises allocation anyway (W5 RSS after the run: 79-103 -> 70-80 MB).
    limit_arenas(1)
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, listen=args.listen, log_dir=args.log_dir,
                          snapshot_dir=args.snapshot_dir, cookie_file=args.cookie_file)
        ensure_dirs(cfg)
    except ConfigError as exc:
        print(f"zraft node: {exc}", file=sys.stderr)
        return 2
    node = Node(cfg, log_to_files=True)  # the embedded node, with the process's handlers

    def prepare() -> None:  # with the data directory locked: no other node edits it
        for name in args.clear_recovering:
            clear_recovering(cfg.log_dir, name)

    try:
        node.start(prepare=prepare)
    except (ConfigError, DiskStorageError) as exc:
        if logging.getLogger().handlers:  # not yet set up: stderr gets the one line below
            log.error("node %s cannot start: %s", cfg.listen, exc)
        print(f"zraft node: {exc}", file=sys.stderr)
        return 2
    except StartLater as exc:
        log.error("node %s cannot start yet: %s", cfg.listen, exc)
        print(f"zraft node: {exc}", file=sys.stderr)
        return 1
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, lambda *_: pykka.debug.log_thread_tracebacks())
    print(f"zraft node {cfg.listen} ready", flush=True)
    while not stop_requested.is_set() and node.running:
        stop_requested.wait(0.5)
    code = node.exit_code
    if node.fatal:
        print(f"zraft node {cfg.listen}: {node.fatal}", file=sys.stderr, flush=True)
    node.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
    log.info("node %s stopped (exit %d)", cfg.listen, code)
    logging.shutdown()
    return code
