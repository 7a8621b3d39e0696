"""Bring-up of the local cluster as an ordered list of small named steps (kind's Action model).

Each step reads and extends one shared context. When a step fails, the failure names it and
shows the tail of the log of the component that step started.
"""

from __future__ import annotations

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

from tenacity import RetryError, retry_if_result, Retrying, stop_after_delay, wait_fixed

from patternbench.cluster.local import configs, hostnet, pki
from patternbench.cluster.local.processes import Daemon
from patternbench.cluster.local.settings import LocalSettings
from patternbench.components import Binaries
from patternbench.errors import StepFailed, UsageError
from patternbench.images import ImageArchive


@dataclass
class Context:
    """What the steps share: settings, binaries, daemons started so far, images to load."""

    settings: LocalSettings
    binaries: Binaries
    images: list[ImageArchive] = field(default_factory=list)
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def daemon(self, name: str, argv: list[str]) -> Daemon:
        s = self.settings
        d = Daemon(name=name, argv=argv, log_path=s.log_dir / f"{name}.log", pid_path=s.pid_dir / f"{name}.pid")
        self.daemons[name] = d
        return d


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], None]
    component: str = ""  # whose log to show when the step fails


COMPONENT_ORDER = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
)


# ---- waiting -------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, daemon: Daemon | None = None) -> None:
    """Poll `check` with tenacity until it is true; fail early if the daemon behind it died."""

    def probe() -> bool:
        if daemon is not None and not daemon.running():
            raise StepFailed(daemon.name, f"{daemon.name} exited while waiting for {what}")
        try:
            return bool(check())
        except (OSError, ssl.SSLError, urllib.error.URLError, subprocess.SubprocessError):
            return False

    retryer = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), retry=retry_if_result(lambda ok: not ok))
    try:
        retryer(probe)
    except RetryError:
        raise StepFailed(daemon.name if daemon else what, f"timed out after {timeout_s:.0f}s waiting for {what}") from None


def https_ok(url: str, ctx: Context, client: str = "admin") -> bool:
    """GET an HTTPS health endpoint with the cluster CA and a client cert; True on 200."""
    pki_dir = ctx.settings.pki_dir
    tls = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
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
}


def preflight(ctx: Context) -> None:
    """Everything checkable before touching the host: root, tools, ports."""
    if os.geteuid() != 0:
        raise UsageError("the local provider must run as root (it starts a kubelet and containerd)")
    for tool, install in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise UsageError(f"missing prerequisite `{tool}`: run `make setup` or `{install}`")
    if not Path("/usr/lib/cni/bridge").exists():
        raise UsageError("missing CNI plugins in /usr/lib/cni: run `make setup` or `apt-get install containernetworking-plugins`")
    for component, port in ctx.settings.used_ports().items():
        if not port_free(port):
            raise UsageError(f"port {port} ({component}) is already taken; stop whatever listens there, or run `patternbench cluster down`")


def host_network(ctx: Context) -> None:
    s = ctx.settings
    hostnet.apply_sysctls(s.state_dir / "saved-sysctls.json")
    hostnet.create_bridge(s)
    hostnet.install_egress_guard(s)


