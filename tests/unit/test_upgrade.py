from __future__ import annotations

import pytest

from patternbench.errors import UsageError
from patternbench.operate.upgrade import image_patch, retag, upgrade_targets
from patternbench.render import RenderOptions, render
from patternbench.specs.topology import Pattern, load_topology

OPTS = RenderOptions(run_id="pb-test-0001")


def test_sidecar_targets_are_every_deployment_init_container() -> None:
    targets = upgrade_targets(render(load_topology(), Pattern.SIDECAR, OPTS), "mesh")
    assert {(t.kind, t.name, t.init) for t in targets} == {("Deployment", n, True) for n in ("frontend", "orders", "payments")}
    assert all(t.image == "patternbench.local/meshproxy:v1" for t in targets)
    patch = image_patch(targets[0], retag(targets[0].image, "v2"))
    assert patch == {"spec": {"template": {"spec": {"initContainers": [{"name": "meshproxy", "image": "patternbench.local/meshproxy:v2"}]}}}}


def test_node_agent_target_is_its_daemonset() -> None:
    (target,) = upgrade_targets(render(load_topology(), Pattern.HYBRID, OPTS), "logging")
    assert (target.kind, target.name, target.init, target.container) == ("DaemonSet", "logagent", False, "logagent")


def test_unknown_agent() -> None:
    with pytest.raises(UsageError, match="unknown agent"):
        upgrade_targets([], "tracing")


def test_in_place_cases_and_the_serving_label() -> None:
    """In place only where the agent is a sidecar; its runs' Services select on the serving
    label that takes a pod out of the endpoints, and their pods carry it."""
    from patternbench.render import SERVING_LABEL, RenderOptions, render
    from patternbench.specs.cases import default_matrix
    from patternbench.specs.topology import Pattern, load_topology

    ids = [c.id for c in default_matrix(strategies=["in-place"], injection="client")]
    assert ids == ["none-control", "sidecar-mesh-in-place", "sidecar-logging-in-place", "hybrid-mesh-in-place", "sidecar-mesh-in-place-naive"]
    for serving in (False, True):
        objs = render(load_topology(), Pattern.SIDECAR, RenderOptions(run_id="pb-x", serving_label=serving))
        services = [o for o in objs if o["kind"] == "Service" and o["metadata"]["namespace"] == "pb-x"]
        pods = [o["spec"]["template"]["metadata"]["labels"] for o in objs if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "pb-x"]
        assert services and all((SERVING_LABEL in s["spec"]["selector"]) == serving for s in services)
        assert all((labels.get(SERVING_LABEL) == "yes") == serving for labels in pods)


def test_webhook_injection_cases() -> None:
    """By default the sidecar proxy's upgrades also run with the webhook; with --injection
    webhook every case whose pattern has sidecars does, and the DaemonSet's do not change."""
    from patternbench.specs.cases import default_matrix

    default = [c.id for c in default_matrix()]
    assert default[-2:] == ["sidecar-mesh-webhook", "sidecar-mesh-in-place-webhook"]
    webhook = {c.id: c.injection for c in default_matrix(injection="webhook")}
    assert webhook["sidecar-logging-webhook"] == webhook["hybrid-mesh-in-place-webhook"] == "webhook"
    assert webhook["daemonset-mesh"] == webhook["none-control"] == "client"


def test_every_strategy_runs_with_every_injection_mode():
    """A strategy declared in strategies.py has its runner for each way sidecars get in."""
    from patternbench.operate.upgrade_runs import UPGRADES
    from patternbench.specs.cases import INJECTIONS
    from patternbench.specs.strategies import STRATEGIES

    assert set(UPGRADES) == {(s, i) for s in STRATEGIES for i in INJECTIONS}
