from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench import measure
from patternbench.results.summary import check_claims, expected_proxies, summarize_case
from patternbench.results.verdicts import Thresholds
from patternbench.stats import percentile


def probe(t: float, good: bool = True) -> dict:
    return {"kind": "probe", "t": t, "ms": 1.0, "status": 200 if good else 0, "error": "" if good else "ConnectionRefusedError"}


def user(t: float, ms: float = 5.0, good: bool = True, calls: list[dict] | None = None, via: str = "", entry: tuple = ("f-1", "n1")) -> dict:
    return {"kind": "user", "t": t, "ms": ms, "status": 200 if good else 502, "error": "" if good else "HTTP502", "calls": calls or [], "via": via, "entry": list(entry)}


def call(src: tuple, dst: tuple, via: str) -> dict:
    return {"src": list(src), "dst": list(dst), "via": via}


# One call f-1 (n1) -> o-1 (n2) through node proxies: app, node proxy n1, node proxy n2, app.
NODE_CALL = call(("f-1", "n1"), ("o-1", "n2"), "1.1 node/n2 (n2), 1.1 node/n1 (n1)")


def test_outage_is_dated_from_the_start_of_the_first_failing_probe() -> None:
    probes = [probe(0.0), probe(0.05), probe(0.10, False), probe(0.15, False), probe(0.20), probe(0.25, False), probe(0.30)]
    assert measure.outages(probes, 0, 1) == [(0.10, 0.20), (0.25, 0.30)]
    stats = measure.availability([], probes, 0, 1)
    assert stats["downtime_s"] == pytest.approx(0.15)
    assert stats["max_outage_s"] == pytest.approx(0.10)
    assert stats["failed_requests"] == 3 and stats["total_requests"] == 7


def test_an_outage_still_open_at_the_end_is_closed_there() -> None:
    assert measure.outages([probe(1.0), probe(2.0, False)], 0, 3.5) == [(2.0, 3.5)]


def test_no_failure_no_downtime() -> None:
    stats = measure.availability([user(0.1), user(0.2)], [probe(0.1), probe(0.2)], 0, 1)
    assert stats == {"downtime_s": 0.0, "error_downtime_s": 0.0, "slow_downtime_s": 0.0, "max_outage_s": 0.0, "outages": 0, "failed_requests": 0, "total_requests": 4, "error_rate": 0.0}


def test_window_bounds_failures() -> None:
    records = [user(0.5, good=False), user(1.5, good=False), user(2.5)]
    stats = measure.availability(records, [], 1.0, 3.0)
    assert stats["failed_requests"] == 1 and stats["total_requests"] == 2 and stats["error_rate"] == 0.5


def test_percentiles_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 50) is None
    lat = measure.latency_ms([user(0, ms=10), user(0, ms=20), user(0, ms=999, good=False)])
    assert lat["p99"] == 20  # failed requests are not latency samples


def test_hops_by_pattern() -> None:
    sidecar = [call(("f-1", "n1"), ("o-1", "n1"), "1.1 sidecar/o-1 (n1), 1.1 sidecar/f-1 (n1)")]
    summary = measure.hop_summary([user(0, calls=sidecar, via="1.1 sidecar/f-1 (n1)"), user(0, calls=[NODE_CALL])])
    assert summary["proxies_per_request"] == 2.5  # (1 + 2 + 2) / 2
    # sidecar: 1 entry loopback + 2 loopback + 1 same node; node: 2 same node + 1 cross node
    assert summary["hops"] == {"loopback": 1.5, "same_node": 1.5, "cross_node": 0.5}
    assert summary["cross_node_share"] == 0.5


def test_requests_per_agent_counts_each_instance_once_per_request() -> None:
    same = call(("f-1", "n1"), ("o-1", "n1"), "1.1 node/n1 (n1), 1.1 node/n1 (n1)")
    records = [user(0, calls=[same, same]), user(0, calls=[same]), user(0, good=False, calls=[same])]
    assert measure.requests_per_agent(records) == {"node/n1": 2}


