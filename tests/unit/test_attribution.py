"""Every failed request gets a cause from the evidence: the pattern's, the harness's, or none."""

from __future__ import annotations

import pytest

from patternbench.load.conntrack import bindings, parse_line
from patternbench.measure.attribution import (
    CAUSES,
    Evidence,
    ServiceTimeline,
    attribute,
    by_owner,
    cause,
    failures_by_cause,
)

SVC = "entry"


def eps(*ips: str, ready: bool = True, t: float = 0.0, slice_: str = "entry-abc") -> dict:
    return {"t": t, "event": "MODIFIED", "service": SVC, "slice": slice_,
            "endpoints": [{"ips": [ip], "pod": f"pod-{ip}", "ready": ready, "serving": ready, "terminating": False} for ip in ips]}


def probe(t: float, how: str, sport: int = 40000, **extra) -> dict:
    return {"kind": "probe", "t": t, "wall": 1000.0 + t, "ms": 0.7, "status": 0, "error": "ConnectionRefusedError", "sport": sport, "how": how, **extra}


def pod(t: float, ip: str, ready: bool, restarts: int = 0, deleting: bool = False, image: str = "app:v1") -> dict:
    return {"t": t, "event": "MODIFIED", "pod": f"pod-{ip}", "ip": ip, "ready": ready, "deleting": deleting,
            "restarts": {"app": restarts}, "images": {"app": image}}


def evidence(slices: list, pods: list | None = None, windows: list | None = None, events: list[str] | None = None) -> Evidence:
    return Evidence(ServiceTimeline.of(slices, SVC), pods or [], windows or [], bindings(events or []))


STEADY = [eps("10.244.1.5", "10.244.2.5", t=0.0)]


def test_a_reject_while_the_service_had_ready_endpoints_is_the_host_proxys():
    assert attribute(probe(50.0, "icmp-refused"), evidence(STEADY)) == "kube-proxy-lag"


def test_a_reject_while_every_entry_pod_was_notready_untouched_is_a_readiness_flap():
    slices = STEADY + [eps("10.244.1.5", "10.244.2.5", ready=False, t=49.8), eps("10.244.1.5", "10.244.2.5", t=51.0)]
    pods = [pod(0, "10.244.1.5", True), pod(0, "10.244.2.5", True), pod(49.9, "10.244.1.5", False), pod(49.9, "10.244.2.5", False)]
    assert attribute(probe(50.0, "icmp-refused"), evidence(slices, pods)) == "readiness-flap"


def test_a_reject_while_the_upgrade_replaced_the_entry_pods_is_the_patterns():
    slices = STEADY + [eps("10.244.1.5", "10.244.2.5", ready=False, t=49.8), eps("10.244.1.6", t=51.0)]
    pods = [pod(0, "10.244.1.5", True), pod(48.0, "10.244.1.5", False, deleting=True), pod(49.9, "10.244.2.5", False)]
    ev = evidence(slices, pods, windows=[(40.0, 80.0)])
    assert attribute(probe(50.0, "icmp-refused"), ev) == "no-ready-endpoint"
    # The same evidence outside the pattern's window is charged to no one: unattributed.
    assert attribute(probe(50.0, "icmp-refused"), evidence(slices, pods)) == "unattributed"


def test_a_reset_from_a_binding_that_outlived_the_refusal_is_stale_conntrack():
    entry = parse_line("tcp      6 9 CLOSE src=127.0.0.1 dst=127.0.0.1 sport=40000 dport=31234 src=10.244.0.9 dst=10.244.0.1 sport=8080 dport=40000 mark=0 use=1")
    p = probe(50.0, "rst-refused", conntrack=[entry])
    assert attribute(p, evidence(STEADY, windows=[(40.0, 80.0)])) == "stale-conntrack"


