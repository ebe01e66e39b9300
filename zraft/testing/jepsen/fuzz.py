"""Protocol fuzzing of a live node: hostile bytes on real sockets (needs ``hypothesis``).

Rules:
- A case opens ONE fresh TCP connection to the target node, optionally authenticates (as a
  ``client`` or as a ``node``), sends its bytes, then probes: if the connection is still
  open it sends a valid request and waits (bounded) for a reply or for the node to close.
  ``hung`` means neither happened within ``deadline`` seconds: that is a failure.
- Case kinds: ``garbage`` (random bytes before any handshake), ``unauth_frame`` (a valid
  frame without a handshake), ``wrong_cookie``, ``bad_auth`` (auth messages with wrong types
  and values), ``replayed_auth`` (a recorded, once-valid auth message replayed on a new
  connection: the fresh server nonce must make it worthless), ``handshake_again`` (the auth
  message sent again after authenticating), ``huge_length`` (a length header past the frame
  limit), ``wrong_types`` (well-shaped frames whose fields have wrong types or values),
  ``mutated`` (valid frames with bytes flipped, cut or appended), ``truncated`` (half a frame,
  then the client closes its side).
- Outcomes: ``closed`` (the node closed the connection), ``replied`` (it answered the probe:
  a well-formed request with wrong values may be refused by an error reply and the
  connection kept), ``eof_closed`` (the bytes left a frame incomplete, the node waited for
  the rest and closed once we ended our side), ``hung``. For ``closed`` cases ``logged``
  says whether the node's log has a line naming the connection's client address.
- After every case the node's process must still run with the same pid (``crashed``), and
  a fresh authenticated connection must get an answer (``serving``).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from zraft.testing.authed_socket import AuthedSocket, authed
from zraft.transport import codec
from zraft.transport.errors import HandshakeError, TransportError
from zraft.transport.frame_auth import RECORD_OVERHEAD
from zraft.transport.handshake import client_handshake

HEADER = struct.Struct(">I")
CASE_KINDS = ("garbage", "unauth_frame", "wrong_cookie", "bad_auth", "replayed_auth",
              "handshake_again", "huge_length", "wrong_types", "mutated", "truncated")
CLIENT_OPS = ("propose", "query", "query_local", "get_conf", "set_conf", "stat", "check_exists",
              "bootstrap", "node_status", "list_peers", "ping", "no_such_op")


def framed(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return HEADER.pack(len(body)) + body


# -- hypothesis strategies ----------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True), st.text(max_size=40), st.binary(max_size=64),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@st.composite
def wrong_type_frames(draw: st.DrawFn) -> list[Any]:
    """``[kind, ...]`` frames of every kind, with fields of arbitrary type and value."""
    kind = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 0, 7, -1, 2**40]))
    if kind == 1:
        code = draw(st.one_of(st.integers(min_value=0, max_value=12), values))
        return [1, code, *draw(st.lists(values, max_size=8))]
    if kind in (2, 5):
        req_id = draw(st.one_of(st.integers(min_value=-5, max_value=2**64 - 1), values))
        op = draw(st.one_of(st.sampled_from(CLIENT_OPS), values))
        args = draw(st.one_of(st.lists(values, max_size=5), values))
        return [kind, req_id, op, args][: draw(st.integers(min_value=1, max_value=5))]
    return [kind, *draw(st.lists(values, max_size=4))]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid request frame with a few bytes flipped, cut or appended (header included)."""
    valid = draw(st.sampled_from(VALID_FRAMES))
    data = bytearray(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        how = draw(st.sampled_from(["flip", "cut", "append", "length"]))
        if how == "flip" and data:
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[i] = draw(st.integers(min_value=0, max_value=255))
        elif how == "cut" and len(data) > 1:
            data = data[: draw(st.integers(min_value=1, max_value=len(data) - 1))]
        elif how == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        else:
            data[:4] = HEADER.pack(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    return bytes(data)


VALID_FRAMES = [
    codec.encode_frame(codec.ClientRequest(1, "query", ["zraft", "k", None, None])),
    codec.encode_frame(codec.ClientRequest(2, "propose", ["zraft", msgpack.packb(
        [1, ["put", "fuzz", 1]]), None])),
    codec.encode_frame(codec.ClientRequest(3, "stat", ["zraft"])),
]


# -- running cases --------------------------------------------------------------------------


class RecordingSocket:
    """Wraps a socket and keeps every byte sent (to capture a handshake for replay)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@dataclass
class CaseResult:
    kind: str
    client_address: str
    outcome: str  # closed | replied | hung
    logged: bool | None = None
    crashed: bool = False
    serving: bool = True
    detail: str = ""


@dataclass
class FuzzTarget:
    """A live node: its address, cookie, pid and log file."""

    host: str
    port: int
    cookie: bytes
    pid: int
    log_file: Path
    peer_name: str = "zraft"
    results: list[CaseResult] = field(default_factory=list)
    _recorded_auth: bytes | None = None

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.settimeout(timeout)
        return sock

    def authenticate(self, sock: socket.socket, role: str = "client") -> AuthedSocket:
        """Handshake; what is sent on the result is sealed (a cookie holder can MAC
        anything, so the fuzz must reach the decoder behind the frame MAC)."""
        client_id = "127.0.0.1:1" if role == "node" else "fuzzer"
        return authed(sock, client_handshake(sock, self.cookie, client_id, 5.0, role=role))

    def recorded_auth(self) -> bytes:
        """The auth message of one real, successful handshake (recorded once)."""
        if self._recorded_auth is None:
            with self.connect() as sock:
                rec = RecordingSocket(sock)
                client_handshake(rec, self.cookie, "recorded", 5.0)  # type: ignore[arg-type]
                self._recorded_auth = bytes(rec.sent)
        return self._recorded_auth

    def alive(self) -> bool:
        try:
            import psutil

            proc = psutil.Process(self.pid)
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except Exception:
            return False

    def serving(self, deadline: float = 5.0) -> bool:
        """A fresh authenticated connection gets a reply to a ``stat`` request."""
        try:
            with self.connect(deadline) as sock:
                peer = self.authenticate(sock)
                peer.sendall(codec.encode_frame(codec.ClientRequest(1, "stat", [self.peer_name])))
                return read_until_reply_or_close(peer, deadline) == "replied"
        except (OSError, HandshakeError):
            return False

    def log_names(self, client_address: str) -> bool:
        try:
            return client_address in self.log_file.read_text(errors="replace")
        except OSError:
            return False


def read_until_reply_or_close(sock: socket.socket, deadline: float) -> str:
    """``replied`` (a whole frame came back), ``closed`` (EOF/reset) or ``hung``."""
    return _read_frames(sock, deadline, lambda _body: True)


def _read_frames(sock: socket.socket, deadline: float, wanted: Any) -> str:
    """Read whole frames until ``wanted(body)`` holds (``replied``), EOF or a reset
    (``closed``), or the deadline (``hung``)."""
    end = time.monotonic() + deadline
    buf = b""
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return "hung"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return "hung"
        except OSError:
            return "closed"
        if not chunk:
            return "closed"
        if isinstance(sock, AuthedSocket):  # authenticated frames: check, strip the MAC
            try:
                bodies = sock.feed(chunk)
            except (TransportError, ValueError):
                return "closed"  # the node never sends a bad frame: count it as refused
            if any(wanted(body) for body in bodies):
                return "replied"
            continue
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + HEADER.unpack_from(buf)[0]:
            n = HEADER.unpack_from(buf)[0]
            body, buf = buf[4:4 + n], buf[4 + n:]
            if wanted(body):
                return "replied"


def run_case(target: FuzzTarget, kind: str, payload: Any, deadline: float = 5.0,
             log_wait: float = 3.0) -> CaseResult:
    """Run one case. ``payload``: bytes to send, or a frame object for ``wrong_types``."""
    sock = target.connect()
    host, port = sock.getsockname()[:2]
    address = f"{host}:{port}"
    outcome = "closed"
    detail = ""
    try:
        with contextlib.suppress(OSError):
            outcome = drive(target, sock, kind, payload, deadline)
    except HandshakeError as exc:  # our own handshake refused: the node closed on us
        detail = str(exc)
    finally:
        sock.close()
    result = CaseResult(kind, address, outcome, detail=detail)
    if outcome == "closed":
        end = time.monotonic() + log_wait
        result.logged = target.log_names(address)
        while not result.logged and time.monotonic() < end:
            time.sleep(0.05)  # polling the node's log file for the line
            result.logged = target.log_names(address)
    result.crashed = not target.alive()
    result.serving = not result.crashed and target.serving(deadline)
    target.results.append(result)
    return result


def drive(target: FuzzTarget, sock: socket.socket, kind: str, payload: Any,
          deadline: float) -> str:
    if kind in ("garbage", "unauth_frame"):
        sock.sendall(payload if kind == "garbage" else framed(payload))
        sock.shutdown(socket.SHUT_WR)  # else the node waits out its handshake timeout
        return read_until_close_ignoring_denial(sock, deadline)
    if kind == "wrong_cookie":
        client_handshake(sock, b"not-" + target.cookie, "intruder", deadline)
        return "replied"  # accepted with a wrong cookie: a failure
    if kind in ("bad_auth", "replayed_auth"):
        read_handshake_frame(sock, deadline)
        if kind == "bad_auth":
            sock.sendall(framed(["zraft-auth", *payload]))
        else:
            sock.sendall(target.recorded_auth())
        return read_until_close_ignoring_denial(sock, deadline)
    role = "node" if kind == "wrong_types" and payload and payload[0] == 1 else "client"
    sock = target.authenticate(sock, role)  # type: ignore[assignment]
    if kind == "handshake_again":
        sock.sendall(target.recorded_auth())
    elif kind == "huge_length":
        sock.sendall(HEADER.pack(payload) + b"\x00" * 64)
    elif kind == "wrong_types":
        sock.sendall(framed(payload))
    elif kind == "mutated":
        sock.sendall(payload)
    elif kind == "truncated":
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return read_until_reply_or_close(sock, deadline)
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    # Probe: a valid request must be answered, or the node must have closed on us. If the
    # fuzz bytes left a frame incomplete the probe only feeds it: the node may rightly wait
    # for more, so end our side and demand that it then closes.
    with contextlib.suppress(OSError):
        sock.sendall(codec.encode_frame(codec.ClientRequest(2**31, "stat", [target.peer_name])))
    outcome = probe_outcome(sock, deadline / 2)
    if outcome == "hung":
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        outcome = "eof_closed" if read_until_reply_or_close(sock, deadline) == "closed" \
            else "hung"
    return outcome


def probe_outcome(sock: socket.socket, deadline: float) -> str:
    """Replies to the fuzz frames may come first: read until the probe's reply, EOF or
    the deadline."""
    return _read_frames(sock, deadline, _is_probe_reply)


def _is_probe_reply(body: bytes) -> bool:
    frame = msgpack.unpackb(body, raw=False, strict_map_key=False)
    return isinstance(frame, list) and len(frame) >= 2 and frame[1] == 2**31


def read_handshake_frame(sock: socket.socket, deadline: float) -> Any:
    sock.settimeout(deadline)
    head = recv_exactly(sock, 4)
    return msgpack.unpackb(recv_exactly(sock, HEADER.unpack(head)[0]), raw=False)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return out


def read_until_close_ignoring_denial(sock: socket.socket, deadline: float) -> str:
    """After a refused auth the node may send ``zraft-denied`` first; then it must close."""
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return "hung"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return "hung"
        except OSError:
            return "closed"
        if not chunk:
            return "closed"
        if b"zraft-ok" in chunk:
            return "replied"  # accepted: for a replayed or bad auth that is a failure


# -- a seeded random campaign (for the CLI and soaks; the tests drive hypothesis) ---------


def random_case(rng: random.Random) -> tuple[str, Any]:
    kind = rng.choice(CASE_KINDS)
    if kind == "garbage":
        return kind, rng.randbytes(rng.randint(1, 200))
    if kind == "unauth_frame":
        return kind, [2, 1, "stat", ["zraft"]]
    if kind == "bad_auth":
        return kind, rng.choice([[1, "x", b"short", b"mac", "client"],
                                 ["1", "x", rng.randbytes(32), b"m", "client"],
                                 [1, "x" * 5000, rng.randbytes(32), b"m", "client"],
                                 [1, "x", rng.randbytes(32), rng.randbytes(32), "root"],
                                 [2, "x", rng.randbytes(32), rng.randbytes(32), "client"]])
    if kind == "huge_length":
        return kind, rng.choice([2**32 - 1, 2**31, 64 * 2**20 + RECORD_OVERHEAD + 1, 0])
    if kind == "wrong_types":
        return kind, [rng.choice([1, 2, 5]), rng.choice([None, -1, "x", 2**64 - 1, [1]]),
                      rng.choice(["stat", 7, None, b"propose"]), rng.choice([None, 5, {}, []])]
    if kind in ("mutated", "truncated"):
        data = bytearray(rng.choice(VALID_FRAMES))
        if kind == "truncated":
            return kind, bytes(data[: rng.randint(1, len(data) - 1)])
        data[rng.randrange(len(data))] = rng.getrandbits(8)
        return kind, bytes(data)
    return kind, None


def campaign(cases: int, seed: int, workdir: Path) -> dict[str, Any]:
    """``cases`` random cases against a fresh one-node cluster; counts per kind/outcome."""
    from collections import Counter

    from zraft.client import api
    from zraft.client.connection import ConnectionPool
    from zraft.cluster.local import LocalCluster

    cluster = LocalCluster(workdir, 1, election_timeout=300)
    cluster.start()
    pool = ConnectionPool(cluster.cookie.encode())
    try:
        api.create(cluster.peers, "dict", timeout=20.0, pool=pool)
        node = cluster.nodes[0]
        assert node.pid is not None
        target = FuzzTarget("127.0.0.1", node.port, cluster.cookie.encode(), node.pid,
                            node.directory / "log" / "console.log")
        rng = random.Random(seed)
        outcomes: Counter[str] = Counter()
        for _ in range(cases):
            kind, payload = random_case(rng)
            r = run_case(target, kind, payload, deadline=2.0, log_wait=1.0)
            outcomes[f"{kind} {r.outcome}{' unlogged' if r.logged is False else ''}"] += 1
            if r.crashed or not r.serving:
                outcomes["NODE DOWN"] += 1
                break
        return {"cases": sum(v for k, v in outcomes.items() if k != "NODE DOWN"),
                "outcomes": dict(sorted(outcomes.items())),
                "crashed": not target.alive(), "serving": target.serving()}
    finally:
        pool.close()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import tempfile

    p = argparse.ArgumentParser(prog="python -m zraft.testing.jepsen.fuzz")
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**31))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="zraft-fuzz-"))
    result = campaign(args.cases, args.seed, workdir)
    print(json.dumps({"seed": args.seed, **result}, indent=2))
    hung = sum(v for k, v in result["outcomes"].items() if " hung" in k)
    return 0 if not result["crashed"] and result["serving"] and not hung else 1


__all__ = ["CASE_KINDS", "CaseResult", "FuzzTarget", "campaign", "main", "mutated_frames",
           "random_case",
           "run_case", "values", "wrong_type_frames"]

if __name__ == "__main__":
    raise SystemExit(main())