def test_pod_changes() -> None:
    before = {"a": {"app": 0, "meshproxy": 0}, "b": {"app": 1}}
    after = {"a": {"app": 2, "meshproxy": 0}, "c": {"app": 0}}
    assert measure.pod_changes(before, after) == {"app_pods_recreated": 1, "app_container_restarts": 2}


def test_cpu_from_cumulative_time_and_memory_means() -> None:
    samples = [
        {"t": 0.0, "pod": "p", "container": "meshproxy", "cpu_ns": 0, "memory_mib": 10.0},
        {"t": 2.0, "pod": "p", "container": "meshproxy", "cpu_ns": 100_000_000, "memory_mib": 12.0},  # 0.1 s CPU in 2 s
        {"t": 0.0, "pod": "p", "container": "app", "cpu_ns": 0, "memory_mib": 50.0},
        {"t": 2.0, "pod": "p", "container": "app", "cpu_ns": 10**10, "memory_mib": 50.0},
    ]
    out = measure.agent_resources(samples, lambda s: s["container"] == "meshproxy")
    assert out["agent_instances"] == 1
    assert out["agent_cpu_m_total"] == pytest.approx(50.0)
    assert out["agent_memory_mib_total"] == pytest.approx(11.0)


def test_a_round_adds_up_every_node() -> None:
    """Three nodes answer one sampling round a few ms apart: one round of six agents, not
    three rounds of two (what the per-node times alone would give)."""
    samples = [
        {"t": r + n * 0.01, "round": r, "pod": f"agent-{n}", "container": c, "cpu_ns": r * 1e7, "memory_mib": 10.0}
        for r in (0.0, 2.0) for n in range(3) for c in ("meshproxy", "logagent")
    ]
    out = measure.agent_resources(samples, lambda s: True)
    assert out["agent_instances"] == 6
    assert out["agent_memory_mib_total"] == pytest.approx(60.0)
    assert out["agent_memory_mib_per_instance"] == pytest.approx(10.0)
    assert out["agent_cpu_m_total"] == pytest.approx(60.0)  # six instances, 10 m each


def test_a_window_keeps_only_the_rounds_wholly_inside_it() -> None:
    """The round at t=2 answered from 2.00 to 2.02; a window ending at 2.01 (an upgrade's
    start) cut it, and its one node read alone made 5 agents of 6 on average (CI)."""
    samples = [
        {"t": r + n * 0.01, "round": r, "pod": f"agent-{n}", "container": c, "cpu_ns": r * 1e7, "memory_mib": 10.0}
        for r in (0.0, 1.0, 2.0) for n in range(3) for c in ("meshproxy", "logagent")
    ]
    cut = [s for s in samples if s["t"] < 2.01]
    assert measure.agent_resources(cut, lambda s: True)["agent_instances"] == pytest.approx(14 / 3, abs=0.01)
    kept = measure.whole_rounds(samples, float("-inf"), 2.01)
    assert {s["round"] for s in kept} == {0.0, 1.0}
    assert measure.agent_resources(kept, lambda s: True)["agent_instances"] == 6


def test_an_instance_replaced_mid_run_is_not_counted_twice() -> None:
    old = [{"t": t, "pod": "a", "container": "meshproxy", "cpu_ns": t * 1e7, "memory_mib": 10.0} for t in (0.0, 1.0, 2.0)]
    new = [{"t": t, "pod": "b", "container": "meshproxy", "cpu_ns": (t - 2) * 1e7, "memory_mib": 10.0} for t in (3.0, 4.0)]
    out = measure.agent_resources(old + new, lambda s: True)
    assert out["agent_instances"] == 1
    assert out["agent_memory_mib_total"] == pytest.approx(10.0)
    assert out["agent_cpu_m_total"] == pytest.approx(7.5)  # 0.03 s of CPU over the 4 s sampled


