"""Malformed-input fuzz: 10,000 random and mutated frames against one server.

Each input goes on its own authenticated connection (the first bad frame closes a
connection, so one connection can only test one input). The expected outcome is computed
with the same framing/codec locally: malformed -> the server must close on its own;
incomplete -> the server waits, and closes once we stop sending; valid -> delivered.
Meanwhile a well-behaved peer keeps talking to the same server and must be served.
"""

from __future__ import annotations

import random
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import msgpack

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry, SnapshotMeta
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    VoteReply,
    VoteRequest,
)
from zraft.testing.authed_socket import authed
from zraft.transport import codec
from zraft.transport.errors import DecodeError
from zraft.transport.frame_auth import RECORD_OVERHEAD
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE, HEADER, FrameDecoder
from zraft.transport.handshake import client_handshake
from zraft.transport.tcp import TcpTransport, TransportConfig, parse_addr

N_INPUTS = 4_000  # make soak's frame_fuzz campaign sends 20,000 schema-driven frames
SEED = 20261126

SAMPLES = [
    VoteRequest(3, "a@h:1", "b@h:2", 10, 2, True),
    VoteReply(3, "a@h:1", "b@h:2", True, False, False),
    AppendEntries(
        4,
        "a@h:1",
        "b@h:2",
        6,
        3,
        [
            Entry(7, 4, DATA, b"payload", 1),
            Entry(8, 4, CONFIG, ClusterConfig(("a@h:1",), ("b@h:2",)), 2),
            Entry(9, 4, NOOP, None, 3),
        ],
        6,
        5,
    ),
    AppendReply(4, "b@h:2", "a@h:1", False, 6, 5, 3, 5),
    InstallSnapshot(4, "a@h:1", "b@h:2", SnapshotMeta(5, 3, 1, ClusterConfig(("a",), ())), 1),
    codec.ClientRequest(1, "write", ["k", b"v"]),
    codec.ClientReply(1, "ok", None),
    codec.SnapshotControl("offer", {"index": 5}),
    codec.AdminRequest(2, "status", None),
    codec.Push("watch", ["p", "sid", 1, "data_changed"]),
]
VALID_BODIES = [codec.encode(m) for m in SAMPLES]


def _random_obj(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.randrange(-5, 2**33)
    if choice == 1:
        return rng.choice([None, True, False, 1.5])
    if choice == 2:
        return rng.randbytes(rng.randrange(8)).hex()
    if choice == 3:
        return rng.randbytes(rng.randrange(8))
    if choice == 4:
        return rng.randrange(0, 7)
    if choice == 5:
        if rng.random() < 0.2:  # msgpack's own timestamp extension (type -1)
            return msgpack.Timestamp(rng.randrange(2**32), 0)
        return msgpack.ExtType(rng.randrange(0, 4), rng.randbytes(rng.randrange(3)))
    if choice == 6:
        return {rng.randrange(5): _random_obj(rng, depth + 1) for _ in range(rng.randrange(3))}
    return [_random_obj(rng, depth + 1) for _ in range(rng.randrange(9))]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos] = rng.randrange(256)
        elif op == 2:
            del buf[pos : pos + rng.randrange(1, 6)]
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 6))
        else:
            buf = buf[: rng.randrange(len(buf) + 1)]
    return bytes(buf)


