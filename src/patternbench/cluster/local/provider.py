"""The `local` provider: a real single-node Kubernetes whose components are host processes.

Like upstream's hack/local-up-cluster.sh, but every binary is built from Go modules, every
image from static binaries, and down removes all that up made.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from patternbench.cluster.local import hostnet, steps
from patternbench.cluster.local.processes import Daemon, all_processes, descendants, kill_all, matching
from patternbench.cluster.local.settings import LocalSettings
from patternbench.cluster.provider import Capabilities, NodeInfo, nodes_from_api
from patternbench.components import COREDNS_VERSION, BuildCache, Binaries, resolve_binaries
from patternbench.errors import StepFailed, UsageError
from patternbench.images import ImageArchive, ImageSpec, build_go_binaries, write_oci_archive
from patternbench.progress import Progress

PAUSE_VERSION = "3.10.1"


@dataclass
class Leftovers:
    """What of a cluster is still on the host; all empty after a clean `down`."""

    processes: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.processes, self.mounts, self.links, self.chains, self.cgroups, self.dirs))


def cgroup_dirs() -> list[Path]:
    """kubelet's pod cgroups (cgroupfs driver, cgroup v1): `kubepods` in every hierarchy."""
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return []
    return [p / "kubepods" for p in root.iterdir() if (p / "kubepods").is_dir()]


def remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup and its children, deepest first (cgroupfs only allows rmdir)."""
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            path.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError:
        pass


class LocalProvider:
    """ClusterProvider for a single-machine cluster of host processes."""

    name = "local"
    capabilities = Capabilities(
        multi_node=False, can_load_images=True, needs_registry=False, creates_cluster=True, runs_here=True
    )

    def __init__(
        self,
        settings: LocalSettings | None = None,
        bin_dir: Path | None = None,
        progress: Progress | None = None,
        keep_on_failure: bool = False,
    ) -> None:
        self.settings = settings or LocalSettings()
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

    def create(self) -> None:
        binaries, images = self.setup()
        if self.is_up():
            self.progress.say(f" cluster already up: kubeconfig {self.kubeconfig()}")
            return
        with self.progress.step("sweep leftovers of an earlier cluster"):
            self.teardown()
        s = self.settings
        shutil.rmtree(s.log_dir, ignore_errors=True)
        for d in (s.state_dir, s.run_dir, s.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        ctx = steps.Context(settings=s, binaries=binaries, images=images)
        for step in steps.STEPS:
            try:
                with self.progress.step(step.name):
                    step.run(ctx)
            except BaseException as exc:  # noqa: BLE001 - every failure (and Ctrl-C) names its step and cleans up
                self._fail(step, ctx, exc)
        (s.run_dir / "up").write_text(str(time.time()))

    def _fail(self, step: steps.Step, ctx: steps.Context, exc: BaseException) -> None:
        s = self.settings
        if isinstance(exc, UsageError) and step.name == "preflight":
            raise exc
        if isinstance(exc, KeyboardInterrupt):
            if not self.keep_on_failure:
                self.progress.say(" interrupted: tearing the half-made cluster down")
                self.teardown()
            raise exc
        daemon = ctx.daemons.get(step.component)
        tail = daemon.log_tail() if daemon else ""
        reason = exc.reason if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
        if tail:
            self.progress.say(f"--- last lines of {daemon.log_path} ---\n{tail}\n---")
        if self.keep_on_failure:
            hint = f"cluster kept (--keep); logs in {s.log_dir}; remove it with `patternbench cluster down`"
        else:
            self.teardown()
            hint = f"cluster torn down; logs kept in {s.log_dir}"
        raise StepFailed(step.name, reason, hint) from exc

    def delete(self) -> None:
        self.teardown()

    def kubeconfig(self) -> Path:
        return self.settings.admin_kubeconfig

    def load_images(self, archives: list[ImageArchive]) -> None:
        if not self.is_up():
            raise UsageError("the local cluster is not up: run `patternbench cluster up`")
        steps.import_images(self.settings, archives)

    def nodes(self) -> list[NodeInfo]:
        return nodes_from_api(self.kubeconfig())

    def node_paths(self) -> tuple[Path, Path]:
        """Where the kubelet writes pod logs, and where node agents may keep state."""
        return self.settings.pod_logs_dir, self.settings.state_dir / "agent-state"

    def entry_host(self) -> str:
        """NodePorts answer on the host's loopback."""
        return "127.0.0.1"

    # ---- state -----------------------------------------------------------------------

    def daemons(self) -> list[Daemon]:
        """The component daemons as recorded by pid files, in start order."""
        s = self.settings
        found = []
        for name in steps.COMPONENT_ORDER:
            pid_path = s.pid_dir / f"{name}.pid"
            if pid_path.exists():
                found.append(self._daemon_from_pidfile(name, pid_path))
        return found

    def _daemon_from_pidfile(self, name: str, pid_path: Path) -> Daemon:
        from patternbench.cluster.local.processes import read_proc

        argv: list[str] = []
        try:
            info = read_proc(int(pid_path.read_text().strip()))
            argv = list(info.cmdline) if info else []
        except (OSError, ValueError):
            pass
        return Daemon(name=name, argv=argv or ["?"], log_path=self.settings.log_dir / f"{name}.log", pid_path=pid_path)

    def is_up(self) -> bool:
        s = self.settings
        if not (s.run_dir / "up").exists():
            return False
        daemons = self.daemons()
        return len(daemons) == len(steps.COMPONENT_ORDER) and all(d.running() for d in daemons)

    def status(self) -> list[tuple[str, int | None, bool]]:
        """(component, pid, healthy) for each component."""
        s = self.settings
        checks = {
            "etcd": lambda: steps.http_ok(f"http://127.0.0.1:{s.etcd_client_port}/health"),
            "kube-apiserver": lambda: steps.insecure_https_ok(f"{s.apiserver_url}/livez"),
            "kube-controller-manager": lambda: steps.insecure_https_ok(f"https://127.0.0.1:{s.controller_manager_port}/healthz"),
            "kube-scheduler": lambda: steps.insecure_https_ok(f"https://127.0.0.1:{s.scheduler_port}/healthz"),
            "kubelet": lambda: steps.http_ok(f"http://127.0.0.1:{s.kubelet_healthz_port}/healthz"),
            "kube-proxy": lambda: steps.http_ok(f"http://127.0.0.1:{s.proxy_healthz_port}/healthz"),
        }
        rows = []
        recorded = {d.name: d for d in self.daemons()}
        for name in steps.COMPONENT_ORDER:
            daemon = recorded.get(name)
            pid = daemon.pid() if daemon else None
            healthy = False
            if pid is not None:
                check = checks.get(name)
                try:
                    healthy = check() if check else True
                except Exception:  # noqa: BLE001 - any failure of a health probe means unhealthy
                    healthy = False
            rows.append((name, pid, healthy))
        return rows

    # ---- teardown --------------------------------------------------------------------

    def owned_processes(self) -> set[int]:
        """Component daemons, shims of our containerd and every process below them."""
        s = self.settings
        procs = all_processes()
        needles = (str(s.state_dir), str(s.run_dir))
        roots = matching(procs, needles)
        for daemon in self.daemons():
            pid = daemon.pid()
            if pid is not None:
                roots.add(pid)
        return descendants(roots, procs) if roots else set()

    def teardown(self) -> None:
        """Remove every process, mount, link, chain, cgroup and directory of the cluster."""
        s = self.settings
        kubelet = [d for d in self.daemons() if d.name == "kubelet"]
        kill_all({p for d in kubelet if (p := d.pid()) is not None}, grace_s=1.0)
        kill_all(self.owned_processes(), grace_s=2.0)
        # Processes started while we were killing (a shim mid-start): one more pass.
        kill_all(self.owned_processes(), grace_s=0.5)
        hostnet.unmount_all(s.owned_dirs)
        hostnet.delete_links(s)
        hostnet.sweep_iptables()
        for top in cgroup_dirs():
            remove_cgroup_tree(top)
        hostnet.restore_sysctls(s.state_dir / "saved-sysctls.json")
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
            chains=hostnet.remaining_chains(),
            cgroups=[str(p) for p in cgroup_dirs()],
            dirs=[str(d) for d in s.owned_dirs if d.exists()],
        )
