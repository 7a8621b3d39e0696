"""How the report writes a number and a share and finds a case: shared by every report
section (report.py, and the sections faults declare in faults.py)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"


def pick_case(cases: dict[str, Any], pattern: str, agent: str | None, naive: bool = False, strategy: str = "rolling", injection: str = "client") -> dict[str, Any] | None:
    return next((
        e for e in cases.values()
        if e["pattern"] == pattern and e["agent"] == agent and e["naive"] == naive and (e.get("upgrade_strategy") or "rolling") == strategy
        and e.get("injection", "client") == injection and not e.get("fault")
    ), None)
