"""The agent and pattern registries: every name is registered, and what used to fall back
silently (an unknown pattern's formula, an unknown proxy mode, claims ignoring agents.mesh)
is now an error or honoured."""

from __future__ import annotations

import json

import pytest

from patternbench import measure
from patternbench.build import images
from patternbench.cluster.provider import DEFAULT_NODE_PATHS, FaultInjector, HasEntryHost, HasNodePaths, UsesRegistry, abilities
from patternbench.errors import UsageError
from patternbench.operate.upgrade import upgrade_targets
from patternbench.render import RenderOptions, render
from patternbench.render.agent_objects import BUILT_IN, objects_of
from patternbench.results.summary import check_claims
from patternbench.specs.agents import AGENTS, UPGRADABLE, AgentKind, Placement, agent_spec, proxy_mode, upgradable_spec
from patternbench.specs.faults import check_fault
from patternbench.specs.patterns import PATTERNS, PatternSpec, pattern_spec
from patternbench.specs.topology import Agents, Pattern, containers_formula, expected_hop_counts, load_topology, requested

TOPO = load_topology()
OPTS = RenderOptions(run_id="pb-test")


def test_every_pattern_has_a_spec() -> None:
    assert list(PATTERNS) == list(Pattern)
    for pattern in Pattern:
        assert pattern_spec(pattern).name == pattern.value
        assert pattern_spec(pattern.value) is PATTERNS[pattern]


def test_unknown_pattern_name_is_an_error() -> None:
    with pytest.raises(UsageError, match="unknown pattern 'mystery'"):
        pattern_spec("mystery")


def test_a_pattern_without_spec_is_an_error_not_the_hybrid_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(PATTERNS, Pattern.HYBRID)
    for call in (
        lambda: containers_formula(TOPO, Pattern.HYBRID, 3),
        lambda: requested(TOPO, Pattern.HYBRID, 3),
        lambda: expected_hop_counts(Pattern.HYBRID, 2),
        lambda: render(TOPO, Pattern.HYBRID, OPTS),
    ):
        with pytest.raises(UsageError, match="'?hybrid'? has no registered spec"):
            call()


def test_a_pattern_placing_an_unknown_agent_is_an_error() -> None:
    with pytest.raises(UsageError, match="unknown agent 'tracing'"):
        PatternSpec(Pattern.SIDECAR, {"tracing": Placement.POD})


def test_unknown_agent_is_an_error() -> None:
    with pytest.raises(UsageError, match="unknown agent 'tracing'"):
        agent_spec("tracing")
    with pytest.raises(UsageError, match="never upgraded"):
        upgradable_spec("agent-omega")
    with pytest.raises(UsageError, match="never upgraded"):
        upgrade_targets(render(TOPO, Pattern.SIDECAR, OPTS), "agent-omega")


def test_agents_say_what_is_measured_for_them() -> None:
    assert AGENTS["mesh"].kind is AgentKind.MESH and "hops" in AGENTS["mesh"].measured
    assert AGENTS["logging"].kind is AgentKind.LOG and "log_lines_lost" in AGENTS["logging"].measured
    assert UPGRADABLE == ("mesh", "logging", "l4proxy", "waypoint")
    assert AGENTS["l4proxy"].kind is AGENTS["waypoint"].kind is AgentKind.MESH
    # Every upgradable agent's image is built in every version it is deployed or upgraded to.
    assert {AGENTS[name].image for name in UPGRADABLE} == set(images.AGENT_IMAGES)
    assert {v for name in UPGRADABLE for v in AGENTS[name].versions} == set(images.VERSIONS)


def test_placements_give_the_seed_formulas() -> None:
    pods, nodes = TOPO.app_pods, 3
    k = TOPO.agents.count
    assert containers_formula(TOPO, Pattern.NONE, nodes) == pods
    assert containers_formula(TOPO, Pattern.SIDECAR, nodes) == pods * (1 + k)
    assert containers_formula(TOPO, Pattern.DAEMONSET, nodes) == pods + nodes * k
    assert containers_formula(TOPO, Pattern.HYBRID, nodes) == pods * 2 + nodes * (k - 1)
    assert pattern_spec(Pattern.HYBRID).runs_on_nodes("logging") and not pattern_spec(Pattern.HYBRID).runs_on_nodes("mesh")


