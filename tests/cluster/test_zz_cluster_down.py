"""After `cluster down`, nothing of the local cluster is left on the host.

Checked directly against the host (/proc, mountinfo, `ip link`, iptables-save), not
through the provider's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.cluster_down]

OWNED = ("/var/lib/patternbench", "/run/patternbench")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


def processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(pid) == os.getpid():
            continue
        if any(o in cmdline for o in OWNED) or any(Path(cmdline.split(" ")[0]).name == b for b in BINARIES):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def test_cluster_down_leaves_nothing(cluster: object) -> None:
    if cluster.name != "local":  # type: ignore[attr-defined]
        pytest.skip("only the local provider runs on this host")
    saved_before = cluster.settings.state_dir.joinpath("saved-sysctls.json").read_text()  # type: ignore[attr-defined]
    created_points = json.loads(cluster.settings.mount_points_record.read_text())  # type: ignore[attr-defined]
    cluster.delete()  # type: ignore[attr-defined]
    assert processes() == []
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if any(o in line for o in OWNED)]
    assert mounts == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "pb-cni0" not in links and "pb-nodes" not in links and "pbv-" not in links
    assert "veth" not in links
    # Every node's network namespace is gone, and with it its links, routes and iptables.
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "pb-node-" not in netns
    assert not any(Path("/run/netns").glob("pb-node-*"))
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "10.244." not in routes and "10.96.0.0" not in routes
    for save in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([save], capture_output=True, text=True, check=True).stdout
        owned = [line for line in rules.splitlines() if "KUBE-" in line or "CNI-" in line or "PATTERNBENCH-" in line]
        assert owned == [], f"{save} still has: {owned[:5]}"
    assert not any(Path(p).exists() for p in OWNED[:1] + ("/run/patternbench/local",) if Path(p, "local").exists())
    assert not Path("/var/lib/patternbench/local").exists()
    assert not Path("/run/patternbench/local").exists()
    assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
    assert not any(Path("/sys/fs/cgroup").glob("*/patternbench"))
    # Mount points that up made on the host for the nodes' views are removed again.
    assert created_points is not None and not any(Path(p).exists() for p in created_points)
    for key, value in json.loads(saved_before).items():
        assert Path("/proc/sys", key).read_text().strip() == value, key