def write_case(tmp: Path, pattern: str, agent: str | None, requests: list[dict], before: dict, after: dict, upgrade: tuple[float, float] | None, sink: dict | None = None) -> Path:
    d = tmp / f"{pattern}-{agent}"
    d.mkdir()
    (d / "case.json").write_text(json.dumps({"id": d.name, "pattern": pattern, "agent": agent, "naive": False}))
    (d / "deployment.json").write_text(json.dumps({"containers_live": 8, "containers_formula": 8, "app_pods": 2, "nodes": 1, "calls_per_request": 1, "agents": {"mesh": True, "logging": True, "extra_agents": 0}}))
    marks = [{"phase": "warmup", "t": 0.0}, {"phase": "before", "t": 1.0}]
    if upgrade:
        marks += [{"phase": "upgrade_start", "t": upgrade[0]}, {"phase": "upgrade_end", "t": upgrade[1]}]
    marks += [{"phase": "after", "t": 8.0}, {"phase": "end", "t": 10.0}]
    (d / "timeline.jsonl").write_text("\n".join(json.dumps(m) for m in marks) + "\n")
    (d / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in requests) + "\n{\"cut short")
    (d / "pods-before.json").write_text(json.dumps(before))
    (d / "pods-after.json").write_text(json.dumps(after))
    (d / "load-summary.json").write_text(json.dumps({"cpu_warning": False}))
    if sink is not None:
        (d / "sink.json").write_text(json.dumps(sink))
    return d


def test_summarize_a_daemonset_case_and_check_its_claims(tmp_path: Path) -> None:
    requests = [user(1.5 + i * 0.1, calls=[NODE_CALL]) for i in range(60)] + [probe(1.5 + i * 0.05) for i in range(160)]
    d = write_case(tmp_path, "daemonset", "logging", requests, {"a": {"app": 0}, "b": {"app": 0}}, {"a": {"app": 0}, "b": {"app": 0}}, (4.0, 6.0),
                   sink={"total": {"missing": 0, "duplicated": 0, "received": 60}, "lag": {}})
    entry = summarize_case(d)
    assert entry["missing"] == []
    assert entry["failed_requests"] == 0 and entry["downtime_s"] == 0
    assert entry["app_pods_recreated"] == 0 and entry["upgrade_duration_s"] == 2.0
    assert entry["proxies_per_request"] == 2 and entry["hops"] == {"same_node": 2.0, "cross_node": 1.0}
    assert entry["cross_node_share"] == 1.0 and entry["request_grouping"]["node"]["instances"] == 2
    assert entry["log_lines_lost"] == 0
    assert check_claims(entry, calls_per_request=1) == []


def test_claims_catch_a_daemonset_upgrade_that_recreated_pods_and_lost_lines(tmp_path: Path) -> None:
    requests = [user(1.5, calls=[NODE_CALL]), probe(4.5, False), probe(5.0)]
    d = write_case(tmp_path, "daemonset", "logging", requests, {"a": {"app": 0}}, {"z": {"app": 0}}, (4.0, 6.0),
                   sink={"total": {"missing": 3, "duplicated": 0, "received": 7}, "lag": {}})
    problems = check_claims(summarize_case(d), calls_per_request=1)
    assert any("touched the app" in p for p in problems)
    assert any("1 requests failed" in p for p in problems)
    assert any("3 log lines lost" in p for p in problems)
    assert check_claims(summarize_case(d), 1, Thresholds(max_failed_requests=5, max_log_lines_lost=5)) == [problems[0]]


def test_a_case_cut_short_says_what_is_missing(tmp_path: Path) -> None:
    d = tmp_path / "sidecar-mesh"
    d.mkdir()
    (d / "case.json").write_text(json.dumps({"id": "sidecar-mesh", "pattern": "sidecar", "agent": "mesh", "naive": False}))
    (d / "timeline.jsonl").write_text(json.dumps({"phase": "before", "t": 1.0}) + "\n" + json.dumps({"phase": "upgrade_start", "t": 2.0}) + "\n")
    entry = summarize_case(d)
    assert "upgrade_end" in entry["missing"] and "pods-after.json" in entry["missing"]
    assert any("incomplete" in p for p in check_claims(entry, 2))


