"""After `cluster down`, nothing of the local cluster is left on the host.

Checked directly against the host (/proc, mountinfo, `ip link`, iptables-save), not
through the provider's own bookkeeping.
"""

from __future__ import annotations

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
    forward_before = cluster.settings.state_dir.joinpath("saved-sysctls.json").read_text()  # type: ignore[attr-defined]
    cluster.delete()  # type: ignore[attr-defined]
    assert processes() == []
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if any(o in line for o in OWNED)]
    assert mounts == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "pb-cni0" not in links
    assert "veth" not in links
    for save in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([save], capture_output=True, text=True, check=True).stdout
        owned = [line for line in rules.splitlines() if "KUBE-" in line or "CNI-" in line or "PATTERNBENCH-" in line]
        assert owned == [], f"{save} still has: {owned[:5]}"
    assert not any(Path(p).exists() for p in OWNED[:1] + ("/run/patternbench/local",) if Path(p, "local").exists())
    assert not Path("/var/lib/patternbench/local").exists()
    assert not Path("/run/patternbench/local").exists()
    assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
    import json

    saved = json.loads(forward_before)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == saved["net/ipv4/ip_forward"]
