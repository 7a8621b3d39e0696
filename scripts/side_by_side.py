"""The same cases from two runs side by side (e.g. `--load-from host` against `--load-from
cluster`): per case and run, failed requests summed over its trials, the worst downtime and
the medians of latency, proxies, hops and the upgrade's length. Usage:
    python scripts/side_by_side.py RESULTS/RUN_A RESULTS/RUN_B
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable


def median(trials: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any]) -> float | None:
    values = [v for v in (value(t) for t in trials) if v is not None]
    return statistics.median(values) if values else None


def fmt(v: object) -> str:
    return "–" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def rows(run_dir: Path) -> list[list[str]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    out = []
    for name, e in summary["cases"].items():
        trials = e.get("trials") or [e]
        failed = (summary.get("failed_claims") or {}).get(name)
        out.append([
            name, run_dir.name, str(e.get("load_from")), str(len(trials)),
            f"{sum(t['failed_requests'] for t in trials)} of {sum(t['total_requests'] for t in trials)}",
            fmt(max(t["downtime_s"] for t in trials)),
            fmt(median(trials, lambda t: t["latency_ms"]["before"]["p50"])), fmt(median(trials, lambda t: t["latency_ms"]["before"]["p99"])),
            fmt(median(trials, lambda t: (t["latency_ms"]["during"] or {}).get("p99"))), fmt(median(trials, lambda t: t["proxies_per_request"])),
            fmt(median(trials, lambda t: t["hops"].get("cross_node", 0))), fmt(median(trials, lambda t: t["hops"].get("same_node", 0))),
            fmt(median(trials, lambda t: t["upgrade_duration_s"])), "; ".join(failed) if failed else "held",
        ])
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    head = ["case", "run", "load from", "trials", "failed requests", "downtime max (s)", "p50 before (ms)", "p99 before (ms)",
            "p99 during upgrade (ms)", "proxies/request", "cross-node hops", "same-node hops", "upgrade (s)", "claims"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in sorted(r for d in argv for r in rows(Path(d))):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
