"""How long must the steady phase be? From a run's recorded trials: for each case, the p50 and
p99 latency and the agents' CPU over the first L seconds of the `before` phase, against
their value over the whole phase; the shortest L at which every trial is within the case's
trial-to-trial spread (the range of the whole-phase values over its trials).

usage: python scripts/phase_lengths.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from patternbench import measure
from patternbench.load.runner import read_jsonl
from patternbench.results.durations import timeline_marks
from patternbench.results.summary import is_agent_sample

LENGTHS_S = (2, 4, 6, 8, 10, 12, 15, 20, 30)


def window_figures(case_dir: Path, length: float | None) -> dict[str, float | None]:
    """p50, p99 (ms) and agent CPU (m) over the first `length` s of the before phase (None: all of it)."""
    marks = timeline_marks(case_dir)
    start = marks["before"]
    end = marks.get("upgrade_start") or marks.get("fault_start") or marks["after"]
    if length is not None:
        if start + length > end:
            return {"p50": None, "p99": None, "cpu_m": None}
        end = start + length
    users = [r for r in read_jsonl(case_dir / "requests.jsonl") if r.get("kind") == "user"]
    latency = measure.latency_ms(measure.in_window(users, start, end))
    samples = [s for s in read_jsonl(case_dir / "resources.jsonl") if start <= s["t"] <= end]
    cpu = measure.agent_resources(samples, is_agent_sample)["agent_cpu_m_total"]
    return {"p50": latency["p50"], "p99": latency["p99"], "cpu_m": cpu}


def main(run_dirs: list[Path]) -> int:
    by_case: dict[str, list[Path]] = {}
    for run_dir in run_dirs:
        for case_file in sorted(run_dir.glob("*/case.json")):
            by_case.setdefault(json.loads(case_file.read_text())["id"], []).append(case_file.parent)
    worst: dict[str, int] = {}
    print(f"{'case':<28} {'trials':>6}  shortest before-phase (s) that every trial's value is within the trials' spread: p50 / p99 / agent CPU")
    for case, dirs in by_case.items():
        if len(dirs) < 2:
            continue
        full = [window_figures(d, None) for d in dirs]
        settled = []
        for figure in ("p50", "p99", "cpu_m"):
            values = [f[figure] for f in full if f[figure] is not None]
            if len(values) < 2:
                settled.append("–")
                continue
            spread = max(values) - min(values)
            found = None
            for length in LENGTHS_S:
                window = [window_figures(d, length)[figure] for d in dirs]
                if all(w is not None and abs(w - f[figure]) <= spread for w, f in zip(window, full)):
                    found = length
                    break
            settled.append(str(found) if found else ">" + str(LENGTHS_S[-1]))
            if found:
                worst[figure] = max(worst.get(figure, 0), found)
        print(f"{case:<28} {len(dirs):>6}  {' / '.join(settled)}")
    print("longest over the cases:", ", ".join(f"{k} {v} s" for k, v in worst.items()) or "–")
    return 0


if __name__ == "__main__":
    sys.exit(main([Path(p) for p in sys.argv[1:]]))
