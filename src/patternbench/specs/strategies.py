"""How an agent is upgraded, each strategy declared once (UpgradeStrategy); what runs it on a
cluster is upgrade_runs.UPGRADES. `rolling` changes the workload's template (sidecars: every
app pod recreated; DaemonSets: node by node); `in-place` patches each running pod's sidecar
image, one pod at a time with a drain (inplace.py), and recreates nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from patternbench.errors import UsageError
from patternbench.specs.agents import Placement
from patternbench.specs.patterns import pattern_spec


@dataclass(frozen=True)
class UpgradeStrategy:
    name: str
    what: str  # one line for --help and the report
    sidecars_only: bool = False  # it patches a pod's sidecar: the agent must run per pod
    serving_label: bool = False  # the app's Services select on the serving label (a pod is taken out by it)
    id_suffix: str = ""  # what it adds to a case id
    step_suffix: str = ""  # what it adds to the progress line


STRATEGIES: dict[str, UpgradeStrategy] = {
    s.name: s
    for s in (
        UpgradeStrategy("rolling", "a new template: sidecar pods recreated, DaemonSets node by node"),
        UpgradeStrategy("in-place", "each pod's sidecar image patched, one pod at a time with a drain", sidecars_only=True,
                        serving_label=True, id_suffix="-in-place", step_suffix=" in place"),
    )
}


def strategy(name: str, field: str = "--upgrade") -> UpgradeStrategy:
    """The registered strategy; a one-line UsageError naming the choices otherwise."""
    found = STRATEGIES.get(name)
    if found is None:
        raise UsageError(f"{field}: unknown upgrade strategy {name!r} (choose one of {', '.join(STRATEGIES)})")
    return found


def check_strategy(name: str, pattern: Any, agent: str | None, field: str = "--upgrade") -> None:
    """An unknown strategy, or a sidecars-only one where the agent is no sidecar, is an error."""
    chosen = strategy(name, field)
    if chosen.sidecars_only and agent is not None and pattern_spec(pattern).placement_of(agent) is not Placement.POD:
        raise UsageError(f"{field} {name} upgrades a sidecar: the {pattern_spec(pattern).name} pattern runs no {agent} sidecar")
