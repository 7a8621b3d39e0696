"""Resources: the agents' CPU and memory, the CPU they waited for, and how fast proxies
learned endpoints.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import statistics
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from patternbench.measure.records import Record


def whole_rounds(samples: list[Record], start: float, end: float) -> list[Record]:
    """The samples of the sampling rounds that lie wholly within [start, end]: a round cut by
    the window's edge would count only the nodes that answered on its side (a round straddling
    an upgrade's start once read 2 of 6 agents, and 5.0 instances on average)."""
    rounds: dict[float, list[Record]] = {}
    for s in samples:
        rounds.setdefault(s.get("round", s["t"]), []).append(s)
    return [s for rs in rounds.values() if all(start <= r["t"] <= end for r in rs) for s in rs]


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


def agent_age_s(samples: list[Record], is_agent: Any, pods: list[Record], wall_offset: float | None) -> float | None:
    """How old the agents were when their memory was sampled: the mean, over agent samples,
    of the time since their pod became ready (its `ready_since`, wall clock, 1 s resolution).
    An agent's resident memory rises through its first minute (the Go heap grows to its
    first collections), so memory figures are comparable only at like ages: a trial on a
    fresh deployment samples younger agents than one on a deployment earlier trials used.
    `wall_offset` is wall minus monotonic time (from the timeline's marks)."""
    if wall_offset is None:
        return None
    ready: dict[str, float] = {}
    for p in pods:
        if p.get("ready_since") is not None:
            ready.setdefault(p["pod"], p["ready_since"])
    ages = [s["t"] + wall_offset - ready[s["pod"]] for s in samples if is_agent(s) and s.get("pod") in ready]
    return round(statistics.fmean(ages), 1) if ages else None


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


# PSI `some` at or above this: runnable tasks waited for a CPU nearly all the time.
SATURATED = 0.9
# A periodic host sampler waking this much later than its period: the harness's host stalled.
STALL_S = 1.0


def stalled_spans(samples: list[Record], interval_s: float) -> list[tuple[float, float]]:
    """From a periodic sampler's rows (`t`, monotonic): each span in which it woke over
    STALL_S later than its period, from when it was due to when it ran."""
    times = sorted(float(r["t"]) for r in samples)
    return [(a + interval_s, b) for a, b in zip(times, times[1:]) if b - a - interval_s >= STALL_S]


def _mean_of(rows: list[Record], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.fmean(values), 4) if values else None


def saturated_spans(samples: list[Record], interval_s: float, start: float = float("-inf"), end: float = float("inf")) -> list[dict[str, Any]]:
    """The spans in which the host was CPU-saturated (consecutive pressure rows at or above
    SATURATED, each covering the interval_s before it), within [start, end]: from, to, the
    mean PSI, busy, kernel and steal shares, and the busiest processes over the span (mean
    share of the machine)."""
    rows = sorted((r for r in samples if start <= r["t"] <= end), key=lambda r: r["t"])
    spans: list[list[Record]] = []
    for r in rows:
        if r.get("cpu_some", 0.0) < SATURATED:
            continue
        if spans and r["t"] - spans[-1][-1]["t"] <= 1.5 * interval_s:
            spans[-1].append(r)
        else:
            spans.append([r])
    out = []
    for span in spans:
        top: dict[str, float] = {}
        for r in span:
            for name, share in r.get("top") or []:
                top[name] = top.get(name, 0.0) + share / len(span)
        out.append({
            "from": span[0]["t"] - interval_s, "to": span[-1]["t"],
            **{k: _mean_of(span, k) for k in ("cpu_some", "busy", "system", "steal")},  # None where rows predate a share
            "top": [[n, round(v, 4)] for n, v in sorted(top.items(), key=lambda nv: -nv[1])[:5]],
        })
    return out


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
