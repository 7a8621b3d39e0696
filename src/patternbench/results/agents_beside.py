"""The report's "Your agent beside ours" section: each case of an agent from an agent file
next to the same case of the built-in agent it stands in for (same pattern, upgrade and
drain), every number measured in the same run. It answers whether a verdict holds for a
proxy or shipper a reader runs, or is an artifact of patternbench's own."""

from __future__ import annotations

from typing import Any

from patternbench.results.report_format import fmt, pick_case
from patternbench.specs.agents import AGENTS


def _pairs(cases: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(built-in case, file agent's case) for every file agent's case with a twin."""
    pairs = []
    for e in cases.values():
        spec = AGENTS.get(e["agent"] or "")
        if spec is None or spec.source is None or spec.stands_in_for is None:
            continue
        twin = pick_case(cases, e["pattern"], spec.stands_in_for, e["naive"], e.get("upgrade_strategy") or "rolling", e.get("injection", "client"))
        if twin is not None and not e.get("fault"):
            pairs.append((twin, e))
    return pairs


def _hops(e: dict[str, Any]) -> str:
    hops = e.get("hops") or {}
    return f"{fmt(hops.get('loopback', 0))} / {fmt(hops.get('same_node', 0))} / {fmt(hops.get('cross_node', 0))}"


def _row(e: dict[str, Any], failed_claims: dict[str, list[str]]) -> str:
    before = e["latency_ms"]["before"]
    claims = failed_claims.get(e["case"])
    return (
        f"| {e['case']} | {e['agent']} | {e['failed_requests']} of {e['total_requests']} | {fmt(e['downtime_s'])} | {fmt(e['proxies_per_request'])} | {_hops(e)} "
        f"| {fmt(before['p50'])} / {fmt(before['p99'])} | {fmt(e['agent_cpu_m_per_instance'])} / {fmt(e['agent_cpu_m_total'])} "
        f"| {fmt(e['agent_memory_mib_per_instance'])} / {fmt(e['agent_memory_mib_total'])} | {fmt(e['app_pods_recreated'])} | {fmt(e['upgrade_duration_s'])} "
        f"| {'; '.join(claims) if claims else 'held'} |"
    )


def agents_beside_text(cases: dict[str, Any], failed_claims: dict[str, list[str]]) -> list[str]:
    pairs = _pairs(cases)
    if not pairs:
        return []
    out = [
        "## Your agent beside ours", "",
        "Each case of an agent from an agent file next to the same case of patternbench's own agent it stands in for, measured in the same run "
        "(with repeated trials, medians). Every claim checked for ours is checked for it; where one fails, the last column says which, from the records.", "",
        "| case | agent | failed requests | downtime s | proxies per request | hops loopback / same / cross | p50 / p99 ms before | agent CPU m per instance / total | agent MiB per instance / total | app pods recreated | upgrade s | claims |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, theirs in pairs:
        out += [_row(ours, failed_claims), _row(theirs, failed_claims)]
    return out + [""]