def test_a_fresh_binding_to_a_ready_endpoint_that_refused_is_the_patterns_in_its_window():
    new = "[1050.000100]	    [NEW] tcp      6 120 SYN_SENT src=127.0.0.1 dst=127.0.0.1 sport=40000 dport=31234 [UNREPLIED] src=10.244.1.5 dst=10.244.0.1 sport=8080 dport=40000"
    p = probe(50.0, "rst-refused", conntrack=[])
    assert attribute(p, evidence(STEADY, windows=[(40.0, 80.0)], events=[new])) == "endpoint-refused"
    assert attribute(p, evidence(STEADY, events=[new])) == "unattributed"


def test_a_fresh_binding_to_an_address_long_gone_from_the_endpoints_is_the_host_proxys():
    slices = [eps("10.244.1.5", "10.244.2.5", t=0.0), eps("10.244.2.5", t=10.0)]
    new = "[1050.0]	[NEW] tcp      6 120 SYN_SENT src=127.0.0.1 dst=127.0.0.1 sport=40000 dport=31234 [UNREPLIED] src=10.244.1.5 dst=10.244.0.1 sport=8080 dport=40000"
    assert attribute(probe(50.0, "rst-refused", conntrack=[]), evidence(slices, events=[new])) == "kube-proxy-lag"


def test_without_evidence_a_failure_is_the_patterns_in_its_window_and_unattributed_outside():
    user = {"kind": "user", "t": 50.0, "status": 0, "error": "ConnectionResetError"}
    assert attribute(user, evidence([], windows=[(40.0, 80.0)])) == "cut-in-flight"
    assert attribute(user, evidence([])) == "unattributed"
    answer = {"kind": "user", "t": 50.0, "status": 502, "error": "HTTP502"}
    assert attribute(answer, evidence([], windows=[(40.0, 80.0)])) == "answer-error"


def test_counts_add_up_and_unattributed_is_always_present():
    ev = evidence(STEADY, windows=[(40.0, 80.0)])
    failed = [probe(50.0, "icmp-refused"), {"kind": "user", "t": 45.0, "status": 503, "error": "HTTP503"}]
    counts = failures_by_cause(failed, ev)
    assert counts == {"unattributed": 0, "answer-error": 1, "kube-proxy-lag": 1}
    assert sum(counts.values()) == len(failed)
    assert by_owner(counts) == {"pattern": 1, "harness": 1, "unattributed": 0}
    assert failures_by_cause([], ev) == {"unattributed": 0}


def test_every_cause_has_a_known_owner_and_an_unknown_name_is_an_error():
    assert {c.owner for c in CAUSES.values()} == {"pattern", "harness", "unattributed"}
    with pytest.raises(ValueError, match="unknown failure cause"):
        cause("gremlins")


def test_conntrack_lines_parse_in_both_forms():
    listed = parse_line("tcp      6 86398 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=41000 dport=30001 src=10.244.2.7 dst=10.244.0.1 sport=15006 dport=41000 [ASSURED] mark=0 use=1")
    assert listed == {"state": "ESTABLISHED", "orig": {"src": "127.0.0.1", "dst": "127.0.0.1", "sport": 41000, "dport": 30001},
                      "reply": {"src": "10.244.2.7", "dst": "10.244.0.1", "sport": 15006, "dport": 41000}}
    destroyed = parse_line("[1796303536.123456]	[DESTROY] tcp      6 src=127.0.0.1 dst=127.0.0.1 sport=41000 dport=30001 [UNREPLIED] src=10.244.2.7 dst=10.244.0.1 sport=8080 dport=41000")
    assert destroyed is not None and destroyed["event"] == "DESTROY" and destroyed["wall"] == 1796303536.123456
    assert parse_line("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.") is None
    assert parse_line("udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=53 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=53") is None