def make_inputs(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:  # a valid frame, mutated anywhere (header included)
            out.append(_mutate(rng, codec.encode_frame(rng.choice(SAMPLES))))
        elif kind == 1:  # mutated body with a correct length header
            body = _mutate(rng, rng.choice(VALID_BODIES)) or b"\xc1"
            out.append(HEADER.pack(len(body)) + body)
        elif kind == 2:  # random msgpack structures that look like frames
            raw = [rng.randrange(0, 7), *(_random_obj(rng) for _ in range(rng.randrange(8)))]
            body = msgpack.packb(raw, use_bin_type=True)
            out.append(HEADER.pack(len(body)) + body)
        elif kind == 3:  # a valid frame with one field replaced by a random value
            raw = msgpack.unpackb(rng.choice(VALID_BODIES), raw=False)
            raw[rng.randrange(len(raw))] = _random_obj(rng)
            body = msgpack.packb(raw, use_bin_type=True)
            out.append(HEADER.pack(len(body)) + body)
        elif kind == 4:  # random bytes
            out.append(rng.randbytes(rng.randrange(1, 64)))
        else:  # hostile lengths, empty frames, valid then garbage
            out.append(
                rng.choice(
                    [
                        HEADER.pack(rng.randrange(2**26 + 1, 2**32)) + b"x",
                        HEADER.pack(0),
                        codec.encode_frame(rng.choice(SAMPLES)) + rng.randbytes(6),
                    ]
                )
            )
    return out


def classify(data: bytes) -> str:
    # the node's limit: a record of one frame may reach the body limit plus 28 bytes
    decoder = FrameDecoder(DEFAULT_MAX_FRAME_SIZE + RECORD_OVERHEAD)
    try:
        codec.decode_many(decoder.feed(data))
    except DecodeError:
        return "malformed"
    return "incomplete" if decoder.pending() else "valid"


FAKE_NODE = "127.0.0.1:9"  # some probes claim to be a peer node, to exercise peer links


def probe(addr: tuple[str, int], data: bytes, as_node: bool) -> tuple[str, bool]:
    """Send ``data`` on a fresh authenticated connection; report whether the server closed."""
    expected = classify(data)
    with socket.create_connection(addr, timeout=5) as raw:
        if as_node:
            s = authed(raw, client_handshake(raw, COOKIE, FAKE_NODE, 5, role="node"))
        else:
            s = authed(raw, client_handshake(raw, COOKIE, "fuzzer", 5))
        s.sendall(data)  # sealed: the fuzz reaches the decoder behind the MAC
        if expected == "valid":
            return expected, True
        if expected == "incomplete":
            s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        return expected, closed


def test_server_survives_thousands_of_malformed_inputs_and_keeps_serving():
    rng = random.Random(SEED)
    inputs = make_inputs(rng, N_INPUTS)
    server_inbox, good_inbox = Inbox(), Inbox()
    cfg = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1)
    server = TcpTransport(COOKIE, server_inbox, config=cfg)
    good = TcpTransport(COOKIE, good_inbox, config=cfg)
    server.start()
    good.start()
    stop = threading.Event()
    sent = [0]

    def good_peer():
        while not stop.is_set():
            sent[0] += 1
            good.send(server.address, VoteRequest(sent[0], "g@x", "s@y", 0, 0, False))
            stop.wait(0.01)

    chatter = threading.Thread(target=good_peer)
    chatter.start()
    try:
        addr = parse_addr(server.address)
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(
                pool.map(lambda i: probe(addr, inputs[i], i % 4 == 0), range(len(inputs)))
            )
        kinds = [k for k, _ in results]
        not_closed = [i for i, (k, closed) in enumerate(results) if not closed]
        assert not not_closed, f"server kept {len(not_closed)} bad connections open"
        n_malformed = kinds.count("malformed")
        assert n_malformed > 0.6 * N_INPUTS, kinds.count("valid")
        # every malformed connection was counted and closed by the server itself
        wait_for(lambda: server.counters["malformed"] == n_malformed, timeout=10)
        assert server.counters["auth_failures"] == 0
        # the good peer's link never broke and its traffic kept flowing
        stop.set()
        chatter.join()
        good_frames = wait_for(
            lambda: (
                fs := [
                    f
                    for conn, frames in list(server_inbox.calls)
                    if conn.peer_id == good.node_id
                    for f in frames
                ]
            )
            and len(fs) == sent[0]
            and fs,
            timeout=10,
        )
        assert [f.term for f in good_frames] == list(range(1, sent[0] + 1))
        assert good.link_state(server.address)["connects"] == 1
        # no connection leaked: only the good peer's link remains
        wait_for(lambda: len(server.inbound_connections()) == 1, timeout=10)
    finally:
        stop.set()
        chatter.join()
        good.close()
        server.close()
