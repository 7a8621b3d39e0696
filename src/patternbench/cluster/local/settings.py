"""Addresses, directories and ports of the local cluster: one frozen record every step reads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LocalSettings:
    """Everything that names a place on the host. Keeping it in one record lets down/sweep
    find exactly what up created, and lets tests render configs without a cluster."""

    node_name: str = "patternbench-node"
    state_dir: Path = Path("/var/lib/patternbench/local")
    run_dir: Path = Path("/run/patternbench/local")
    log_dir: Path = Path("/var/log/patternbench/local")
    # The node's address is the CNI bridge's own address: pods reach it on layer 2, the host
    # owns it, and it is not the machine's outside address, so nothing is sent off the machine.
    bridge: str = "pb-cni0"
    cni_network: str = "patternbench"
    pod_cidr: str = "10.244.0.0/16"
    node_pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/16"
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

    @property
    def node_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.node_pod_cidr).hosts()))

    @property
    def apiserver_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 10)

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

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
    def containerd_root(self) -> Path:
        return self.state_dir / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

    @property
    def pod_logs_dir(self) -> Path:
        return self.state_dir / "pod-logs"

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
    def owned_dirs(self) -> tuple[Path, ...]:
        """Directories whose mounts and contents belong to this cluster alone."""
        return (self.state_dir, self.run_dir)

    def used_ports(self) -> dict[str, int]:
        return {
            "etcd": self.etcd_client_port,
            "etcd peer": self.etcd_peer_port,
            "kube-apiserver": self.apiserver_port,
            "kubelet": self.kubelet_port,
            "kubelet healthz": self.kubelet_healthz_port,
            "kube-proxy healthz": self.proxy_healthz_port,
            "kube-proxy metrics": self.proxy_metrics_port,
            "kube-controller-manager": self.controller_manager_port,
            "kube-scheduler": self.scheduler_port,
        }
