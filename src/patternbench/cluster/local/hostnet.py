"""The host side of the local cluster: sysctls, the CNI bridge, routes, iptables, mounts.

Everything made here is either named with our prefix or lives under our directories, so
`cluster down` (and the sweep before `cluster up`) can remove exactly that and nothing else.
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path

from patternbench.cluster.local.settings import LocalSettings

# Chains on the host: ours carry our name; the host's edge kube-proxy makes KUBE-* chains it
# cannot be told to name otherwise, so those are ours only while our marker says we started it
# (LocalSettings.host_proxy_marker). CNI-* chains are never ours on the host (the CNI plugins
# run inside the nodes' network namespaces), so finding them means another cluster is here.
OUR_CHAIN_PREFIXES = ("PATTERNBENCH-",)
KUBE_PROXY_CHAIN_PREFIXES = ("KUBE-",)
FOREIGN_CLUSTER_CHAIN_PREFIXES = ("KUBE-", "CNI-")
OWNED_CHAIN_PREFIXES = OUR_CHAIN_PREFIXES + KUBE_PROXY_CHAIN_PREFIXES
EGRESS_CHAIN = "PATTERNBENCH-EGRESS"
INPUT_CHAIN = "PATTERNBENCH-INPUT"
# The tripwire (install_tripwire): kernel-log lines for NodePort connections no pod can have seen.
TRIPWIRE_CHAINS = {"POSTROUTING": "PATTERNBENCH-TRIPWIRE-OUT", "PREROUTING": "PATTERNBENCH-TRIPWIRE-IN"}
TRIPWIRE_PREFIX = "pb-tripwire"  # a LOG prefix holds at most 29 characters

# The host's own sysctls that a cluster changes; `down` puts back what was there. None: not
# set by us, but by a component we start (the edge kube-proxy sets route_localnet).
HOST_SYSCTLS: dict[str, str | None] = {
    # The nodes' bridge is a plain switch: frames between nodes do not pass the host's
    # iptables (each node filters and NATs in its own network namespace).
    "net/bridge/bridge-nf-call-iptables": "0",
    "net/bridge/bridge-nf-call-ip6tables": "0",
    "net/ipv4/conf/all/route_localnet": None,
    # The edge kube-proxy sets its conntrack timeouts on the host (established 24 h, close-wait
    # 1 h); `down` puts the host's own back.
    "net/netfilter/nf_conntrack_tcp_timeout_established": None,
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait": None,
}

# Inside each node's network namespace (these sysctls are per namespace).
NODE_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
    # When a node proxy hands its port over (SO_REUSEPORT) and closes its listener, the
    # connections still in that listener's accept queue move to its successor instead of
    # being reset (Linux 5.14+). Node proxies run in their node's network namespace.
    "net/ipv4/tcp_migrate_req": "1",
}


def run(cmd: list[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, input=input_text)


# ---- sysctls -------------------------------------------------------------------------


def apply_sysctls(saved_path: Path, wanted: dict[str, str | None] = HOST_SYSCTLS) -> None:
    """Set what the cluster needs on the host, remembering the host's values so `down` can put
    them back (an earlier crashed cluster's record is kept: its values are the host's)."""
    saved: dict[str, str] = {}
    if saved_path.exists():
        saved = json.loads(saved_path.read_text())
    for key, value in wanted.items():
        path = Path("/proc/sys") / key
        if not path.exists():
            continue
        saved.setdefault(key, path.read_text().strip())
        if value is not None:
            path.write_text(value)
    saved_path.parent.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps(saved))


def restore_sysctls(saved_path: Path) -> None:
    if not saved_path.exists():
        return
    for key, value in json.loads(saved_path.read_text()).items():
        try:
            (Path("/proc/sys") / key).write_text(value)
        except OSError:
            pass
    saved_path.unlink()


# ---- links and routes ----------------------------------------------------------------


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def create_nodes_bridge(s: LocalSettings) -> None:
    """The nodes' switch: a host bridge that owns the host's address on the node network.

    The service range goes onto the bridge: a Service address that no kube-proxy translated then goes nowhere instead of out of
    the machine's default route.
    """
    if not link_exists(s.nodes_bridge):
        run(["ip", "link", "add", s.nodes_bridge, "type", "bridge"])
    run(["ip", "addr", "replace", f"{s.host_ip}/{s.node_prefix_len}", "dev", s.nodes_bridge])
    run(["ip", "link", "set", s.nodes_bridge, "up"])
    run(["ip", "route", "replace", s.service_cidr, "dev", s.nodes_bridge, "src", s.host_ip])


# The single-node layout of earlier versions put its CNI bridge on the host: swept too.
LEGACY_HOST_BRIDGE = "pb-cni0"


def owned_links(s: LocalSettings) -> list[str]:
    """The nodes' bridge, the host ends of the nodes' veths, and any link enslaved to them."""
    result = run(["ip", "-j", "link", "show"], check=False)
    names = []
    ours = (s.nodes_bridge, LEGACY_HOST_BRIDGE)
    for link in json.loads(result.stdout or "[]"):
        name = link.get("ifname", "")
        if name in ours or link.get("master") in ours or name.startswith("pbv-"):
            names.append(name)
    return names


def delete_links(s: LocalSettings) -> None:
    for name in owned_links(s):
        run(["ip", "link", "del", name], check=False)


# ---- iptables ------------------------------------------------------------------------


def install_egress_guard(s: LocalSettings, netns: Path | None = None) -> None:
    """Nothing of the cluster's traffic leaves the machine.

    On the host: traffic that arrives from the nodes' bridge is never routed anywhere else.
    In a node: pods may talk to pods, to the nodes and (through a Service) to the API
    server, all on the node network; any other forwarded pod traffic is dropped.
    """
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    ipt = [*prefix, "iptables"]
    run([*ipt, "-N", EGRESS_CHAIN], check=False)
    run([*ipt, "-F", EGRESS_CHAIN])
    if netns is None:
        run([*ipt, "-A", EGRESS_CHAIN, "-i", s.nodes_bridge, "!", "-o", s.nodes_bridge, "-j", "DROP"])
    else:
        for allowed in (s.pod_cidr, s.node_network):
            run([*ipt, "-A", EGRESS_CHAIN, "-s", s.pod_cidr, "-d", allowed, "-j", "RETURN"])
        run([*ipt, "-A", EGRESS_CHAIN, "-s", s.pod_cidr, "-j", "DROP"])
    if run([*ipt, "-C", "FORWARD", "-j", EGRESS_CHAIN], check=False).returncode != 0:
        run([*ipt, "-I", "FORWARD", "1", "-j", EGRESS_CHAIN])


def install_input_guard(s: LocalSettings) -> None:
    """The host's own services, as the cluster and other machines reach them.

    From the nodes' bridge (nodes and pods): the API server and replies to the host's own
    connections, nothing else (a pod cannot reach the host's sshd, etcd's peer port or any
    service the host runs for itself). The bridge's host address (where the API server
    listens) answers no interface but the bridge and loopback, so another machine that routes
    that address here reaches nothing."""
    run(["iptables", "-N", INPUT_CHAIN], check=False)
    run(["iptables", "-F", INPUT_CHAIN])
    rules = [
        ["-i", s.nodes_bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-i", s.nodes_bridge, "-p", "tcp", "-d", s.host_ip, "--dport", str(s.apiserver_port), "-j", "RETURN"],
        ["-i", s.nodes_bridge, "-p", "icmp", "-j", "RETURN"],
        ["-i", s.nodes_bridge, "-j", "REJECT"],
        ["-d", s.host_ip, "!", "-i", "lo", "-j", "DROP"],
    ]
    for rule in rules:
        run(["iptables", "-A", INPUT_CHAIN, *rule])
    if run(["iptables", "-C", "INPUT", "-j", INPUT_CHAIN], check=False).returncode != 0:
        run(["iptables", "-I", "INPUT", "1", "-j", INPUT_CHAIN])


def install_tripwire(s: LocalSettings) -> None:
    """Log lines in the kernel log (prefix TRIPWIRE_PREFIX, rate-limited) for the host's
    NodePort connections that went wrong before any app could answer:
    - `nodnat`: a SYN to a NodePort on loopback that leaves by `lo` was not DNATed (it will be
      refused by the host itself, e.g. on a rejected connection's stale binding);
    - `podrst` / `podicmp`: a pod's reset or ICMP error for a NodePort connection that never
      completed its handshake (nothing listened where kube-proxy sent it).
    Its chains are owned (swept with the others)."""
    ports = f"{s.node_ports[0]}:{s.node_ports[1]}"
    limit = ["-m", "limit", "--limit", "50/second", "--limit-burst", "100"]
    ipt = ["iptables", "-t", "mangle"]
    out, inn = TRIPWIRE_CHAINS["POSTROUTING"], TRIPWIRE_CHAINS["PREROUTING"]
    for chain in (out, inn):
        run([*ipt, "-N", chain], check=False)
        run([*ipt, "-F", chain])
    run([*ipt, "-A", out, "-p", "tcp", "--syn", "-d", "127.0.0.0/8", "--dport", ports, *limit,
         "-j", "LOG", "--log-prefix", f"{TRIPWIRE_PREFIX} nodnat "])
    never_completed = ["-m", "conntrack", "--ctdir", "REPLY", "--ctorigdst", "127.0.0.0/8", "--ctorigdstport", ports, "!", "--ctstatus", "ASSURED"]
    run([*ipt, "-A", inn, "-p", "tcp", "--tcp-flags", "RST", "RST", *never_completed, *limit,
         "-j", "LOG", "--log-prefix", f"{TRIPWIRE_PREFIX} podrst "])
    run([*ipt, "-A", inn, "-p", "icmp", "-m", "conntrack", "--ctstate", "RELATED", "--ctorigdst", "127.0.0.0/8", "--ctorigdstport", ports, *limit,
         "-j", "LOG", "--log-prefix", f"{TRIPWIRE_PREFIX} podicmp "])
    hooks = {"POSTROUTING": ["-o", "lo", "-p", "tcp", "--syn", "-j", out], "PREROUTING": ["-i", s.nodes_bridge, "-j", inn]}
    for hook, spec in hooks.items():
        if run([*ipt, "-C", hook, *spec], check=False).returncode != 0:
            run([*ipt, "-A", hook, *spec])


_CHAIN_DECL = re.compile(r"^:(\S+) ")
_RULE = re.compile(r"^-A (\S+) (.*)$")


def strip_owned_chains(save_text: str, prefixes: tuple[str, ...] = OWNED_CHAIN_PREFIXES) -> tuple[str, int]:
    """Remove from `iptables-save` output every chain with an owned prefix and every rule in or
    jumping to one. Returns the new text (for iptables-restore) and how many lines went."""

    def owned(chain: str) -> bool:
        return chain.startswith(prefixes)

    kept, removed = [], 0
    for line in save_text.splitlines():
        decl = _CHAIN_DECL.match(line)
        rule = _RULE.match(line)
        if decl and owned(decl.group(1)):
            removed += 1
            continue
        if rule:
            chain, spec = rule.groups()
            target = re.search(r"(?:^|\s)-[jg] (\S+)", spec)
            if owned(chain) or (target and owned(target.group(1))):
                removed += 1
                continue
        kept.append(line)
    return "\n".join(kept) + "\n", removed


def owned_chains(save_text: str, prefixes: tuple[str, ...] = OWNED_CHAIN_PREFIXES) -> list[str]:
    return [m.group(1) for line in save_text.splitlines() if (m := _CHAIN_DECL.match(line)) and m.group(1).startswith(prefixes)]


def sweep_iptables(kube_proxy_ours: bool) -> int:
    """Remove our chains from every table, IPv4 and IPv6, and the KUBE-* chains only when our
    host kube-proxy made them (`kube_proxy_ours`); returns lines removed."""
    prefixes = OWNED_CHAIN_PREFIXES if kube_proxy_ours else OUR_CHAIN_PREFIXES
    total = 0
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        result = run([save], check=False)
        if result.returncode != 0:
            continue
        text, removed = strip_owned_chains(result.stdout, prefixes)
        if removed:
            run([restore], input_text=text)
            total += removed
    return total


def remaining_chains(prefixes: tuple[str, ...] = OWNED_CHAIN_PREFIXES) -> list[str]:
    """Chains with these prefixes in the host's IPv4 and IPv6 tables."""
    found = []
    for save in ("iptables-save", "ip6tables-save"):
        result = run([save], check=False)
        if result.returncode == 0:
            found += owned_chains(result.stdout, prefixes)
    return found


# ---- mounts --------------------------------------------------------------------------


def mounts_under(dirs: tuple[Path, ...], mountinfo: str | None = None) -> list[str]:
    """Mount points under any of `dirs`, deepest first (the order to unmount them)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    roots = [str(d).rstrip("/") for d in dirs]
    points = []
    for line in mountinfo.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        # mountinfo escapes spaces and the like as octal; decode them.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


_MNT_DETACH = 2


def unmount_all(dirs: tuple[Path, ...]) -> int:
    """Lazily unmount everything under `dirs`, repeating while mounts remain (stacked mounts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    total = 0
    for _ in range(5):
        points = mounts_under(dirs)
        if not points:
            break
        for point in points:
            if libc.umount2(point.encode(), _MNT_DETACH) == 0:
                total += 1
    return total
