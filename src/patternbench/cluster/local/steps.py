"""Bring-up of the local cluster as an ordered list of small named steps (kind's Action model).

Each step reads and extends one shared context. When a step fails, the failure names it and
shows the tail of the log of the component that step started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench import pki
from patternbench.build.components import Binaries
from patternbench.build.images import ImageArchive
from patternbench.cluster.local import configs, hostnet, nodens
from patternbench.cluster.local.processes import Daemon
from patternbench.cluster.local.settings import LocalSettings, MachineSize, NodeSettings
from patternbench.errors import StepFailed, UsageError


@dataclass
class Context:
    """What the steps share: settings, binaries, daemons started so far, images to load."""

    settings: LocalSettings
    binaries: Binaries
    images: list[ImageArchive] = field(default_factory=list)
    daemons: dict[str, Daemon] = field(default_factory=dict)
    machine: MachineSize = field(default_factory=MachineSize.here)
    mount_points: list[str] = field(default_factory=list)

    def daemon(self, name: str, argv: list[str], node: NodeSettings | None = None) -> Daemon:
        d = make_daemon(self.settings, name, argv, node)
        self.daemons[d.key] = d
        return d


def make_daemon(s: LocalSettings, name: str, argv: list[str], node: NodeSettings | None = None) -> Daemon:
    """A control-plane daemon on the host, or a node's daemon inside that node."""
    if node is None:
        return Daemon(name=name, argv=argv, log_path=s.log_dir / f"{name}.log", pid_path=s.pid_dir / f"{name}.pid")
    return Daemon(
        name=name, argv=argv, log_path=node.log_dir / f"{name}.log", pid_path=node.pid_dir / f"{name}.pid",
        enter=nodens.enter(s, node), node=node.name,
    )


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], None]
    component: str = ""  # whose log to show when the step fails (a daemon key)


# Host daemons: the control plane, and the edge kube-proxy that serves NodePorts on 127.0.0.1.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
HOST_COMPONENTS = (*CONTROL_PLANE, "kube-proxy")
# Each node's daemons, in start order.
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")


# ---- waiting -------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, daemon: Daemon | None = None) -> None:
    """Poll `check` with tenacity until it is true; fail early if the daemon behind it died."""

    def probe() -> bool:
        if daemon is not None and not daemon.running():
            raise StepFailed(daemon.key, f"{daemon.key} exited while waiting for {what}")
        try:
            return bool(check())
        except (OSError, ssl.SSLError, urllib.error.URLError, subprocess.SubprocessError):
            return False

    retryer = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), retry=retry_if_result(lambda ok: not ok))
    try:
        retryer(probe)
    except RetryError:
        raise StepFailed(daemon.key if daemon else what, f"timed out after {timeout_s:.0f}s waiting for {what}") from None


def https_ok(url: str, pki_dir: Path, client: str = "admin", ca: str = "ca") -> bool:
    """GET an HTTPS health endpoint with a CA and a client cert from `pki_dir`; True on 200."""
    tls = ssl.create_default_context(cafile=str(pki_dir / f"{ca}.crt"))
    tls.load_cert_chain(str(pki_dir / f"{client}.crt"), str(pki_dir / f"{client}.key"))
    tls.check_hostname = False
    with urllib.request.urlopen(url, context=tls, timeout=2) as resp:
        return resp.status == 200


