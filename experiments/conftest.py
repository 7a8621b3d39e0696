"""The experiment matrix as pytest cases: each case runs once per session (lazily, so -k
selects what runs), and the session's run directory gets summary.json and report.md."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from patternbench.experiment import run_case, start_run
from patternbench.pytest_plugin import PLAN
from patternbench.results.report import write_report
from patternbench.results.summary import check_claims, summarize_case
from patternbench.results.verdicts import Thresholds
from patternbench.specs.cases import Case, Profile, Trial, fault_smoke, interleave
from patternbench.specs.topology import load_topology


def selected_cases(config: pytest.Config) -> list[Case]:
    """The upgrade matrix (unless --fault picks faults only) and the fault cases: with no
    --fault, one fault case per pattern (fault_smoke) for the chosen patterns and agents."""
    plan = config.stash[PLAN]
    if plan.faults:
        return plan.fault_cases()
    smoke = [c for c in fault_smoke() if (not plan.patterns or c.pattern in plan.patterns) and (not plan.agents or c.agent in (None, *plan.agents))]
    return plan.matrix() + smoke


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        # Tests marked `faults` take the fault cases, the others the upgrade matrix.
        want_faults = metafunc.definition.get_closest_marker("faults") is not None
        cases = [c for c in selected_cases(metafunc.config) if bool(c.fault) == want_faults]
        # With --repeat N every case runs N times in interleaved order (a b c a b c).
        trials = interleave(cases, metafunc.config.stash[PLAN].repeat)
        metafunc.parametrize("case,trial", [(t.case, t) for t in trials], ids=[t.dir_name for t in trials])


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    """The profile the options chose, with their overrides (run_options.profile_of)."""
    return request.config.stash[PLAN].profile


@pytest.fixture(scope="session")
def experiment_run(request: pytest.FixtureRequest, cluster: object, profile: Profile) -> Iterator[dict[str, Any]]:
    """{'dir': run dir, 'entries': case id -> summary entry}; the report is written at the end."""
    plan = request.config.stash[PLAN]
    run_dir, _ = start_run(plan.results, cluster.name, profile, [c.id for c in selected_cases(request.config)], plan.repeat)  # type: ignore[attr-defined]
    state: dict[str, Any] = {"dir": run_dir, "entries": {}, "sweeps": []}
    try:
        yield state
    finally:
        if state["entries"] or state["sweeps"]:
            write_report(run_dir, Thresholds(max_failed_requests=request.config.stash[PLAN].max_failed_requests))
            print(f"\nexperiment report: {run_dir / 'report.md'}")


@pytest.fixture
def result(case: Case, trial: Trial, cluster: object, experiment_run: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """The summary entry of one trial of `case`, run on the session's cluster."""
    case_dir = run_case(cluster, load_topology(), case, profile, experiment_run["dir"] / trial.dir_name, trial=trial.k)
    entry = summarize_case(case_dir)
    experiment_run["entries"][trial.dir_name] = entry
    return entry


@pytest.fixture
def thresholds(request: pytest.FixtureRequest) -> Thresholds:
    return Thresholds(max_failed_requests=request.config.stash[PLAN].max_failed_requests)


@pytest.fixture
def claims(result: dict[str, Any], thresholds: Thresholds) -> list[str]:
    calls = sum(len(s.calls) for s in load_topology().services)
    return check_claims(result, calls, thresholds)
