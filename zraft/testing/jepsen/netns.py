"""Real addresses, real network faults: each node in its own Linux network namespace.

Rules:
- Needs root and iproute2. ``netns_unavailable()`` says why a run cannot happen here (not
  root, no ``ip``, ``ip netns add`` refused); callers skip with that message.
- Layout: one bridge ``zr<tag>b`` in the controller's namespace with address ``.254`` of a
  private /24 (10.X.Y.0/24, chosen at random), and per node a namespace ``zr<tag>-<k>`` with a
  veth pair (``zr<tag>h<k>`` on the bridge, ``zr<tag>n<k>`` inside, address ``.k``). Only that
  /24 is reachable: no forwarding, no NAT, nothing leaves the bridge. The controller (the
  clients, the nemesis) reaches the nodes through the bridge address.
- Nodes are started as ``ip netns exec <ns> python -m zraft.node`` (``ip`` execs python,
  so the pid is the node's) and listen on their own address; their snapshot listener too
  (node 1 binds it to 0.0.0.0, the others leave it at the default, the listen host: both
  must advertise an address the leader can dial).
- ``names=True``: every node also has a host name (``node<k>.zr<tag>.test``, RFC 2606's
  reserved TLD) and its peer ids use it (``zraft@node1.zr1a2b.test:7401``). Each namespace
  gets ``/etc/netns/<ns>/hosts`` mapping every node name to its address (``ip netns exec``
  mounts it over /etc/hosts), so the nodes resolve each other by name; the controller and
  its client processes resolve them through a ``names.NameMap`` installed while the
  cluster is up (the machine's /etc/hosts is never touched). Removed at ``stop``.
- ``extra_node_config``: more ``[node]`` keys for every node.
- ``tls=True`` (LocalCluster's): mutual TLS on every connection, with a throwaway CA whose
  node certificate names every node's address and host name; clients use
  ``tls_files()`` / ``client_tls()``.
- Faults: a link down (``ip link set zr<tag>n<k> down`` inside the node's namespace: the node
  is cut from everyone), a slow link (``tbf`` rate limit: queueing delay), and ``netem``
  delay/loss where the kernel has the netem qdisc (else the fault is reported unsupported,
  never silently skipped).
- A host that filters bridged traffic (``br_netfilter`` with bridge-nf-call-iptables = 1
  and the FORWARD policy DROP: what a running Docker daemon sets) would drop every packet
  between the nodes; then one rule accepts traffic from our bridge to our bridge
  (``iptables -I FORWARD -i zr<tag>b -o zr<tag>b -j ACCEPT``) while the cluster is up.
- ``NetnsCluster.stop`` stops the nodes, then deletes every namespace (which removes the
  veth pairs), the bridge and that rule, also after failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zraft
from zraft.cluster.local import LocalCluster, NodeProcess, wait_until
from zraft.errors import ZRaftError
from zraft.testing.jepsen.names import NameMap, hosts_file
from zraft.testing.jepsen.nemesis import FaultUnsupported, Nemesis

PACKAGE_ROOT = str(Path(zraft.__file__).resolve().parents[1])
NETNS_ETC = Path("/etc/netns")
NETNS_FAULT_KINDS = ("link_down_leader", "link_down_node", "link_down_minority", "slow_link",
                     "netem_delay", "netem_loss", "kill_leader")


class NetnsError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def tc(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return ip("netns", "exec", ns, "tc", *args, check=check)


def netns_unavailable() -> str | None:
    """None if namespaces can be made here, else the reason (for a skip message)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root to include the netns run)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    probe = f"zrprobe{secrets.token_hex(2)}"
    try:
        ip("netns", "add", probe)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` is not permitted here: {exc}"
    ip("netns", "del", probe, check=False)
    return None


def bridge_traffic_filtered() -> bool:
    """True if iptables' FORWARD chain sees bridged packets and drops them by default."""
    try:
        nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
    except OSError:
        return False  # br_netfilter not loaded: bridged packets never reach iptables
    if nf != "1" or shutil.which("iptables") is None:
        return False
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True,
                         timeout=20).stdout
    return "-P FORWARD DROP" in out.splitlines()


def netem_unsupported(ns: str, dev: str) -> str | None:
    proc = tc(ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms", check=False)
    if proc.returncode != 0:
        return f"tc netem unavailable in this kernel: {proc.stderr.strip()}"
    tc(ns, "qdisc", "del", "dev", dev, "root", check=False)
    return None


@dataclass
class NetnsNode(NodeProcess):
    host: str = ""  # its IP address
    namespace: str = ""
    inner_dev: str = ""
    outer_dev: str = ""
    name: str = ""  # its host name ("" = peer ids use the IP address)

    @property
    def address(self) -> str:
        return f"{self.name or self.host}:{self.port}"


class NetnsCluster(LocalCluster):
    """A LocalCluster whose nodes live in their own namespaces with their own addresses."""

    def __init__(self, directory: str | os.PathLike[str], nodes: int = 3, *,
                 names: bool = False, extra_node_config: dict[str, Any] | None = None,
                 **kw: Any) -> None:
        super().__init__(directory, nodes, **kw)
        self.tag = secrets.token_hex(2)
        a, b = random.randrange(64, 250), random.randrange(1, 250)
        self.subnet = f"10.{a}.{b}"
        self.bridge = f"zr{self.tag}b"
        self.extra_node_config = dict(extra_node_config or {})
        extra = dict(kw.get("extra_raft") or {})
        self.nodes = [
            NetnsNode(n.index, 7400 + n.index, n.directory,
                      extra_raft={**extra, **({"snapshot_listener_addr": "0.0.0.0"}
                                              if n.index == 1 else {})},
                      host=f"{self.subnet}.{n.index}", namespace=f"zr{self.tag}-{n.index}",
                      inner_dev=f"zr{self.tag}n{n.index}", outer_dev=f"zr{self.tag}h{n.index}",
                      name=f"node{n.index}.zr{self.tag}.test" if names else "")
            for n in self.nodes]
        self.network_up = False
        self.forward_rule: list[str] = []  # the iptables rule we added, if we had to
        self.resolver = NameMap(self.host_names)
        if self.tls:  # the node certificate must name every node's address and host name
            from zraft.cluster.certs import make_cluster_certs

            make_cluster_certs(self.tls_dir, [*(n.host for n in self.netns_nodes),
                                              *self.host_names])

    @property
    def host_names(self) -> dict[str, str]:
        """``{host name: IP}`` of every named node (empty without ``names``)."""
        return {n.name: n.host for n in self.netns_nodes if n.name}

    # -- network ------------------------------------------------------------------------

    def setup_network(self) -> None:
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            self.network_up = True
            ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            if bridge_traffic_filtered():
                rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
                subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True,
                               timeout=20)
                self.forward_rule = rule
            for n in self.netns_nodes:
                ip("netns", "add", n.namespace)
                ip("link", "add", n.outer_dev, "type", "veth", "peer", "name", n.inner_dev)
                ip("link", "set", n.inner_dev, "netns", n.namespace)
                ip("link", "set", n.outer_dev, "master", self.bridge, "up")
                ip("-n", n.namespace, "addr", "add", f"{n.host}/24", "dev", n.inner_dev)
                ip("-n", n.namespace, "link", "set", n.inner_dev, "up")
                ip("-n", n.namespace, "link", "set", "lo", "up")
                if self.host_names:
                    etc = NETNS_ETC / n.namespace
                    etc.mkdir(parents=True, exist_ok=True)
                    (etc / "hosts").write_text(hosts_file(self.host_names))
            self.resolver.install()
        except Exception:
            self.teardown_network()
            raise

    def teardown_network(self) -> None:
        self.resolver.uninstall()
        for n in self.netns_nodes:
            ip("netns", "del", n.namespace, check=False)
            shutil.rmtree(NETNS_ETC / n.namespace, ignore_errors=True)
        ip("link", "del", self.bridge, check=False)
        if self.forward_rule:
            subprocess.run(["iptables", "-D", *self.forward_rule], capture_output=True,
                           timeout=20)
            self.forward_rule = []
        with contextlib.suppress(OSError):  # only if empty: other users may keep theirs
            NETNS_ETC.rmdir()
        self.network_up = False

    @property
    def netns_nodes(self) -> list[NetnsNode]:
        return [n for n in self.nodes if isinstance(n, NetnsNode)]

    def link(self, node: NodeProcess | int | str, up: bool) -> None:
        n = self.node(node)
        assert isinstance(n, NetnsNode)
        ip("-n", n.namespace, "link", "set", n.inner_dev, "up" if up else "down")

    def shape(self, node: NodeProcess | int | str, *qdisc: str) -> None:
        n = self.node(node)
        assert isinstance(n, NetnsNode)
        tc(n.namespace, "qdisc", "replace", "dev", n.inner_dev, "root", *qdisc)

    def unshape(self, node: NodeProcess | int | str) -> None:
        n = self.node(node)
        assert isinstance(n, NetnsNode)
        tc(n.namespace, "qdisc", "del", "dev", n.inner_dev, "root", check=False)

    # -- processes ----------------------------------------------------------------------

    def write_config(self, n: NodeProcess) -> None:
        super().write_config(n)
        if self.extra_node_config:
            keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.extra_node_config.items())
            text = n.config_path.read_text()
            n.config_path.write_text(text.replace("[node]\n", "[node]\n" + keys, 1))

    def node_command(self, n: NodeProcess) -> list[str]:
        assert isinstance(n, NetnsNode)
        return ["ip", "netns", "exec", n.namespace, *super().node_command(n)]

    def wait_listening(self, n: NodeProcess, timeout: float = 20.0) -> None:
        assert isinstance(n, NetnsNode)

        def listening() -> bool:
            if not n.alive():
                raise ZRaftError(f"node {n.index} exited: see {n.directory / 'stdout.log'}")
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex((n.host, n.port)) == 0
        wait_until(listening, timeout, f"node {n.index} to listen on {n.address}")

    def start(self) -> NetnsCluster:
        if not self.network_up:
            self.setup_network()
        super().start()
        return self

    def stop(self) -> None:
        try:
            if self.network_up:
                for n in self.netns_nodes:  # a downed link must not slow the clean stop
                    ip("-n", n.namespace, "link", "set", n.inner_dev, "up", check=False)
            super().stop()
        finally:
            self.teardown_network()


class NetnsNemesis(Nemesis):
    """Network faults made with iproute2 inside the nodes' namespaces."""

    cluster: NetnsCluster

    def heal_all(self) -> None:
        for n in self.cluster.netns_nodes:
            ip("-n", n.namespace, "link", "set", n.inner_dev, "up", check=False)
            self.cluster.unshape(n)
        super().heal_all()

    def link_down(self, peers: list[str]) -> None:
        for p in peers:
            self.cluster.link(self.topo.node_of(p), up=False)
        self.note(f"link down {peers}")

    def fault_link_down_leader(self) -> str:
        leader = self.leader()
        self.link_down([leader])
        self.sleep(self.hold)
        return f"link down: leader {leader}"

    def fault_link_down_node(self) -> str:
        victim = self.rng.choice(self.topo.member_peers())
        self.link_down([victim])
        self.sleep(self.hold)
        return f"link down: {victim}"

    def fault_link_down_minority(self) -> str:
        members = self.topo.member_peers()
        minority = self.rng.sample(members, (len(members) - 1) // 2)
        self.link_down(minority)
        self.sleep(self.hold)
        return f"link down: minority {minority}"

    def fault_slow_link(self) -> str:
        victim = self.leader() if self.rng.random() < 0.5 else self.rng.choice(
            self.topo.member_peers())
        self.cluster.shape(self.topo.node_of(victim), "tbf", "rate", "256kbit", "burst",
                           "16kbit", "latency", "300ms")
        self.sleep(self.hold)
        return f"slow link (tbf 256kbit) on {victim}"

    def netem(self, what: str, *args: str) -> str:
        victim = self.rng.choice(self.topo.member_peers())
        node = self.topo.node_of(victim)
        assert isinstance(node, NetnsNode)
        reason = netem_unsupported(node.namespace, node.inner_dev)
        if reason is not None:
            raise FaultUnsupported(reason)
        self.cluster.shape(node, "netem", *args)
        self.sleep(self.hold)
        return f"{what} {' '.join(args)} on {victim}"

    def fault_netem_delay(self) -> str:
        return self.netem("netem_delay", "delay", "100ms", "50ms")

    def fault_netem_loss(self) -> str:
        return self.netem("netem_loss", "loss", "20%")


def netns_directory(base: Path) -> Path:
    return base / f"netns-{secrets.token_hex(3)}"


__all__ = ["NETNS_FAULT_KINDS", "NetnsCluster", "NetnsError", "NetnsNemesis", "NetnsNode",
           "netem_unsupported", "netns_unavailable"]
