"""Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from prometheus_client.parser import text_string_to_metric_families

from patternbench.agents import proxy_mode
from patternbench.stats import percentile


@dataclass(frozen=True)
class ViaEntry:
    """One proxy of a Via trail: '1.1 sidecar/<pod> (<node>)' or '1.1 node/<node> (<node>)'."""

    mode: str
    name: str
    node: str | None

    @property
    def instance(self) -> str:
        return f"{self.mode}/{self.name}"

    @property
    def location(self) -> Location:
        """A sidecar runs inside its pod; a node proxy in its node's own network (hostNetwork).
        A mode no agent spec knows is an error: guessing its place would misclassify hops."""
        mode = proxy_mode(self.mode)
        if mode.in_pod or mode.own_pod:  # a sidecar in its app's pod; a waypoint in a pod of its own
            return Location(pod=self.name, node=self.node)
        return Location(pod=None, node=self.node or self.name)


@dataclass(frozen=True)
class Location:
    """Where a process ran: in a pod (pod set) or in a node's own network (pod None)."""

    pod: str | None
    node: str | None


_VIA_ENTRY = re.compile(r"^\S+\s+(?P<mode>[^/\s]+)/(?P<name>\S+)(?:\s+\((?P<node>[^)]*)\))?")


def parse_via(via: str | None) -> list[ViaEntry]:
    """A Via header as the proxies wrote it, in the order of the list (RFC 9110 7.6.3)."""
    entries = []
    for part in (via or "").split(","):
        match = _VIA_ENTRY.match(part.strip())
        if match:
            entries.append(ViaEntry(match["mode"], match["name"], match["node"] or None))
    return entries


def via_entries(via: str | None) -> list[str]:
    """'1.1 sidecar/a (n1), 1.1 node/n1' -> ['sidecar/a', 'node/n1']."""
    return [e.instance for e in parse_via(via)]


def via_kinds(via: str | None) -> list[str]:
    """The proxy modes a Via trail passed: ['sidecar', 'sidecar']."""
    return [e.mode for e in parse_via(via)]


