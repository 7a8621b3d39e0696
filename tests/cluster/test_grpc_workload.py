"""Long-lived gRPC traffic across a node proxy's handover (issue 24): the DaemonSet mesh
upgrade with unary Calls on channels held open, and with Watch streams held open. The node
proxies hand their port over (SO_REUSEPORT) and drain with a GOAWAY on every HTTP/2
connection; the apps' channels through them move to the successors. What the streams do is
measured: a stream pinned to the old proxy cannot move, so it ends when the old proxy does,
and the claim that counts it fails, naming where each stream broke."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from patternbench.experiment import run_matrix
from patternbench.results.report import write_report
from patternbench.results.summary import check_claims, expected_proxies
from patternbench.results.verdicts import Thresholds
from patternbench.specs.cases import PROFILES, default_matrix
from patternbench.specs.topology import Pattern, load_topology

pytestmark = pytest.mark.cluster


def run_daemonset_mesh(cluster: Any, tmp_path: Any, workload: str) -> tuple[dict[str, Any], Any]:
    profile = PROFILES["short"]
    profile = replace(profile, load=replace(profile.load, workload=workload, load_from="host"))
    [case] = default_matrix([Pattern.DAEMONSET], ["mesh"], ["rolling"], "client", naive=False)
    run_dir = run_matrix(cluster, load_topology(), [case], profile, tmp_path)
    summary = write_report(run_dir, Thresholds())
    return summary["cases"][case.id], run_dir


def test_unary_rpcs_move_to_the_new_node_proxies_by_goaway_and_none_fails(cluster: Any, tmp_path: Any) -> None:
    entry, run_dir = run_daemonset_mesh(cluster, tmp_path, "grpc-unary")
    calls = sum(len(s.calls) for s in load_topology().services)
    assert entry["workload"] == "grpc-unary" and not entry["missing"], entry["missing"]
    assert entry["rpcs"] > 50 and entry["rpcs_failed"] == 0, (entry["rpcs"], entry["rpcs_failed"])
    # Every node proxy was replaced, and each app channel through one moved by its GOAWAY.
    assert entry["connections_replaced"] >= entry["nodes"], entry["connections_replaced_by"]
    assert entry["http2_drain"] == "goaway", entry["connections_replaced_by"]
    assert entry["reconnect_p99_s"] is not None
    # The RPCs took the pattern's path (Via entries "2 node/..." on every call).
    assert entry["proxies_per_request"] == pytest.approx(expected_proxies("daemonset", calls), abs=0.01)
    assert check_claims(entry, calls, Thresholds()) == []
    assert "## Long-lived connections" in (run_dir / "report.md").read_text()


def test_streams_through_an_old_node_proxy_break_where_it_stood_and_are_counted(cluster: Any, tmp_path: Any) -> None:
    entry, _ = run_daemonset_mesh(cluster, tmp_path, "grpc-stream")
    calls = sum(len(s.calls) for s in load_topology().services)
    assert entry["workload"] == "grpc-stream" and not entry["missing"], entry["missing"]
    assert entry["stream_messages"] > 100
    # The old proxies said GOAWAY first: no connection was cut without one.
    assert entry["connections_replaced"] >= 1 and entry["connections_goaway"] == entry["connections_replaced"], entry["connections_replaced_by"]
    # Each broken stream names the hop it broke at (a call between two apps, through a node proxy).
    assert entry["streams_broken"] >= 1
    assert all(" -> " in where or where.split(": ")[1] != "entry" for where in entry["streams_broken_by"]), entry["streams_broken_by"]
    # The stream's path is the pattern's, from its first messages.
    assert entry["proxies_per_request"] == pytest.approx(expected_proxies("daemonset", calls), abs=0.01)
    # The model's claim, measured false here, and said so: no other claim failed.
    failed = check_claims(entry, calls, Thresholds())
    assert len(failed) == 1 and "gRPC streams broke during the upgrade" in failed[0], failed
