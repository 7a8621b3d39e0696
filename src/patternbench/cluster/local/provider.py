"""The `local` provider: a real multi-node Kubernetes whose components are host processes.

The control plane runs once on the host; each node is a pair of namespaces (network and
mount) with its own containerd, kubelet and kube-proxy. Like upstream's
hack/local-up-cluster.sh, but every binary is built from Go modules, every image from
static binaries, and down removes all that up made.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from patternbench.build.components import COREDNS_VERSION, Binaries, BuildCache, resolve_binaries
from patternbench.build.images import ImageArchive, ImageSpec, build_go_binaries, write_oci_archive
from patternbench.cluster.local import faults as local_faults
from patternbench.cluster.local import hostnet, nodens, steps
from patternbench.cluster.local.processes import Daemon, all_processes, descendants, kill_all, matching, read_proc
from patternbench.cluster.local.settings import AGENT_STATE_DIR, POD_LOGS_DIR, LocalSettings, NodeSettings, parse_node_count
from patternbench.cluster.provider import Capabilities, ContainerRef, NodeInfo, nodes_from_api
from patternbench.errors import StepFailed, UsageError
from patternbench.progress import Progress

PAUSE_VERSION = "3.10.1"
# Steps that act once per node (their progress line says how many).
NODE_STEPS = ("node namespaces", "containerd", "load images", "kubelet", "kube-proxy")


@dataclass
class Leftovers:
    """What of a cluster is still on the host; all empty after a clean `down`."""

    processes: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.processes, self.mounts, self.links, self.netns, self.chains, self.cgroups, self.dirs))


@dataclass(frozen=True)
class ComponentStatus:
    key: str  # "etcd", "pb-node-1/kubelet"
    pid: int | None
    healthy: bool


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    api_ready: bool | None  # the API server's Ready condition; None if it could not be read
    daemons_healthy: bool
    load: bool = False  # set aside for the in-cluster load

    @property
    def ready(self) -> bool:
        return bool(self.api_ready) and self.daemons_healthy


class LocalProvider:
    """ClusterProvider for a multi-node cluster of host processes on one machine."""

    name = "local"
    capabilities = Capabilities(
        multi_node=True, can_load_images=True, needs_registry=False, creates_cluster=True, runs_here=True
    )
    # Every fault, with real signals to real processes (FaultInjector).
    fault_mechanisms = frozenset({"kill", "freeze", "stop-apiserver"})

    def __init__(
        self,
        settings: LocalSettings | None = None,
        bin_dir: Path | None = None,
        progress: Progress | None = None,
        keep_on_failure: bool = False,
        nodes: int | None = None,
        load_nodes: int | None = None,
        min_load_nodes: int = 0,
    ) -> None:
        base = settings or LocalSettings()
        # `up` builds the nodes asked for; every other command acts on the cluster that is there.
        self.requested_nodes = nodes or base.node_count
        recorded = self._recorded_nodes(base)
        # Load nodes: as many as asked; if not asked, what the cluster has, but at least
        # `min_load_nodes` (1 when the run's load comes from the cluster).
        have = recorded[1] if recorded else base.load_node_count
        self.requested_load_nodes = load_nodes if load_nodes is not None else max(have, min_load_nodes)
        self.settings = replace(base, node_count=recorded[0], load_node_count=recorded[1]) if recorded else \
            replace(base, node_count=self.requested_nodes, load_node_count=self.requested_load_nodes)
        self.bin_dir = bin_dir
        self.progress = progress or Progress()
        self.keep_on_failure = keep_on_failure
        self.cache = BuildCache(progress=self.progress)

    # ---- set-up (builds) -------------------------------------------------------------

    def binaries(self, build: bool = True) -> Binaries:
        return resolve_binaries(self.cache, self.bin_dir, build=build)

    def system_images(self, binaries: Binaries) -> list[ImageArchive]:
        """pause and CoreDNS as OCI archives; rebuilt only when their binary changed."""
        out = self.cache.root / "images"
        pause_bin = build_go_binaries(("pause",), PAUSE_VERSION, out / "bin")["pause"]
        specs = [
            ImageSpec("patternbench.local/pause", PAUSE_VERSION, pause_bin, ("/pause",)),
            ImageSpec("patternbench.local/coredns", COREDNS_VERSION, binaries["coredns"], ("/coredns",), user="0:0"),
        ]
        archives = []
        for spec in specs:
            path = out / f"{spec.repository.rsplit('/', 1)[-1]}-{spec.tag}.tar"
            meta = path.with_suffix(".json")
            if path.exists() and meta.exists() and path.stat().st_mtime >= spec.binary.stat().st_mtime:
                recorded = json.loads(meta.read_text())
                archives.append(ImageArchive(spec.ref, path, recorded["digest"], recorded["size_bytes"]))
                continue
            archive = write_oci_archive(spec, path)
            meta.write_text(json.dumps({"digest": archive.digest, "size_bytes": archive.size_bytes}))
            archives.append(archive)
        return archives

    def setup(self) -> tuple[Binaries, list[ImageArchive]]:
        binaries = self.binaries(build=True)
        with self.progress.step("system images (pause, coredns)"):
            images = self.system_images(binaries)
        return binaries, images

    # ---- ClusterProvider -------------------------------------------------------------

    @staticmethod
    def _recorded_nodes(s: LocalSettings) -> tuple[int, int] | None:
        """(apps' nodes, load nodes) of the cluster that is up, as `up` recorded them."""
        try:
            apps, _, load = (s.run_dir / "node-count").read_text().strip().partition("+")
            return int(apps), int(load or 0)
        except (OSError, ValueError):
            return None

    @property
    def shape(self) -> str:
        s = self.settings
        return f"{s.node_count} nodes" + (f" + {s.load_node_count} for load" if s.load_node_count else "")

    def create(self) -> None:
        # Before any build, sweep or stop: a one-line refusal leaves the host as it was.
        steps.preflight(self.settings, self.owned_processes())
        binaries, images = self.setup()
        asked = (self.requested_nodes, self.requested_load_nodes)
        if (self.settings.node_count, self.settings.load_node_count) != asked:
            self.progress.say(f" the cluster has {self.shape}, {asked[0]} + {asked[1]} for load asked for: rebuilding it")
            with self.progress.step("take the old cluster down"):
                self.teardown()
            self.settings = replace(self.settings, node_count=asked[0], load_node_count=asked[1])
        if self.is_up():
            self.progress.say(f" cluster already up ({self.shape}): kubeconfig {self.kubeconfig()}")
            return
        if self.repair(binaries, images):
            return
        with self.progress.step("sweep leftovers of an earlier cluster"):
            self.teardown()
        s = self.settings
        # The last cluster's logs are kept beside the new ones (evidence for its last run).
        previous = s.log_dir.with_name(s.log_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if s.log_dir.exists():
            s.log_dir.rename(previous)
        for d in (s.state_dir, s.run_dir, s.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        (s.run_dir / "node-count").write_text(f"{s.node_count}+{s.load_node_count}")
        ctx = steps.Context(settings=s, binaries=binaries, images=images)
        for step in steps.STEPS:
            label = f"{step.name} ({self.shape})" if step.name in NODE_STEPS else step.name
            try:
                with self.progress.step(label):
                    step.run(ctx)
            except BaseException as exc:  # noqa: BLE001 - every failure (and Ctrl-C) names its step and cleans up
                self._fail(step, ctx, exc)
        (s.run_dir / "up").write_text(str(time.time()))

    def repair(self, binaries: Binaries, images: list[ImageArchive]) -> bool:
        """Restart the daemons a running cluster lost (a killed kubelet, containerd or
        kube-proxy) in place, leaving its pods be. False when the cluster is beyond that (no
        cluster, a control-plane daemon gone, a node's namespaces gone)."""
        s = self.settings
        if not (s.run_dir / "up").exists():
            return False
        running = {d.key for d in self.daemons() if d.running()}
        if not all(name in running for name in steps.CONTROL_PLANE):
            return False
        if not all(nodens.netns_exists(n) and nodens.is_mountpoint(s.mount_ns_file(n)) for n in s.nodes):
            return False
        ctx = steps.Context(settings=s, binaries=binaries, images=images)
        try:
            for node in s.nodes:
                for name in steps.NODE_COMPONENTS:
                    if f"{node.name}/{name}" in running:
                        continue
                    with self.progress.step(f"repair {node.name}: restart its {name}"):
                        daemon = steps.NODE_STARTERS[name](ctx, node)
                        steps.wait_node_component(ctx, node, name, daemon)
            if "kube-proxy" not in running:
                with self.progress.step("repair: restart the host's kube-proxy"):
                    steps.start_host_kube_proxy(ctx)
        except StepFailed as exc:
            self.progress.say(f" repair failed ({exc.reason}): rebuilding the cluster")
            return False
        return self.is_up()

    def _fail(self, step: steps.Step, ctx: steps.Context, exc: BaseException) -> None:
        s = self.settings
        if isinstance(exc, KeyboardInterrupt):
            if not self.keep_on_failure:
                self.progress.say(" interrupted: tearing the half-made cluster down")
                self.teardown()
            raise exc
        # The daemon that failed, if the failure names one; else the step's first of its kind.
        failed = ctx.daemons.get(exc.step) if isinstance(exc, StepFailed) else None
        daemon = failed or next((d for d in ctx.daemons.values() if d.name == step.component), None)
        tail = daemon.log_tail() if daemon else ""
        reason = exc.reason if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
        if tail and daemon:
            self.progress.say(f"--- last lines of {daemon.log_path} ---\n{tail}\n---")
        if self.keep_on_failure:
            hint = f"cluster kept (--keep); logs in {s.log_dir}; remove it with `patternbench cluster down`"
        else:
            self.teardown()
            hint = f"cluster torn down; logs kept in {s.log_dir}"
        raise StepFailed(step.name, reason, hint) from exc

    def delete(self) -> None:
        self.teardown()

    def resize(self, nodes: int) -> None:
        """Resizes: the cluster rebuilt with `nodes` nodes (its pods and images gone, as on a
        new cluster), back when this returns."""
        self.requested_nodes = parse_node_count(nodes)
        self.create()

    def kubeconfig(self) -> Path:
        return self.settings.admin_kubeconfig

    def load_images(self, archives: list[ImageArchive]) -> None:
        if not self.is_up():
            raise UsageError("the local cluster is not up: run `patternbench cluster up`")
        steps.import_images(self.settings, archives)

    def nodes(self) -> list[NodeInfo]:
        return nodes_from_api(self.kubeconfig())

    def node_paths(self) -> tuple[str, str]:
        """Where the kubelet writes pod logs, and where node agents may keep state: the same
        paths as on a real node, each node's own directory bound there."""
        return POD_LOGS_DIR, AGENT_STATE_DIR

    def entry_host(self) -> str:
        """NodePorts answer on the host's loopback (the host's edge kube-proxy)."""
        return "127.0.0.1"

    def evidence_logs(self) -> dict[str, Path]:
        """The control plane's logs, the kube-proxies' (the host's edge proxy, whose rules every
        probe passes, and each node's), and each kubelet's (probe results, volume mounts,
        status updates): sliced per case."""
        s = self.settings
        # The control plane too: an API-server outage's aftermath (authorizer, controllers).
        logs = {name: s.log_dir / f"{name}.log" for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
        logs["kube-proxy-host"] = s.log_dir / "kube-proxy.log"
        for node in s.nodes:
            logs[f"kube-proxy-{node.name}"] = node.log_dir / "kube-proxy.log"
            logs[f"kubelet-{node.name}"] = node.log_dir / "kubelet.log"
        return logs

    def tripwire_prefix(self) -> str:
        """hostnet.install_tripwire's lines (set up with the host's network at `cluster up`)."""
        return hostnet.TRIPWIRE_PREFIX

    def evidence_metrics(self) -> dict[str, str]:
        """The host's edge kube-proxy, whose rules every probe passes: its sync and
        programming-latency metrics."""
        return {"kube-proxy-host": f"http://127.0.0.1:{self.settings.proxy_metrics_port}/metrics"}

    def container_cgroups(self) -> Path:
        """Every node's kubelet puts its pods under /patternbench/<node> (cgroupfs, v1)."""
        return Path("/sys/fs/cgroup/cpu") / self.settings.nodes[0].cgroup_parent.strip("/").split("/")[0]

    # ---- faults (FaultInjector) ------------------------------------------------------

    def kill_container(self, target: ContainerRef) -> None:
        local_faults.kill_container(self.settings, target)

    def freeze_container(self, target: ContainerRef) -> Callable[[], None]:
        return local_faults.freeze_container(self.settings, target)

    def stop_apiserver(self) -> Callable[[], None]:
        daemon = next((d for d in self.daemons() if d.key == "kube-apiserver"), None)
        if daemon is None:
            raise UsageError("the local cluster is not up: run `patternbench cluster up`")
        binaries = self.binaries(build=False)

        def restart() -> None:
            steps.start_apiserver(steps.Context(settings=self.settings, binaries=binaries))

        return local_faults.stop_apiserver(self.settings, daemon, restart)

    # ---- state -----------------------------------------------------------------------

    def daemons(self) -> list[Daemon]:
        """The daemons recorded by pid files: the host's first, then each node's."""
        found = [self._daemon_from_pidfile(name, None) for name in steps.HOST_COMPONENTS]
        for node in self.settings.nodes:
            found += [self._daemon_from_pidfile(name, node) for name in steps.NODE_COMPONENTS]
        return [d for d in found if d.pid_path.exists()]

    def _daemon_from_pidfile(self, name: str, node: NodeSettings | None) -> Daemon:
        daemon = steps.make_daemon(self.settings, name, ["?"], node)
        pid = daemon.pid()  # only our process: the pid with the start time recorded
        info = read_proc(pid) if pid is not None else None
        return steps.make_daemon(self.settings, name, list(info.cmdline) if info else ["?"], node)

    def expected_daemons(self) -> list[str]:
        nodes = self.settings.nodes
        return [*steps.HOST_COMPONENTS, *(f"{n.name}/{c}" for n in nodes for c in steps.NODE_COMPONENTS)]

    def is_up(self) -> bool:
        if not (self.settings.run_dir / "up").exists():
            return False
        running = {d.key for d in self.daemons() if d.running()}
        if not set(self.expected_daemons()) <= running:
            return False
        try:  # running is not enough: an API server stuck in its shutdown serves nothing
            return steps.apiserver_live(self.settings)
        except Exception:  # noqa: BLE001 - any failure of the probe means not up
            return False

    def status(self) -> list[ComponentStatus]:
        """Each daemon: its pid and whether its health endpoint answers."""
        s = self.settings
        checks = {
            "etcd": lambda: steps.etcd_healthy(s),
            "kube-apiserver": lambda: steps.apiserver_live(s),
            "kube-controller-manager": lambda: steps.insecure_https_ok(f"https://127.0.0.1:{s.controller_manager_port}/healthz"),
            "kube-scheduler": lambda: steps.insecure_https_ok(f"https://127.0.0.1:{s.scheduler_port}/healthz"),
            "kube-proxy": lambda: steps.http_ok(f"http://127.0.0.1:{s.proxy_healthz_port}/healthz"),
        }
        for node in s.nodes:
            checks[f"{node.name}/kubelet"] = lambda node=node: steps.http_ok(f"http://{node.ip}:{s.kubelet_healthz_port}/healthz")
            checks[f"{node.name}/kube-proxy"] = lambda node=node: steps.http_ok(f"http://{node.ip}:{s.proxy_healthz_port}/healthz")
        recorded = {d.key: d for d in self.daemons()}
        rows = []
        for key in self.expected_daemons():
            daemon = recorded.get(key)
            pid = daemon.pid() if daemon else None
            healthy = False
            if pid is not None:
                check = checks.get(key)
                try:
                    healthy = check() if check else True
                except Exception:  # noqa: BLE001 - any failure of a health probe means unhealthy
                    healthy = False
            rows.append(ComponentStatus(key, pid, healthy))
        return rows

    def node_status(self, components: list[ComponentStatus]) -> list[NodeStatus]:
        """Each node: the API server's Ready condition and the health of its own daemons (a
        killed kubelet shows at once, before the API server notices it 40 s later)."""
        healthy = {c.key: c.healthy for c in components}
        try:
            api: dict[str, bool] = {n.name: n.ready for n in self.nodes()}
        except Exception:  # noqa: BLE001 - an API server that is down is reported, not raised
            api = {}
        return [
            NodeStatus(
                name=n.name, ip=n.ip, api_ready=api.get(n.name),
                daemons_healthy=all(healthy.get(f"{n.name}/{c}", False) for c in steps.NODE_COMPONENTS), load=n.load,
            )
            for n in self.settings.nodes
        ]

    # ---- teardown --------------------------------------------------------------------

    def owned_processes(self) -> set[int]:
        """Component daemons, shims of our containerds and every process below them."""
        s = self.settings
        procs = all_processes()
        roots = matching(procs, (str(s.state_dir), str(s.run_dir)))
        for daemon in self.daemons():
            pid = daemon.pid()
            if pid is not None:
                roots.add(pid)
        return descendants(roots, procs) if roots else set()

    def teardown(self) -> None:
        """Remove every process, namespace, mount, link, chain, cgroup and directory of the
        cluster. It works from what is on the host, so a crashed cluster is swept as well."""
        s = self.settings
        kubelets = [d for d in self.daemons() if d.name == "kubelet"]
        kill_all({p for d in kubelets if (p := d.pid()) is not None}, grace_s=1.0)
        kill_all(self.owned_processes(), grace_s=2.0)
        # Processes started while we were killing (a shim mid-start): one more pass.
        kill_all(self.owned_processes(), grace_s=0.5)
        # With no process left in them, a node's namespaces go when their files are
        # unmounted, and every mount made inside (volumes, overlays, pod netns) with them.
        nodens.release_mount_namespaces(s)
        for name in nodens.owned_netns(s):
            nodens.delete_network(name)
        hostnet.unmount_all(s.owned_dirs)
        hostnet.delete_links(s)
        hostnet.sweep_iptables(kube_proxy_ours=s.host_proxy_marker.exists())
        for top in nodens.owned_cgroups():
            nodens.remove_cgroup_tree(top)
        hostnet.restore_sysctls(s.state_dir / "saved-sysctls.json")
        nodens.remove_mount_points(s.mount_points_record)
        for directory in s.owned_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        for cached in Path("/var/lib/cni/results").glob(f"{s.cni_network}-*"):
            cached.unlink(missing_ok=True)

    def leftovers(self) -> Leftovers:
        s = self.settings
        return Leftovers(
            processes=sorted(self.owned_processes()),
            mounts=hostnet.mounts_under(s.owned_dirs),
            links=hostnet.owned_links(s),
            netns=nodens.owned_netns(s),
            chains=hostnet.remaining_chains(),
            cgroups=[str(p) for p in nodens.owned_cgroups()],
            dirs=[str(d) for d in s.owned_dirs if d.exists()],
        )
