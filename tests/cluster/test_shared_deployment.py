"""One deployment per pattern per run, on the local cluster: two trials of a case run on
the same deployment, the second rolls the agent back (v2 -> v1), and each is a whole trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patternbench import cli

pytestmark = pytest.mark.cluster


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_trials_share_a_deployment_and_the_second_upgrades_back(cluster: object, tmp_path: Path) -> None:
    results = tmp_path / "results"
    code = cli.main(["run", "--pattern", "sidecar", "--agent", "mesh", "--upgrade", "rolling", "--injection", "client", "--no-naive",
                     "--profile", "short", "--duration", "2", "--repeat", "2", "--results", str(results)])
    assert code == 0  # every claim held: no failed request across either upgrade
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    t1, t2 = run_dir / "sidecar-mesh.t1", run_dir / "sidecar-mesh.t2"
    cases = [json.loads((t / "case.json").read_text()) for t in (t1, t2)]
    assert [c["upgrade_versions"] for c in cases] == [["v1", "v2"], ["v2", "v1"]]
    assert [c["fresh_deployment"] for c in cases] == [False, False]
    deployments = [json.loads((t / "deployment.json").read_text()) for t in (t1, t2)]
    assert deployments[0]["run_id"] == deployments[1]["run_id"]
    # The cluster's own account: after the second trial every app pod runs the v1 proxy again.
    final: dict[str, dict] = {}
    for pod in read_jsonl(t2 / "pods.jsonl"):
        if pod.get("role") == "app":
            final[pod["pod"]] = pod
    live = [p for p in final.values() if not p["deleting"] and p.get("deleted_at") is None and p["event"] != "DELETED"]
    assert live and all(p["images"]["meshproxy"].endswith(":v1") for p in live)
    summary = json.loads((run_dir / "summary.json").read_text())
    trials = summary["cases"]["sidecar-mesh"]["trials"]
    assert [t["app_pods_recreated"] for t in trials] == [deployments[0]["app_pods"]] * 2
    assert all(t["agent_age_s"] is not None and t["agent_age_s"] > 0 for t in trials)
    report = (run_dir / "report.md").read_text()
    assert "v1→v2" in report and "v2→v1" in report
