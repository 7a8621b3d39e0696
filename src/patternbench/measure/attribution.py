"""Why each failed request failed. Every failure is charged, from the evidence its case
captured, to the pattern under test, to the harness or local provider, or left
unattributed; a claim fails on the pattern's failures and on unattributed ones.

A harness cause needs positive evidence (a conntrack binding older than the probe, a
Service that had ready endpoints while the host's proxy still rejected, entry pods NotReady
at once while nothing touched them). A failure without such evidence is charged to the
pattern when it started while the pattern's own upgrade or fault was under way, and left
unattributed otherwise: nothing is excused silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]

OWNERS = ("pattern", "harness", "unattributed")


@dataclass(frozen=True)
class Cause:
    name: str
    owner: str  # one of OWNERS
    meaning: str


CAUSES: dict[str, Cause] = {c.name: c for c in (
    Cause("no-ready-endpoint", "pattern", "the entry Service had no ready endpoint while the pattern's upgrade or fault replaced or stopped its pods"),
    Cause("endpoint-refused", "pattern", "a pod the Service still routed to refused the connection (it closed its listener while in the endpoints)"),
    Cause("answer-error", "pattern", "the chain answered with an error (an app or agent on the request path failed it) during the upgrade or fault"),
    Cause("cut-in-flight", "pattern", "the connection was reset, closed or timed out after it was made, during the upgrade or fault"),
    Cause("stale-after-outage", "pattern", "routing was stale after the case's injected control-plane outage (proxies and kube-proxy resync only once their watches recover)"),
    Cause("stale-conntrack", "harness", "the host's conntrack sent the connection to an address that was no endpoint then: a binding older than the connection"),
    Cause("rejection-reused", "pattern", "the host refused the connection itself: its source port still had the un-NATed binding of an earlier connection the Service rejected during the pattern's upgrade or fault (conntrack keeps it 120 s; kubernetes#48719)"),
    Cause("refused-before-nat", "harness", "the host refused the connection before any NAT (the host's tripwire logged its SYN leaving un-NATed, or no binding was recorded for it while its neighbours' were), as when its source port still had the un-NATed binding of a connection rejected before the case (the readiness poll's; deploy now deletes those)"),
    Cause("kube-proxy-lag", "harness", "the host's kube-proxy rejected or misrouted the connection although the Service's endpoints had changed over a second before"),
    Cause("readiness-flap", "harness", "every entry pod was NotReady at once with nothing replacing, restarting or stopping them (a missed readiness probe)"),
    Cause("host-saturated", "harness", "the request timed out outside the pattern's upgrade or fault while runnable tasks on the cluster's host waited for a CPU at least 90 % of the time (PSI): the machine was too small for what ran on it then (the summary's host_saturation names its busiest processes)"),
    Cause("host-stalled", "harness", "the request timed out while the harness's own host sampler woke over a second late: the machine ran nothing of the harness's for that long (a starved or paused VM), so the timeout says nothing about the pattern"),
    Cause("unattributed", "unattributed", "no evidence decides the cause"),
)}

# Watch events arrive late and kube-proxy programs a change a moment after it (upstream's
# minSyncPeriod is 1 s): a state seen within this of a failure may have been the one in force.
SLACK_S = 1.0
# A pod change (deletion, restart, new image) this long before a readiness loss explains it.
POD_CHANGE_S = 10.0
# conntrack's SYN_SENT timeout (nf_conntrack_tcp_timeout_syn_sent): how long a rejected
# connection's un-NATed binding outlives it.
SYN_SENT_S = 120.0


def cause(name: str) -> Cause:
    if name not in CAUSES:
        raise ValueError(f"unknown failure cause {name!r}; known: {', '.join(CAUSES)}")
    return CAUSES[name]


@dataclass
class ServiceTimeline:
    """The entry Service's endpoints over time, from the EndpointSlice records: after each
    record, the ready addresses and every address it listed."""

    steps: list[tuple[float, frozenset[str], frozenset[str]]] = field(default_factory=list)
    pods: dict[str, str] = field(default_factory=dict)  # address -> pod name

    @classmethod
    def of(cls, slices: list[Record], service: str) -> ServiceTimeline:
        current: dict[str, list[Record]] = {}
        out = cls()
        for rec in sorted((r for r in slices if r.get("service") == service), key=lambda r: r["t"]):
            if rec.get("event") == "DELETED":
                current.pop(rec["slice"], None)
            else:
                current[rec["slice"]] = rec.get("endpoints") or []
            ready, listed = set(), set()
            for eps in current.values():
                for ep in eps:
                    for ip in ep.get("ips") or []:
                        listed.add(ip)
                        if ep.get("pod"):
                            out.pods[ip] = ep["pod"]
                        if ep.get("ready"):
                            ready.add(ip)
            out.steps.append((rec["t"], frozenset(ready), frozenset(listed)))
        return out

    def _between(self, start: float, end: float) -> list[tuple[float, frozenset[str], frozenset[str]]]:
        """The states in force at some moment of [start, end]: the last before start, and every one after."""
        before = [s for s in self.steps if s[0] <= start]
        return before[-1:] + [s for s in self.steps if start < s[0] <= end]

    def no_ready_near(self, t: float) -> bool:
        return any(not ready for _, ready, _ in self._between(t - SLACK_S, t + SLACK_S))

    def ready_near(self, ip: str, t: float) -> bool:
        return any(ip in ready for _, ready, _ in self._between(t - SLACK_S, t + SLACK_S))

    def listed_before(self, ip: str, t: float) -> bool:
        return any(ip in listed for ts, _, listed in self.steps if ts <= t + SLACK_S)

    @property
    def known(self) -> bool:
        return bool(self.steps)


def held_binding(probe: Record) -> Record | None:
    """The conntrack entry a refused or unanswered probe found still in place after it
    failed, when it was an older binding: a fresh connection answered only by a reset is
    deleted at once, and a fresh unanswered one is still SYN_SENT."""
    for entry in probe.get("conntrack") or []:
        if entry.get("orig", {}).get("sport") != probe.get("sport"):
            continue
        if probe.get("how") == "rst-refused" or entry.get("state") != "SYN_SENT":
            return entry
    return None


def new_binding(bindings: dict[int, list[Record]], probe: Record) -> str | None:
    """The target the host's conntrack bound this probe's new connection to (its NEW event,
    within SLACK_S of the probe's start), or None."""
    wall = float(probe.get("wall") or 0)
    for event in bindings.get(int(probe.get("sport") or 0), []):
        if abs(float(event.get("wall") or 0) - wall) <= SLACK_S:
            return event["reply"]["src"]
    return None


def _overlaps(record: Record, spans: list[tuple[float, float]]) -> bool:
    """Whether a span overlaps the request, from its start to its failure (`ms` later)."""
    start = float(record["t"])
    end = start + float(record.get("ms") or 0) / 1000
    return any(a < end and start < b for a, b in spans)


def timed_out(record: Record) -> bool:
    """A request that ended by the harness's own clock (a connect or read timeout), not by
    anything the other side sent."""
    return str(record.get("how") or "").endswith("timeout") or "Timeout" in str(record.get("error") or "")


def pod_changed(pods: list[Record], names: set[str], t: float) -> bool:
    """Whether any of these pods was being deleted, restarted or given a new image between
    POD_CHANGE_S before t and SLACK_S after."""
    seen: dict[str, Record] = {}
    for rec in sorted((r for r in pods if r.get("pod") in names), key=lambda r: r["t"]):
        prev = seen.get(rec["pod"])
        seen[rec["pod"]] = rec
        if not t - POD_CHANGE_S <= rec["t"] <= t + SLACK_S:
            continue
        if rec.get("deleting") or rec.get("event") == "DELETED":
            return True
        if prev is not None and (prev.get("restarts") != rec.get("restarts") or prev.get("images") != rec.get("images")):
            return True
    return False


def readiness_lost(pods: list[Record], names: set[str], t: float) -> bool:
    """Whether an entry pod was seen NotReady (alive, not deleting) around t."""
    return any(
        r.get("pod") in names and not r.get("ready") and not r.get("deleting") and r.get("event") != "DELETED"
        and t - SLACK_S - 2 <= r["t"] <= t + SLACK_S + 2
        for r in pods
    )


@dataclass
class Evidence:
    """What a case captured that bears on its failures."""

    service: ServiceTimeline
    pods: list[Record]
    windows: list[tuple[float, float]]  # the pattern's own upgrade or fault: start -> end of the case
    bindings: dict[int, list[Record]] = field(default_factory=dict)  # conntrack NEW events by source port
    # The case's own control-plane outage (an API-server fault): from its start to the end of
    # the case, routing that lags the Service is the fault's doing, not the harness's.
    outages: list[tuple[float, float]] = field(default_factory=list)
    # The case's rejected probes (icmp-refused) by source port: each left an un-NATed binding.
    rejected: dict[int, list[Record]] = field(default_factory=dict)
    # The host tripwire's "nodnat" lines: SYNs to the NodePort that left un-NATed, by source port.
    unnated: dict[int, list[float]] = field(default_factory=dict)
    # When the harness's host ran none of it (resources.stalled_spans) and when it was
    # CPU-saturated (resources.saturated_spans): from, to.
    stalls: list[tuple[float, float]] = field(default_factory=list)
    saturated: list[tuple[float, float]] = field(default_factory=list)

    def stalled_during(self, record: Record) -> bool:
        """Whether a stall overlapped the request, from its start to its failure."""
        return _overlaps(record, self.stalls)

    def saturated_during(self, record: Record) -> bool:
        """Whether the host was CPU-saturated at some moment of the request."""
        return _overlaps(record, self.saturated)

    @classmethod
    def tripwire(cls, rows: list[Record], dport: int) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for r in rows:
            if r.get("kind") == "nodnat" and r.get("dport") == dport and r.get("sport"):
                out.setdefault(int(r["sport"]), []).append(float(r["t"]))
        return out

    def unnated_near(self, record: Record) -> bool:
        return any(abs(t - record["t"]) <= SLACK_S for t in self.unnated.get(int(record.get("sport") or 0), []))

    @classmethod
    def rejections(cls, records: list[Record]) -> dict[int, list[Record]]:
        out: dict[int, list[Record]] = {}
        for r in records:
            if r.get("how") == "icmp-refused" and r.get("sport"):
                out.setdefault(int(r["sport"]), []).append(r)
        return out

    def rejected_before(self, record: Record) -> Record | None:
        """The latest rejected probe from this record's source port within SYN_SENT_S before it."""
        t = record["t"]
        earlier = [r for r in self.rejected.get(int(record.get("sport") or 0), []) if t - SYN_SENT_S <= r["t"] < t]
        return max(earlier, key=lambda r: r["t"], default=None)

    def stream_complete_near(self, wall: float) -> bool:
        """Whether the conntrack event stream recorded new connections on both sides of `wall`
        (within SLACK_S): a probe missing from it then is a real absence, not a gap."""
        walls = [float(e.get("wall") or 0) for events in self.bindings.values() for e in events]
        return any(wall - SLACK_S <= w < wall for w in walls) and any(wall < w <= wall + SLACK_S for w in walls)

    def in_window(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.windows)

    def in_outage(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.outages)

    def charged(self, name: str, t: float) -> str:
        """A pattern cause while the pattern's upgrade or fault was under way, else unattributed."""
        return name if self.in_window(t) else "unattributed"


def attribute(record: Record, ev: Evidence) -> str:
    """The cause (a CAUSES name) of one failed request."""
    name = _evidence_cause(record, ev)
    # A missed readiness probe or a stalled host is no routing lag: the harness's during an outage too.
    if CAUSES[name].owner == "harness" and name not in ("readiness-flap", "host-stalled", "host-saturated") and ev.in_outage(record["t"]):
        return "stale-after-outage"
    return name


def _evidence_cause(record: Record, ev: Evidence) -> str:
    t = record["t"]
    status = int(record.get("status") or 0)
    how = record.get("how")
    if status >= 400 or (status and record.get("error")):
        return ev.charged("answer-error", t)
    if record.get("proto") == "grpc":
        # A failed RPC (grpcload): an app answered with the hop that failed, or the call was cut.
        return ev.charged("answer-error" if ":" in str(record.get("detail") or "") else "cut-in-flight", t)
    if timed_out(record) and ev.stalled_during(record):
        return "host-stalled"
    if timed_out(record) and not ev.in_window(t) and ev.saturated_during(record):
        return "host-saturated"  # within the pattern's window the pattern may be what saturated it
    if how == "icmp-refused" and ev.service.known:
        if ev.service.no_ready_near(t):
            names = set(ev.service.pods.values())
            if not pod_changed(ev.pods, names, t) and readiness_lost(ev.pods, names, t):
                return "readiness-flap"
            return ev.charged("no-ready-endpoint", t)
        return "kube-proxy-lag"  # ready endpoints all along, and still the "no endpoints" REJECT
    if how in ("rst-refused", "connect-timeout"):
        if held_binding(record) is not None:
            return "stale-conntrack"
        target = new_binding(ev.bindings, record)
        unnated = ev.unnated_near(record)  # the tripwire saw its SYN leave un-NATed
        if how == "rst-refused" and (target is None or unnated):
            if (prior := ev.rejected_before(record)) is not None:
                # The same failure, carried by conntrack: the earlier rejection's owner owns it.
                first = _evidence_cause(prior, ev)
                return "rejection-reused" if CAUSES[first].owner == "pattern" else first
            if unnated or ev.stream_complete_near(float(record.get("wall") or 0)):
                return "refused-before-nat"
        if target is None or not ev.service.known:
            return ev.charged("endpoint-refused", t)
        if ev.service.ready_near(target, t):
            return ev.charged("endpoint-refused", t)
        if ev.service.listed_before(target, t):
            return "kube-proxy-lag"  # sent to an address that had left the endpoints over SLACK_S before
        return "unattributed"
    return ev.charged("cut-in-flight", t)


def failures_by_cause(failed: list[Record], ev: Evidence) -> dict[str, int]:
    """{cause: count} over the failed requests, summing to their number; `unattributed`
    always present."""
    counts = Counter(attribute(r, ev) for r in failed)
    return {"unattributed": counts.pop("unattributed", 0), **dict(sorted(counts.items()))}


def by_owner(counts: dict[str, int]) -> dict[str, int]:
    """{pattern, harness, unattributed: count}."""
    out = dict.fromkeys(OWNERS, 0)
    for name, n in counts.items():
        out[cause(name).owner] += n
    return out
