"""The plan before a run and the remaining time during it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench import cli
from patternbench.results.durations import DEFAULT_TEARDOWN_S, Eta, estimate, from_profile, measured_trials, plan_text
from patternbench.specs.cases import PROFILES, Case, interleave
from patternbench.specs.patterns import Pattern


def _earlier_trial(root: Path, run: str, case: Case, profile: str, seconds: float) -> None:
    d = root / run / case.id
    d.mkdir(parents=True)
    (d / "case.json").write_text(json.dumps({**case.to_json(), "profile": {"name": profile}}))
    (d / "timeline.jsonl").write_text("\n".join(json.dumps(m) for m in (
        {"phase": "setup", "t": 100.0}, {"phase": "warmup", "t": 110.0}, {"phase": "teardown", "t": 100.0 + seconds})) + "\n")


def test_estimates_come_from_earlier_trials_of_the_same_profile(tmp_path: Path) -> None:
    side, ctl = Case(Pattern.SIDECAR, "mesh"), Case(Pattern.NONE, None)
    for run, seconds in (("r1", 40.0), ("r2", 50.0), ("r3", 90.0)):
        _earlier_trial(tmp_path, run, side, "full", seconds)
    _earlier_trial(tmp_path, "r4", side, "short", 5.0)  # another profile: not counted
    assert sorted(measured_trials(tmp_path)[("sidecar-mesh", "full", True)]) == [40.0, 50.0, 90.0]
    est = estimate([side, ctl], PROFILES["full"], tmp_path, share=False)
    assert est["sidecar-mesh"].seconds == 50.0 + DEFAULT_TEARDOWN_S and est["sidecar-mesh"].measured == 3
    assert est["none-control"].seconds == from_profile(ctl, PROFILES["full"]) and est["none-control"].measured == 0
    # Trials on a shared deployment do not deploy: fresh ones' times do not stand for them.
    shared = estimate([side], PROFILES["full"], tmp_path)["sidecar-mesh"]
    assert shared.measured == 0 and shared.seconds == from_profile(side, PROFILES["full"], fresh=False) < from_profile(side, PROFILES["full"])
    assert from_profile(side, PROFILES["full"]) > from_profile(ctl, PROFILES["full"])  # an upgrade takes time


def test_the_remaining_time_scales_with_how_the_finished_trials_compared(tmp_path: Path) -> None:
    cases = [Case(Pattern.SIDECAR, "mesh"), Case(Pattern.DAEMONSET, "mesh")]
    trials = interleave(cases, 2)
    est = estimate(cases, PROFILES["short"], tmp_path / "none")
    eta = Eta(trials, est)
    total = eta.total_s()
    assert eta.remaining_s() == pytest.approx(total)
    first = est[trials[0].case.id].seconds
    eta.finish(2 * first)  # the first trial took twice its estimate
    assert eta.remaining_s() == pytest.approx(2 * (total - first))
    text = "\n".join(plan_text(trials, est, PROFILES["short"], 60.0, {"calibration at the entry": 45.0}))
    assert "2 cases, 4 trials" in text and "sidecar-mesh" in text and "2 × " in text and "calibration at the entry" in text


def test_plan_prints_and_touches_no_cluster(no_provider: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(["run", "--pattern", "sidecar", "--agent", "mesh", "--upgrade", "rolling", "--injection", "client", "--no-naive",
                     "--repeat", "3", "--plan", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "1 case, 3 trials" in out and "expected:" in out


def test_plan_with_bad_input_exits_2_like_the_run(no_provider: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--plan", "--repeat", "0"]) == 2
    assert "--repeat must be a whole number" in capsys.readouterr().err


def test_a_live_bar_only_in_a_terminal_and_lines_still_printed_above_it() -> None:
    import io

    from patternbench.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    with Progress(stream=plain).bar(3, "trials") as bar:
        assert bar is None  # CI: plain lines only
    term = Terminal()
    progress = Progress(stream=term)
    with progress.bar(3, "trials") as bar:
        assert bar is not None
        progress.say("case 1/3 done")
        bar.update(1)
    out = term.getvalue()
    assert "case 1/3 done" in out and "1/3" in out
