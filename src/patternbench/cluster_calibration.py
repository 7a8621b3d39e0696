"""Calibration on the local cluster: outages of known kind and length injected where users
meet the cluster — the entry's NodePort on 127.0.0.1 — while the normal probe stream goes
through kube-proxy's NAT into a pod and the app chain behind it.

- refused: an iptables REJECT (ICMP port unreachable: connect() fails with ECONNREFUSED);
- dropped: an iptables DROP for them (SYNs vanish; the client's kernel retransmits).

The rules match on conntrack's original destination (127.0.0.1:<NodePort>), because
kube-proxy has already rewritten the packet to a pod's address when the filter table sees
it. A hang is not injected here: the app's readiness probe (every 1 s) turns a frozen entry
into a refused one a moment later, so the truth would not be known to 50 ms.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from kubernetes import config as kube_config

from patternbench.calibration import Comparison, compare
from patternbench.errors import UsageError
from patternbench.operate.deploy import deploy_run
from patternbench.operate.kube import Deployer
from patternbench.outages import IPTABLES_COMMENT, ProbeStream, ruled_outage, sweep_drop_rules
from patternbench.progress import Progress
from patternbench.specs.topology import Pattern, Topology

CLUSTER_KINDS = ("refused", "dropped")
# icmp-port-unreachable, not tcp-reset: a reset made in OUTPUT for a packet kube-proxy has
# already rewritten comes back addressed from the pod and never reaches the socket (the
# client saw a 3 s timeout, tried here); the ICMP error is un-NATed as a related packet and
# the client's connect() fails at once with ECONNREFUSED, as against a closed port.
VERDICTS = {"refused": ["REJECT", "--reject-with", "icmp-port-unreachable"], "dropped": ["DROP"]}


def entry_rule(kind: str, port: int) -> list[str]:
    """The OUTPUT rule that makes `kind` of outage for 127.0.0.1:`port` (after kube-proxy's DNAT)."""
    if kind not in VERDICTS:
        raise UsageError(f"the cluster calibration injects {', '.join(CLUSTER_KINDS)}, not {kind!r} (a hang on the cluster is ended early by the readiness probe; use --target local for it)")
    return [
        "OUTPUT", "-p", "tcp", "-m", "conntrack", "--ctorigdst", "127.0.0.1", "--ctorigdstport", str(port),
        "-m", "comment", "--comment", IPTABLES_COMMENT, "-j", *VERDICTS[kind],
    ]


def check_kinds(kinds: list[str]) -> None:
    """Before anything is deployed: every kind is one the cluster calibration injects."""
    for kind in kinds:
        entry_rule(kind, 30000)


def calibrate_cluster(
    provider: object, topology: Topology, kinds: list[str], lengths: list[float], slo_ms: float,
    settle_s: float = 1.5, progress: Progress | None = None,
) -> list[Comparison]:
    """The control pattern deployed once; every kind x length at its entry, one at a time with
    quiet time between, and what the probe stream measured of each; then undeployed."""

    progress = progress or Progress(quiet=True)
    check_kinds(kinds)
    sweep_drop_rules()
    run = deploy_run(provider, topology, Pattern.NONE, progress=progress)
    rows: list[Comparison] = []
    try:
        entry = urlsplit(run.entry_url)
        host, port = entry.hostname or "127.0.0.1", int(entry.port or 80)
        if host != "127.0.0.1":
            raise UsageError(f"the cluster calibration needs the entry on 127.0.0.1 (the local provider), not {host}")
        timeout_s = max(2.0, 2 * slo_ms / 1000)
        with ProbeStream(host, port, timeout_s=timeout_s) as stream:
            for kind in kinds:
                for length in lengths:
                    time.sleep(settle_s)
                    injection = ruled_outage(kind, entry_rule(kind, port), port, length)
                    time.sleep(stream.timeout_s + settle_s)
                    row = compare(injection, list(stream.records), slo_ms, margin_s=settle_s)
                    progress.say(f"   {kind:<8} {length:5.2f}s -> measured {row.measured_s:6.3f}s ({row.error_ms:+.1f} ms)")
                    rows.append(row)
    finally:
        api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))  # type: ignore[attr-defined]
        Deployer(api, Progress(quiet=True)).undeploy(run.run_id, graceful=False, wait=False)
    return rows
