"""Calibration of the outage measurement: outages of known kind and length, injected on
purpose, against what the normal probe stream and `measure.outage_spans` make of them.
The result is the downtime figures' own error bar; every report carries the latest one.

This module is the pure side (comparison, files); `patternbench.outages` holds the
mechanisms that cause the outages.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patternbench import measure
from patternbench.errors import UsageError

KINDS = ("refused", "reset", "dropped", "hang")
CALIBRATION_FILE = "calibration.json"
SCHEMA = 1
PROBE_INTERVAL_S = 0.025  # as the load process's probe stream (LoadConfig.probe_interval_s)
PROMISED_ERROR_MS = 50.0  # any outage measured within this of its true length


@dataclass(frozen=True)
class Injection:
    """An outage we caused: its kind and when it began and ended (monotonic clock)."""

    kind: str
    start: float
    end: float
    uncertainty_s: float = 0.0  # how precisely the mechanism's moments are known (an iptables call takes ~15 ms)

    @property
    def length(self) -> float:
        return self.end - self.start


def expected_s(injection: Injection, slo_ms: float) -> float:
    """The downtime the definition says the injection causes. Refused, reset and dropped
    outages count for their whole length (a dropped SYN is retried after 1 s, so every
    request sent into a drop waits past a deadline of up to 1 s). A hang counts for its whole
    length once some request waited past the deadline, and not at all when it is shorter
    than the deadline: then every request was answered in time."""
    if injection.kind == "hang" and injection.length * 1000 <= slo_ms:
        return 0.0
    return injection.length


@dataclass(frozen=True)
class Comparison:
    """Injected against measured: lengths in seconds, errors in milliseconds (measured minus
    expected; positive means the probe stream saw a longer outage)."""

    kind: str
    injected_s: float
    expected_s: float
    measured_s: float
    error_ms: float
    start_error_ms: float | None
    end_error_ms: float | None
    outages: int
    error_downtime_s: float
    slow_downtime_s: float
    truth_uncertainty_ms: float = 0.0
    # How late the probe stream itself ran around the injection: the longest gap between two
    # probe starts less the usual one. A starved machine delays the probes that date an
    # outage's edges; this is the instrument's own resolution at that moment.
    probe_lag_ms: float = 0.0


def probe_lag_ms(probes: list[dict[str, Any]], start: float, end: float) -> float:
    """The longest gap between consecutive probe starts in [start, end], less the median gap."""
    times = sorted(p["t"] for p in probes if start <= p["t"] <= end)
    gaps = [b - a for a, b in zip(times, times[1:])]
    if len(gaps) < 2:
        return 0.0
    return round(max(0.0, max(gaps) - statistics.median(gaps)) * 1000, 1)


def compare(injection: Injection, probes: list[dict[str, Any]], slo_ms: float, margin_s: float = 1.0) -> Comparison:
    """What the probes measured around one injection (from `margin_s` before its start to
    `margin_s` after its end; that window must hold no other injection)."""
    spans = measure.outage_spans(probes, injection.start - margin_s, injection.end + margin_s, slo_ms)
    measured = sum(o.length for o in spans)
    expected = expected_s(injection, slo_ms)
    return Comparison(
        kind=injection.kind,
        injected_s=round(injection.length, 4),
        expected_s=round(expected, 4),
        measured_s=round(measured, 4),
        error_ms=round((measured - expected) * 1000, 1),
        start_error_ms=round((spans[0].start - injection.start) * 1000, 1) if spans else None,
        end_error_ms=round((spans[-1].end - injection.end) * 1000, 1) if spans else None,
        outages=len(spans),
        error_downtime_s=round(sum(o.error_s for o in spans), 4),
        slow_downtime_s=round(sum(o.slow_s for o in spans), 4),
        truth_uncertainty_ms=round(injection.uncertainty_s * 1000, 1),
        probe_lag_ms=probe_lag_ms(probes, injection.start - margin_s, injection.end + margin_s),
    )


def max_error_ms(rows: list[Comparison]) -> float | None:
    """The worst absolute length error over every injection: the measurement's error bar."""
    return max((abs(r.error_ms) for r in rows), default=None)


def document(rows: list[Comparison], target: str, slo_ms: float, probe_interval_s: float) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": target,
        "slo_ms": slo_ms,
        "probe_interval_s": probe_interval_s,
        "max_error_ms": max_error_ms(rows),
        "rows": [asdict(r) for r in rows],
    }


def write(results: Path, doc: dict[str, Any]) -> Path:
    """`<results>/calibration.json` is the latest; each one also kept by its time."""
    try:
        (results / "calibrations").mkdir(parents=True, exist_ok=True)
        stamped = results / "calibrations" / f"calibration-{doc['when'].replace(':', '')}.json"
        text = json.dumps(doc, indent=1) + "\n"
        stamped.write_text(text)
        (results / CALIBRATION_FILE).write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write the calibration to {results}: {exc.strerror}") from None
    return results / CALIBRATION_FILE


def load_calibration(run_dir: Path) -> dict[str, Any] | None:
    """The calibration a run carries (copied in when it started), else the latest beside it,
    with `source` saying which ("run" or "beside the run": one made at another time)."""
    for path, source in ((run_dir / CALIBRATION_FILE, "run"), (run_dir.parent / CALIBRATION_FILE, "beside the run")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == SCHEMA:
            return {**doc, "source": source}
    return None


def parse_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise UsageError("--kinds: give at least one of " + ", ".join(KINDS))
    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"--kinds: unknown outage kind {k!r} (choose from {', '.join(KINDS)})")
    return kinds


def parse_lengths(text: str) -> list[float]:
    """Outage lengths in seconds: positive, at most 30 s (a calibration is not a soak test)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError("--lengths: give at least one length in seconds, e.g. 0.5,2")
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise UsageError(f"--lengths: {p!r} is not a number of seconds") from None
        if not 0 < v <= 30:
            raise UsageError(f"--lengths: {p} s is outside 0..30 s")
        out.append(v)
    return out
