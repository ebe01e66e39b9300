"""``zraft node --config node.toml``: the same as ``python -m zraft.node``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("node", help="run a zraft node process",
                                   description="Run a zraft node (python -m zraft.node).")
    parser.add_argument("--config", required=True, help="TOML config file")
    parser.add_argument("--listen", help="override node.listen (host:port)")
    parser.add_argument("--log-dir", help="override node.log_dir")
    parser.add_argument("--snapshot-dir", help="override node.snapshot_dir")
    parser.add_argument("--cookie-file", help="override node.cookie_file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from zraft.node.main import main

    argv = ["--config", args.config]
    for flag in ("listen", "log_dir", "snapshot_dir", "cookie_file"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", value]
    return main(argv)