def test_unknown_proxy_mode_is_an_error_not_a_network_hop() -> None:
    assert proxy_mode("sidecar").in_pod and not proxy_mode("node").in_pod
    call = {"src": ["a-1", "n1"], "dst": ["b-1", "n1"], "via": "1.1 mystery/w-1 (n1)"}
    with pytest.raises(UsageError, match="unknown proxy mode 'mystery'"):
        measure.call_hops(call)
    record = {"kind": "user", "status": 200, "via": "", "entry": ["a-1", "n1"], "calls": [call]}
    with pytest.raises(UsageError, match="unknown proxy mode"):
        measure.hop_summary([record])


def _entry(pattern: str, proxies: int, hops: dict[str, float]) -> dict:
    return {
        "pattern": pattern, "agent": None, "naive": False, "missing": [], "containers_total": 6, "containers_formula": 6,
        "proxies_per_request": proxies, "hops": hops, "max_nodes_down_at_once": None, "fault": None,
    }


def test_check_claims_honours_agents_mesh() -> None:
    # Without the mesh, a sidecar case's requests pass no proxy: 2 calls, 2 direct hops.
    direct = _entry("sidecar", 0, {"same_node": 1.0, "cross_node": 1.0})
    assert check_claims(direct, 2, agents=Agents(mesh=False)) == []
    assert any("proxies per request 0 != 5" in p for p in check_claims(direct, 2))
    # With it, the proxies are expected, and their absence is a failure.
    proxied = _entry("sidecar", 5, {"loopback": 5.0, "same_node": 1.0, "cross_node": 1.0})
    assert check_claims(proxied, 2) == []
    assert any("proxies per request 5 != 0" in p for p in check_claims(proxied, 2, agents=Agents(mesh=False)))


def test_check_fault_refuses_an_agent_the_pattern_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PATTERNS, Pattern.HYBRID, PatternSpec(Pattern.HYBRID, {"mesh": Placement.POD}))
    with pytest.raises(UsageError, match="does not run the logging agent"):
        check_fault("agent-kill", Pattern.HYBRID, "logging", frozenset({"agent-kill"}), "local")


class _Bare:
    """A provider with no optional ability."""


class _Able:
    registry = "reg.example/pb"
    fault_mechanisms = frozenset({"kill"})

    def node_paths(self) -> tuple[str, str]:
        return ("/logs", "/state")

    def entry_host(self) -> str:
        return "127.0.0.1"

    def kill_container(self, target: object) -> None: ...

    def freeze_container(self, target: object) -> None: ...

    def stop_apiserver(self) -> None: ...


def test_provider_abilities_are_typed_protocols_resolved_once() -> None:
    bare, able = _Bare(), _Able()
    assert not isinstance(bare, (HasNodePaths, HasEntryHost, UsesRegistry, FaultInjector))
    assert isinstance(able, HasNodePaths) and isinstance(able, HasEntryHost) and isinstance(able, UsesRegistry) and isinstance(able, FaultInjector)
    got = abilities(bare)
    assert (got.node_paths, got.entry_host, got.registry, got.fault_kinds) == (DEFAULT_NODE_PATHS, None, None, frozenset())
    got = abilities(able)
    assert (got.node_paths, got.entry_host, got.registry) == (("/logs", "/state"), "127.0.0.1", "reg.example/pb")
    # A provider offers mechanisms, never fault names: a kill makes the kills, and the API's
    # own scale-to-zero the injector's outage.
    assert got.fault_kinds == frozenset({"agent-kill", "agent-kill-during-upgrade", "injector-down-during-upgrade"})


