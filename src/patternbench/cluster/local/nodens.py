"""A local node's own world: network namespace, veth to the nodes' bridge, routes, sysctls,
a hostname (UTS namespace), a mount namespace in which the node's directories sit where a node agent looks, and a cgroup.

Every daemon of a node (containerd and its shims, the kubelet, kube-proxy) is started with
`nsenter` into both namespaces. `nsenter --net` joins only the network namespace (unlike
`ip netns exec`, which also remounts /sys and would hide the cgroup hierarchy the kubelet
needs); hostNetwork pods then share the node's network namespace, as on a real node.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from patternbench.cluster.local.hostnet import NODE_SYSCTLS, install_egress_guard, run
from patternbench.cluster.local.settings import LocalSettings, NodeSettings

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_TOP = "patternbench"  # every node's cgroupRoot is /patternbench/<node>


def enter(s: LocalSettings, node: NodeSettings) -> list[str]:
    """The command prefix that runs a program inside the node (both namespaces)."""
    return ["nsenter", f"--net={node.netns_path}", f"--mount={s.mount_ns_file(node)}", f"--uts={s.uts_ns_file(node)}", "--"]


def in_netns(node: NodeSettings, *cmd: str) -> subprocess.CompletedProcess[str]:
    return run(["nsenter", f"--net={node.netns_path}", "--", *cmd])


# ---- network ------------------------------------------------------------------------


def netns_exists(node: NodeSettings) -> bool:
    return node.netns_path.exists()


def create_network(s: LocalSettings, node: NodeSettings) -> None:
    """netns, a veth from the nodes' bridge, the node IP, routes to the other nodes' pods."""
    if not netns_exists(node):
        run(["ip", "netns", "add", node.netns])
    ns = ["ip", "-n", node.netns]
    if run(["ip", "link", "show", node.host_veth], check=False).returncode != 0:
        run(["ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
    run(["ip", "link", "set", node.host_veth, "master", s.nodes_bridge, "up"])
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "addr", "replace", f"{node.ip}/{s.node_prefix_len}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    run([*ns, "route", "replace", "default", "via", s.host_ip, "dev", "eth0"])
    run(["ip", "route", "replace", node.pod_cidr, "via", node.ip, "dev", s.nodes_bridge])
    # Pods of other nodes: straight to that node over the bridge, as on a flat L2 network.
    for other in s.nodes:
        if other.name != node.name:
            run([*ns, "route", "replace", other.pod_cidr, "via", other.ip, "dev", "eth0"])
    for key, value in NODE_SYSCTLS.items():
        in_netns(node, "sh", "-c", f"printf %s {value} > /proc/sys/{key}")
    install_egress_guard(s, node.netns_path)


def delete_network(node_name: str) -> None:
    """Deleting the namespace deletes its end of the veth and so the host's end too."""
    run(["ip", "netns", "del", node_name], check=False)


def owned_netns(s: LocalSettings) -> list[str]:
    result = run(["ip", "-j", "netns", "list"], check=False)
    try:
        listed = json.loads(result.stdout or "[]")
    except ValueError:
        listed = []
    return sorted(n["name"] for n in listed if n.get("name", "").startswith(s.node_prefix + "-"))


# ---- mounts ---------------------------------------------------------------------------


def is_mountpoint(path: Path) -> bool:
    return run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def create_mount_namespace(s: LocalSettings, node: NodeSettings, created_points: list[str]) -> None:
    """A UTS namespace with the node's hostname, and a mount namespace kept on a file, in which the node's directories are bound onto the
    paths every node shares (/var/lib/kubelet, /var/log/pods, ...). Mounts made inside
    (volumes, overlays, pod network namespaces) stay inside and go with it.

    `created_points` collects the mount points this made on the host, so `down` can remove
    them again."""
    holder = s.mount_ns_dir
    holder.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(holder):
        # A namespace can only be kept on a file whose mount is private.
        run(["mount", "--bind", str(holder), str(holder)])
        run(["mount", "--make-private", str(holder)])
    uts_file = s.uts_ns_file(node)
    if not is_mountpoint(uts_file):
        # Its own hostname too: hostNetwork pods share the node's, as on a real node.
        uts_file.touch()
        run(["unshare", f"--uts={uts_file}", "hostname", node.name])
    ns_file = s.mount_ns_file(node)
    if is_mountpoint(ns_file):
        return
    ns_file.touch()
    binds = []
    for source, target in node.view_binds():
        source.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.mkdir(parents=True)
            created_points.append(str(target))
        binds.append(f"mount --bind {source} {target}")
    run(["unshare", f"--mount={ns_file}", "--propagation", "slave", "sh", "-ec", " && ".join(binds)])


def release_mount_namespaces(s: LocalSettings) -> None:
    """Unmount the files that keep the nodes' mount and UTS namespaces; with no process left in them
    they are gone, and every mount made inside goes with them."""
    holder = s.mount_ns_dir
    if not holder.exists():
        return
    for ns_file in holder.iterdir():
        run(["umount", "-l", str(ns_file)], check=False)
    run(["umount", "-l", str(holder)], check=False)


def remove_mount_points(record: Path) -> None:
    """rmdir the host mount points that `up` created (only if still empty)."""
    if not record.exists():
        return
    for point in json.loads(record.read_text()):
        try:
            Path(point).rmdir()
        except OSError:
            pass


# ---- cgroups --------------------------------------------------------------------------


def hierarchies() -> list[Path]:
    """Every cgroup v1 hierarchy (and the unified one of a hybrid host) that is a directory."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]


def create_cgroup(node: NodeSettings) -> None:
    """The node's cgroupRoot in every hierarchy (the kubelet refuses one that does not exist).
    cpuset cgroups start empty: copy the parent's CPUs and memory nodes down."""
    for hierarchy in hierarchies():
        path = hierarchy
        for part in node.cgroup_parent.strip("/").split("/"):
            parent, path = path, path / part
            if path.is_dir():
                continue
            try:
                path.mkdir()
            except OSError:
                break
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (parent / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((parent / knob).read_text().strip())


def owned_cgroups() -> list[Path]:
    """Our cgroup trees: /patternbench in each hierarchy (a top-level `kubepods` is another
    kubelet's, never ours)."""
    return [p / CGROUP_TOP for p in hierarchies() if (p / CGROUP_TOP).is_dir()]


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