def test_stale_routing_after_the_cases_own_api_server_outage_is_the_cases_not_the_harnesss():
    ev = evidence(STEADY, windows=[(40.0, 80.0)])
    ev.outages = [(40.0, 80.0)]
    assert attribute(probe(50.0, "icmp-refused"), ev) == "stale-after-outage"
    # Before the outage the same evidence is the harness's.
    assert attribute(probe(30.0, "icmp-refused"), ev) == "kube-proxy-lag"


def _new(wall: float, sport: int) -> str:
    return (f"[{wall:.6f}]\t    [NEW] tcp      6 120 SYN_SENT src=127.0.0.1 dst=127.0.0.1 sport={sport} dport=31234 [UNREPLIED] "
            f"src=10.244.1.5 dst=10.250.0.1 sport=8080 dport={sport + 7}")


def test_a_reset_with_no_binding_amid_a_complete_event_stream_was_refused_before_nat():
    """The stray refusal's signature (soak, 2026-12-03): reset in under a millisecond, no
    conntrack entry after it, and no NEW event for its port while its neighbours 25 ms either
    side have theirs: the SYN never reached a pod, so the pattern cannot have refused it."""
    p = probe(50.0, "rst-refused", sport=40000, conntrack=[])  # wall 1050.0
    neighbours = [_new(1049.975, 39990), _new(1050.025, 40010)]
    assert attribute(p, evidence(STEADY, windows=[(40.0, 80.0)], events=neighbours)) == "refused-before-nat"
    # Without the neighbours (no event stream, or a gap in it) nothing decides: the pattern's
    # in its window, unattributed outside it.
    assert attribute(p, evidence(STEADY, windows=[(40.0, 80.0)])) == "endpoint-refused"
    assert attribute(p, evidence(STEADY, events=[_new(1049.975, 39990)])) == "unattributed"


def test_a_reset_on_a_source_port_the_service_rejected_before_inherits_that_rejections_owner():
    """The stray refusal's mechanism (reproduced 2026-12-03): a rejected SYN leaves an
    un-NATed SYN_SENT binding for 120 s, and the next connection from its source port keeps
    "no NAT" and is refused by the host. During the pattern's outage that is the pattern's."""
    slices = STEADY + [eps("10.244.1.5", "10.244.2.5", ready=False, t=49.8), eps("10.244.1.6", t=51.0)]
    pods = [pod(0, "10.244.1.5", True), pod(48.0, "10.244.1.5", False, deleting=True), pod(49.9, "10.244.2.5", False)]
    rejected = probe(50.0, "icmp-refused", sport=40000)
    reused = probe(110.0, "rst-refused", sport=40000, conntrack=[])
    neighbours = [_new(1109.975, 39990), _new(1110.025, 40010)]
    ev = evidence(slices, pods, windows=[(40.0, 80.0)], events=neighbours)
    ev.rejected = Evidence.rejections([rejected, reused])
    assert attribute(rejected, ev) == "no-ready-endpoint"
    assert attribute(reused, ev) == "rejection-reused"
    assert cause("rejection-reused").owner == "pattern"
    # A rejection the harness owns (the host's proxy lagging a ready Service) passes its owner on.
    lag = evidence(STEADY, events=neighbours)
    lag.rejected = Evidence.rejections([rejected])
    assert attribute(reused, lag) == "kube-proxy-lag"
    # Past conntrack's SYN_SENT timeout the binding is gone: the old rejection explains nothing.
    late = probe(171.0, "rst-refused", sport=40000, conntrack=[])
    assert attribute(late, ev) == "unattributed"
    # Another source port is untouched by it.
    assert attribute(probe(110.0, "rst-refused", sport=40002, conntrack=[]), ev) == "refused-before-nat"


