"""Addresses, directories and ports of the local cluster: one frozen record every step reads.

The control plane (etcd, API server, controller-manager, scheduler) runs once, on the host.
Each node is a network namespace and a mount namespace of its own, with its own containerd,
kubelet, kube-proxy, CNI bridge, pod CIDR, node IP and cgroup root. The nodes sit on one
host bridge (`pb-nodes`), as the machines of a rack sit on one switch.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from patternbench.errors import UsageError

# What one local node needs of the machine (kubelet, containerd, kube-proxy, its share of
# pods): the limit on --nodes that `cluster up` checks before it touches anything.
NODE_CPU_M = 250
NODE_MEMORY_MIB = 1024
MAX_NODES_BY_ADDRESS = 200  # /24 pod ranges and node IPs .11 - .210 of the node network

# Paths a node agent or the kubelet sees on "its" node. They are the same paths on every node
# (a DaemonSet's hostPath is one string), so each node's mount namespace binds its own
# directory onto them; on the host they are only empty mount points.
NODE_VIEW = {
    "/var/lib/kubelet": "kubelet",  # also where the device-plugin socket goes, whatever --root-dir says
    "/var/log/pods": "pod-logs",
    "/var/log/containers": "container-logs",  # the kubelet's symlinks, hard-coded there
    "/var/lib/patternbench-agents": "agent-state",
    "/var/lib/cni": "cni-cache",  # the CNI result cache of containerd's CRI plugin
}
POD_LOGS_DIR = "/var/log/pods"
AGENT_STATE_DIR = "/var/lib/patternbench-agents"


@dataclass(frozen=True)
class NodeSettings:
    """One node: its names, addresses and directories (host side)."""

    name: str
    index: int  # 1-based
    ip: str
    pod_cidr: str
    state_dir: Path
    run_dir: Path
    log_dir: Path
    bridge: str = "pb-cni0"  # inside the node's network namespace: every node has its own
    load: bool = False  # set aside for the in-cluster load: labelled and tainted (load/placement.py)

    @property
    def netns(self) -> str:
        return self.name

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def host_veth(self) -> str:
        return f"pbv-{self.index}"

    @property
    def gateway(self) -> str:
        """The CNI bridge's own address: the pods' default gateway."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def containerd_root(self) -> Path:
        return self.state_dir / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.state_dir / "cni" / "ipam"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def view_dir(self) -> Path:
        """The host-side directories that this node's mount namespace binds onto NODE_VIEW."""
        return self.state_dir / "view"

    def view_binds(self) -> list[tuple[Path, Path]]:
        """(source on the host, target path as the node sees it)."""
        return [(self.view_dir / sub, Path(target)) for target, sub in NODE_VIEW.items()]

    def host_path(self, node_path: str) -> Path:
        """Where a path of NODE_VIEW on this node really is on the host."""
        for target, sub in NODE_VIEW.items():
            if node_path == target or node_path.startswith(target + "/"):
                return self.view_dir / sub / node_path[len(target):].lstrip("/")
        raise ValueError(f"{node_path} is not a per-node path")

    @property
    def cgroup_parent(self) -> str:
        """The kubelet's cgroupRoot: every node's pods under a cgroup of their own."""
        return f"/patternbench/{self.name}"