def test_real_providers_declare_their_abilities() -> None:
    from patternbench.cluster.local.provider import LocalProvider
    from patternbench.cluster.remote import GkeProvider, KindProvider, KubeconfigProvider

    assert all(hasattr(LocalProvider, m) for m in ("node_paths", "entry_host", "is_up", "daemons", "status", "node_status"))
    from patternbench.specs.faults import FAULTS, injectable

    assert injectable(LocalProvider.fault_mechanisms) == frozenset(FAULTS)
    assert injectable(GkeProvider.fault_mechanisms) == frozenset({"agent-kill", "agent-kill-during-upgrade", "injector-down-during-upgrade"})
    with pytest.raises(ValueError, match="unknown fault mechanism"):
        injectable(frozenset({"reboot"}))
    assert "registry" in GkeProvider.__dataclass_fields__ and "registry" in KubeconfigProvider.__dataclass_fields__
    assert not hasattr(KindProvider, "registry")


def test_ambient_formula_proxies_and_tunnel_trails() -> None:
    """Ambient: S·R + nodes·(L4 + node agents) + S·W waypoints; a call passes L4, waypoint,
    L4 (3 proxies) whatever the nodes; without waypoints one L4 within a node, two across.
    A tunnel trail is classified like a Via: a waypoint in a pod of its own, an L4 per node."""
    from patternbench.load.records import answer_trail
    from patternbench.specs.patterns import pattern_spec

    nodes, services = 3, len(TOPO.services)
    ambient, l4 = pattern_spec(Pattern.AMBIENT), pattern_spec(Pattern.AMBIENT_L4)
    per_node = 1 + int(TOPO.agents.logging) + TOPO.agents.extra_agents
    assert containers_formula(TOPO, Pattern.AMBIENT, nodes) == TOPO.app_pods + nodes * per_node + services * TOPO.waypoint_replicas
    assert containers_formula(TOPO, Pattern.AMBIENT_L4, nodes) == TOPO.app_pods + nodes * per_node
    assert ambient.expected_proxies(3) == 9 and ambient.hop_counts(3) == {"total": 12, "loopback": 0}
    assert l4.expected_proxies(3) is None and l4.expected_proxies(3, cross_node_share=2 / 3) == pytest.approx(5.0)
    body = json.dumps({"pod": "a-1", "node": "n1", "service": "a", "downstream": [{
        "service": "b", "status": 200, "via": "1.1 waypoint/b-wp-1 (n3)",
        "tunnel": "1.1 l4/n2 (n2), 1.1 waypoint/b-wp-1 (n3), 1.1 l4/n1 (n1)",
        "answer": {"pod": "b-1", "node": "n2", "service": "b", "via": "1.1 waypoint/b-wp-1 (n3)"}}]}).encode()
    [call] = answer_trail(body)["calls"]
    assert measure.call_hops(call) == ["same_node", "cross_node", "cross_node", "same_node"]
    assert sorted(measure.via_kinds(call["via"])) == ambient.call_kinds(crossed=True)


def test_ambient_needs_the_mesh_and_waypoint_replicas(tmp_path) -> None:
    from patternbench.specs.patterns import pattern_spec
    from patternbench.specs.topology import Agents, parse_topology

    with pytest.raises(UsageError, match="--pattern ambient: it is a mesh pattern, and the topology turns the mesh off"):
        pattern_spec(Pattern.AMBIENT).check(TOPO.with_agents(Agents(mesh=False)))
    doc = {"services": [{"name": "a"}], "waypoint_replicas": 0}
    with pytest.raises(UsageError, match="waypoint_replicas: each service's waypoint needs at least 1 replica, got 0"):
        parse_topology(doc)


def test_every_built_in_agent_has_a_builder_for_each_placement_it_runs_in():
    """The model says where an agent can run; the render layer must build it there."""
    assert set(BUILT_IN) == {name for name, a in AGENTS.items() if a.source is None}
    for agent in (a for a in AGENTS.values() if a.source is None):
        objects = objects_of(agent)
        built = {Placement.POD: objects.sidecar, Placement.NODE: objects.node, Placement.SERVICE: objects.service}
        for placement in agent.placements:
            assert built[placement] is not None, (agent.name, placement)
