"""The ``zraft`` command: a thin argparse dispatcher over subcommand modules.

Rules:
- Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
  subcommands and sets ``func`` (``args -> exit code``) on each. A module that is not
  installed yet is skipped, so others can add ``zraft node``, ``zraft cluster ...``,
  ``zraft bench`` by creating the module (and listing it here).
- Exit codes: 0 success, 1 the operation failed (the error's name is printed) or the reader
  of stdout went away (quietly), 2 bad usage (argparse's own code; also a backup file
  ``zraft snapshot restore`` refuses), 3 ``zraft read`` / ``zraft delete``: the key does
  not exist, ``zraft conf remove``: the peer is not a member.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "zraft.client.commands",   # write, read, watch, conf get/set, stat
    "zraft.cluster.commands",  # zraft cluster ... (local clusters)
    "zraft.node.commands",     # zraft node ...
    "zraft.loadgen.commands",    # zraft bench ...
    "zraft.backup.commands",     # zraft snapshot save / restore
    "zraft.client.sql_command",  # zraft sql (the sqlite backend)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zraft", description="Talk to and run zraft clusters.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that subcommand module does not exist (yet)
            print(f"zraft: skipping {name}: {exc}", file=sys.stderr)
            continue
        except ImportError as exc:  # a broken module must not take the other commands down
            print(f"zraft: skipping {name}: {exc}", file=sys.stderr)
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`zraft ... | head`): stop quietly, as Unix tools do, and
        # keep Python from printing a second error when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