@dataclass(frozen=True)
class LocalSettings:
    """Everything that names a place on the host. Keeping it in one record lets down/sweep
    find exactly what up created, and lets tests render configs without a cluster."""

    node_count: int = 3  # the apps' nodes
    load_node_count: int = 0  # after them, nodes for the in-cluster load only
    node_prefix: str = "pb-node"
    state_dir: Path = Path("/var/lib/patternbench/local")
    run_dir: Path = Path("/run/patternbench/local")
    log_dir: Path = Path("/var/log/patternbench/local")
    # The nodes' network: a host bridge that owns the first address; nodes get .11, .12, ...
    # A private range that only exists on this machine: nothing is routed off it.
    nodes_bridge: str = "pb-nodes"
    node_network: str = "10.250.0.0/24"
    cni_network: str = "patternbench"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    node_ports: tuple[int, int] = (30000, 32767)  # upstream's default NodePort range
    cluster_domain: str = "cluster.local"
    etcd_client_port: int = 12379
    etcd_peer_port: int = 12380
    apiserver_port: int = 6443
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    proxy_healthz_port: int = 10256
    proxy_metrics_port: int = 10249
    controller_manager_port: int = 10257
    scheduler_port: int = 10259
    extra: dict[str, str] = field(default_factory=dict)

    # ---- the nodes -------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[NodeSettings, ...]:
        net = ipaddress.ip_network(self.node_network)
        pods = ipaddress.ip_network(self.pod_cidr)
        out = []
        for i in range(1, self.node_count + self.load_node_count + 1):
            name = f"{self.node_prefix}-{i}"
            out.append(NodeSettings(
                name=name,
                index=i,
                ip=str(net.network_address + 10 + i),
                pod_cidr=str(list(pods.subnets(new_prefix=24))[i]),
                state_dir=self.state_dir / "nodes" / name,
                run_dir=self.run_dir / "nodes" / name,
                log_dir=self.log_dir / name,
                load=i > self.node_count,
            ))
        return tuple(out)

    def node(self, name: str) -> NodeSettings:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UsageError(f"no local node named {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    @property
    def host_ip(self) -> str:
        """The host's address on the nodes' bridge: where nodes reach the API server."""
        return str(ipaddress.ip_network(self.node_network).network_address + 1)

    @property
    def node_prefix_len(self) -> int:
        return ipaddress.ip_network(self.node_network).prefixlen

    # ---- the control plane -----------------------------------------------------------

    @property
    def apiserver_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 10)

    @property
    def apiserver_url(self) -> str:
        """The API server listens on the host's bridge address only: the nodes reach it from
        their network namespaces, host components and the harness on the same address."""
        return f"https://{self.host_ip}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"https://127.0.0.1:{self.etcd_client_port}"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig_dir(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig_dir / "admin.yaml"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def host_proxy_marker(self) -> Path:
        """Written before our host kube-proxy first starts: the host's KUBE-* chains are ours to
        sweep only while it exists (it goes with run_dir, after the sweep)."""
        return self.run_dir / "host-kube-proxy"

    @property
    def mount_ns_dir(self) -> Path:
        """Holds the files on which each node's mount and UTS namespaces are kept (a private mount)."""
        return self.run_dir / "mntns"

    def mount_ns_file(self, node: NodeSettings) -> Path:
        return self.mount_ns_dir / f"{node.name}.mnt"

    def uts_ns_file(self, node: NodeSettings) -> Path:
        return self.mount_ns_dir / f"{node.name}.uts"

    @property
    def mount_points_record(self) -> Path:
        """The host mount points `up` made for the nodes' views (removed again by `down`)."""
        return self.state_dir / "mount-points.json"

    @property
    def owned_dirs(self) -> tuple[Path, ...]:
        """Directories whose mounts and contents belong to this cluster alone."""
        return (self.state_dir, self.run_dir)

    def used_ports(self) -> dict[str, int]:
        """Ports taken on the host (each node's ports are in its own network namespace)."""
        return {
            "etcd": self.etcd_client_port,
            "etcd peer": self.etcd_peer_port,
            "kube-apiserver": self.apiserver_port,
            "kube-proxy healthz": self.proxy_healthz_port,
            "kube-proxy metrics": self.proxy_metrics_port,
            "kube-controller-manager": self.controller_manager_port,
            "kube-scheduler": self.scheduler_port,
        }


@dataclass(frozen=True)
class MachineSize:
    cpus: int
    memory_mib: int

    @classmethod
    def here(cls) -> MachineSize:
        mem_kib = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        return cls(cpus=os.cpu_count() or 1, memory_mib=mem_kib // 1024)

    def max_nodes(self) -> int:
        return max(1, min(MAX_NODES_BY_ADDRESS, self.cpus * 1000 // NODE_CPU_M, self.memory_mib // NODE_MEMORY_MIB))


def parse_load_node_count(raw: object, nodes: int, machine: MachineSize | None = None) -> int:
    """--load-nodes: 0 or more, and together with the apps' nodes what this machine holds."""
    try:
        count = int(str(raw).strip())
    except ValueError:
        raise UsageError(f"--load-nodes {raw!r}: give a whole number of load nodes (0 or more)") from None
    if count < 0:
        raise UsageError(f"--load-nodes {count}: cannot be negative")
    machine = machine or MachineSize.here()
    if nodes + count > machine.max_nodes():
        raise UsageError(f"--nodes {nodes} with --load-nodes {count}: this machine holds at most {machine.max_nodes()} local nodes in all")
    return count


def parse_node_count(raw: object, machine: MachineSize | None = None, local: bool = True) -> int:
    """--nodes: a whole number from 1 (for local nodes: to what this machine can hold); a
    one-line UsageError otherwise."""
    try:
        count = int(str(raw).strip())
    except ValueError:
        raise UsageError(f"--nodes {raw!r}: give a whole number of nodes (1 or more)") from None
    if count < 1:
        raise UsageError(f"--nodes {count}: a cluster needs at least 1 node")
    if not local:
        return count
    machine = machine or MachineSize.here()
    limit = machine.max_nodes()
    if count > limit:
        raise UsageError(
            f"--nodes {count}: this machine ({machine.cpus} cores, {machine.memory_mib // 1024} GiB) holds at most {limit} local "
            f"nodes (each needs {NODE_CPU_M}m CPU and {NODE_MEMORY_MIB} MiB for its kubelet, containerd, kube-proxy and pods)"
        )
    return count
