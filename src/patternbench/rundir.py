"""A run directory's layout, read back without a cluster: what the runner writes there and
what the summary and the report read (the offline side never imports on-cluster code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patternbench.topology import Pattern

SWEEPS_DIR = "sweeps"  # <run>/sweeps/<pattern>/: each step's records, steps.json and cost.json


def load_sweeps(run_dir: Path) -> dict[str, dict[str, Any]]:
    """pattern -> its cost.json, for every pattern swept in this run."""
    order = [p.value for p in Pattern]
    docs = [json.loads(path.read_text()) for path in (run_dir / SWEEPS_DIR).glob("*/cost.json")]
    docs.sort(key=lambda d: (order.index(d["pattern"]) if d["pattern"] in order else len(order), d["pattern"]))
    return {d["pattern"]: d for d in docs}
