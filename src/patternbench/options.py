"""Parsing of the measurement options shared by the command line and the pytest plugin
(--repeat, --slo-ms, --rps, --sweep): one-line UsageErrors, raised before anything is
deployed. Values arrive as text so a non-number is our message, not argparse's usage."""

from __future__ import annotations

import math

from patternbench.errors import UsageError

MAX_REPEAT = 50
MAX_RPS = 50_000.0  # far above what this harness drives; a typo guard, not a capacity claim
MAX_SLO_MS = 60_000.0
MAX_DURATION_S = 3600.0  # load per phase: an hour is far beyond any profile; a typo guard
MAX_FAILED_REQUESTS = 1_000_000


def _number(text: object, option: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise UsageError(f"{option}: {str(text)!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{option}: {text} is not a finite number")
    return value


def parse_load_duration(text: object) -> float:
    """--duration: seconds of load before and after the upgrade, finite and positive."""
    value = _number(text, "--duration")
    if not 0 < value <= MAX_DURATION_S:
        raise UsageError(f"--duration must be above 0 and at most {MAX_DURATION_S:g} s, got {text}")
    return value


def parse_repeat(text: object) -> int:
    """Trials per case: a whole number from 1 to MAX_REPEAT."""
    value = _number(text, "--repeat")
    if value != int(value) or not 1 <= value <= MAX_REPEAT:
        raise UsageError(f"--repeat must be a whole number from 1 to {MAX_REPEAT}, got {text}")
    return int(value)


def parse_slo_ms(text: object) -> float:
    """The deadline in milliseconds past which a probe counts as unavailable."""
    value = _number(text, "--slo-ms")
    if not 0 < value <= MAX_SLO_MS:
        raise UsageError(f"--slo-ms must be above 0 and at most {MAX_SLO_MS:g} ms, got {text}")
    return value


def parse_rps(text: object, option: str = "--rps") -> float:
    """An offered arrival rate in requests per second."""
    value = _number(text, option)
    if not 0 < value <= MAX_RPS:
        raise UsageError(f"{option} must be above 0 and at most {MAX_RPS:g} requests/s, got {text}")
    return value


def parse_sweep(text: object) -> list[float]:
    """'100,500,1000' -> rising offered rates (sorted, duplicates dropped)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise UsageError("--sweep: give offered rates in requests/s, e.g. --sweep 100,500,1000")
    if any(not p for p in parts):
        raise UsageError(f"--sweep: empty rate in {str(text)!r}")
    return sorted({parse_rps(p, "--sweep") for p in parts})


def parse_count(text: object, option: str, low: int, high: int) -> int:
    """A whole number in low..high, from the command line's text."""
    raw = str(text).strip()
    if not raw.lstrip("-").isdigit():
        raise UsageError(f"{option}: {raw!r} is not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise UsageError(f"{option} must be from {low} to {high}, got {value}")
    return value
