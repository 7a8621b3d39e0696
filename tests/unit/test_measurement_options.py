"""--repeat, --slo-ms, --rps, --sweep and calibrate: bad input is one line and exit 2,
before anything is deployed (the provider is never even looked up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from patternbench import cli
from patternbench.errors import UsageError
from patternbench.options import parse_repeat, parse_sweep

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv,message", [
    (["run", "--repeat", "0"], "--repeat must be a whole number from 1 to 50, got 0"),
    (["run", "--repeat", "2.5"], "--repeat must be a whole number"),
    (["run", "--repeat", "x"], "--repeat: 'x' is not a number"),
    (["run", "--rps", "-1"], "--rps must be above 0"),
    (["run", "--rps", "nan"], "--rps: nan is not a finite number"),
    (["run", "--duration", "nan"], "--duration: nan is not a finite number"),  # once a ValueError traceback
    (["run", "--duration", "inf"], "--duration: inf is not a finite number"),  # once an OverflowError traceback
    (["run", "--duration", "abc"], "--duration: 'abc' is not a number"),
    (["run", "--duration", "0"], "--duration must be above 0"),
    (["scale", "--duration", "nan"], "--duration: nan is not a finite number"),
    (["run", "--max-failed-requests", "-1"], "--max-failed-requests must be from 0"),  # once accepted
    (["run", "--max-failed-requests", "x"], "--max-failed-requests: 'x' is not a whole number"),
    (["run", "--sweep", ""], "--sweep: give offered rates"),
    (["run", "--sweep", "100,fast"], "--sweep: 'fast' is not a number"),
    (["run", "--sweep", "100,,200"], "--sweep: empty rate"),
    (["run", "--sweep", "0,100"], "--sweep must be above 0"),
    (["run", "--slo-ms", "0"], "--slo-ms must be above 0"),
    (["run", "--slo-ms", "soon"], "--slo-ms: 'soon' is not a number"),
    (["run", "--rps", "100", "--users", "5"], "two load modes"),
    (["run", "--sweep", "100", "--rps", "50"], "--sweep sets the rates itself"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--upgrade", "sideways"], "unknown upgrade strategy 'sideways'"),
    (["run", "--injection", "sideways"], "--injection: unknown injection 'sideways'"),
    (["run", "--upgrade", "in-place", "--pattern", "daemonset"], "in-place upgrades a sidecar: the daemonset pattern runs no mesh sidecar"),
    (["run", "--upgrade", "in-place", "--pattern", "hybrid", "--agent", "logging"], "the hybrid pattern runs no logging sidecar"),
    (["report", "/nonexistent", "--slo-ms", "-5"], "--slo-ms must be above 0"),
    (["calibrate", "--kinds", "smoke"], "unknown outage kind 'smoke'"),
    (["calibrate", "--lengths", "0"], "outside 0..30 s"),
    (["calibrate", "--slo-ms", "0"], "--slo-ms must be above 0"),
    (["calibrate", "--target", "cluster", "--kinds", "hang"], "the cluster calibration injects refused, dropped, not 'hang'"),
    (["calibrate", "--target", "cluster", "--provider", "kind"], "needs --provider local"),
    (["run", "--calibrate", "--provider", "kind"], "--calibrate injects outages with iptables on this machine"),
])
def test_bad_measurement_input_exits_2_with_one_line(argv: list[str], message: str, no_provider: None, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_good_values_parse() -> None:
    assert parse_repeat("3") == 3
    assert parse_sweep(" 500, 100,500 ,2000") == [100.0, 500.0, 2000.0]


def test_good_options_reach_the_profile() -> None:
    args = cli.build_parser().parse_args(["run", "--repeat", "3", "--slo-ms", "1500", "--rps", "250"])
    plan, cases = cli.experiment_options(args)
    profile = plan.profile
    assert plan.repeat == 3 and cases
    assert profile.slo_ms == 1500 and profile.load.rps == 250
    assert profile.load.probe_timeout_s == 3.0  # twice the deadline: a cut-off probe still reads as slow


@pytest.mark.parametrize("option", ["--repeat=0", "--rps=-1", "--sweep=", "--sweep=a,b", "--slo-ms=0"])
def test_pytest_options_exit_2_before_any_test(option: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "experiments", "--collect-only", "-q", "-p", "no:cacheprovider", option],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Exit: patternbench: --"), lines


@pytest.mark.parametrize("registry,ok", [
    ("europe-docker.pkg.dev/proj/repo", True), ("localhost:5000", True), ("ghcr.io/owner/", True),
    ("r.io/x\ncommand: [sh]", False),  # was pasted into the manifests: it added a command to containers
    ("a b", False), ("", False), ("https://r.io", False),
])
def test_registry_is_an_image_reference_prefix(registry: str, ok: bool) -> None:
    from patternbench.run_options import provider_options

    def get(dest: str) -> object:
        return {"provider": "kubeconfig", "registry": registry, "nodes": "3", "name": "pb", "zone": "z"}.get(dest)

    if ok:
        assert provider_options(get).registry == registry
    else:
        with pytest.raises(UsageError, match="--registry"):
            provider_options(get)