def make_pki(ctx: Context) -> None:
    s = ctx.settings
    ca = pki.new_ca()
    ca.write(s.pki_dir, "ca")
    dns, ips = pki.apiserver_sans(s.apiserver_service_ip, s.node_ip, s.node_name)
    pki.issue(ca, "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True).write(s.pki_dir, "apiserver")
    pki.issue(ca, "kube-apiserver-kubelet-client", ("system:masters",), client=True).write(
        s.pki_dir, "apiserver-kubelet-client"
    )
    pki.issue(ca, s.node_name, dns_names=(s.node_name, "localhost"), ip_addresses=(s.node_ip, "127.0.0.1"), server=True).write(
        s.pki_dir, "kubelet"
    )
    private, public = pki.new_signing_key()
    (s.pki_dir / "sa.key").write_bytes(private)
    (s.pki_dir / "sa.key").chmod(0o600)
    (s.pki_dir / "sa.pub").write_bytes(public)
    clients = {
        "admin": ("kubernetes-admin", ("system:masters",)),
        "controller-manager": ("system:kube-controller-manager", ()),
        "scheduler": ("system:kube-scheduler", ()),
        "kubelet": (f"system:node:{s.node_name}", ("system:nodes",)),
        "kube-proxy": ("system:kube-proxy", ()),
    }
    for name, (user, groups) in clients.items():
        pair = pki.issue(ca, user, groups, client=True)
        if name == "admin":
            pair.write(s.pki_dir, "admin")
        configs.write_text(
            s.kubeconfig_dir / f"{name}.yaml",
            configs.kubeconfig(s.apiserver_url, ca.cert_pem, pair.cert_pem, pair.key_pem, user),
            mode=0o600,
        )


def start_etcd(ctx: Context) -> None:
    s = ctx.settings
    d = ctx.daemon("etcd", [str(ctx.binaries["etcd"]), *configs.etcd_args(s)])
    d.start()
    wait_until("etcd /health", lambda: http_ok(f"http://127.0.0.1:{s.etcd_client_port}/health"), 30, d)


def start_apiserver(ctx: Context) -> None:
    s = ctx.settings
    d = ctx.daemon("kube-apiserver", [str(ctx.binaries["kube-apiserver"]), *configs.apiserver_args(s)])
    d.start()
    wait_until("kube-apiserver /readyz", lambda: https_ok(f"{s.apiserver_url}/readyz", ctx), 90, d)


def start_control_plane(ctx: Context) -> None:
    s = ctx.settings
    cm = ctx.daemon("kube-controller-manager", [str(ctx.binaries["kube-controller-manager"]), *configs.controller_manager_args(s)])
    sched = ctx.daemon("kube-scheduler", [str(ctx.binaries["kube-scheduler"]), *configs.scheduler_args(s)])
    cm.start()
    sched.start()
    wait_until("kube-controller-manager /healthz", lambda: insecure_https_ok(f"https://127.0.0.1:{s.controller_manager_port}/healthz"), 60, cm)
    wait_until("kube-scheduler /healthz", lambda: insecure_https_ok(f"https://127.0.0.1:{s.scheduler_port}/healthz"), 60, sched)


def start_containerd(ctx: Context) -> None:
    s = ctx.settings
    configs.write_text(s.state_dir / "containerd.toml", configs.containerd_config(s))
    configs.write_text(s.cni_conf_dir / "10-patternbench.conflist", configs.cni_conflist(s))
    s.containerd_state.mkdir(parents=True, exist_ok=True)
    d = ctx.daemon("containerd", [shutil.which("containerd") or "containerd", *configs.containerd_args(s)])
    d.start()
    ctr = ["ctr", "--address", str(s.containerd_socket)]
    wait_until("containerd socket", lambda: subprocess.run([*ctr, "version"], capture_output=True, timeout=5).returncode == 0, 30, d)


def load_images(ctx: Context) -> None:
    import_images(ctx.settings, ctx.images)


def import_images(s: LocalSettings, images: list[ImageArchive]) -> None:
    """Import OCI archives into containerd's k8s.io namespace, where the CRI plugin looks."""
    for image in images:
        result = subprocess.run(
            ["ctr", "--address", str(s.containerd_socket), "-n", "k8s.io", "images", "import", "--no-unpack=false", str(image.path)],
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise StepFailed("load images", f"ctr images import {image.path}: {result.stderr.strip()[:300]}")


def start_kubelet(ctx: Context) -> None:
    s = ctx.settings
    configs.write_text(s.state_dir / "kubelet-config.yaml", configs.kubelet_config(s))
    configs.write_text(s.state_dir / "kubelet-resolv.conf", "")
    s.kubelet_root.mkdir(parents=True, exist_ok=True)
    s.pod_logs_dir.mkdir(parents=True, exist_ok=True)
    d = ctx.daemon("kubelet", [str(ctx.binaries["kubelet"]), *configs.kubelet_args(s)])
    d.start()

    def node_ready() -> bool:
        out = kubectl(ctx, "get", "node", s.node_name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}", timeout=5)
        return out.stdout.strip() == "True"

    wait_until(f"node {s.node_name} Ready", node_ready, 90, d)


def start_kube_proxy(ctx: Context) -> None:
    s = ctx.settings
    configs.write_text(s.state_dir / "kube-proxy-config.yaml", configs.kube_proxy_config(s))
    d = ctx.daemon("kube-proxy", [str(ctx.binaries["kube-proxy"]), *configs.kube_proxy_args(s)])
    d.start()
    wait_until("kube-proxy /healthz", lambda: http_ok(f"http://127.0.0.1:{s.proxy_healthz_port}/healthz"), 60, d)


def deploy_coredns(ctx: Context) -> None:
    import json

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
    Step("preflight", preflight),
    Step("host network", host_network),
    Step("pki", make_pki),
    Step("etcd", start_etcd, "etcd"),
    Step("kube-apiserver", start_apiserver, "kube-apiserver"),
    Step("controller-manager + scheduler", start_control_plane, "kube-controller-manager"),
    Step("containerd", start_containerd, "containerd"),
    Step("load images", load_images, "containerd"),
    Step("kubelet", start_kubelet, "kubelet"),
    Step("kube-proxy", start_kube_proxy, "kube-proxy"),
    Step("coredns", deploy_coredns, "kubelet"),
)
