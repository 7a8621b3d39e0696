"""How long a run will take, before it starts and while it runs: each case's trial time as
measured in earlier runs under the same profile (their timelines, from the case's setup mark
to its teardown mark), else from the profile; and the remaining time re-estimated from the
trials already done. Offline: it reads results, never a cluster."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patternbench.load.runner import read_jsonl
from patternbench.results.rundir import CASE, RUN, TIMELINE
from patternbench.specs.cases import Case, Profile, Trial

# Without an earlier measurement: deploy and readiness, the upgrade (or fault) and undeploy,
# as measured on this 2-core machine over 21 fresh full-profile trials (run
# pb-261203-210542-f413: 10.3 s median between one trial's end and the next one's load, of
# which ~2 s undeploy; upgrades 4.6-11.7 s, median 7.4 s). The earlier guesses (15, 20, 3)
# planned that run at 1368 s; it took 995 s (+37 %).
DEFAULT_DEPLOY_S = 8.0
DEFAULT_UPGRADE_S = 7.5
DEFAULT_TEARDOWN_S = 2.5
# Bringing the local cluster up warm, and the calibration at the entry (run --calibrate).
CLUSTER_UP_S = 60.0
CALIBRATION_S = 45.0
SWEEP_STEP_S = 8.0  # one offered rate's step (pattern_sweep.STEP_S)


@dataclass(frozen=True)
class CaseEstimate:
    case_id: str
    seconds: float
    measured: int  # earlier trials it comes from (0: from the profile)


def _trial_seconds(case_dir: Path) -> tuple[tuple[str, str, bool], float] | None:
    """((case id, profile name, fresh deployment), seconds from setup to teardown) of one earlier trial."""
    try:
        case = json.loads((case_dir / CASE).read_text())
        marks = timeline_marks(case_dir)
    except (OSError, ValueError, KeyError):
        return None
    if "setup" not in marks or "teardown" not in marks:
        return None
    key = (case.get("id", ""), (case.get("profile") or {}).get("name", ""), bool(case.get("fresh_deployment", True)))
    return key, marks["teardown"] - marks["setup"]


def measured_trials(results_root: Path) -> dict[tuple[str, str, bool], list[float]]:
    """(case id, profile name, fresh deployment) -> the seconds each earlier trial took, from
    every run under `results_root` (a trial on a shared deployment does not deploy)."""
    out: dict[tuple[str, str, bool], list[float]] = {}
    for case_file in results_root.glob(f"*/*/{CASE}"):
        found = _trial_seconds(case_file.parent)
        if found is not None:
            out.setdefault(found[0], []).append(found[1])
    return out


def from_profile(case: Case, profile: Profile, fresh: bool = True) -> float:
    """A trial's time when no earlier run measured it."""
    work = DEFAULT_UPGRADE_S if case.agent else 0.0
    if case.fault:
        work = max(work, case.duration() + 10.0)
    return (DEFAULT_DEPLOY_S if fresh else 0.0) + profile.load_phases_s + work + DEFAULT_TEARDOWN_S


def estimate(cases: list[Case], profile: Profile, results_root: Path, share: bool = True) -> dict[str, CaseEstimate]:
    """Per case, one trial's expected seconds: the median of earlier trials (on a fresh or a
    shared deployment, as this run will), else the profile's."""
    history = measured_trials(results_root) if results_root.is_dir() else {}
    out = {}
    for case in cases:
        fresh = not (share and case.deployment_key is not None)
        seen = history.get((case.id, profile.name, fresh), [])
        seconds = statistics.median(seen) + DEFAULT_TEARDOWN_S if seen else from_profile(case, profile, fresh)
        out[case.id] = CaseEstimate(case.id, seconds, len(seen))
    return out


def shared_deployments_s(cases: list[Case], share: bool = True) -> float:
    """Deploying once each deployment that trials share."""
    keys = {c.deployment_key for c in cases if share and c.deployment_key is not None}
    return len(keys) * (DEFAULT_DEPLOY_S + DEFAULT_TEARDOWN_S)