def test_expected_proxies() -> None:
    assert expected_proxies("sidecar", 2) == 5
    assert expected_proxies("hybrid", 2) == 5
    assert expected_proxies("daemonset", 2) == 4
    assert expected_proxies("none", 2) == 0


# ---- the outage definition on probe streams (probes every 50 ms, a true outage of 2 s) ------

T0, T1 = 2.013, 4.013  # not on the probe grid: the error is up to one probe interval


def stream(kind: str, until: float = 6.0) -> list[dict]:
    """Probes every 50 ms as each kind of outage answers them, from the mechanisms' timing:
    refused/reset fail at once; a dropped SYN is retransmitted after Linux's initial 1 s RTO,
    then 3 s (past the 2 s probe timeout); a hang answers everything it holds when it ends."""
    out = []
    for i in range(int(until / 0.05)):
        t = i * 0.05
        rec = {"kind": "probe", "t": t, "ms": 1.2, "status": 200, "error": ""}
        if T0 <= t < T1:
            if kind in ("refused", "reset"):
                rec.update(ms=0.3, status=0, error="ConnectionRefusedError" if kind == "refused" else "ConnectionResetError")
            elif kind == "dropped":
                if t + 1.0 >= T1:
                    rec.update(ms=1001.5)  # the retransmitted SYN got through: slow, not failed
                else:
                    rec.update(ms=2000.0, status=0, error="TimeoutError")
            elif kind == "hang":
                ms = (T1 - t) * 1000 + 1.0
                if ms > 2000:
                    rec.update(ms=2000.0, status=0, error="TimeoutError")
                else:
                    rec.update(ms=ms)
        out.append(rec)
    return out


@pytest.mark.parametrize("kind", ["refused", "reset", "dropped", "hang"])
def test_every_kind_of_outage_is_measured_within_50_ms(kind: str) -> None:
    spans = measure.outage_spans(stream(kind), 0, 6.0)
    assert len(spans) == 1
    assert abs(spans[0].start - T0) < 0.05 and abs(spans[0].end - T1) < 0.05
    assert abs(spans[0].length - 2.0) < 0.05
    assert spans[0].error_s + spans[0].slow_s == pytest.approx(spans[0].length)


def test_a_dropped_outage_is_not_cut_short_by_retransmitted_probes() -> None:
    """The issue's bug: probes in the second half of a 2 s drop succeed after a retransmission
    about a second later. Ending the outage at such a probe's start halves it; they are slow
    (over the deadline), and the outage ends when the service answers again."""
    probes = stream("dropped")
    first_success = min(p["t"] for p in probes if measure.ok(p) and p["t"] >= T0)
    assert first_success - T0 == pytest.approx(1.0, abs=0.05)  # what the old definition reported
    with_deadline = measure.availability([], probes, 0, 6.0)
    assert with_deadline["downtime_s"] == pytest.approx(2.0, abs=0.05)
    assert with_deadline["slow_downtime_s"] == pytest.approx(2.0, abs=0.05) and with_deadline["error_downtime_s"] == 0
    # Even with no deadline, the answers (not the starts) of those probes date the end.
    no_deadline = measure.outage_spans(probes, 0, 6.0, slo_ms=float("inf"))
    assert sum(o.length for o in no_deadline) == pytest.approx(2.0, abs=0.05)
    assert sum(o.error_s for o in no_deadline) == pytest.approx(sum(o.length for o in no_deadline))


def test_a_hang_whose_probes_succeed_slowly_is_slow_downtime_ended_by_the_answers() -> None:
    hang = measure.availability([], stream("hang"), 0, 6.0)
    assert hang["failed_requests"] == 0  # no probe failed: every one was answered, late
    assert hang["downtime_s"] == pytest.approx(2.0, abs=0.05)
    assert hang["slow_downtime_s"] == hang["downtime_s"] and hang["error_downtime_s"] == 0
    # Dating the end by the next available probe's *start* would stop a second early.
    by_start = [p for p in stream("hang") if measure.probe_cause(p) is None and T0 < p["t"] < T1]
    assert min(p["t"] for p in by_start) == pytest.approx(T1 - 1.0, abs=0.05)


