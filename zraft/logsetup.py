"""Node logging with lager's shape: console.log, error.log and crash.log, rotated by size.

lager also rotated daily; the stdlib has no handler that rotates on both size and time, so
zraft rotates by size and count only (docs/internals.md). Uncaught exceptions in any thread,
Pykka's "Unhandled exception" records and hard crashes (faulthandler) go to crash.log.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import sys
import threading
from typing import IO, Any

from zraft.config import LogConfig
from zraft.logjson import JsonFormatter

_FORMAT = "%(asctime)s.%(msecs)03d [%(levelname)s] %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
_crash_file: IO[str] | None = None


class _CrashFilter(logging.Filter):
    """Records that describe a crash: uncaught exceptions and Pykka actor failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is not None and record.levelno >= logging.ERROR


def _formatter(cfg: LogConfig) -> logging.Formatter:
    if cfg.format == "json":
        return JsonFormatter()
    return logging.Formatter(_FORMAT, _DATEFMT)


def _rotating(path: str, level: int, cfg: LogConfig) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=cfg.size, backupCount=cfg.count, encoding="utf-8"
    )
    handler.setLevel(level)
    handler.setFormatter(_formatter(cfg))
    return handler


def setup_logging(cfg: LogConfig, node_label: str = "") -> None:
    """Install the node's handlers on the root logger (idempotent per process)."""
    global _crash_file
    os.makedirs(cfg.dir, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    level = getattr(logging, cfg.level.upper())
    root.setLevel(level)
    root.addHandler(_rotating(os.path.join(cfg.dir, cfg.console_log), level, cfg))
    root.addHandler(_rotating(os.path.join(cfg.dir, cfg.error_log), logging.ERROR, cfg))
    crash = _rotating(os.path.join(cfg.dir, cfg.crash_log), logging.ERROR, cfg)
    crash.addFilter(_CrashFilter())
    root.addHandler(crash)
    if cfg.console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(level)
        stream.setFormatter(_formatter(cfg))
        root.addHandler(stream)

    def excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
        logging.getLogger("zraft.crash").error(
            "uncaught exception%s", f" in {node_label}" if node_label else "",
            exc_info=(exc_type, exc, tb),
        )
        sys.__excepthook__(exc_type, exc, tb)  # and on stderr, for whoever started us

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        logging.getLogger("zraft.crash").error(
            "uncaught exception in thread %s", name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    if _crash_file is None:
        _crash_file = open(os.path.join(cfg.dir, "fault.log"), "a", encoding="utf-8")  # noqa: SIM115
        faulthandler.enable(_crash_file)