@dataclass
class Eta:
    """The remaining time of a run, re-estimated as trials finish: the estimates still ahead,
    scaled by how the finished trials compared with theirs."""

    trials: list[Trial]
    estimates: dict[str, CaseEstimate]
    extra_s: float = 0.0  # what comes after the trials (the sweeps)
    done_estimated: float = 0.0
    done_actual: float = 0.0
    finished: int = 0

    def total_s(self) -> float:
        return sum(self.estimates[t.case.id].seconds for t in self.trials) + self.extra_s

    def finish(self, actual_s: float) -> None:
        self.done_estimated += self.estimates[self.trials[self.finished].case.id].seconds
        self.done_actual += actual_s
        self.finished += 1

    def remaining_s(self) -> float:
        # The extra (shared deployments) is spread over the trials: none is left after the last.
        left = len(self.trials) - self.finished
        ahead = sum(self.estimates[t.case.id].seconds for t in self.trials[self.finished:]) + self.extra_s * left / max(1, len(self.trials))
        scale = self.done_actual / self.done_estimated if self.done_estimated > 0 else 1.0
        return ahead * scale


def minutes(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def plan_text(trials: list[Trial], estimates: dict[str, CaseEstimate], profile: Profile, setup_s: float, extra: dict[str, float]) -> list[str]:
    """The plan `run --plan` prints (and every run at its start): cases, trials, phases, time."""
    per_case: dict[str, int] = {}
    for t in trials:
        per_case[t.case.id] = per_case.get(t.case.id, 0) + 1
    plural = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")  # noqa: E731
    out = [f"plan: {plural(len(per_case), 'case')}, {plural(len(trials), 'trial')}; profile {profile.name}: warmup {profile.warmup_s:g} s, "
           f"before {profile.before_s:g} s, upgrade or fault, after {profile.after_s:g} s"]
    for case_id, n in per_case.items():
        e = estimates[case_id]
        source = (f"median of {e.measured} earlier trials" if e.measured > 1 else "1 earlier trial") if e.measured else "from the profile"
        out.append(f"   {case_id:<40} {n} × {minutes(e.seconds)}  ({source})")
    for name, seconds in extra.items():
        out.append(f"   {name:<40} {minutes(seconds)}")
    total = setup_s + sum(extra.values()) + sum(estimates[t.case.id].seconds for t in trials)
    out.append(f"   expected: {minutes(total)}" + (f" (including {minutes(setup_s)} to bring the cluster up)" if setup_s else ""))
    return out


def timeline_marks(case_dir: Path) -> dict[str, float]:
    """Phase -> its time (monotonic s) in a case's timeline."""
    return {m["phase"]: m["t"] for m in read_jsonl(case_dir / TIMELINE)}


def time_under_load(run_dir: Path, only: str = "*") -> float:
    """Seconds the load ran in a run: warm-up mark to end mark of every case (or of the case
    directory `only`), from its timeline."""
    total = 0.0
    for timeline in run_dir.glob(f"{only}/{TIMELINE}"):
        marks = timeline_marks(timeline.parent)
        if "warmup" in marks and "end" in marks:
            total += marks["end"] - marks["warmup"]
    return total


def run_durations(run_dir: Path) -> dict[str, Any]:
    """What a finished run took against its plan, and the harness's overhead: wall time over
    the time under load (deploys, upgrades' waits outside load, teardown, the calibration)."""
    meta = json.loads((run_dir / RUN).read_text())
    started, finished, planned = meta.get("started_wall"), meta.get("finished_wall"), meta.get("planned_s")
    actual = finished - started if started and finished else None
    loaded = time_under_load(run_dir)
    return {
        "planned_s": planned, "actual_s": actual, "plan_error": (planned - actual) / actual if planned and actual else None,
        "under_load_s": loaded, "harness_overhead_ratio": actual / loaded if actual and loaded else None,
    }
