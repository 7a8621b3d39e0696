"""Availability and latency: outages from the probe stream, failures and percentiles from the requests.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from patternbench.measure.records import Record, in_window, ok
from patternbench.stats import percentile

# A probe is unavailable when it fails or takes longer than this, dated from its start.
DEFAULT_SLO_MS = 1000.0


# Linux's TCP_TIMEOUT_INIT: a connect() that took this long lost at least one SYN.
SYN_RETRY_S = 1.0


def asked_at(probe: Record) -> float:
    """When the probe put the question that went unanswered. Its SYN (`t`), unless its
    handshake was answered at the first try (`asked_ms` under a SYN retry): then the trouble
    came after its request was sent. A probe that connected before an outage and whose
    request left after it began (its thread waited for the GIL in between) is caught by that
    outage; dated by its SYN it sorts before probes answered in the meantime and splits the
    outage in two (seen on a loaded machine: 3 of 30 injected drops)."""
    asked_ms = probe.get("asked_ms")
    if asked_ms is None or float(asked_ms) >= SYN_RETRY_S * 1000:
        return probe["t"]
    return probe["t"] + float(asked_ms) / 1000.0


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
    start of the first unavailable probe (OpenShift's disruption sampler dates them so;
    `asked_at`: its request's send when it had connected, else its SYN) and
    runs until the service is next seen answering within the deadline: when an available
    probe's answer was produced (its arrival less the usual answer time, never before its own
    start). Dating the end by the answer and not by the request's start matters for hangs:
    requests sent during the last second of a 2 s stall are answered fast once it ends, and
    their starts would cut the outage short by up to the deadline. One still open at `end`
    is closed there."""
    window = sorted(in_window(probes, start, end), key=asked_at)
    asked = [asked_at(p) for p in window]
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

    for i, cause in enumerate(causes):
        if cause is None:
            continue
        if opened is not None and asked[i] > closes:
            close()
            opened, parts = None, []
        if opened is None:
            opened = asked[i]
        parts.append((asked[i], cause))
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