def test_refused_is_error_downtime_and_the_deadline_is_configurable() -> None:
    refused = measure.availability([], stream("refused"), 0, 6.0)
    assert refused["error_downtime_s"] == pytest.approx(2.0, abs=0.05) and refused["slow_downtime_s"] == 0
    # The deadline decides what is slow: at 100 ms, normal 1.2 ms probes stay available and
    # a 150 ms answer is an outage; at the default it is not.
    probes = [probe(i * 0.05) for i in range(20)]
    probes[4] = {**probes[4], "ms": 150.0}
    assert measure.availability([], probes, 0, 1, slo_ms=100)["slow_downtime_s"] == pytest.approx(0.05)
    assert measure.availability([], probes, 0, 1)["downtime_s"] == 0


def test_error_and_slow_parts_split_one_outage() -> None:
    probes = [probe(0.0), {"kind": "probe", "t": 0.05, "ms": 1500.0, "status": 200, "error": ""}, probe(0.10, False), probe(0.15, False), probe(0.20)]
    [span] = measure.outage_spans(probes, 0, 1)
    assert (span.start, span.end) == (0.05, 0.20)
    assert span.slow_s == pytest.approx(0.05) and span.error_s == pytest.approx(0.10)


def test_one_slow_probe_among_good_ones_is_one_interval_of_downtime() -> None:
    probes = [probe(i * 0.05) for i in range(20)]
    probes[5] = {**probes[5], "ms": 1200.0}
    assert measure.outages(probes, 0, 1) == [(0.25, pytest.approx(0.30))]


def test_a_deployments_agent_pods_are_no_node_rollout() -> None:
    """Waypoint pods (role agent, owned by a ReplicaSet) replaced on a node are no node going
    without its agent; the same records from a DaemonSet are."""
    def rec(t: float, uid: str, owner: str, ready: bool, event: str = "MODIFIED") -> dict:
        return {"t": t, "event": event, "uid": uid, "role": "agent", "app": "w", "node": "n1", "ready": ready, "deleting": False, "owner": owner}

    for owner, want in (("ReplicaSet", 0), ("DaemonSet", 1)):
        records = [rec(0.0, "old", owner, True), rec(2.0, "old", owner, False), rec(3.0, "new", owner, False, "ADDED"), rec(4.0, "new", owner, True)]
        assert len(measure.node_rollouts(records, 1.0, 10.0)) == want


def test_run_queue_wait_is_the_share_of_runnable_time_spent_waiting_per_container() -> None:
    from patternbench.measure import cpu_pressure, run_queue_wait

    pods = [{"container_ids": {"app": "a" * 64, "meshproxy": "m" * 64}}, {"container_ids": {"app": "b" * 64}}]
    sched = [
        {"t": 0.0, "cid": "a" * 64, "run_ms": 100.0, "wait_ms": 50.0, "throttled_ms": 0.0},
        {"t": 10.0, "cid": "a" * 64, "run_ms": 400.0, "wait_ms": 150.0, "throttled_ms": 0.0},  # ran 300, waited 100
        {"t": 1.0, "cid": "b" * 64, "run_ms": 0.0, "wait_ms": 0.0, "throttled_ms": 0.0},
        {"t": 9.0, "cid": "b" * 64, "run_ms": 100.0, "wait_ms": 100.0, "throttled_ms": 0.0},  # ran 100, waited 100
        {"t": 0.0, "cid": "m" * 64, "run_ms": 0.0, "wait_ms": 0.0, "throttled_ms": 0.0},
        {"t": 10.0, "cid": "m" * 64, "run_ms": 90.0, "wait_ms": 10.0, "throttled_ms": 5.0},
        {"t": 5.0, "cid": "x" * 64, "run_ms": 1.0, "wait_ms": 1.0},  # no pod of the case: ignored
        {"t": 20.0, "cid": "a" * 64, "run_ms": 9000.0, "wait_ms": 9000.0},  # after the window
    ]
    got = run_queue_wait(sched, pods, 0.0, 10.0)
    assert got == {"app": {"cpu_s": 0.4, "wait_share": 0.3333, "throttled_s": 0.0}, "meshproxy": {"cpu_s": 0.09, "wait_share": 0.1, "throttled_s": 0.005}}
    assert cpu_pressure([{"t": 1.0, "cpu_some": 0.2}, {"t": 2.0, "cpu_some": 0.4}, {"t": 30.0, "cpu_some": 1.0}], 0.0, 10.0) == 0.3
    assert cpu_pressure([], 0.0, 10.0) is None


