"""Node configuration: TOML -> frozen dataclasses, zraft_lib's defaults, clear errors.

Every zraft_lib parameter keeps its name (SPEC section 9); the node adds its listen address,
the cluster cookie, the backend allowlist and lager-style logging. ``load_config`` raises
``ConfigError`` whose message is one line saying what is wrong; ``python -m zraft.node``
prints it and exits with code 2.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from zraft.core.entries import ENTRY_OVERHEAD
from zraft.saferepr import safe_repr
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE as MAX_FRAME_SIZE
from zraft.transport.tls import NodeTls, TlsError, TlsFiles

# Room kept in a frame for an AppendEntries' own fields (kind, term, two peer ids, indexes,
# the entries' array header) and a client request's (req_id, op, peer name, session id).
FRAME_ENVELOPE = 64 * 1024

MIN_BUFFERED_BYTES = 16 * 1024 * 1024

# bind-to-every-interface addresses: fine to bind, meaningless to dial from another machine
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ConfigError(Exception):
    """A configuration problem, with a one-line message naming the key."""


class StartLater(Exception):
    """The node cannot start now but may later, unchanged: its listen host name does not
    resolve for the moment (DNS not reachable yet at boot). ``python -m zraft.node`` exits
    1, which supervisors restart, not 2, which they must not (a config error)."""


@dataclass(frozen=True)
class RaftConfig:
    """zraft_lib's application environment (names and defaults as in zraft_lib)."""

    election_timeout: int = 500  # ms; election timer random in [1.5, 2.5) x this
    # ms; 0 = 2 x election_timeout (zraft_lib's default): a follower with appends in flight
    # that answers nothing for this long is probed again (zraft_lib: per-request timeout)
    request_timeout: int = 0
    snapshot_listener_port: int = 0  # 0 = any free port
    # "" = the host of node.listen (the address peers already reach this node on);
    # zraft_lib: 0.0.0.0. A wildcard binds everywhere and advertises node.listen's host
    snapshot_listener_addr: str = ""
    snapshot_backup: bool = False
    max_segment_size: int = 10485760
    max_log_count: int = 1000
    # ... and not before the log since the last snapshot holds this x its size (0: off)
    snapshot_log_ratio: float = 1.0
    tick_ms: int = 0  # 0 = election_timeout / 10
    max_inflight: int = 256  # AppendEntries messages in flight per follower
    max_batch_bytes: int = 1048576  # byte cap of one AppendEntries
    # largest command (DATA entry) the node accepts: a larger write is refused with
    # too_large before it enters the log (so one entry's AppendEntries always fits a frame)
    max_entry_size: int = 8388608
    # idle groups go quiet: no heartbeats, no timers, until a write, a read or a node-level
    # failure signal (one liveness heartbeat per pair of nodes; docs/internals.md)
    quiesce: bool = True

    @property
    def effective_request_timeout(self) -> int:
        return self.request_timeout or 2 * self.election_timeout

    @property
    def effective_tick_ms(self) -> int:
        return self.tick_ms or max(1, self.election_timeout // 10)

    @property
    def election_ticks(self) -> int:
        return max(2, round(self.election_timeout / self.effective_tick_ms))


@dataclass(frozen=True)
class LogConfig:
    """lager's handlers: console, error and crash logs, rotated by size and count."""

    dir: str = "log"
    level: str = "info"
    console: bool = False  # also log to stderr
    console_log: str = "console.log"
    error_log: str = "error.log"
    crash_log: str = "crash.log"
    size: int = 10485760
    count: int = 5
    format: str = "text"  # or "json": one JSON object per line (zraft/logjson.py)


@dataclass(frozen=True)
class NodeConfig:
    listen: str = "127.0.0.1:7000"
    cookie: str = ""
    cookie_file: str = ""
    # a second secret (first line of this file, mode 0600) for application clients: it
    # admits reads, writes and sessions but no operator op (zraft.node.requests.OPERATOR_OPS)
    client_cookie_file: str = ""
    backends: tuple[str, ...] = ("dict", "sqlite")
    # directories put first on the node's import path (sys.path), in order, so the
    # modules of the allowed backends can be imported; relative to the config file
    python_path: tuple[str, ...] = ()
    log_dir: str = "data"
    snapshot_dir: str = "data"
    # accept partition/heal admin requests (they cut the node off its peers): off unless
    # the config turns it on; `zraft cluster` local clusters do
    fault_injection: bool = False
    # host:port of the Prometheus endpoint (GET /metrics); "" = off (zraft/node/metrics.py)
    metrics_addr: str = ""
    # node-wide cap on memory held for partial (incomplete) frames, beyond 1 MiB each
    max_buffered_bytes: int = 256 * 1024 * 1024
    # worker threads of the node's actor pools (zraft/actors/pooled.py): peers run on the
    # ``raft`` pool, log writers and state machines (fsync, a backend's apply) on ``io``
    raft_threads: int = 4
    io_threads: int = 4
    # TLS on every connection (peers, clients, snapshots) when set: PEM files, relative to
    # the config file; "" = plaintext (logged as a WARNING at start). See zraft/transport/tls.py
    tls_cert: str = ""
    tls_key: str = ""  # private: refused if group/others can read it
    tls_ca: str = ""  # the cluster CA: checks peers' (and, below, clients') certificates
    tls_verify_client: bool = False  # mutual TLS: clients and peers must present a CA cert
    raft: RaftConfig = field(default_factory=RaftConfig)
    logging: LogConfig = field(default_factory=LogConfig)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert or self.tls_key or self.tls_ca)

    def node_tls(self) -> NodeTls | None:
        """The node's TLS contexts (None: plaintext); ``ConfigError`` (one line) if the
        files are missing, unreadable, not PEM, or the key does not match the cert."""
        if not self.tls_enabled:
            if self.tls_verify_client:
                raise ConfigError("node.tls_verify_client needs tls_cert, tls_key and tls_ca")
            return None
        files = TlsFiles(self.tls_cert, self.tls_key, self.tls_ca)
        try:
            return NodeTls.build(files, self.tls_verify_client)
        except TlsError as exc:
            raise ConfigError(str(exc).replace("node: ", "node.tls: ", 1)) from None

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def snapshot_endpoint(self) -> tuple[str, str]:
        """(address the snapshot receiver binds, host it tells the leader to dial).

        The leader dials what is advertised, from another machine: never a wildcard and
        never an address guessed from this machine's host name (which may resolve to
        127.0.1.1, or to nothing inside a container or a network namespace). A name is
        advertised as the name, so the leader resolves it as it resolves peer ids."""
        bind = self.raft.snapshot_listener_addr or self.host
        if bind.strip("[]") in WILDCARD_HOSTS:
            return bind.strip("[]"), self.host
        return bind.strip("[]"), bind.strip("[]")

    def resolved_cookie(self) -> bytes:
        """The cookie bytes: ``cookie`` if set, else the first line of ``cookie_file``."""
        if self.cookie:
            return self.cookie.encode()
        if self.cookie_file:
            try:
                text = Path(self.cookie_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cookie_file {self.cookie_file!r}: {exc.strerror}") from None
            if not text:
                raise ConfigError(f"cookie_file {self.cookie_file!r} is empty")
            return text.encode()
        raise ConfigError("no cookie: set node.cookie or node.cookie_file")

    def resolved_client_cookie(self) -> bytes | None:
        """The client cookie's bytes (``client_cookie_file``), or None when there is none."""
        if not self.client_cookie_file:
            return None
        try:
            text = Path(self.client_cookie_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"client_cookie_file {self.client_cookie_file!r}: "
                              f"{exc.strerror}") from None
        if not text:
            raise ConfigError(f"client_cookie_file {self.client_cookie_file!r} is empty")
        if text.encode() == self.resolved_cookie():
            raise ConfigError("node.client_cookie_file holds the cluster cookie itself: it "
                              "must be a different secret (it admits fewer operations)")
        return text.encode()


_SECTIONS: dict[str, type] = {"raft": RaftConfig, "logging": LogConfig}


def _check_type(section: str, key: str, value: Any, expected: Any) -> Any:
    where = f"{section}.{key}" if section else key
    if expected in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif expected in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif expected in ("bool", bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif expected in ("str", str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif str(expected).startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        value = tuple(value)
    return value


def _build(cls: type, section: str, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS and cls is NodeConfig:
            continue
        if key not in known:
            where = f"{section}.{key}" if section else key
            raise ConfigError(f"unknown key {where!r}")
        kwargs[key] = _check_type(section, key, value, known[key].type)
    return cls(**kwargs)


def parse_config(raw: dict[str, Any]) -> NodeConfig:
    """Build a NodeConfig from a TOML-shaped dict with ``[node]``, ``[raft]``, ``[logging]``."""
    unknown = set(raw) - {"node", "raft", "logging"}
    if unknown:
        raise ConfigError(f"unknown section {sorted(unknown)[0]!r}")
    for name in ("node", "raft", "logging"):
        if name in raw and not isinstance(raw[name], dict):
            raise ConfigError(f"[{name}] must be a table")
    node = _build(NodeConfig, "node", raw.get("node", {}))
    raft = _build(RaftConfig, "raft", raw.get("raft", {}))
    logging_cfg = _build(LogConfig, "logging", raw.get("logging", {}))
    cfg = replace(node, raft=raft, logging=logging_cfg)
    validate(cfg)
    return cfg


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host.strip("[]")) and port.isdigit() and 0 < int(port) < 65536


def validate(cfg: NodeConfig) -> None:
    """Check relations and ranges; raise ConfigError with one line on the first problem."""
    if not _is_host_port(cfg.listen):
        raise ConfigError(f"node.listen must be host:port (port 1..65535), got {cfg.listen!r}")
    if cfg.host in WILDCARD_HOSTS:
        raise ConfigError("node.listen is this node's id, the address peers and clients dial: "
                          "give its host name or address (node1:7000), not a wildcard "
                          f"({safe_repr(cfg.listen, 80)})")
    if cfg.metrics_addr and not _is_host_port(cfg.metrics_addr):
        raise ConfigError("node.metrics_addr must be host:port (port 1..65535) or \"\" (off), "
                          f"got {safe_repr(cfg.metrics_addr, 80)}")
    for key in ("raft_threads", "io_threads"):
        if not 1 <= getattr(cfg, key) <= 64:
            raise ConfigError(f"node.{key} must be between 1 and 64, got {getattr(cfg, key)}")
    r = cfg.raft
    if r.election_timeout < 10:
        raise ConfigError(f"raft.election_timeout must be >= 10 ms, got {r.election_timeout}")
    if r.request_timeout < 0:
        raise ConfigError(f"raft.request_timeout must be >= 0, got {r.request_timeout}")
    if r.tick_ms < 0 or (r.tick_ms and r.tick_ms * 2 > r.election_timeout):
        raise ConfigError("raft.tick_ms must be 0 (auto) or at most election_timeout / 2")
    if not 0 <= r.snapshot_listener_port < 65536:
        raise ConfigError(f"raft.snapshot_listener_port out of range: {r.snapshot_listener_port}")
    if r.max_segment_size < 4096:
        raise ConfigError(f"raft.max_segment_size must be >= 4096, got {r.max_segment_size}")
    if r.max_log_count < 1:
        raise ConfigError(f"raft.max_log_count must be >= 1, got {r.max_log_count}")
    if not 0 <= r.snapshot_log_ratio <= 1000:
        raise ConfigError("raft.snapshot_log_ratio must be between 0 and 1000, "
                          f"got {r.snapshot_log_ratio}")
    if r.max_inflight < 1 or r.max_batch_bytes < 1024:
        raise ConfigError("raft.max_inflight must be >= 1 and raft.max_batch_bytes >= 1024")
    # An AppendEntries holds entries up to max_batch_bytes, or one entry alone (at most
    # max_entry_size): either must fit a frame with the message's own fields.
    room = MAX_FRAME_SIZE - FRAME_ENVELOPE
    if r.max_batch_bytes > room:
        raise ConfigError(f"raft.max_batch_bytes must be at most {room} (the frame limit "
                          f"{MAX_FRAME_SIZE} less {FRAME_ENVELOPE}), got {r.max_batch_bytes}")
    if not 1024 <= r.max_entry_size <= room - ENTRY_OVERHEAD:
        raise ConfigError(f"raft.max_entry_size must be between 1024 and "
                          f"{room - ENTRY_OVERHEAD} (the frame limit {MAX_FRAME_SIZE} less "
                          f"{FRAME_ENVELOPE + ENTRY_OVERHEAD}), got {r.max_entry_size}")
    if cfg.logging.level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"logging.level must be debug/info/warning/error: {cfg.logging.level!r}")
    if cfg.logging.format not in ("text", "json"):
        raise ConfigError(f"logging.format must be \"text\" or \"json\", "
                          f"got {safe_repr(cfg.logging.format, 40)}")
    if cfg.logging.size < 1024 or cfg.logging.count < 0:
        raise ConfigError("logging.size must be >= 1024 and logging.count >= 0")
    if not cfg.backends:
        raise ConfigError("node.backends must name at least one allowed backend")
    for entry in cfg.python_path:
        if not os.path.isdir(entry):
            raise ConfigError(f"node.python_path: {entry!r} is not a directory")
    if cfg.max_buffered_bytes < MIN_BUFFERED_BYTES:
        raise ConfigError(f"node.max_buffered_bytes must be >= {MIN_BUFFERED_BYTES} "
                          f"(16 MiB), got {cfg.max_buffered_bytes}")
    cfg.resolved_cookie()
    cfg.node_tls()


def ensure_dirs(cfg: NodeConfig) -> None:
    """Create the data and log directories; raise ConfigError if one is not writable."""
    for key, path in (("node.log_dir", cfg.log_dir), ("node.snapshot_dir", cfg.snapshot_dir),
                      ("logging.dir", cfg.logging.dir)):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key} {path!r} cannot be created: {exc.strerror}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{key} {path!r} is not writable")


# [node] keys holding a path: relative ones are resolved against the config file's directory
FILE_PATH_KEYS = ("log_dir", "snapshot_dir", "cookie_file", "client_cookie_file", "tls_cert",
                  "tls_key", "tls_ca")


def load_config(path: str | os.PathLike[str], **overrides: Any) -> NodeConfig:
    """Read a TOML file; ``overrides`` replace [node] keys (used by command-line flags)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc.strerror}") from None
    # Paths in the file are relative to the file's directory, not to the cwd (a node started
    # from anywhere uses the same files); command-line overrides stay relative to the cwd.
    base = Path(path).resolve().parent
    node = raw.get("node", {})
    if isinstance(node, dict):
        node = dict(node)
        for key in FILE_PATH_KEYS:  # the defaults too ("data" is next to the file)
            value = node.get(key, getattr(NodeConfig, key))
            if isinstance(value, str) and value:
                node[key] = str(base / value)
        entries = node.get("python_path")
        if isinstance(entries, list):
            node["python_path"] = [str(base / e) if isinstance(e, str) else e for e in entries]
        node.update({k: v for k, v in overrides.items() if v is not None})
        raw["node"] = node
    logging_cfg = raw.get("logging", {})
    if isinstance(logging_cfg, dict):
        value = logging_cfg.get("dir", LogConfig.dir)
        if isinstance(value, str):
            raw["logging"] = {**logging_cfg, "dir": str(base / value)}
    return parse_config(raw)


def use_python_path(cfg: NodeConfig) -> None:
    """Put ``node.python_path`` first on ``sys.path``, in order."""
    for entry in reversed(cfg.python_path):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
