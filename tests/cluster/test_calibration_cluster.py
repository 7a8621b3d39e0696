"""The outage measurement calibrated on the cluster itself: a refusal and a drop of known
length at the entry's NodePort, measured by the normal probe stream through kube-proxy and
the app chain, each within the promised 50 ms (plus the iptables calls' own uncertainty);
and the same for the in-cluster prober (issue 23), the rule in its load node's namespace."""

from __future__ import annotations

import subprocess

import pytest

from patternbench.calibration import PROMISED_ERROR_MS
from patternbench.cluster_calibration import CLUSTER_KINDS, calibrate_cluster
from patternbench.outages import IPTABLES_COMMENT
from patternbench.specs.topology import load_topology

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("load_from", ["host", "cluster"])
def test_outages_at_the_entry_are_measured_within_50_ms(cluster: object, load_from: str) -> None:
    rows = calibrate_cluster(cluster, load_topology(), list(CLUSTER_KINDS), [1.2], slo_ms=1000, settle_s=1.0, load_from=load_from)
    assert [r.kind for r in rows] == list(CLUSTER_KINDS)
    for row in rows:
        assert row.expected_s == pytest.approx(1.2, abs=0.05)
        assert abs(row.error_ms) <= PROMISED_ERROR_MS + row.truth_uncertainty_ms + row.probe_lag_ms, row
        assert row.outages == 1, row
    refused, dropped = rows
    assert refused.error_downtime_s == pytest.approx(refused.measured_s) and refused.slow_downtime_s == 0
    assert dropped.slow_downtime_s == pytest.approx(dropped.measured_s)
    assert IPTABLES_COMMENT not in subprocess.run(["iptables", "-S", "OUTPUT"], capture_output=True, text=True).stdout
    for node in cluster.settings.nodes:  # type: ignore[attr-defined]
        assert IPTABLES_COMMENT not in subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-S"], capture_output=True, text=True).stdout
        # The injection's ICMP setting is put back (upstream's default).
        limit = subprocess.run(["ip", "netns", "exec", node.netns, "sysctl", "-n", "net.ipv4.icmp_ratelimit"], capture_output=True, text=True).stdout.strip()
        assert limit == "1000", (node.name, limit)