def test_the_tripwires_unnated_syn_is_direct_evidence_of_a_refusal_before_nat():
    """The host tripwire logged this probe's SYN leaving by lo un-NATed: refused before NAT,
    without needing a complete conntrack event stream (none here)."""
    p = probe(50.0, "rst-refused", sport=40000, conntrack=[])
    ev = evidence(STEADY)
    ev.unnated = Evidence.tripwire([{"t": 50.004, "kind": "nodnat", "sport": 40000, "dport": 31234},
                                    {"t": 50.004, "kind": "nodnat", "sport": 40002, "dport": 30001}], dport=31234)
    assert attribute(p, ev) == "refused-before-nat"
    # Another port's line, or another NodePort's, says nothing about this probe.
    assert attribute(probe(50.0, "rst-refused", sport=40002, conntrack=[]), ev) == "unattributed"


def test_a_timeout_while_the_host_ran_none_of_the_harness_is_the_hosts_stall():
    """The pressure sampler (period 1 s) ran at 10, 11, then not until 17.8: the host ran
    none of the harness from 12 to 17.8 (as a control trial on a starved VM did for ~6 s)."""
    from patternbench.measure import stalled_spans

    rows = [{"t": t} for t in (10.0, 11.0, 17.8, 18.8)]
    stalls = stalled_spans(rows, 1.0)
    assert stalls == [(12.0, 17.8)]
    ev = evidence(STEADY, windows=[(0.0, 100.0)])
    ev.stalls = stalls
    inside = probe(11.5, "read-timeout", ms=2000.0, error="TimeoutError")
    assert attribute(inside, ev) == "host-stalled" and cause("host-stalled").owner == "harness"
    user = {"kind": "user", "t": 15.0, "ms": 5000.0, "status": 0, "error": "ReadTimeout"}
    assert attribute(user, ev) == "host-stalled"
    # Not a timeout (the other side answered: a reset, an error status), or no stall overlapping it: as before.
    assert attribute(probe(13.0, "reset", ms=5.0, error="ConnectionResetError"), ev) == "cut-in-flight"
    assert attribute({"kind": "user", "t": 13.0, "status": 503, "error": "HTTP503"}, ev) == "answer-error"
    assert attribute(probe(20.0, "read-timeout", ms=2000.0, error="TimeoutError"), ev) == "cut-in-flight"
    # A sampler merely a little late is no stall.
    assert stalled_spans([{"t": t} for t in (0.0, 1.9, 2.95)], 1.0) == []


def test_a_timeout_outside_the_patterns_window_on_a_cpu_saturated_host_is_the_hosts():
    """PSI 0.95-0.99 from 7 to 11 s (a control trial at 6 services on 2 cores: 111 probes
    read-timed-out): the machine's doing; the same timeout inside the pattern's upgrade stays
    the pattern's (its upgrade may be what saturated the host)."""
    from patternbench.measure import saturated_spans

    rows = [{"t": float(t), "cpu_some": some, "busy": 1.0, "system": 0.6, "steal": 0.0, "top": [["containerd", 0.3], ["kubelet", 0.2]]}
            for t, some in ((6, 0.47), (7, 0.95), (8, 0.97), (9, 0.97), (10, 0.99), (11, 0.99), (12, 0.77))]
    spans = saturated_spans(rows, 1.0)
    assert [(s["from"], s["to"]) for s in spans] == [(6.0, 11.0)]
    assert spans[0]["top"][0] == ["containerd", 0.3] and spans[0]["system"] == 0.6
    timeout = probe(7.5, "read-timeout", ms=2100.0, error="TimeoutError")
    ev = evidence(STEADY)
    ev.saturated = [(s["from"], s["to"]) for s in spans]
    assert attribute(timeout, ev) == "host-saturated" and cause("host-saturated").owner == "harness"
    ev.windows = [(5.0, 30.0)]
    assert attribute(timeout, ev) == "cut-in-flight"
    ev.windows = []
    assert attribute(probe(13.0, "read-timeout", ms=2000.0, error="TimeoutError"), ev) == "unattributed"
    assert saturated_spans([{"t": 1.0, "cpu_some": 0.95}], 1.0)[0]["busy"] is None  # rows from before the shares were sampled