def _programming(counts: dict[str, int], failures: int) -> str:
    name = "kubeproxy_network_programming_duration_seconds"
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{ip_family="IPv4",le="{le}"}} {n}' for le, n in counts.items()]
    lines += [f'{name}_sum{{ip_family="IPv4"}} 1.0', f'{name}_count{{ip_family="IPv4"}} {counts["+Inf"]}']
    lines += ["# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter", f"kubeproxy_sync_proxy_rules_iptables_restore_failures_total {failures}"]
    return "\n".join(lines) + "\n"


def test_proxy_programming_is_the_cases_share_of_the_histogram() -> None:
    from patternbench.measure import proxy_programming

    start = _programming({"0.5": 10, "1": 20, "2": 30, "5": 30, "+Inf": 30}, 1)
    # During the case: 100 changes, 50 within 1 s, 98 within 2 s, 100 within 5 s.
    end = _programming({"0.5": 10, "1": 70, "2": 128, "5": 130, "+Inf": 130}, 3)
    assert proxy_programming(start, end) == {"programmed": 100, "p50_s": 1.0, "p99_s": 5.0, "restore_failures": 2}
    assert proxy_programming(end, end) == {"programmed": 0, "p50_s": None, "p99_s": None, "restore_failures": 0}


def test_a_probe_caught_in_flight_is_dated_by_its_request_and_does_not_split_the_outage() -> None:
    """Recorded on a loaded machine (an injected 1.2 s drop at 1.0): a probe connected at 0.955
    but its thread waited for the GIL and sent its request at 1.01, after the drop began, so
    it took 1.5 s; a probe at 0.986 was answered at once. Dated by its SYN the first probe
    opens an outage that the second closes: two outages for one drop."""
    probes = [probe(0.80 + i * 0.025) for i in range(6)]  # 0.80 .. 0.925, answered
    caught = {"kind": "probe", "t": 0.955, "ms": 1519.6, "asked_ms": 55.0, "status": 200, "error": ""}
    between = {"kind": "probe", "t": 0.986, "ms": 3.3, "asked_ms": 1.0, "status": 200, "error": ""}
    dropped = [{"kind": "probe", "t": 1.012 + i * 0.025, "ms": 2000.0, "status": 0, "error": "TimeoutError"} for i in range(8)]
    retried = [{"kind": "probe", "t": 1.212 + i * 0.025, "ms": 1010.0, "asked_ms": 1005.0, "status": 200, "error": ""} for i in range(39)]
    after = [probe(2.21 + i * 0.025) for i in range(10)]
    stream_ = probes + [caught, between] + dropped + retried + after
    [span] = measure.outage_spans(stream_, 0, 3.0)
    assert span.start == pytest.approx(1.01)  # the caught probe's request, not its SYN (0.955)
    assert span.end == pytest.approx(2.21, abs=0.005)
    # Without `asked_ms` (dated by the SYN) the same stream is split: the test can fail.
    bare = [{k: v for k, v in p.items() if k != "asked_ms"} for p in stream_]
    assert len(measure.outage_spans(bare, 0, 3.0)) == 2


