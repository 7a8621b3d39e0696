"""Calibration on the local cluster: outages of known kind and length injected where users
meet the cluster — the entry's NodePort on 127.0.0.1 — while the normal probe stream goes
through kube-proxy's NAT into a pod and the app chain behind it. With the load from the
cluster (issue 23) the probes come from the prober pod on the load node to the entry
Service's cluster address, and the rule sits in the load node's network namespace, in
FORWARD (the pod's packets pass the node there, after kube-proxy's DNAT).

- refused: an iptables REJECT (ICMP port unreachable: connect() fails with ECONNREFUSED);
- dropped: an iptables DROP for them (SYNs vanish; the client's kernel retransmits).

The rules match on conntrack's original destination (127.0.0.1:<NodePort>), because
kube-proxy has already rewritten the packet to a pod's address when the filter table sees
it. A hang is not injected here: the app's readiness probe (every 1 s) turns a frozen entry
into a refused one a moment later, so the truth would not be known to 50 ms.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes import config as kube_config

from patternbench.calibration import PROBE_INTERVAL_S, Comparison, compare
from patternbench.cluster.provider import abilities
from patternbench.errors import UsageError
from patternbench.load.cluster_load import ClusterLoad, LoadFailed
from patternbench.load.runner import read_jsonl
from patternbench.operate.deploy import DeployedRun, deploy_run, load_generator_image
from patternbench.operate.kube import Deployer
from patternbench.outages import IPTABLES_COMMENT, ProbeStream, icmp_unlimited, ruled_outage, sweep_drop_rules
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


def forward_rule(kind: str, service_ip: str, port: int) -> list[str]:
    """The load node's FORWARD rule that makes `kind` of outage for a pod's connections to
    `service_ip`:`port` (matched on conntrack's original destination, after the DNAT)."""
    entry_rule(kind, port)  # the same kinds
    return [
        "FORWARD", "-p", "tcp", "-m", "conntrack", "--ctorigdst", service_ip, "--ctorigdstport", str(port),
        "-m", "comment", "--comment", IPTABLES_COMMENT, "-j", *VERDICTS[kind],
    ]


def check_kinds(kinds: list[str]) -> None:
    """Before anything is deployed: every kind is one the cluster calibration injects."""
    for kind in kinds:
        entry_rule(kind, 30000)


def calibrate_cluster(
    provider: object, topology: Topology, kinds: list[str], lengths: list[float], slo_ms: float,
    settle_s: float = 1.5, progress: Progress | None = None, load_from: str = "host",
) -> list[Comparison]:
    """The control pattern deployed once; every kind x length at its entry, one at a time with
    quiet time between, and what the probe stream (from this machine, or from the prober pod
    with `load_from` cluster) measured of each; then undeployed."""

    progress = progress or Progress(quiet=True)
    check_kinds(kinds)
    sweep_drop_rules()
    run = deploy_run(provider, topology, Pattern.NONE, progress=progress)
    rows: list[Comparison] = []
    try:
        if load_from == "cluster":
            return from_the_cluster(provider, run, kinds, lengths, slo_ms, settle_s, progress)
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


def from_the_cluster(provider: Any, run: DeployedRun, kinds: list[str], lengths: list[float], slo_ms: float, settle_s: float, progress: Progress) -> list[Comparison]:
    """The outages for the in-cluster prober: the load's pods as a run starts them (one user
    beside the prober), each outage a rule in the prober's node's namespace, its probes
    pulled onto the harness's clock as in a run."""
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    core = client.CoreV1Api(api)
    ip, port = run.entry_in_cluster(core)
    timeout_s = max(2.0, 2 * slo_ms / 1000)
    rows: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="pb-calibrate-") as tmp:
        records = Path(tmp) / "requests.jsonl"
        load = ClusterLoad(core, run.load_namespace, load_generator_image(provider, progress), f"http://{ip}:{port}", records, workers=1, users=1,
                           rate_per_user=1.0, duration_s=3600, probe_interval_s=PROBE_INTERVAL_S, probe_timeout_s=timeout_s,
                           clock_shared=abilities(provider).clock_shared, name=f"calibrate-{secrets.token_hex(3)}")
        try:
            load.start()
            assert load.prober is not None
            node = core.read_namespaced_pod(load.prober, run.load_namespace).spec.node_name
            netns = provider.settings.node(node).netns  # type: ignore[attr-defined] - the local provider's nodes are namespaces
            sweep_drop_rules(netns)
            for kind in kinds:
                for length in lengths:
                    time.sleep(settle_s)
                    with icmp_unlimited(netns):
                        injection = ruled_outage(kind, forward_rule(kind, ip, port), port, length, netns=netns)
                    time.sleep(timeout_s + settle_s)
                    load.pull()
                    probes = [r for r in read_jsonl(records) if r.get("kind") == "probe"]
                    row = compare(injection, probes, slo_ms, margin_s=settle_s)
                    progress.say(f"   {kind:<8} {length:5.2f}s -> measured {row.measured_s:6.3f}s ({row.error_ms:+.1f} ms, from the prober pod on {node})")
                    rows.append(row)
        finally:
            with contextlib.suppress(LoadFailed):
                load.stop()
            load.delete()
    return rows
