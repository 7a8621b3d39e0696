"""Topologies made from a size (--services): valid, every service called, as many calls per
request at every size, and every bad size a one-line error."""

from __future__ import annotations

import pytest

from patternbench.errors import UsageError
from patternbench.specs.generated_topology import choose_topology, layer_calls, layered, level_widths
from patternbench.specs.topology import Pattern, Route, containers_formula, parse_topology, reachable_from

SIZES = [1, 2, 3, 4, 6, 12, 24, 48, 96, 200]


@pytest.mark.parametrize("services", SIZES)
def test_layered_topology_has_every_service_reachable_and_called(services: int) -> None:
    topology = layered(services)
    assert len(topology.services) == services
    assert topology.route is Route.ONE
    assert reachable_from(topology, topology.entry) == {s.name for s in topology.services}
    called = {c for s in topology.services for c in s.calls}
    assert called == {s.name for s in topology.services} - {topology.entry}
    # Every request makes the default chain's two calls (fewer only where there are fewer services).
    assert topology.calls_per_request == min(2, services - 1)
    assert topology.app_pods == 2 * services


def test_widths_and_edges() -> None:
    assert level_widths(48, 2) == [1, 23, 24]
    assert level_widths(48, 3) == [1, 15, 16, 16]
    assert level_widths(3, 2) == [1, 1, 1]
    # A wider next level: every callee has one caller; a narrower one: every caller one callee.
    assert [layer_calls(2, 5, i) for i in range(2)] == [[0, 2, 4], [1, 3]]
    assert [layer_calls(5, 2, i) for i in range(5)] == [[0], [1], [0], [1], [0]]


def test_three_services_are_the_default_chain_shape() -> None:
    topology = layered(3)
    assert [s.calls for s in topology.services] == [("svc-001",), ("svc-002",), ()]


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_depth_sets_the_calls_per_request(depth: int) -> None:
    assert layered(24, depth=depth).calls_per_request == depth


def test_container_formula_grows_with_the_generated_size() -> None:
    small, large = layered(3), layered(48)
    assert containers_formula(large, Pattern.SIDECAR, 3) - containers_formula(small, Pattern.SIDECAR, 3) == 45 * 2 * 3
    assert containers_formula(large, Pattern.DAEMONSET, 3) - containers_formula(small, Pattern.DAEMONSET, 3) == 45 * 2


def test_calls_per_request_counts_every_call_with_route_all() -> None:
    diamond = {"entry": "a", "services": [{"name": "a", "calls": ["b", "c"]}, {"name": "b", "calls": ["d"]}, {"name": "c", "calls": ["d"]}, {"name": "d"}]}
    assert parse_topology(diamond).calls_per_request == 4  # a->b, b->d, a->c, c->d
    assert parse_topology({**diamond, "route": "one"}).calls_per_request == 2


@pytest.mark.parametrize("args,message", [
    ((None, "0"), "--services must be from 1 to 200, got 0"),
    ((None, "abc"), "--services: 'abc' is not a whole number"),
    ((None, "4.5"), "--services: '4.5' is not a whole number"),
    ((None, "201"), "--services must be from 1 to 200"),
    ((None, "12", "0"), "--replicas must be from 1 to 50"),
    ((None, "12", None, "11"), "--depth must be from 1 to 10"),
    ((None, None, "3"), "--replicas and --depth shape a generated topology: give --services N too"),
    (("topologies/default.yaml", "12"), "give --topology FILE or --services N, not both"),
])
def test_bad_sizes_are_one_line_errors(args: tuple, message: str) -> None:
    with pytest.raises(UsageError) as info:
        choose_topology(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_without_size_the_file_is_read() -> None:
    assert choose_topology(None).entry == "frontend"
    assert choose_topology(None, "12", "3", "3").app_pods == 36