def test_a_probe_whose_syn_was_retried_is_dated_by_its_syn() -> None:
    """A connect() that took the initial retransmission timeout (1 s) lost a SYN: the trouble
    began at the SYN, not when the request finally left."""
    retried = {"kind": "probe", "t": 1.0, "ms": 1010.0, "asked_ms": 1005.0, "status": 200, "error": ""}
    prompt = {"kind": "probe", "t": 1.0, "ms": 1500.0, "asked_ms": 40.0, "status": 200, "error": ""}
    assert measure.asked_at(retried) == 1.0
    assert measure.asked_at(prompt) == pytest.approx(1.04)
    assert measure.asked_at({"kind": "probe", "t": 1.0, "ms": 5.0}) == 1.0


def test_agent_age_is_the_mean_time_since_each_sampled_agents_pod_became_ready() -> None:
    pods = [
        {"pod": "a", "ready_since": 1000.0}, {"pod": "a", "ready_since": 1001.0},  # the first readiness counts
        {"pod": "b", "ready_since": 1020.0}, {"pod": "c", "ready_since": None},
    ]
    samples = [  # monotonic t; wall = t + 900
        {"pod": "a", "container": "meshproxy", "t": 130.0}, {"pod": "b", "container": "meshproxy", "t": 130.0},
        {"pod": "a", "container": "app", "t": 130.0}, {"pod": "c", "container": "meshproxy", "t": 130.0},
    ]
    is_agent = lambda s: s["container"] == "meshproxy"  # noqa: E731
    # a: 1030 - 1000 = 30 s; b: 10 s; the app and the never-ready pod are not agents' ages.
    assert measure.agent_age_s(samples, is_agent, pods, 900.0) == 20.0
    assert measure.agent_age_s(samples, is_agent, pods, None) is None
    assert measure.agent_age_s([], is_agent, pods, 900.0) is None


def test_an_error_answer_is_kept_with_its_failure_and_shown_in_the_report(tmp_path: Path) -> None:
    from patternbench.results.report import causes_text

    answered = {"kind": "probe", "t": 4.5, "ms": 140.0, "status": 502, "error": "HTTP502", "pod": "f-1",
                "answer": '{"service": "frontend",\n "downstream": [{"service": "orders", "error": "EOF"}]}'}
    requests = [user(1.5, calls=[NODE_CALL]), probe(4.2, False), answered, probe(5.0)]
    d = write_case(tmp_path, "daemonset", "mesh", requests, {"a": {"app": 0}}, {"a": {"app": 0}}, (4.0, 6.0))
    entry = summarize_case(d)
    assert entry["failed_requests"] == 2
    # Only the failure that carried an answer, its time from the upgrade's start.
    assert entry["failed_answers"] == [{"t_s": 0.5, "kind": "probe", "status": 502, "answer": answered["answer"]}]
    summary = {"failures_by_cause": entry["failures_by_cause"], "cases": {"daemonset-mesh": {**entry, "trials": [{**entry, "trial": 2}]}}}
    text = "\n".join(causes_text(summary))
    assert '- daemonset-mesh (trial 2), probe at 0.5 s, HTTP 502: `{"service": "frontend", "downstream": [{"service": "orders", "error": "EOF"}]}`' in text


def test_pod_start_from_the_api_servers_stamps() -> None:
    from patternbench.measure import pod_start_s

    records = [
        {"pod": "a", "role": "app", "ready": False, "created": 100.0, "ready_since": None},
        {"pod": "a", "role": "app", "ready": False, "created": 100.0, "ready_since": 100.0},  # Ready=False since creation
        {"pod": "a", "role": "app", "ready": True, "created": 100.0, "ready_since": 103.0},
        {"pod": "a", "role": "app", "ready": True, "created": 100.0, "ready_since": 109.0},  # ready again later: the first counts
        {"pod": "b", "role": "app", "ready": True, "created": 100.0, "ready_since": 101.0},
        {"pod": "c", "role": "app", "ready": True, "created": 100.0, "ready_since": 100.0},
        {"pod": "m", "role": "agent", "ready": True, "created": 100.0, "ready_since": 150.0},
    ]
    assert pod_start_s(records) == {"p50": 1.0, "p99": 3.0, "pods": 3}
    assert pod_start_s([{"pod": "x", "role": "app", "ready": True, "ready_since": 5.0}]) is None  # no creation stamp (older records)
