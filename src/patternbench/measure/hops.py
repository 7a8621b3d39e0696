"""Hops: how many boundaries a request crossed (loopback, same node, across nodes), and how
requests group on proxy instances.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from patternbench.measure.records import Record, ok
from patternbench.measure.via import Location, parse_via


def hop_kind(a: Location, b: Location) -> str:
    """loopback inside one pod, same_node between two places on one node, cross_node between
    nodes; `unknown` when a name is missing (an old record, an app that does not know its node)."""
    if a.node is None or b.node is None:
        return "unknown"
    if a.node != b.node:
        return "cross_node"
    if a.pod is not None and a.pod == b.pod:
        return "loopback"
    return "same_node"


def path_hops(path: list[Location]) -> list[str]:
    return [hop_kind(a, b) for a, b in zip(path, path[1:])]


def _loc(pair: list[Any] | None) -> Location | None:
    if not pair or not pair[0]:
        return None
    return Location(pod=pair[0], node=pair[1] or None)


def call_hops(call: dict[str, Any]) -> list[str]:
    """The hops of one service-to-service call: caller app, the proxies in request order (a
    response's Via lists them callee side first), callee app."""
    src, dst = _loc(call.get("src")), _loc(call.get("dst"))
    if src is None or dst is None:
        return []
    proxies = [e.location for e in reversed(parse_via(call.get("via")))]
    return path_hops([src, *proxies, dst])


def entry_hops(record: dict[str, Any]) -> list[str]:
    """Hops inside the cluster on the way in: from the first proxy (if any) to the entry app.
    The hop from the load generator into the cluster is not a pod hop and is not counted."""
    entry = _loc(record.get("entry"))
    proxies = [e.location for e in reversed(parse_via(record.get("via")))]
    if entry is None or not proxies:
        return []
    return path_hops([*proxies, entry])


def request_hops(record: dict[str, Any]) -> Counter[str]:
    kinds: Counter[str] = Counter(entry_hops(record))
    for call in record.get("calls") or []:
        kinds.update(call_hops(call))
    return kinds


def crosses_nodes(call: dict[str, Any]) -> bool | None:
    src, dst = _loc(call.get("src")), _loc(call.get("dst"))
    if src is None or dst is None or src.node is None or dst.node is None:
        return None
    return src.node != dst.node


def hop_summary(records: list[Record]) -> dict[str, Any]:
    """Over successful user requests: proxies per request, the mean number of hops of each
    kind per request, and the share of service-to-service calls whose two pods ran on
    different nodes (`cross_node_share`). Every figure comes from the names the apps and
    proxies recorded, never from the pattern's name."""
    good = [r for r in records if ok(r) and r.get("kind") in ("user", "msg")]  # a gRPC stream's first message has its path
    if not good:
        return {"proxies_per_request": None, "hops": {}, "cross_node_share": None}
    proxies, kinds, crossing, placed = 0, Counter(), 0, 0
    for r in good:
        proxies += len(parse_via(r.get("via"))) + sum(len(parse_via(c.get("via"))) for c in r.get("calls") or [])
        kinds.update(request_hops(r))
        for call in r.get("calls") or []:
            crossed = crosses_nodes(call)
            if crossed is not None:
                placed += 1
                crossing += crossed
    n = len(good)
    return {
        "proxies_per_request": round(proxies / n, 3),
        "hops": {k: round(v / n, 3) for k, v in sorted(kinds.items())},
        "cross_node_share": round(crossing / placed, 4) if placed else None,
    }


def requests_per_agent(records: list[Record]) -> dict[str, int]:
    """How many requests each proxy instance carried (the article's request grouping)."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.get("kind") != "user" or not ok(r):
            continue
        seen = {e.instance for e in parse_via(r.get("via"))}
        for call in r.get("calls") or []:
            seen |= {e.instance for e in parse_via(call.get("via"))}
        counts.update(seen)
    return dict(counts)


def grouping(per_agent: dict[str, int]) -> dict[str, dict[str, float]]:
    """Requests carried per agent instance, as a distribution per proxy mode."""
    by_mode: dict[str, list[int]] = {}
    for instance, count in per_agent.items():
        by_mode.setdefault(instance.split("/", 1)[0], []).append(count)
    return {
        mode: {"instances": len(v), "min": min(v), "median": statistics.median(v), "max": max(v)}
        for mode, v in sorted(by_mode.items())
    }