def insecure_https_ok(url: str) -> bool:
    """Health of components with self-signed serving certs (controller-manager, scheduler)."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=tls, timeout=2) as resp:
        return resp.status == 200


def etcd_healthy(s: LocalSettings) -> bool:
    return https_ok(f"{s.etcd_url}/health", s.pki_dir, client="apiserver-etcd-client", ca="etcd-ca")


def apiserver_live(s: LocalSettings) -> bool:
    return https_ok(f"{s.apiserver_url}/livez", s.pki_dir)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def kubectl(ctx: Context, *args: str, input_text: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = [str(ctx.binaries["kubectl"]), f"--kubeconfig={ctx.settings.admin_kubeconfig}", f"--request-timeout={int(timeout)}s", *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=input_text, timeout=timeout + 5)


# ---- the steps -----------------------------------------------------------------------


HOST_TOOLS = {
    "containerd": "apt-get install containerd",
    "containerd-shim-runc-v2": "apt-get install containerd",
    "ctr": "apt-get install containerd",
    "runc": "apt-get install runc",
    "iptables": "apt-get install iptables",
    "iptables-save": "apt-get install iptables",
    "conntrack": "apt-get install conntrack",
    "ip": "apt-get install iproute2",
    "nsenter": "apt-get install util-linux",
    "unshare": "apt-get install util-linux",
    "mountpoint": "apt-get install util-linux",
}


def preflight(s: LocalSettings, owned: set[int]) -> None:
    """Everything checkable before touching the host (so before any sweep): root, tools, our
    ports free or held by our own processes (`owned`), and no other cluster's iptables chains."""
    if os.geteuid() != 0:
        raise UsageError("the local provider must run as root (it starts a kubelet and containerd)")
    for tool, install in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise UsageError(f"missing prerequisite `{tool}`: run `make setup` or `{install}`")
    if not Path("/usr/lib/cni/bridge").exists():
        raise UsageError("missing CNI plugins in /usr/lib/cni: run `make setup` or `apt-get install containernetworking-plugins`")
    for component, port in s.used_ports().items():
        found = listeners(port)
        holders = found - owned
        if holders or (not found and not port_free(port)):
            who = ", ".join(f"pid {pid} ({process_name(pid)})" for pid in sorted(holders)) or "another process"
            raise UsageError(f"port {port} ({component}) is already taken by {who}, not by this project's cluster; stop it first")
    if not s.host_proxy_marker.exists():
        foreign = hostnet.remaining_chains(hostnet.FOREIGN_CLUSTER_CHAIN_PREFIXES)
        if foreign:
            raise UsageError(
                f"the host's iptables has {len(foreign)} chains this project did not make ({', '.join(sorted(set(foreign))[:3])}, ...): "
                "another Kubernetes or CNI runs on this machine; the local provider leaves them alone and will not start beside them"
            )


def listeners(port: int) -> set[int]:
    """Pids listening on a TCP port in the host's network namespace."""
    return {c.pid for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}


def process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "gone"


def host_network(ctx: Context) -> None:
    s = ctx.settings
    hostnet.apply_sysctls(s.state_dir / "saved-sysctls.json")
    hostnet.create_nodes_bridge(s)
    hostnet.install_egress_guard(s)
    hostnet.install_input_guard(s)
    hostnet.install_tripwire(s)


def node_namespaces(ctx: Context) -> None:
    """Each node's network and mount namespaces and cgroup root."""
    s = ctx.settings
    for node in s.nodes:
        nodens.create_network(s, node)
        nodens.create_mount_namespace(s, node, ctx.mount_points)
        nodens.create_cgroup(node)
    record = s.mount_points_record
    known = json.loads(record.read_text()) if record.exists() else []
    record.write_text(json.dumps(sorted(set(known) | set(ctx.mount_points))))


