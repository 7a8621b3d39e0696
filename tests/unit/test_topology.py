from __future__ import annotations

import copy

import pytest
import yaml

from patternbench.errors import UsageError
from patternbench.specs.topology import (
    Agents,
    NodeCapacity,
    Pattern,
    check_capacity,
    containers_formula,
    load_topology,
    parse_topology,
)

GOOD = {
    "entry": "web",
    "services": [
        {"name": "web", "replicas": 2, "calls": ["api"]},
        {"name": "api", "replicas": 2, "calls": ["db"]},
        {"name": "db", "replicas": 1},
    ],
    "agents": {"mesh": True, "logging": True, "extra_agents": 0},
}


def broken(path: str, value: object) -> dict:
    """GOOD with one field replaced: path like 'services.1.replicas'."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


MALFORMED = [
    (broken("services.1.calls", ["nope"]), "services.api.calls: unknown downstream service 'nope'"),
    (broken("services.2.calls", ["web"]), "call cycle"),
    (broken("services.1.calls", ["api"]), "cannot call itself"),
    (broken("services.0.replicas", 0), "services.web.replicas: must be at least 1"),
    (broken("services.0.replicas", -3), "services.web.replicas"),
    (broken("services.0.replicas", "two"), "services.web.replicas: expected int"),
    (broken("services.2.name", "DB_Main"), "is not a DNS-1123 label"),
    (broken("services.2.name", "x" * 45), "is not a DNS-1123 label"),
    (broken("services.2.name", "-db"), "is not a DNS-1123 label"),
    (broken("services.2.name", "db\n"), "is not a DNS-1123 label"),  # "$" matched before the newline: it passed
    (broken("services.2", {"name": "api"}), "services.api: duplicate service name"),
    (broken("entry", "nobody"), "entry: 'nobody' is not one of the services"),
    (broken("services.1.calls", []), "services.db: not reachable from the entry service 'web'"),
    (broken("agents", {"mesh": True, "tracing": True}), "agents: unknown agent 'tracing'"),
    (broken("agents", {"extra_agents": -1}), "agents.extra_agents"),
    (broken("agents", {"mesh": "yes"}), "agents.mesh: expected bool"),
    (broken("services", []), "services: at least one service"),
    (broken("services", "web"), "services: expected list"),
    (broken("services.0.calls", ["api", "api"]), "listed twice"),
    (broken("services.0", {"name": "web", "replica": 2}), "unknown field 'replica'"),
    ({"services": [{"name": "a"}], "colour": "blue"}, "unknown field 'colour'"),
    ({**GOOD, "route": "some"}, "route: 'some' is not one of all, one"),
    ({**GOOD, "route": "one", "services": [{"name": "web", "calls": ["api", "db"]}, {"name": "api", "calls": ["db"]}, {"name": "db"}]},
     "services.web.calls: with route one every path from the entry to a leaf must make as many calls"),
    ("just text", "expected a mapping"),
]


@pytest.mark.parametrize("doc,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_topology_is_one_line_naming_the_field(doc: object, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_topology(doc)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_at_least_fifteen_malformed_topologies() -> None:
    assert len(MALFORMED) >= 15


def test_good_topology_parses() -> None:
    topo = parse_topology(GOOD)
    assert topo.entry == "web" and topo.app_pods == 5
    assert topo.service("api").calls == ("db",)


def test_default_topology_is_a_chain_of_three_with_two_replicas() -> None:
    topo = load_topology()
    assert [s.name for s in topo.services] == ["frontend", "orders", "payments"]
    assert all(s.replicas == 2 for s in topo.services)
    assert topo.service("frontend").calls == ("orders",) and topo.service("orders").calls == ("payments",)


def test_unreadable_topology_file(tmp_path) -> None:
    with pytest.raises(UsageError, match="cannot read topology .*missing.yaml"):
        load_topology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [unclosed")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_topology(bad)


@pytest.mark.parametrize("content,message", [
    (b"services:\n  - name: caf\xe9\n", "not UTF-8 text"),  # was a UnicodeDecodeError traceback
    # An alias bomb: nine levels of nine aliases, a few hundred bytes that expand to 9^9 items when walked.
    (("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))).encode(), "anchors and aliases are not accepted"),
    (b"x" * ((1 << 20) + 1), "larger than 1024 KiB"),
])
def test_a_hostile_topology_file_is_one_line(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as err:
        load_topology(path)
    assert "\n" not in str(err.value)


def test_dev_zero_is_refused_not_read() -> None:
    from pathlib import Path

    with pytest.raises(UsageError, match="larger than"):
        load_topology(Path("/dev/zero"))


def test_unknown_pattern() -> None:
    with pytest.raises(UsageError, match="--pattern: unknown pattern 'mystery'"):
        Pattern.parse("mystery", "--pattern")


@pytest.mark.parametrize(
    "pattern,nodes,k_extra,expected",
    [
        (Pattern.NONE, 1, 0, 6),
        (Pattern.SIDECAR, 1, 0, 18),  # 6 * (1 + 2)
        (Pattern.DAEMONSET, 1, 0, 8),  # 6 + 1 * 2
        (Pattern.DAEMONSET, 3, 0, 12),  # 6 + 3 * 2
        (Pattern.HYBRID, 1, 0, 13),  # 6 * 2 + 1 * 1
        (Pattern.SIDECAR, 1, 3, 36),  # 6 * (1 + 5)
        (Pattern.DAEMONSET, 2, 3, 16),  # 6 + 2 * 5
        (Pattern.HYBRID, 2, 3, 20),  # 6 * 2 + 2 * 4
    ],
)
def test_container_formulas(pattern: Pattern, nodes: int, k_extra: int, expected: int) -> None:
    topo = load_topology().with_agents(Agents(mesh=True, logging=True, extra_agents=k_extra))
    assert containers_formula(topo, pattern, nodes) == expected


def test_hybrid_sits_between_sidecar_and_daemonset() -> None:
    topo = load_topology()
    assert containers_formula(topo, Pattern.DAEMONSET, 1) < containers_formula(topo, Pattern.HYBRID, 1) < containers_formula(topo, Pattern.SIDECAR, 1)


def test_capacity_check_refuses_what_cannot_be_scheduled() -> None:
    topo = load_topology()
    roomy = [NodeCapacity("n", pods=110, cpu_m=2000, memory_mi=24000)]
    check_capacity(topo, Pattern.SIDECAR, roomy)
    with pytest.raises(UsageError, match="needs 7 pods but the cluster has room for 5"):
        check_capacity(topo, Pattern.SIDECAR, [NodeCapacity("n", pods=10, cpu_m=2000, memory_mi=24000)], used_pods=5)
    with pytest.raises(UsageError, match="CPU"):
        check_capacity(topo, Pattern.SIDECAR, [NodeCapacity("n", pods=110, cpu_m=100, memory_mi=24000)])
    with pytest.raises(UsageError, match="no Ready node"):
        check_capacity(topo, Pattern.NONE, [])


def test_yaml_roundtrip_of_the_default_file() -> None:
    text = yaml.safe_dump(GOOD)
    assert parse_topology(yaml.safe_load(text)).app_pods == 5


@pytest.mark.parametrize("pattern,mesh,log", [
    (Pattern.NONE, 0, 0), (Pattern.SIDECAR, 6, 6), (Pattern.DAEMONSET, 3, 3), (Pattern.HYBRID, 6, 3),
    (Pattern.AMBIENT, 3 + 3 * 2, 3), (Pattern.AMBIENT_L4, 3, 3),
])
def test_running_instances_per_kind(pattern: Pattern, mesh: int, log: int) -> None:
    from patternbench.specs.agents import AgentKind
    from patternbench.specs.patterns import pattern_spec

    topology = load_topology()  # 3 services x 2 pods, on 3 nodes: per pod 6, per node 3, waypoints 3 x 2
    assert pattern_spec(pattern).running(AgentKind.MESH, topology, 3) == mesh
    assert pattern_spec(pattern).running(AgentKind.LOG, topology, 3) == log
    assert pattern_spec(pattern).running(AgentKind.MESH, topology.with_agents(Agents(mesh=False)), 3) == 0
