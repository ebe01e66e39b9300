"""``python -m zraft.testing.check_backend BACKEND [options]``: see ``runner.check``.

Exit status: 0 when every seed passed, 1 with the report of the first problem, 2 when the
backend or generator cannot be loaded or an option is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m zraft.testing.check_backend",
        description="Check that a zraft state machine (Backend) is deterministic and that "
                    "its snapshots restore: three replicas, random commands, snapshots, "
                    "crashes and installs.")
    p.add_argument("backend", help="'module:Class', or a built-in alias ('dict')")
    p.add_argument("--commands", metavar="MODULE:NAME",
                   help="the command generator: a function(rng) -> ('write'|'query', value), "
                        "a hypothesis strategy of those, or a callable returning one "
                        "(default: the backend's own, e.g. the dict backend's)")
    p.add_argument("--seeds", type=int, default=20, help="scenarios to run (default 20)")
    p.add_argument("--steps", type=int, default=200,
                   help="operations per scenario (default 200)")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--state-of", metavar="MODULE:NAME",
                   help="a function(backend) -> msgpack value describing the state, "
                        "compared besides the snapshot bytes")
    p.add_argument("--inline", action="store_true",
                   help="run the replicas in this process (no PYTHONHASHSEED variation)")
    p.add_argument("--hash-seeds", default="101,202,303",
                   help="the replicas' PYTHONHASHSEED values (default 101,202,303)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a replica may take for one scenario (default 120)")
    p.add_argument("--python-path", action="append", default=[], metavar="DIR",
                   help="a directory to import the backend from (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="a line per seed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    saved_path = list(sys.path)
    # absolute: the replica processes get this path and may start elsewhere
    sys.path[:0] = [os.path.abspath(d) for d in args.python_path]
    try:
        return _check(args)
    finally:
        sys.path[:] = saved_path


def _check(args: argparse.Namespace) -> int:
    # Fake clocks go in before the backend's module is imported, so that a module-level
    # ``from time import time`` in it is seen too (the worker processes do the same).
    from zraft.testing.check_backend import env

    env.install()
    try:
        from zraft.errors import ZRaftError
        from zraft.testing.check_backend.runner import CheckFailed, check
        from zraft.testing.check_backend.scenario import GeneratorError

        try:
            hash_seeds = tuple(int(h) for h in args.hash_seeds.split(","))
            if args.seeds < 1 or args.steps < 1:
                raise ValueError("--seeds and --steps must be >= 1")
            summary = check(args.backend, args.commands, seeds=args.seeds, steps=args.steps,
                            seed=args.seed, state_of=args.state_of and _load(args.state_of),
                            processes=False if args.inline else None, hash_seeds=hash_seeds,
                            timeout=args.timeout,
                            progress=print if args.verbose else None)
        except CheckFailed as exc:
            print(exc.report)
            return 1
        except (ImportError, AttributeError, ValueError, TypeError, GeneratorError,
                ZRaftError) as exc:
            print(f"check_backend: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        print(summary)
        return 0
    finally:
        env.uninstall()


def _load(spec: str) -> object:
    from zraft.testing.check_backend.generators import load

    return load(spec)


if __name__ == "__main__":
    sys.exit(main())