def make_pki(ctx: Context) -> None:
    s = ctx.settings
    ca = pki.new_ca()
    ca.write(s.pki_dir, "ca")
    dns, ips = pki.apiserver_sans(s.apiserver_service_ip, s.host_ip, "pb-host")
    pki.issue(ca, "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True).write(s.pki_dir, "apiserver")
    pki.issue(ca, "kube-apiserver-kubelet-client", ("system:masters",), client=True).write(
        s.pki_dir, "apiserver-kubelet-client"
    )
    # etcd has its own CA: a certificate of the cluster CA (a kubelet's, say) does not open it.
    etcd_ca = pki.new_ca("patternbench-etcd-ca")
    etcd_ca.write(s.pki_dir, "etcd-ca")
    pki.issue(etcd_ca, "etcd-server", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True).write(s.pki_dir, "etcd-server")
    pki.issue(etcd_ca, "etcd-peer", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True, client=True).write(s.pki_dir, "etcd-peer")
    pki.issue(etcd_ca, "kube-apiserver-etcd-client", client=True).write(s.pki_dir, "apiserver-etcd-client")
    private, public = pki.new_signing_key()
    pki.write_with_mode(s.pki_dir / "sa.key", private, 0o600)
    pki.write_with_mode(s.pki_dir / "sa.pub", public, 0o644)
    # (kubeconfig file, user, groups, API server URL): nodes reach the API server on the
    # host's bridge address, host components on loopback.
    clients: list[tuple[str, str, tuple[str, ...], str]] = [
        ("admin", "kubernetes-admin", ("system:masters",), s.apiserver_url),
        ("controller-manager", "system:kube-controller-manager", (), s.apiserver_url),
        ("scheduler", "system:kube-scheduler", (), s.apiserver_url),
        ("kube-proxy", "system:kube-proxy", (), s.apiserver_url),
    ]
    for node in s.nodes:
        pki.issue(ca, node.name, dns_names=(node.name, "localhost"), ip_addresses=(node.ip, "127.0.0.1"), server=True).write(
            s.pki_dir, f"kubelet-{node.name}"
        )
        clients.append((f"kubelet-{node.name}", f"system:node:{node.name}", ("system:nodes",), s.apiserver_url))
    for name, user, groups, url in clients:
        pair = pki.issue(ca, user, groups, client=True)
        if name == "admin":
            pair.write(s.pki_dir, "admin")
        configs.write_text(
            s.kubeconfig_dir / f"{name}.yaml",
            configs.kubeconfig(url, ca.cert_pem, pair.cert_pem, pair.key_pem, user),
            mode=0o600,
        )


def start_etcd(ctx: Context) -> None:
    s = ctx.settings
    d = ctx.daemon("etcd", [str(ctx.binaries["etcd"]), *configs.etcd_args(s)])
    d.start()
    wait_until("etcd /health", lambda: etcd_healthy(s), 30, d)


def start_apiserver(ctx: Context) -> None:
    s = ctx.settings
    d = ctx.daemon("kube-apiserver", [str(ctx.binaries["kube-apiserver"]), *configs.apiserver_args(s)])
    d.start()
    wait_until("kube-apiserver /readyz", lambda: https_ok(f"{s.apiserver_url}/readyz", s.pki_dir), 90, d)


def start_control_plane(ctx: Context) -> None:
    s = ctx.settings
    cm = ctx.daemon("kube-controller-manager", [str(ctx.binaries["kube-controller-manager"]), *configs.controller_manager_args(s)])
    sched = ctx.daemon("kube-scheduler", [str(ctx.binaries["kube-scheduler"]), *configs.scheduler_args(s)])
    cm.start()
    sched.start()
    wait_until("kube-controller-manager /healthz", lambda: insecure_https_ok(f"https://127.0.0.1:{s.controller_manager_port}/healthz"), 60, cm)
    wait_until("kube-scheduler /healthz", lambda: insecure_https_ok(f"https://127.0.0.1:{s.scheduler_port}/healthz"), 60, sched)


# ---- the nodes' daemons (each started by a function of (ctx, node), so a repair can
# restart one node's daemon the same way bring-up started it) -------------------------------


def start_node_containerd(ctx: Context, node: NodeSettings) -> Daemon:
    s = ctx.settings
    configs.write_text(node.state_dir / "containerd.toml", configs.containerd_config(node))
    configs.write_text(node.cni_conf_dir / "10-patternbench.conflist", configs.cni_conflist(s, node))
    node.containerd_state.mkdir(parents=True, exist_ok=True)
    d = ctx.daemon("containerd", [shutil.which("containerd") or "containerd", *configs.containerd_args(node)], node)
    d.start()
    return d


def wait_containerd(node: NodeSettings, d: Daemon) -> None:
    ctr = ["ctr", "--address", str(node.containerd_socket)]
    wait_until(f"containerd of {node.name}", lambda: subprocess.run([*ctr, "version"], capture_output=True, timeout=5).returncode == 0, 30, d)


def start_node_kubelet(ctx: Context, node: NodeSettings) -> Daemon:
    s = ctx.settings
    configs.write_text(node.state_dir / "kubelet-config.yaml", configs.kubelet_config(s, node, ctx.machine))
    configs.write_text(s.state_dir / "kubelet-resolv.conf", "")
    d = ctx.daemon("kubelet", [str(ctx.binaries["kubelet"]), *configs.kubelet_args(s, node)], node)
    d.start()
    return d


def node_ready(ctx: Context, node: NodeSettings) -> bool:
    out = kubectl(ctx, "get", "node", node.name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}", timeout=5)
    return out.stdout.strip() == "True"


def start_node_kube_proxy(ctx: Context, node: NodeSettings) -> Daemon:
    s = ctx.settings
    path = node.state_dir / "kube-proxy-config.yaml"
    configs.write_text(path, configs.kube_proxy_config(s, node))
    d = ctx.daemon("kube-proxy", [str(ctx.binaries["kube-proxy"]), *configs.kube_proxy_args(path)], node)
    d.start()
    return d


NODE_STARTERS: dict[str, Callable[[Context, NodeSettings], Daemon]] = {
    "containerd": start_node_containerd,
    "kubelet": start_node_kubelet,
    "kube-proxy": start_node_kube_proxy,
}


def wait_node_component(ctx: Context, node: NodeSettings, name: str, d: Daemon) -> None:
    s = ctx.settings
    if name == "containerd":
        wait_containerd(node, d)
    elif name == "kubelet":
        # Its own health first: after a kubelet died, the API server says Ready for a while yet.
        wait_until(f"kubelet of {node.name} /healthz", lambda: http_ok(f"http://{node.ip}:{s.kubelet_healthz_port}/healthz"), 60, d)
        wait_until(f"node {node.name} Ready", lambda: node_ready(ctx, node), 120, d)
    elif name == "kube-proxy":
        wait_until(f"kube-proxy of {node.name} /healthz", lambda: http_ok(f"http://{node.ip}:{s.proxy_healthz_port}/healthz"), 60, d)


def start_containerd(ctx: Context) -> None:
    started = [(node, start_node_containerd(ctx, node)) for node in ctx.settings.nodes]
    for node, d in started:
        wait_containerd(node, d)


def load_images(ctx: Context) -> None:
    import_images(ctx.settings, ctx.images)


def import_images(s: LocalSettings, images: list[ImageArchive]) -> None:
    """Import OCI archives into every node's containerd, in the k8s.io namespace where the
    CRI plugin looks: a node has only the images it was given, as with `kind load`."""
    for node in s.nodes:
        for image in images:
            result = subprocess.run(
                ["ctr", "--address", str(node.containerd_socket), "-n", "k8s.io", "images", "import", "--no-unpack=false", str(image.path)],
                capture_output=True, text=True, timeout=120,
            )
            if result.returncode != 0:
                raise StepFailed("load images", f"ctr images import {image.path} on {node.name}: {result.stderr.strip()[:300]}")


def start_kubelets(ctx: Context) -> None:
    started = [(node, start_node_kubelet(ctx, node)) for node in ctx.settings.nodes]
    for node, d in started:
        wait_until(f"node {node.name} Ready", lambda node=node: node_ready(ctx, node), 120, d)


def start_kube_proxies(ctx: Context) -> None:
    s = ctx.settings
    started = [(node, start_node_kube_proxy(ctx, node)) for node in s.nodes]
    start_host_kube_proxy(ctx)
    for node, d in started:
        wait_node_component(ctx, node, "kube-proxy", d)


def start_host_kube_proxy(ctx: Context) -> None:
    """The host's edge kube-proxy: NodePorts on 127.0.0.1, Service addresses from the host."""
    s = ctx.settings
    path = s.state_dir / "kube-proxy-host-config.yaml"
    configs.write_text(path, configs.kube_proxy_config(s, None))
    s.host_proxy_marker.parent.mkdir(parents=True, exist_ok=True)
    s.host_proxy_marker.write_text("our host kube-proxy makes the KUBE-* chains in the host's tables\n")
    host = ctx.daemon("kube-proxy", [str(ctx.binaries["kube-proxy"]), *configs.kube_proxy_args(path)])
    host.start()
    wait_until("kube-proxy (host) /healthz", lambda: http_ok(f"http://127.0.0.1:{s.proxy_healthz_port}/healthz"), 60, host)


def deploy_coredns(ctx: Context) -> None:
    s = ctx.settings
    image = next((i.ref for i in ctx.images if "coredns" in i.ref), None)
    if image is None:
        raise StepFailed("coredns", "no CoreDNS image was built")
    manifest = "\n".join(json.dumps(obj) for obj in configs.coredns_manifests(s, image))
    result = kubectl(ctx, "apply", "-f", "-", input_text=manifest)
    if result.returncode != 0:
        raise StepFailed("coredns", result.stderr.strip()[:400])
    result = kubectl(ctx, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s", timeout=130)
    if result.returncode != 0:
        raise StepFailed("coredns", "CoreDNS did not become Ready: " + result.stderr.strip()[:300])


STEPS: tuple[Step, ...] = (
    Step("host network", host_network),
    Step("pki", make_pki),
    Step("etcd", start_etcd, "etcd"),
    Step("kube-apiserver", start_apiserver, "kube-apiserver"),
    Step("controller-manager + scheduler", start_control_plane, "kube-controller-manager"),
    Step("node namespaces", node_namespaces),
    Step("containerd", start_containerd, "containerd"),
    Step("load images", load_images, "containerd"),
    Step("kubelet", start_kubelets, "kubelet"),
    Step("kube-proxy", start_kube_proxies, "kube-proxy"),
    Step("coredns", deploy_coredns, "kubelet"),
)
