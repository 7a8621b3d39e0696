"""What every claim shares: the thresholds it is held to, the failures it counts (the
pattern's and the unattributed, never the harness's) and how it names their causes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    max_failed_requests: int = 0
    max_log_lines_lost: int = 0


def charged_failures(entry: dict[str, Any]) -> int:
    """The failures a claim counts: the pattern's and the unattributed ones (a summary from
    before attribution counts every failure)."""
    if "pattern_failures" not in entry:
        return entry["failed_requests"]
    return entry["pattern_failures"] + entry["unattributed_failures"]


def causes_text(entry: dict[str, Any]) -> str:
    counts = {k: v for k, v in (entry.get("failures_by_cause") or {}).items() if v}
    return "causes: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")
