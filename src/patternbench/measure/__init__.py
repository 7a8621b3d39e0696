"""Pure functions from records to numbers, by family: via (trails), availability (outages,
latency), hops, rollouts, faults, resources. Nothing here talks to a cluster; summary.py
assembles a case's figures from them (the figures themselves are declared in figures.py).
"""

from __future__ import annotations

from patternbench.measure.availability import DEFAULT_SLO_MS, Outage, asked_at, availability, latency_ms, outage_spans, outages, probe_cause
from patternbench.measure.faults import affected, fault_impact, recovered_at, touches, went_down_since
from patternbench.measure.hops import call_hops, crosses_nodes, entry_hops, grouping, hop_kind, hop_summary, path_hops, request_hops, requests_per_agent
from patternbench.measure.longlived import LONG_LIVED_KEYS, long_lived, replaced_connections
from patternbench.measure.records import Record, in_window, ok
from patternbench.measure.resources import agent_age_s, agent_resources, cpu_pressure, proxy_programming, run_queue_wait, saturated_spans, stalled_spans, whole_rounds
from patternbench.measure.rollouts import NodeRollout, max_concurrent, node_rollouts, pod_changes, pod_start_s, pods_created, pods_without, webhook_refusals
from patternbench.measure.via import Location, ViaEntry, calls, parse_via, pods_in, proxies_per_request, via_entries, via_kinds

__all__ = [
    "LONG_LIVED_KEYS",
    "long_lived",
    "replaced_connections",
    "Record",
    "ViaEntry",
    "Location",
    "parse_via",
    "via_entries",
    "via_kinds",
    "calls",
    "pods_in",
    "proxies_per_request",
    "ok",
    "in_window",
    "DEFAULT_SLO_MS",
    "probe_cause",
    "asked_at",
    "Outage",
    "outage_spans",
    "outages",
    "latency_ms",
    "availability",
    "hop_kind",
    "path_hops",
    "call_hops",
    "entry_hops",
    "request_hops",
    "crosses_nodes",
    "hop_summary",
    "requests_per_agent",
    "grouping",
    "NodeRollout",
    "node_rollouts",
    "pod_start_s",
    "max_concurrent",
    "pod_changes",
    "pods_created",
    "pods_without",
    "webhook_refusals",
    "touches",
    "recovered_at",
    "went_down_since",
    "affected",
    "fault_impact",
    "agent_age_s",
    "agent_resources",
    "whole_rounds",
    "saturated_spans",
    "stalled_spans",
    "run_queue_wait",
    "cpu_pressure",
    "proxy_programming",
]
