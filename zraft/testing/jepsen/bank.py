"""The bank workload: transfers between accounts of a replicated SQLite database (``sqlite``).

Rules:
- The database holds ``banks`` independent banks of ``accounts`` accounts, each account
  starting at ``initial``: ``accounts(bank, id, balance CHECK (balance >= 0))``. Banks roll
  like the register keys (``period`` seconds each, from an epoch shared by every client), so
  each bank's history stays small enough for the exhaustive linearizability search while
  every client contends on the same few rows.
- A transfer is ONE ``tx`` (credit, debit, ledger row), sent once, never retried. An
  overdraft makes the debit break the CHECK, so the whole tx rolls back on every replica:
  an ok answer is ``refused``, not a failure. The ledger row (``ledger(seq, xfer, ...)``,
  ``xfer`` NOT unique: a double apply would show as two rows) records every applied
  transfer, in apply order.
- A read is ``SELECT id, balance FROM accounts WHERE bank = ? ORDER BY id`` through the
  leader (a share goes to a random node: a follower must redirect, not answer).
- Outcomes follow ``workload.classify``: ``unknown`` for timeouts and lost connections.
  Checks (``bank_check``) resolve unknown transfers with the final ledger.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zraft.client import api
from zraft.client.api import write_command
from zraft.client.connection import ConnectionPool
from zraft.testing.jepsen.history import FAIL, OK, READ, UNKNOWN, History, Op
from zraft.testing.jepsen.workload import CERTAIN_FAILURES, call, client_tls, never_sent

TRANSFER = "transfer"
REFUSED = "refused"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS accounts(bank INTEGER NOT NULL, id INTEGER NOT NULL, "
    "balance INTEGER NOT NULL CHECK (balance >= 0), PRIMARY KEY (bank, id))",
    "CREATE TABLE IF NOT EXISTS ledger(seq INTEGER PRIMARY KEY, xfer TEXT NOT NULL, "
    "bank INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, "
    "amount INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS barriers(name TEXT PRIMARY KEY)",
)
READ_SQL = "SELECT id, balance FROM accounts WHERE bank = ? ORDER BY id"
TRANSFER_TX = (  # credit first: an overdraft then fails the debit, and the tx rolls back
    "UPDATE accounts SET balance = balance + :n WHERE bank = :b AND id = :dst",
    "UPDATE accounts SET balance = balance - :n WHERE bank = :b AND id = :src",
    "INSERT INTO ledger(xfer, bank, src, dst, amount) VALUES (:x, :b, :src, :dst, :n)",
)


@dataclass
class BankConfig:
    accounts: int = 5
    initial: int = 100
    period: float = 2.0  # seconds before the clients move to the next bank
    banks: int = 0  # 0: enough for the run (seconds / period + margin)
    read_ratio: float = 0.3
    max_amount: int = 60
    any_node_reads: float = 0.2
    op_timeout: float = 2.0

    def bank_count(self, seconds: float) -> int:
        return self.banks or int(seconds / self.period) + 40

    @property
    def total(self) -> int:
        return self.accounts * self.initial


def bank_key(bank: int) -> str:
    return f"bank{bank}"


def bank_of(key: str) -> int:
    return int(key.removeprefix("bank"))


def setup(peers: Sequence[str], cfg: BankConfig, banks: int, pool: ConnectionPool) -> None:
    """Create the tables and every bank's accounts (through the leader; a write the client
    retries may apply twice, so every statement is idempotent)."""
    session = api.light_session(list(peers))
    for sql in SCHEMA:
        api.write(session, ["exec", sql, None], timeout=20.0, pool=pool)
    rows = [[b, i, cfg.initial] for b in range(banks) for i in range(cfg.accounts)]
    for start in range(0, len(rows), 500):
        api.write(session, ["execmany", "INSERT OR IGNORE INTO accounts VALUES (?, ?, ?)",
                            rows[start:start + 500]], timeout=20.0, pool=pool)


def classify_transfer(status: str, payload: Any) -> tuple[str, Any]:
    if status == "ok":
        return OK, "ok"
    if status == "bad_command" and "CHECK constraint failed" in str(payload)[:500]:
        return OK, REFUSED  # applied everywhere as an error: nothing changed
    if status in CERTAIN_FAILURES or never_sent(status, payload):
        return FAIL, None
    return UNKNOWN, None


def classify_read(status: str, payload: Any, accounts: int) -> tuple[str, Any]:
    """A read answers the balances in account order; rows of another shape are kept as
    they came (the checks then report them)."""
    if status != "ok":
        return FAIL, None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if (isinstance(rows, list) and len(rows) == accounts
            and all(isinstance(r, list) and len(r) == 2 and r[0] == i
                    for i, r in enumerate(rows))):
        return OK, [r[1] for r in rows]
    return OK, {"unexpected rows": str(rows)[:300]}


class BankClient:
    """One logical client: single-attempt transfers and reads on the current bank."""

    def __init__(self, name: str, pool: ConnectionPool, peers: Callable[[], Sequence[str]],
                 history: History, cfg: BankConfig, banks: int, epoch: float,
                 seed: int) -> None:
        self.name = name
        self.pool = pool
        self.peers = peers
        self.history = history
        self.cfg = cfg
        self.banks = banks
        self.epoch = epoch
        self.rng = random.Random(seed)
        self.seq = 0
        self.leader: str | None = None
        self.turn = 0

    def bank(self) -> int:
        return min(int((time.monotonic() - self.epoch) / self.cfg.period), self.banks - 1)

    def target(self) -> str:
        peers = list(self.peers())
        if self.leader in peers:
            return self.leader  # type: ignore[return-value]
        self.turn += 1
        return peers[self.turn % len(peers)]

    def step(self) -> Op:
        cfg, rng = self.cfg, self.rng
        bank = self.bank()
        key = bank_key(bank)
        peer = self.target()
        if rng.random() < cfg.read_ratio:
            if rng.random() < cfg.any_node_reads:
                peer = rng.choice(list(self.peers()))
            op = self.history.invoke(self.name, READ, key, node=peer)
            args = [peer.partition("@")[0], ["query", READ_SQL, [bank]], None, None]
            status, payload = call(self.pool, peer, "query", args, cfg.op_timeout)
            outcome, result = classify_read(status, payload, cfg.accounts)
        else:
            self.seq += 1
            src, dst = rng.sample(range(cfg.accounts), 2)
            amount = rng.randint(1, cfg.max_amount)
            xfer = f"{self.name}.{self.seq}"
            op = self.history.invoke(self.name, TRANSFER, key, [src, dst, amount, xfer],
                                     node=peer)
            params = {"n": amount, "b": bank, "src": src, "dst": dst, "x": xfer}
            command = write_command(["tx", [[sql, params] for sql in TRANSFER_TX]])
            args = [peer.partition("@")[0], command, None]
            status, payload = call(self.pool, peer, "propose", args, cfg.op_timeout)
            outcome, result = classify_transfer(status, payload)
        History.complete(op, outcome, result, "" if status == "ok" else status)
        if status == "not_leader":
            hint = payload.get("leader") if isinstance(payload, dict) else None
            self.leader = hint if isinstance(hint, str) and hint != peer else None
        elif status in ("ok", "bad_command"):
            self.leader = peer
        else:
            self.leader = None
        return op

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.step().outcome != OK:
                stop.wait(self.rng.uniform(0.005, 0.05))  # no busy loop on a dead node


class BankClients:
    """``n`` bank clients on threads sharing one connection pool."""

    def __init__(self, n: int, cookie: bytes, peers: Callable[[], Sequence[str]],
                 history: History, cfg: BankConfig, banks: int, epoch: float,
                 seed: int, tls: dict[str, str] | None = None) -> None:
        self.pool = ConnectionPool(cookie, client_id=f"jepsen-bank-{seed}",
                                   tls=client_tls(tls))
        self.stop_event = threading.Event()
        self.clients = [BankClient(f"b{i}", self.pool, peers, history, cfg, banks, epoch,
                                   seed * 1000 + i) for i in range(n)]
        self.threads = [threading.Thread(target=c.run, args=(self.stop_event,), daemon=True,
                                         name=f"jepsen-{c.name}") for c in self.clients]

    def start(self) -> BankClients:
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.pool.close()


# -- the database's state, for the crash-safety checks ------------------------------------


def read_bank_state(peer: str, pool: ConnectionPool) -> dict[str, Any]:
    """One member's whole database, from its own replica (``query_local``)."""
    def rows(sql: str) -> list[Any]:
        return api.query_local(peer, ["query", sql, None], timeout=10.0, pool=pool)["rows"]
    return {"accounts": rows("SELECT bank, id, balance FROM accounts ORDER BY bank, id"),
            "ledger": rows("SELECT seq, xfer, bank, src, dst, amount FROM ledger ORDER BY seq"),
            "barriers": [r[0] for r in rows("SELECT name FROM barriers ORDER BY name")]}


def barrier_command(name: str) -> Any:
    return ["exec", "INSERT INTO barriers(name) VALUES (?)", [name]]


__all__ = ["READ_SQL", "REFUSED", "SCHEMA", "TRANSFER", "BankClient", "BankClients",
           "BankConfig", "bank_key", "bank_of", "barrier_command", "classify_read",
           "classify_transfer", "read_bank_state", "setup"]