def calls(answer: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every service-to-service call in an app answer tree: (caller, callee, downstream record)."""
    for down in answer.get("downstream") or []:
        yield answer["service"], down["service"], down
        if down.get("answer"):
            yield from calls(down["answer"])


def pods_in(answer: dict[str, Any]) -> Counter[str]:
    """How many times each pod served a request in this tree (each logs one line per request)."""
    seen: Counter[str] = Counter({answer["pod"]: 1})
    for _, _, down in calls(answer):
        if down.get("answer"):
            seen[down["answer"]["pod"]] += 1
    return seen


def proxies_per_request(answer: dict[str, Any], response_via: str | None = None) -> int:
    """Proxy hops one client request passed: on the entry and on every downstream call."""
    hops = len(via_entries(response_via)) if response_via is not None else len(via_entries(answer.get("via")))
    return hops + sum(len(via_entries(down.get("via"))) for _, _, down in calls(answer))


# ---- load records -> availability and latency ---------------------------------------------

Record = dict[str, Any]


def ok(record: Record) -> bool:
    return not record.get("error") and 200 <= int(record.get("status") or 0) < 400


def in_window(records: list[Record], start: float, end: float) -> list[Record]:
    return [r for r in records if start <= r["t"] < end]


# A probe is unavailable when it fails or takes longer than this, dated from its start.
DEFAULT_SLO_MS = 1000.0


def probe_cause(probe: Record, slo_ms: float = DEFAULT_SLO_MS) -> str | None:
    """Why a probe counts as unavailable: "slow" when no good answer came within the deadline
    (a hang, dropped packets, a timeout, or an answer that came late), "error" when it failed
    within it (refused, reset, an error status); None when it was available."""
    if float(probe.get("ms") or 0.0) > slo_ms:
        return "slow"
    return None if ok(probe) else "error"


@dataclass(frozen=True)
class Outage:
    """One interval of unavailability, split by cause (error_s + slow_s = end - start)."""

    start: float
    end: float
    error_s: float
    slow_s: float

    @property
    def length(self) -> float:
        return self.end - self.start


def outage_spans(probes: list[Record], start: float, end: float, slo_ms: float = DEFAULT_SLO_MS) -> list[Outage]:
    """Intervals of unavailability from an open-loop probe stream. An outage starts at the
    start of the first unavailable probe (OpenShift's disruption sampler dates them so) and
    runs until the service is next seen answering within the deadline: when an available
    probe's answer was produced (its arrival less the usual answer time, never before its own
    start). Dating the end by the answer and not by the request's start matters for hangs:
    requests sent during the last second of a 2 s stall are answered fast once it ends, and
    their starts would cut the outage short by up to the deadline. One still open at `end`
    is closed there."""
    window = sorted(in_window(probes, start, end), key=lambda r: r["t"])
    causes = [probe_cause(p, slo_ms) for p in window]
    usual_ms = statistics.median([float(p.get("ms") or 0.0) for p, c in zip(window, causes) if c is None] or [0.0])
    # next_answer[i]: the earliest answer of an available probe started after probe i.
    next_answer = [end] * (len(window) + 1)
    for i in range(len(window) - 1, -1, -1):
        here = next_answer[i + 1]
        if causes[i] is None:
            p = window[i]
            here = min(here, max(p["t"], p["t"] + (float(p.get("ms") or 0.0) - usual_ms) / 1000.0))
        next_answer[i] = here
    found: list[Outage] = []
    opened: float | None = None
    closes = end
    parts: list[tuple[float, str]] = []  # (start, cause) of the unavailable probes in the outage

    def close() -> None:
        bounds = [t for t, _ in parts[1:]] + [closes]
        split = {"error": 0.0, "slow": 0.0}
        for (t, cause), until in zip(parts, bounds):
            split[cause] += until - t
        found.append(Outage(parts[0][0], closes, split["error"], split["slow"]))

    for i, (p, cause) in enumerate(zip(window, causes)):
        if cause is None:
            continue
        if opened is not None and p["t"] > closes:
            close()
            opened, parts = None, []
        if opened is None:
            opened = p["t"]
        parts.append((p["t"], cause))
        closes = min(next_answer[i + 1], end)
    if opened is not None:
        close()
    return found


def outages(probes: list[Record], start: float, end: float, slo_ms: float = DEFAULT_SLO_MS) -> list[tuple[float, float]]:
    """(start, end) of each outage_spans() interval."""
    return [(o.start, o.end) for o in outage_spans(probes, start, end, slo_ms)]


def latency_ms(records: list[Record]) -> dict[str, float | None]:
    values = [r["ms"] for r in records if ok(r)]
    return {f"p{q}": percentile(values, q) for q in (50, 90, 99)}


def availability(records: list[Record], probes: list[Record], start: float, end: float, slo_ms: float = DEFAULT_SLO_MS) -> dict[str, Any]:
    """downtime (by either cause, and each cause apart), max outage, failures and error rate
    over [start, end)."""
    spans = outage_spans(probes, start, end, slo_ms)
    window = in_window(records, start, end) + in_window(probes, start, end)
    failed = sum(1 for r in window if not ok(r))
    return {
        "downtime_s": round(sum(o.length for o in spans), 3),
        "error_downtime_s": round(sum(o.error_s for o in spans), 3),
        "slow_downtime_s": round(sum(o.slow_s for o in spans), 3),
        "max_outage_s": round(max((o.length for o in spans), default=0.0), 3),
        "outages": len(spans),
        "failed_requests": failed,
        "total_requests": len(window),
        "error_rate": round(failed / len(window), 6) if window else 0.0,
    }


# ---- hops -------------------------------------------------------------------------------

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
    good = [r for r in records if ok(r) and r.get("kind") == "user"]
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


# ---- node-by-node rollouts -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeRollout:
    """One node's agent replacement in a DaemonSet rollout, in seconds from the upgrade's
    start: when the old instance stopped serving (not Ready, deleting or gone) and when the
    new one became Ready. Down only if the first came before the second."""

    workload: str
    node: str
    old_stopped_s: float | None
    new_ready_s: float | None

    @property
    def down_s(self) -> float:
        if self.old_stopped_s is None or self.new_ready_s is None:
            return 0.0 if self.new_ready_s is not None else math.inf
        return max(0.0, self.new_ready_s - self.old_stopped_s)

    @property
    def down_interval(self) -> tuple[float, float] | None:
        if self.down_s <= 0:
            return None
        start = self.old_stopped_s if self.old_stopped_s is not None else 0.0
        return (start, start + self.down_s)


def node_rollouts(pod_records: list[Record], start: float, end: float) -> list[NodeRollout]:
    """Each node's agent replacement during [start, end), from the pod watch: agent pods
    (role `agent`) that existed before `start` are the old instances, those that appeared
    after it the new ones."""
    # DaemonSet pods only: a per-service agent's Deployment (the ambient waypoints) rolls
    # by the scheduler's choice of nodes, with no node "down". (Records written before the
    # owner was recorded have none, and count as before.)
    pod_records = [r for r in pod_records if r.get("owner") in (None, "DaemonSet")]
    first_seen: dict[str, float] = {}
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("role") == "agent":
            first_seen.setdefault(r["uid"], r["t"])
    old: dict[tuple[str, str], float | None] = {}
    new: dict[tuple[str, str], float | None] = {}
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("role") != "agent" or not r.get("node") or r["t"] >= end:
            continue
        key = (r.get("app") or "", r["node"])
        if first_seen[r["uid"]] < start:
            old.setdefault(key, None)
            stopped = r["event"] == "DELETED" or r.get("deleting") or not r.get("ready")
            if r["t"] >= start and stopped and old[key] is None:
                old[key] = r["t"] - start
        else:
            new.setdefault(key, None)
            if r.get("ready") and not r.get("deleting") and new[key] is None:
                new[key] = r["t"] - start
    keys = sorted(set(old) | set(new))
    return [NodeRollout(w, n, old.get((w, n)), new.get((w, n))) for w, n in keys if (w, n) in new]


def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an interval ending where another starts does not overlap it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


# ---- faults ------------------------------------------------------------------------------


def touches(record: Record, instance: str) -> bool:
    """Whether a request's Via trails name this proxy instance ('sidecar/<pod>', 'node/<node>')."""
    if instance in {e.instance for e in parse_via(record.get("via"))}:
        return True
    return any(instance in {e.instance for e in parse_via(c.get("via"))} for c in record.get("calls") or [])


def recovered_at(pod_records: list[Record], pod: str, container: str, start: float) -> float | None:
    """When the fault's target was serving again: the first Ready record of the pod after the
    start (for a DaemonSet that deleted it, of its successor on the same node is not tracked)
    that follows a not-Ready one or shows the container restarted."""
    before = None
    for r in sorted(pod_records, key=lambda r: r["t"]):
        if r.get("pod") != pod:
            continue
        if r["t"] < start:
            before = (r.get("restarts") or {}).get(container, 0)
            continue
        restarted = before is not None and (r.get("restarts") or {}).get(container, 0) > before
        if r.get("ready") and (restarted or went_down_since(pod_records, pod, start, r["t"])):
            return r["t"]
    return None


def went_down_since(pod_records: list[Record], pod: str, start: float, until: float) -> bool:
    return any(r.get("pod") == pod and start <= r["t"] < until and not r.get("ready") for r in pod_records)


def affected(pod_records: list[Record], start: float, end: float) -> tuple[list[str], list[str]]:
    """Pods that were not Ready, or whose containers restarted, in [start, end); their nodes."""
    last_restarts: dict[str, int] = {}
    pods, nodes = set(), set()
    for r in sorted(pod_records, key=lambda r: r["t"]):
        total = sum((r.get("restarts") or {}).values())
        if start <= r["t"] < end and r.get("event") != "DELETED" and (not r.get("ready") or total > last_restarts.get(r["pod"], total)):
            pods.add(r["pod"])
            if r.get("node"):
                nodes.add(r["node"])
        last_restarts[r["pod"]] = total
    return sorted(pods), sorted(nodes)


def fault_impact(
    users: list[Record], probes: list[Record], pod_records: list[Record],
    fault_start: float, fault_end: float, end: float, instance: str | None,
    target_pod: str | None = None, target_container: str | None = None,
) -> dict[str, Any]:
    """What one fault cost, from the records alone.

    The fault's window runs from its injection to the latest of: its end, the target's
    recovery (Ready again, from the pod watch), the last failed request. `blast_radius` is
    the share of requests (users and probes) started in that window that failed;
    `expected_blast_radius` the share of requests before the fault whose trail passed the
    faulted proxy instance (what the model says a dead instance can fail at most; None when
    the fault is not on the request path). By path: the failed share of the user requests
    per entry pod and per the node it ran on (failed requests that never reached an app
    have no trail: `unattributed`)."""
    recovered = recovered_at(pod_records, target_pod, target_container or "", fault_start) if target_pod else None
    failures = [r["t"] for r in users + probes if fault_start <= r["t"] < end and not ok(r)]
    window_end = min(end, max([fault_end, recovered or fault_end, *(t + 1e-6 for t in failures)]))
    window = [r for r in users + probes if fault_start <= r["t"] < window_end]
    failed = [r for r in window if not ok(r)]
    by_node: dict[str, dict[str, Any]] = {}
    by_pod: dict[str, dict[str, Any]] = {}
    unattributed = 0
    for r in window:
        if r.get("kind") != "user":
            continue
        entry = r.get("entry") or [None, None]
        if not entry[0]:
            unattributed += 0 if ok(r) else 1
            continue
        for table, key in ((by_node, entry[1] or "?"), (by_pod, entry[0])):
            row = table.setdefault(key, {"requests": 0, "failed": 0})
            row["requests"] += 1
            row["failed"] += 0 if ok(r) else 1
    for row in [*by_node.values(), *by_pod.values()]:
        row["share_failed"] = round(row["failed"] / row["requests"], 4)
    expected = None
    if instance is not None:
        before = [r for r in users if r["t"] < fault_start and ok(r)]
        expected = round(sum(touches(r, instance) for r in before) / len(before), 4) if before else None
    pods, nodes = affected(pod_records, fault_start, window_end)
    return {
        "window_s": round(window_end - fault_start, 3),
        "requests_in_window": len(window),
        "failed_in_window": len(failed),
        "blast_radius": round(len(failed) / len(window), 4) if window else 0.0,
        "expected_blast_radius": expected,
        "blast_radius_by_node": dict(sorted(by_node.items())),
        "blast_radius_by_entry_pod": dict(sorted(by_pod.items())),
        "unattributed_failures": unattributed,
        "affected_pods": pods,
        "affected_nodes": nodes,
        "detect_s": round(min(failures) - fault_start, 3) if failures else None,
        "failure_span_s": round(max(failures) - min(failures), 3) if failures else None,
        "recovery_s": round(recovered - fault_start, 3) if recovered is not None else None,
    }


# ---- admission (the sidecar injector) -------------------------------------------------------


def pods_created(pod_records: list[Record], role: str, start: float, end: float) -> list[str]:
    """Pods of `role` the pod watch first saw in [start, end): created in that window."""
    first: dict[str, float] = {}
    for r in pod_records:
        if r.get("role") == role:
            first.setdefault(r["pod"], r["t"])
    return sorted(p for p, t in first.items() if start <= t < end)


def pods_without(pod_records: list[Record], role: str, container: str) -> list[str]:
    """Pods of `role` the pod watch saw running without `container` in their spec (an app
    pod admitted without its sidecar)."""
    return sorted({r["pod"] for r in pod_records if r.get("role") == role and container not in (r.get("images") or {})})


def webhook_refusals(events: list[Record]) -> int:
    """Pod creations the API server refused because a webhook call failed, from the
    controllers' FailedCreate events (their `count` folds repeats; the event recorder's spam
    filter may drop some past 25 per object, so this is a floor)."""
    return sum(int(e.get("count") or 1) for e in events if e.get("reason") == "FailedCreate" and "webhook" in (e.get("message") or ""))


# ---- pods and resources ------------------------------------------------------------------


def pod_changes(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Pods (name -> container restart counts) before and after: how many were recreated,
    and how many containers of the surviving pods restarted."""
    recreated = len(set(before) - set(after))
    restarts = 0
    for pod, counts in after.items():
        if pod in before:
            restarts += sum(max(0, n - before[pod].get(c, 0)) for c, n in counts.items())
    return {"app_pods_recreated": recreated, "app_container_restarts": restarts}


def agent_resources(samples: list[Record], is_agent: Any) -> dict[str, Any]:
    """CPU (millicores) and memory (MiB) of the agent containers: totals over the instances
    alive at each sample, and per instance. Instances replaced during an upgrade are not
    double-counted: CPU is the agents' CPU time over the sampled span, memory the mean of
    each sampling round's sum. `is_agent(record)` says which containers are agents.
    A round is every node's answer to one sampling pass (`round`; records written before
    rounds were stamped fall back to their own time, one node per round)."""
    agents = [s for s in samples if is_agent(s)]
    if not agents:
        return {"agent_instances": 0, "agent_cpu_m_total": None, "agent_memory_mib_total": None, "agent_cpu_m_per_instance": None, "agent_memory_mib_per_instance": None}
    rounds: dict[float, list[Record]] = {}
    for s in agents:
        rounds.setdefault(s.get("round", s["t"]), []).append(s)
    instances = statistics.fmean(len(rs) for rs in rounds.values())
    memory = statistics.fmean(sum(r["memory_mib"] for r in rs) for rs in rounds.values())
    per_instance: dict[tuple[str, str], list[Record]] = {}
    for s in agents:
        per_instance.setdefault((s["pod"], s["container"]), []).append(s)
    span = max(rounds) - min(rounds)
    cpu_ns = 0.0
    for rs in per_instance.values():
        timed = sorted((r["t"], r["cpu_ns"]) for r in rs if r.get("cpu_ns") is not None)
        if len(timed) >= 2:
            cpu_ns += max(0, timed[-1][1] - timed[0][1])
    cpu = cpu_ns / 1e6 / span if span > 0 else 0.0
    return {
        "agent_instances": round(instances, 2),
        "agent_cpu_m_total": round(cpu, 2),
        "agent_memory_mib_total": round(memory, 2),
        "agent_cpu_m_per_instance": round(cpu / instances, 2),
        "agent_memory_mib_per_instance": round(memory / instances, 2),
    }


# ---- CPU contention ---------------------------------------------------------------------


def run_queue_wait(sched: list[Record], pods: list[Record], start: float, end: float) -> dict[str, dict[str, float]]:
    """Per container name (app, meshproxy, ...): over [start, end], the CPU time it ran and
    the share of its runnable time it spent waiting for a CPU (`wait_share`), from the
    cumulative per-container samples (observe/host.SchedSampler); containers that started
    or ended inside the window count from their first to their last sample."""
    names = {cid: name for p in pods for name, cid in (p.get("container_ids") or {}).items()}
    first: dict[str, Record] = {}
    last: dict[str, Record] = {}
    for r in sched:
        if start <= r["t"] <= end and r["cid"] in names:
            first.setdefault(r["cid"], r)
            last[r["cid"]] = r
    totals: dict[str, list[float]] = {}
    for cid, a in first.items():
        b = last[cid]
        run, wait = b["run_ms"] - a["run_ms"], b["wait_ms"] - a["wait_ms"]
        t = totals.setdefault(names[cid], [0.0, 0.0, 0.0])
        t[0] += max(0.0, run)
        t[1] += max(0.0, wait)
        t[2] += max(0.0, b.get("throttled_ms", 0.0) - a.get("throttled_ms", 0.0))
    return {
        name: {"cpu_s": round(run / 1000, 3), "wait_share": round(wait / (run + wait), 4) if run + wait > 0 else None, "throttled_s": round(thr / 1000, 3)}
        for name, (run, wait, thr) in sorted(totals.items())
    }


def cpu_pressure(samples: list[Record], start: float, end: float) -> float | None:
    """The host's mean CPU pressure (PSI `some`: the share of time some runnable task waited)."""
    window = [s["cpu_some"] for s in samples if start <= s["t"] <= end]
    return round(sum(window) / len(window), 4) if window else None


def _histogram_buckets(text: str, name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def _counter(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name in (name, f"{name}_total"))


def proxy_programming(start: str, end: str) -> dict[str, Any]:
    """A kube-proxy's work during a case, from its metrics at the case's start and end: how
    many endpoint changes it programmed, the p50 and p99 of the time from a change in the API
    to its rules in place (`kubeproxy_network_programming_duration_seconds`, as the upper
    bound of the histogram bucket), and failed iptables-restore calls."""
    name = "kubeproxy_network_programming_duration_seconds"
    a, b = _histogram_buckets(start, name), _histogram_buckets(end, name)
    delta = sorted((le, b[le] - a.get(le, 0.0)) for le in b)
    count = delta[-1][1] if delta else 0.0

    def quantile(q: float) -> float | None:
        if not count:
            return None
        return next((le for le, n in delta if n >= q * count), None)

    failures = _counter(end, "kubeproxy_sync_proxy_rules_iptables_restore_failures") - _counter(start, "kubeproxy_sync_proxy_rules_iptables_restore_failures")
    return {"programmed": int(count), "p50_s": quantile(0.5), "p99_s": quantile(0.99), "restore_failures": int(failures)}
