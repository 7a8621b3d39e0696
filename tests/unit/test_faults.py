from __future__ import annotations

import pytest

from patternbench import measure
from patternbench.cli import main
from patternbench.errors import UsageError
from patternbench.results.summary import fault_claims
from patternbench.results.verdicts import Thresholds
from patternbench.specs.cases import Case, fault_matrix, fault_smoke
from patternbench.specs.faults import FAULTS, check_fault, fault_spec, parse_duration, runs_on_nodes
from patternbench.specs.topology import Pattern

ALL = frozenset(FAULTS)


def test_every_fault_is_defined_once_and_unknown_names_are_errors() -> None:
    assert set(FAULTS) == {"agent-kill", "agent-hang", "apiserver-down", "apiserver-down-during-upgrade", "agent-kill-during-upgrade",
                           "injector-down-during-upgrade", "injector-hung-during-upgrade"}
    assert fault_spec("agent-hang").timed and not fault_spec("agent-kill").timed
    with pytest.raises(UsageError, match="unknown fault 'agent-crash'"):
        fault_spec("agent-crash")


@pytest.mark.parametrize("name,pattern,agent,supported,message", [
    ("agent-kill", Pattern.NONE, "mesh", ALL, "runs none"),
    ("agent-hang", Pattern.SIDECAR, None, ALL, "needs an agent"),
    ("agent-kill-during-upgrade", Pattern.SIDECAR, "mesh", ALL, "runs the mesh agent per pod"),
    ("agent-kill-during-upgrade", Pattern.HYBRID, "mesh", ALL, "per pod"),
    ("agent-hang", Pattern.DAEMONSET, "mesh", frozenset({"agent-kill"}), "cannot inject it"),
    ("agent-kill", Pattern.DAEMONSET, "tracing", ALL, "unknown agent"),
    ("injector-down-during-upgrade", Pattern.SIDECAR, "mesh", ALL, "run it with --injection webhook"),
])
def test_faults_a_case_cannot_take_are_refused(name: str, pattern: Pattern, agent: str | None, supported: frozenset, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_fault(name, pattern, agent, supported, "test")


def test_injector_faults_need_a_webhook_injected_sidecar() -> None:
    assert check_fault("injector-hung-during-upgrade", Pattern.SIDECAR, "mesh", ALL, "local", "webhook").target == "injector"
    with pytest.raises(UsageError, match="per node, so the injector plays no part"):
        check_fault("injector-down-during-upgrade", Pattern.DAEMONSET, "mesh", ALL, "local", "webhook")
    with pytest.raises(UsageError, match="runs none"):
        check_fault("injector-down-during-upgrade", Pattern.NONE, None, ALL, "local", "webhook")
    # The family runs each once, where a webhook-injected sidecar proxy rolls.
    cases = fault_matrix(["injector-down-during-upgrade", "injector-hung-during-upgrade"])
    assert [(c.id, c.injection, c.upgrades) for c in cases] == [
        ("sidecar-mesh-injector-down-during-upgrade-webhook", "webhook", True),
        ("sidecar-mesh-injector-hung-during-upgrade-webhook", "webhook", True),
    ]


def test_faults_a_case_can_take() -> None:
    assert check_fault("apiserver-down", Pattern.NONE, None, ALL, "local").target == "apiserver"
    assert check_fault("agent-kill-during-upgrade", Pattern.HYBRID, "logging", ALL, "local").during_upgrade
    assert runs_on_nodes(Pattern.HYBRID, "logging") and not runs_on_nodes(Pattern.HYBRID, "mesh")


@pytest.mark.parametrize("raw", ["0", "-3", "abc", "", "nan", "inf"])
def test_bad_fault_durations(raw: str) -> None:
    with pytest.raises(UsageError, match="fault-duration"):
        parse_duration(raw)


def test_fault_family_pairs_sidecar_and_node_agents() -> None:
    ids = [c.id for c in fault_matrix(["agent-kill"], agents=["mesh"])]
    # `mesh` takes in the ambient mesh's proxies: its L4 proxy and waypoint have their own cases.
    assert ids == ["sidecar-mesh-agent-kill", "daemonset-mesh-agent-kill", "ambient-l4-l4proxy-agent-kill", "ambient-waypoint-agent-kill"]
    assert [c.id for c in fault_matrix(["agent-hang"], [Pattern.AMBIENT_L4])] == ["ambient-l4-l4proxy-agent-hang"]
    during = [c.id for c in fault_matrix(["agent-kill-during-upgrade"], [Pattern.SIDECAR, Pattern.DAEMONSET, Pattern.HYBRID])]
    assert during == ["daemonset-mesh-agent-kill-during-upgrade", "daemonset-logging-agent-kill-during-upgrade", "hybrid-logging-agent-kill-during-upgrade"]
    # The smoke covers the control, the classic patterns and a per-service proxy (a waypoint).
    assert {c.pattern for c in fault_smoke()} == {Pattern.NONE, Pattern.SIDECAR, Pattern.DAEMONSET, Pattern.HYBRID, Pattern.AMBIENT}
    assert Case(Pattern.SIDECAR, "mesh", fault="agent-hang").duration() == FAULTS["agent-hang"].default_duration_s
    assert not Case(Pattern.SIDECAR, "mesh", fault="agent-kill").upgrades and Case(Pattern.DAEMONSET, "mesh", fault="agent-kill-during-upgrade").upgrades


@pytest.mark.parametrize("argv,message", [
    (["--fault", "nope"], "unknown fault"),
    (["--fault", "agent-kill", "--pattern", "none"], "runs none"),
    (["--fault", "agent-hang", "--fault-duration", "-1"], "positive"),
    (["--fault", "agent-kill-during-upgrade", "--pattern", "sidecar"], "per pod"),
    (["--fault", "agent-hang", "--provider", "kind"], "cannot inject it"),
    (["--fault", "injector-down-during-upgrade", "--injection", "client"], "run it with --injection webhook"),
    (["--fault", "injector-hung-during-upgrade", "--pattern", "daemonset"], "the injector plays no part"),
])
def test_bad_fault_options_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---- the fault's cost, from recorded streams -------------------------------------------------


def user(t: float, ok: bool, entry: tuple[str, str] | None, via_calls: list[str] = ()) -> dict:
    rec = {"kind": "user", "t": t, "ms": 5.0, "status": 200 if ok else 502, "error": "" if ok else "HTTP502", "via": ""}
    if entry:
        rec["entry"] = list(entry)
        rec["calls"] = [{"src": list(entry), "dst": None, "via": v} for v in via_calls]
    return rec


def pod(t: float, name: str, ready: bool, restarts: int, node: str = "n1") -> dict:
    return {"t": t, "pod": name, "node": node, "ready": ready, "restarts": {"meshproxy": restarts}, "event": "MODIFIED"}


def test_fault_impact_of_a_killed_node_proxy() -> None:
    # Before the fault (t < 10): 3 of 4 requests passed node/n1. The proxy dies at 10, its
    # pod is Ready again at 11.5; requests at 10.2 and 10.9 fail, one at 10.5 passes.
    users = [
        user(1, True, ("f-1", "n1"), ["1.1 node/n2 (n2), 1.1 node/n1 (n1)"]),
        user(2, True, ("f-1", "n1"), ["1.1 node/n1 (n1), 1.1 node/n1 (n1)"]),
        user(3, True, ("f-2", "n2"), ["1.1 node/n1 (n1), 1.1 node/n2 (n2)"]),
        user(4, True, ("f-2", "n2"), ["1.1 node/n2 (n2), 1.1 node/n2 (n2)"]),
        user(10.2, False, ("f-1", "n1")), user(10.5, True, ("f-2", "n2"), ["1.1 node/n2 (n2), 1.1 node/n2 (n2)"]), user(10.9, False, None),
        user(20, True, ("f-1", "n1")),
    ]
    pods = [pod(0, "proxy-a", True, 0), pod(10.1, "proxy-a", False, 1), pod(11.5, "proxy-a", True, 1), pod(0, "app", True, 0, "n2")]
    impact = measure.fault_impact(users, [], pods, 10.0, 10.0, 30.0, "node/n1", "proxy-a", "meshproxy")
    assert impact["expected_blast_radius"] == 0.75
    assert impact["recovery_s"] == 1.5 and impact["window_s"] == 1.5
    assert impact["failed_in_window"] == 2 and impact["requests_in_window"] == 3
    assert impact["blast_radius"] == pytest.approx(2 / 3, abs=1e-4)
    assert impact["blast_radius_by_node"] == {"n1": {"requests": 1, "failed": 1, "share_failed": 1.0}, "n2": {"requests": 1, "failed": 0, "share_failed": 0.0}}
    assert impact["unattributed_failures"] == 1
    assert impact["affected_pods"] == ["proxy-a"] and impact["affected_nodes"] == ["n1"]
    assert impact["detect_s"] == pytest.approx(0.2) and impact["failure_span_s"] == pytest.approx(0.7)


def test_fault_impact_with_no_failure_keeps_the_fault_window() -> None:
    users = [user(1, True, ("f-1", "n1")), user(12, True, ("f-1", "n1"))]
    impact = measure.fault_impact(users, [], [], 10.0, 15.0, 30.0, None)
    assert impact["blast_radius"] == 0.0 and impact["window_s"] == 5.0 and impact["detect_s"] is None
    assert impact["expected_blast_radius"] is None and impact["recovery_s"] is None


def entry(**over: object) -> dict:
    base = {"agent": "mesh", "pattern": "daemonset", "failed_requests": 0, "log_lines_lost": 0, "log_lines_duplicated": 0, "log_max_batch_lines": 5}
    return {**base, **over}


def fault(**over: object) -> dict:
    base = {"kind": "agent-kill", "instance": "node/n1", "blast_radius": 0.5, "expected_blast_radius": 0.7, "failed_in_window": 3, "upgrade_completed": None}
    return {**base, **over}


def test_fault_claims_follow_the_model() -> None:
    assert fault_claims(entry(), fault(), Thresholds()) == []
    assert "more than the 30%" in fault_claims(entry(), fault(blast_radius=0.6, expected_blast_radius=0.3), Thresholds())[0]
    # A node log agent's crash: nothing lost, at most one batch repeated.
    logging = entry(agent="logging", log_lines_duplicated=5)
    assert fault_claims(logging, fault(expected_blast_radius=None, failed_in_window=0), Thresholds()) == []
    problems = fault_claims({**logging, "log_lines_lost": 2, "log_lines_duplicated": 6}, fault(expected_blast_radius=None, failed_in_window=1), Thresholds())
    assert len(problems) == 3
    assert fault_claims(entry(failed_requests=4), fault(kind="apiserver-down", expected_blast_radius=None), Thresholds())
    assert fault_claims(entry(), fault(kind="agent-kill-during-upgrade", upgrade_completed=False), Thresholds())


def test_injector_fault_claims() -> None:
    held = fault(kind="injector-down-during-upgrade", expected_blast_radius=None, upgrade_completed=True,
                 pod_creations_refused=7, app_pods_created_during_fault=0, app_pods_without_sidecar=[])
    assert fault_claims(entry(pattern="sidecar"), held, Thresholds()) == []
    problems = fault_claims(entry(pattern="sidecar", failed_requests=2), {**held, "pod_creations_refused": 0, "app_pods_created_during_fault": 1, "app_pods_without_sidecar": ["a-1"]}, Thresholds())
    assert [p.split(": ", 1)[1][:20] for p in problems] == [
        "no pod creation was ", "1 app pods were crea", "app pods ran without", "2 requests failed wh"]


def test_admission_measurements_from_the_pod_watch_and_events() -> None:
    records = [
        {"t": 0.0, "pod": "a-old", "role": "app", "images": {"app": "a", "meshproxy": "v1"}},
        {"t": 5.0, "pod": "a-new1", "role": "app", "images": {"app": "a", "meshproxy": "v2"}},
        {"t": 5.5, "pod": "a-new1", "role": "app", "images": {"app": "a", "meshproxy": "v2"}},
        {"t": 9.0, "pod": "a-bare", "role": "app", "images": {"app": "a"}},
        {"t": 7.0, "pod": "injector-x", "role": "injector", "images": {"injector": "i"}},
    ]
    assert measure.pods_created(records, "app", 4.0, 10.0) == ["a-bare", "a-new1"]
    assert measure.pods_created(records, "app", 5.2, 10.0) == ["a-bare"]  # first seen, not last
    assert measure.pods_without(records, "app", "meshproxy") == ["a-bare"]
    events = [
        {"reason": "FailedCreate", "message": 'Error creating: Internal error occurred: failed calling webhook "inject.patternbench.dev": no endpoints', "count": 4},
        {"reason": "FailedCreate", "message": "Error creating: pods is forbidden: exceeded quota", "count": 2},
        {"reason": "FailedCreate", "message": 'failed calling webhook "inject.patternbench.dev": context deadline exceeded', "count": None},
    ]
    assert measure.webhook_refusals(events) == 5


def test_fault_cases_can_run_fewer_times_than_the_upgrade_matrix() -> None:
    from patternbench.specs.cases import interleave

    a, b = Case(Pattern.SIDECAR, "mesh"), Case(Pattern.SIDECAR, "mesh", fault="agent-kill")
    trials = interleave([a, b], 3, fault_repeat=1)
    assert [t.dir_name for t in trials] == ["sidecar-mesh.t1", "sidecar-mesh-agent-kill", "sidecar-mesh.t2", "sidecar-mesh.t3"]
    assert [t.dir_name for t in interleave([a, b], 2)] == ["sidecar-mesh.t1", "sidecar-mesh-agent-kill.t1", "sidecar-mesh.t2", "sidecar-mesh-agent-kill.t2"]
