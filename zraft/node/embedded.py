"""A zraft node inside the application's own process (``zraft.Node``).

    with zraft.Node(listen="127.0.0.1:7001", data_dir="data/n1", cookie="secret",
                    backends=["myapp.state:Inventory"]) as node:
        ...                               # peers on this node serve the cluster

It is the node of ``python -m zraft.node`` (``zraft.node.server.Node``: same transport,
peers, supervisor, storage and restart of stored peers), started and stopped from Python.

Rules:
- Configuration: a ``NodeConfig``, a TOML path, or keyword arguments shaped like the TOML
  file (``listen``, ``cookie``/``cookie_file``, ``backends``, any other ``[node]`` key;
  ``raft={...}`` and ``logging={...}`` for those sections). ``data_dir`` sets ``log_dir``
  and ``snapshot_dir`` (and the log files' directory to ``data_dir/log``). Everything is
  validated as a config file is: ``ConfigError`` with one line naming the key.
- ``start()`` returns once the node listens and its stored peers run; it raises
  ``ConfigError`` (bad config, port in use, unwritable directory, a cookie file others
  can read, a data directory another node holds or that belongs to another address) or
  ``DiskStorageError`` (a corrupt log), or whatever else failed, having stopped whatever
  it had started.
- The node holds its data directories (``zraft.node.datadir``: an flock, and its address
  in ``node.json``) from ``start()`` to ``stop()``, in this process as against others:
  two ``zraft.Node`` on one directory cannot both start.
- Logging is the application's: the node's loggers (``zraft.*``) propagate to whatever the
  application configured. ``log_to_files=True`` installs the node process's handlers
  (console.log, error.log, crash.log, excepthooks, faulthandler) instead; that takes over
  the root logger, as ``python -m zraft.node`` does.
- No signal handlers are installed, and ``stop()`` stops only this node's actors and
  threads (never ``ActorRegistry.stop_all``): the application's own actors, clients and
  sessions keep running. ``stop()`` is idempotent; ``wait()`` blocks until the node stops
  (by ``stop()``, or on its own: ``fatal`` then says why, ``exit_code`` is 1, and the
  application calls ``stop()`` to release what is left, as the node process does).
- A node the application never stopped is stopped when the interpreter exits, before Python
  waits for non-daemon threads (Pykka's actor threads are such threads): returning from
  ``main`` without ``stop()`` ends the process instead of hanging it.
"""

from __future__ import annotations

import logging as _logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zraft.config import (
    ConfigError,
    NodeConfig,
    ensure_dirs,
    load_config,
    parse_config,
    use_python_path,
)
from zraft.filemodes import check_private, private_files
from zraft.ids import PeerId
from zraft.node.datadir import DataDirClaim, claim, record_identity
from zraft.saferepr import exception_line

log = _logging.getLogger("zraft.node")


def build_config(config: NodeConfig | str | os.PathLike[str] | None = None, *,
                 data_dir: str | os.PathLike[str] | None = None,
                 raft: dict[str, Any] | None = None, logging: dict[str, Any] | None = None,
                 **node: Any) -> NodeConfig:
    """A validated NodeConfig from a config, a TOML file, or keyword arguments."""
    if data_dir is not None:
        directory = str(Path(data_dir))
        node.setdefault("log_dir", directory)
        node.setdefault("snapshot_dir", directory)
        logging = {"dir": str(Path(directory) / "log"), **(logging or {})}
    if "backends" in node and node["backends"] is not None:
        node["backends"] = list(node["backends"])
    if isinstance(config, NodeConfig):
        if node or raft or logging:
            raise ConfigError("give a NodeConfig or keyword arguments, not both")
        return config
    if config is not None:
        if raft or logging:
            raise ConfigError("raft= and logging= go in the config file when one is given")
        return load_config(config, **node)
    raw: dict[str, Any] = {"node": {k: v for k, v in node.items() if v is not None}}
    if raft:
        raw["raft"] = dict(raft)
    if logging:
        raw["logging"] = dict(logging)
    return parse_config(raw)


