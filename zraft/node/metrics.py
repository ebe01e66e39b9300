"""The node's Prometheus endpoint (``[node] metrics_addr``): ``GET /metrics``.

Rules:
1. Collected at scrape time, never pushed from the request path: a custom Collector reads
   what the node already keeps (each peer's ``PeerMetrics``, the state machines' and log
   writers' published stats, the transport's link and connection counters) and asks each
   peer actor once for its core's figures (``Probe``), with one deadline for all of them.
2. The endpoint never stops the node: it binds at start (a bad or busy address is a
   ConfigError, exit 2), then a failing section of a scrape is skipped, logged and counted
   (``zraft_metrics_errors_total``), a peer that does not answer in time is left out of
   that scrape (``zraft_metrics_peer_timeouts_total``), and the HTTP server's threads are
   daemons of their own.
3. Labels are bounded by what the node hosts: ``peer`` (a local peer's name: its group on
   this node) and ``link`` (a peer node's address); never a client's value.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.registry import Collector, CollectorRegistry

from zraft.actors.messages import Probe
from zraft.actors.peer_metrics import BatchHistogram
from zraft.config import ConfigError

log = logging.getLogger(__name__)

PROBE_DEADLINE_S = 2.0  # for every peer of one scrape together
MAX_SCRAPERS = 8  # connections served at once; more are closed at once (threads are bounded)
SCRAPER_TIMEOUT_S = 10.0  # a connection silent this long is dropped (its thread ends)
ROLES = ("leader", "follower", "candidate", "down", "starting")


def _histogram(name: str, doc: str, by_peer: dict[str, BatchHistogram]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=["peer"])
    for peer, hist in by_peer.items():
        buckets, total = hist.snapshot()
        fam.add_metric([peer], buckets, total)
    return fam


class NodeCollector(Collector):
    """Everything a scrape reports for one node (``server.Node``)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.errors = 0
        self.peer_timeouts = 0

    def collect(self) -> Iterator[Any]:
        for section in (self._peers, self._node, self._links):
            try:
                yield from list(section())  # a section yields whole or not at all
            except Exception:
                self.errors += 1
                log.exception("metrics: %s failed (left out of this scrape)", section.__name__)
        yield CounterMetricFamily("zraft_metrics_errors", "Scrape sections that failed",
                                  value=self.errors)
        yield CounterMetricFamily("zraft_metrics_peer_timeouts",
                                  "Peers that did not answer a scrape in time",
                                  value=self.peer_timeouts)

    # ---------------------------------------------------------------- per peer

    def _probe_all(self) -> dict[str, dict[str, Any]]:
        asks = {}
        for name, entry in list(self.node.peers.items()):
            ref = entry.handle.resolve()
            if ref is None:
                continue
            try:
                asks[name] = ref.ask(Probe(), block=False)
            except Exception:  # the actor stopped between resolve and ask
                continue
        deadline = time.monotonic() + PROBE_DEADLINE_S
        out = {}
        for name, future in asks.items():
            try:
                result = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                self.peer_timeouts += 1
                continue
            if isinstance(result, dict):
                out[name] = result
        return out

    def _peers(self) -> Iterator[Any]:
        node = self.node
        entries = dict(node.peers)
        probes = self._probe_all()
        role = GaugeMetricFamily("zraft_peer_role", "1 for the peer's current role",
                                 labels=["peer", "role"])
        gauges = {
            key: GaugeMetricFamily(f"zraft_{key}", doc, labels=["peer"])
            for key, doc in (("term", "Current Raft term"),
                             ("commit_index", "Highest log index known committed"),
                             ("applied_index", "Highest log index applied to the state"),
                             ("last_index", "Last index in the peer's log"),
                             ("snapshot_index", "Index of the peer's latest snapshot"),
                             ("pending_client_writes", "Proposals waiting to commit"),
                             ("sessions", "Client sessions open in the group"),
                             ("watches", "Watches set in the group"))}
        for name in entries:
            p = probes.get(name, {"role": "down" if name in node.backend_failures else None})
            if p.get("role") is not None:
                for r in ROLES:
                    role.add_metric([name, r], 1.0 if p["role"] == r else 0.0)
            for key, field in (("term", "term"), ("commit_index", "commit"),
                               ("applied_index", "applied"), ("last_index", "last_index"),
                               ("snapshot_index", "snapshot_index"),
                               ("pending_client_writes", "pending_client_writes")):
                if field in p:
                    gauges[key].add_metric([name], p[field])
            sm = node.sm_stats.get(name) or {}
            if "sessions" in sm:
                gauges["sessions"].add_metric([name], sm["sessions"])
                gauges["watches"].add_metric([name], sm["watchers"])
        yield role
        yield from gauges.values()

        metrics = {name: node.peer_metrics[name] for name in entries
                   if name in node.peer_metrics}
        for attr, mname, doc in (
                ("proposals", "zraft_proposals", "Commands accepted into the leader's log"),
                ("proposals_refused", "zraft_proposals_refused",
                 "Proposals refused (not the leader)"),
                ("leader_changes", "zraft_leader_changes",
                 "Times this peer saw the leader change"),
                ("entries_written", "zraft_log_entries_written",
                 "Entries written (and fsynced) to the log"),
                ("entries_applied", "zraft_entries_applied",
                 "Entries applied to the state machine"),
                ("snapshots_taken", "zraft_snapshots_taken", "Snapshots taken locally"),
                ("snapshot_bytes_total", "zraft_snapshot_written_bytes",
                 "Bytes of the snapshots taken locally"),
                ("snapshot_seconds_total", "zraft_snapshot_seconds",
                 "Time spent taking snapshots")):
            fam = CounterMetricFamily(mname, doc, labels=["peer"])
            for name, pm in metrics.items():
                fam.add_metric([name], getattr(pm, attr))
            yield fam
        last = GaugeMetricFamily("zraft_snapshot_last_duration_seconds",
                                 "Duration of the latest local snapshot", labels=["peer"])
        installed = CounterMetricFamily("zraft_snapshots_installed",
                                        "Snapshots installed from the leader", labels=["peer"])
        size = GaugeMetricFamily("zraft_snapshot_size_bytes",
                                 "Size of the peer's latest snapshot", labels=["peer"])
        for name, pm in metrics.items():
            last.add_metric([name], pm.snapshot_last_seconds)
            sm = node.sm_stats.get(name) or {}
            if "snapshots_installed" in sm:
                installed.add_metric([name], sm["snapshots_installed"])
                size.add_metric([name], sm.get("snapshot_bytes", 0))
        yield from (last, installed, size)
        yield _histogram("zraft_proposal_seconds", "Proposal to commit, on the leader",
                         {n: pm.proposal_seconds for n, pm in metrics.items()})
        yield _histogram("zraft_fsync_seconds", "Write and fsync of one batch of the log",
                         {n: pm.fsync_seconds for n, pm in metrics.items()})
        yield _histogram("zraft_apply_seconds",
                         "Applying one batch of committed entries to the state machine",
                         {n: pm.apply_seconds for n, pm in metrics.items()})

    # ---------------------------------------------------------------- node-wide

    def _node(self) -> Iterator[Any]:
        node = self.node
        yield GaugeMetricFamily("zraft_peers", "Peers hosted by this node",
                                value=len(node.peers))
        yield GaugeMetricFamily("zraft_uptime_seconds", "Seconds since the node started",
                                value=time.time() - node.started_at)
        transport = node.transport
        if transport is not None:
            clients = sum(1 for c in transport.inbound_connections()
                          if getattr(c, "role", "client") != "node" and not c.closed)
            yield GaugeMetricFamily("zraft_client_connections", "Open client connections",
                                    value=clients)
        stats = node.snapshots.stats()
        fam = CounterMetricFamily("zraft_snapshot_transfers",
                                  "Snapshot transfers between nodes", labels=["event"])
        for key in ("sent", "send_failed", "received", "receive_failed"):
            fam.add_metric([key], stats.get(key, 0))
        yield fam
        stream = stats.get("stream") or {}
        if "sendfile_bytes" in stream:
            yield CounterMetricFamily("zraft_snapshot_transfer_bytes",
                                      "Snapshot bytes sent to other nodes",
                                      value=stream["sendfile_bytes"])
        refused = CounterMetricFamily("zraft_refused", "Requests and frames the node refused",
                                      labels=["reason"])
        for key, n in dict(node.counters).items():
            refused.add_metric([key], n)
        yield refused

    def _links(self) -> Iterator[Any]:
        transport = self.node.transport
        if transport is None:
            return
        status = transport.status()
        sent = CounterMetricFamily("zraft_link_sent_bytes", "Bytes sent to a peer node",
                                   labels=["link"])
        received = CounterMetricFamily("zraft_link_received_bytes",
                                       "Bytes received from a peer node", labels=["link"])
        up = GaugeMetricFamily("zraft_link_up", "1 if the link to a peer node is connected",
                               labels=["link"])
        for addr, link in sorted(status["links"].items()):
            sent.add_metric([addr], link.get("bytes_sent", 0))
            received.add_metric([addr], link.get("bytes_received", 0))
            up.add_metric([addr], 1.0 if link.get("connected") else 0.0)
        yield from (sent, received, up)


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPER_TIMEOUT_S  # applied to the socket: a silent client cannot hold a thread

    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape: no
        pass


class _BoundedServer(ThreadingWSGIServer):
    """prometheus_client's thread-per-connection server with at most MAX_SCRAPERS threads:
    a connection beyond that is closed unread (a flood costs refusals, never threads)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_SCRAPERS)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """The HTTP endpoint: bound in ``start`` (ConfigError if it cannot), stopped in
    ``stop`` (idempotent)."""

    def __init__(self, node: Any, addr: str) -> None:
        self.addr = addr
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host, _, port = self.addr.rpartition(":")
        try:
            family = socket.getaddrinfo(host.strip("[]"), int(port),
                                        type=socket.SOCK_STREAM)[0][0]
            server_class = type("MetricsHTTPServer", (_BoundedServer,),
                                {"address_family": family})
            httpd = make_server(host.strip("[]"), int(port), make_wsgi_app(self.registry),
                                server_class, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"node.metrics_addr {self.addr}: "
                              f"{exc.strerror or exc}") from None
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="zraft-metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics", self.addr)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
