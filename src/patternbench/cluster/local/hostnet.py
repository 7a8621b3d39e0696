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

# Chains added by kube-proxy and kubelet (KUBE-), the CNI portmap plugin (CNI-) and us.
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", "PATTERNBENCH-")
EGRESS_CHAIN = "PATTERNBENCH-EGRESS"

SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
    # When a node proxy hands its port over (SO_REUSEPORT) and closes its listener, the
    # connections still in that listener's accept queue move to its successor instead of
    # being reset (Linux 5.14+). Node proxies run in the host's network namespace.
    "net/ipv4/tcp_migrate_req": "1",
}


def run(cmd: list[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, input=input_text)


# ---- sysctls -------------------------------------------------------------------------


def apply_sysctls(saved_path: Path) -> None:
    """Set what a node needs, remembering the host's values so `down` can put them back."""
    saved: dict[str, str] = {}
    if saved_path.exists():
        saved = json.loads(saved_path.read_text())
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if not path.exists():
            continue
        saved.setdefault(key, path.read_text().strip())
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


def create_bridge(s: LocalSettings) -> None:
    """The CNI bridge, made before any pod so the node address exists for the API server.

    The service range is routed onto the bridge too: a Service address that kube-proxy has
    not translated yet then goes nowhere instead of out of the machine's default route.
    """
    prefix = s.node_pod_cidr.split("/")[1]
    if not link_exists(s.bridge):
        run(["ip", "link", "add", s.bridge, "type", "bridge"])
    run(["ip", "addr", "replace", f"{s.node_ip}/{prefix}", "dev", s.bridge])
    run(["ip", "link", "set", s.bridge, "up"])
    run(["ip", "route", "replace", s.service_cidr, "dev", s.bridge, "src", s.node_ip])
    run(["ip", "route", "replace", s.pod_cidr, "dev", s.bridge, "src", s.node_ip, "metric", "1000"])


def owned_links(s: LocalSettings) -> list[str]:
    """The bridge and any veth still enslaved to it."""
    result = run(["ip", "-j", "link", "show"], check=False)
    names = []
    for link in json.loads(result.stdout or "[]"):
        if link.get("ifname") == s.bridge or link.get("master") == s.bridge:
            names.append(link["ifname"])
    return names


def delete_links(s: LocalSettings) -> None:
    for name in owned_links(s):
        run(["ip", "link", "del", name], check=False)


# ---- iptables ------------------------------------------------------------------------


def install_egress_guard(s: LocalSettings) -> None:
    """Pods may talk to each other and to the node, never past the machine: drop forwarded
    pod traffic that leaves through anything but the cluster bridge."""
    for binary in ("iptables",):
        run([binary, "-N", EGRESS_CHAIN], check=False)
        run([binary, "-F", EGRESS_CHAIN])
        run([binary, "-A", EGRESS_CHAIN, "-s", s.pod_cidr, "!", "-o", s.bridge, "-j", "DROP"])
        if run([binary, "-C", "FORWARD", "-j", EGRESS_CHAIN], check=False).returncode != 0:
            run([binary, "-I", "FORWARD", "1", "-j", EGRESS_CHAIN])


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


def sweep_iptables() -> int:
    """Remove every owned chain from every table, IPv4 and IPv6; returns lines removed."""
    total = 0
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        result = run([save], check=False)
        if result.returncode != 0:
            continue
        text, removed = strip_owned_chains(result.stdout)
        if removed:
            run([restore], input_text=text)
            total += removed
    return total


def remaining_chains() -> list[str]:
    found = []
    for save in ("iptables-save", "ip6tables-save"):
        result = run([save], check=False)
        if result.returncode == 0:
            found += owned_chains(result.stdout)
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