_RUNNING: weakref.WeakSet[Node] = weakref.WeakSet()


def _stop_running_nodes() -> None:
    for node in list(_RUNNING):
        node.stop()


# Forgotten nodes are stopped at interpreter exit, before the non-daemon threads are joined:
# ``atexit`` runs after that join, so only threading's own exit hook (CPython >= 3.9) comes
# early enough. Registered once, at import.
_register_exit_hook = getattr(threading, "_register_atexit", None)
if _register_exit_hook is not None:
    _register_exit_hook(_stop_running_nodes)


class Node:
    """A zraft node in this process (see the module docstring)."""

    def __init__(self, config: NodeConfig | str | os.PathLike[str] | None = None, *,
                 log_to_files: bool = False, **options: Any) -> None:
        self.config = build_config(config, **options)
        self.log_to_files = log_to_files
        self._server: Any = None
        self._stopped = False
        self._claim: DataDirClaim | None = None

    @property
    def address(self) -> str:
        """``host:port`` this node listens on."""
        return self.config.listen

    def peer_id(self, name: str) -> str:
        """The id of the peer ``name`` on this node (``name@host:port``)."""
        return str(PeerId.parse(f"{name}@{self.address}"))

    @property
    def running(self) -> bool:
        return self._server is not None and not self._server.stopped.is_set()

    @property
    def fatal(self) -> str | None:
        """Why the node stopped on its own (None while it runs or after a clean stop)."""
        return self._server.fatal if self._server is not None else None

    @property
    def exit_code(self) -> int:
        """What ``python -m zraft.node`` would exit with: 0 clean, 1 the node gave up."""
        return self._server.exit_code if self._server is not None else 0

    def start(self, *, prepare: Callable[[], None] | None = None) -> Node:
        """Start the node; ``prepare()`` (if given) runs once the data directory is locked,
        before any peer starts (``--clear-recovering`` edits stored peers there)."""
        if self._server is not None:
            raise RuntimeError("this node was started already (make a new Node to restart)")
        cfg = self.config
        ensure_dirs(cfg)
        for key, path in private_files(cfg):
            check_private(path, key)
        self._claim = claim(cfg)  # ConfigError: another node's directory
        try:
            if self.log_to_files:
                from zraft.logsetup import setup_logging

                setup_logging(cfg.logging, cfg.listen)
            if prepare is not None:
                prepare()
            use_python_path(cfg)  # before any backend is imported
            from zraft.node.server import Node as ServerNode  # after logging: its loggers

            server = ServerNode(cfg)
        except BaseException:
            self._claim.release()
            raise
        self._server = server
        _RUNNING.add(self)
        try:
            server.start()
        except BaseException:  # any failure: the application's process keeps no half-node
            self.stop()
            raise
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the node stops; True if it did within ``timeout``."""
        if self._server is None:
            return True
        return self._server.stopped.wait(timeout)

    def stop(self) -> None:
        """Stop the node's peers, transport and threads (idempotent)."""
        if self._server is not None and not self._stopped:
            self._stopped = True
            _RUNNING.discard(self)
            try:
                self._server.stop()
            finally:
                self._release_claim()

    def _release_claim(self) -> None:
        """Record the peers' cluster ids (created since the start) and unlock the data
        directory: the next node to use it may start."""
        if self._claim is not None and self._claim.held:
            try:
                record_identity(self.config)
            except Exception as exc:  # the next start records them
                log.warning("could not record the node's identity: %s", exception_line(exc))
            finally:
                self._claim.release()

    def __enter__(self) -> Node:
        # ``with Node(...) as n`` starts it; ``with Node(...).start() as n`` is the same node
        return self if self.running and not self._stopped else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<zraft.Node {self.address} {state}>"


__all__ = ["Node", "build_config"]
