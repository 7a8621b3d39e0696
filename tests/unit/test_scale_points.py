"""The scale document from trial entries shaped as summary.json holds them."""

from __future__ import annotations

import pytest

from patternbench.errors import UsageError
from patternbench.scale_points import PROJECT_TO, parse_sizes, point, scale_document

SIZES = [3, 6, 12, 24, 48]


def entry(pattern: str, services: int, trial: int) -> dict:
    pods = 2 * services
    per_pod = pattern == "sidecar"
    proxies = pods if per_pod else 3
    return {
        "pattern": pattern, "trial": trial, "nodes": 3, "app_pods": pods,
        "containers_total": pods * (3 if per_pod else 1) + (0 if per_pod else 6), "containers_formula": 0,
        "agent_memory_mib_total": 5.0 * proxies + 0.1 * trial, "agent_cpu_m_total": 10.0 * proxies,
        "upgrade_duration_s": 2.0 + (0.5 * pods if per_pod else 3.0),
        "apiserver": {"watchers": {"endpointslices": 10 + proxies}, "cpu_cores": 0.05},
        "apiserver_upgrade": {"watch_events": {"endpointslices": proxies * pods * 2 if per_pod else proxies * 4}},
    }


def test_points_fits_holdout_and_projection() -> None:
    points = [point(entry(p, s, t), s) for p in ("sidecar", "daemonset") for s in SIZES for t in (1, 2)]
    doc = scale_document(points)
    assert len(doc["points"]) == 20 and doc["points"][0]["apiserver_watchers"] == {"endpointslices": 16}
    side, node = doc["holdout"]["sidecar"], doc["holdout"]["daemonset"]
    # Linear data: the held-out largest size is predicted exactly.
    assert side["containers_total"]["error"] == pytest.approx(0.0, abs=1e-6)
    assert side["apiserver_endpointslice_watchers"]["measured"] == 10 + 96
    assert node["apiserver_endpointslice_watchers"]["predicted"] == pytest.approx(13, abs=1e-6)
    # The quadratic fan-out is fitted with its pods*pods term.
    assert side["apiserver_upgrade_endpointslice_events"]["error"] == pytest.approx(0.0, abs=1e-6)
    assert set(doc["projection"]) == {str(n) for n in PROJECT_TO}
    # No node axis: the projection is on the measured node count, and says so.
    cell = doc["projection"]["1000"]["sidecar"]["containers_total"]
    assert cell["nodes_in_model"] is False and cell["nodes"]["3"]["predicted"] == pytest.approx(6000, rel=1e-6)
    assert "nodes" not in doc["fits"]["sidecar"]["containers_total"]["terms"] and doc["holdout_nodes"] == {}
    assert doc["fits"]["sidecar"]["containers_total"]["terms"]["pods"]["coef"] == pytest.approx(3.0)


@pytest.mark.parametrize("text,message", [
    ("3,6", "at least three sizes"), ("6,3,12", "rising"), ("3,3,6,12", "rising"), ("3,,6", "empty size"),
    ("0,3,6", "must be from 1"), ("a,b,c", "not a whole number"),
])
def test_bad_sizes(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_sizes(text)


def test_good_sizes() -> None:
    assert parse_sizes("3, 6,12,24,48") == SIZES


def test_each_pattern_upgrades_its_mesh_agent() -> None:
    from patternbench.scale_run import scale_case
    from patternbench.specs.patterns import Pattern

    assert {p.value: scale_case(p).agent for p in Pattern} == {
        "none": None, "sidecar": "mesh", "daemonset": "mesh", "hybrid": "mesh", "ambient": "l4proxy", "ambient-l4": "l4proxy"}


@pytest.mark.parametrize("argv,message", [
    (["--services", "3,6"], "at least three sizes"),
    (["--pattern", "nope"], "unknown pattern 'nope'"),
    (["--replicas", "0"], "--replicas must be from 1 to 50"),
    (["--depth", "x"], "--depth: 'x' is not a whole number"),
    (["--profile", "huge"], "unknown profile 'huge'"),
])
def test_scale_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from patternbench.cli import main

    assert main(["scale", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_crossovers_between_the_sidecar_and_the_node_lines() -> None:
    # Sidecar memory 5 MiB per pod against a node agent's 30 MiB per node plus 0.5 per pod (3 nodes).
    def e(pattern: str, services: int) -> dict:
        pods = 2 * services
        mib = 5.0 * pods if pattern == "sidecar" else 90.0 + 0.5 * pods
        return {"pattern": pattern, "nodes": 3, "app_pods": pods, "agent_memory_mib_total": mib}

    doc = scale_document([point(e(p, s), s) for p in ("sidecar", "daemonset") for s in SIZES])
    cross = next(c for c in doc["crossovers"] if c["figure"] == "agent_memory_mib_total")
    # 10 s = 90 + s at s = 10: from 10 services on the sidecars hold no less memory.
    assert cross == {"figure": "agent_memory_mib_total", "a": "sidecar", "b": "daemonset", "nodes": 3, "a_below_at_1": True, "crosses_at_services": 10}


def test_the_scale_report_shows_points_holdout_projection_and_crossovers(tmp_path) -> None:
    from patternbench.results.scale_report import write_scale_report

    doc = scale_document([point(entry(p, s, t), s) for p in ("sidecar", "daemonset") for s in SIZES for t in (1, 2)])
    text = write_scale_report(doc, tmp_path).read_text()
    assert text.startswith("# At scale")
    for heading in ("## Measured", "## The largest size, held out", "## Projection", "## Where the lines cross"):
        assert heading in text
    assert "| sidecar | 48 | 3 | 96 | 288 / 0 |" in text  # the means of the two trials at 48 services
    assert "| 1000 | 3 (as measured: no node axis) | sidecar | containers_total | 6000" in text
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def node_entry(pattern: str, services: int, nodes: int) -> dict:
    """A mesh and a log agent: per pod as sidecars, per node as DaemonSets."""
    pods = 2 * services
    per_pod = pattern == "sidecar"
    return {
        "pattern": pattern, "nodes": nodes, "app_pods": pods,
        "containers_total": 3 * pods if per_pod else pods + 2 * nodes, "containers_formula": 0,
        "agent_memory_mib_total": 5.0 * pods if per_pod else 30.0 * nodes + 0.5 * pods,
        "apiserver": {"watchers": {"endpointslices": 9 + (pods if per_pod else nodes)}},
    }


def test_the_node_axis_puts_nodes_in_the_fits_holds_out_the_largest_count_and_projects_on_10_and_50_nodes(tmp_path) -> None:
    from patternbench.results.scale_report import write_scale_report

    points = [point(node_entry(p, s, 3), s) for p in ("sidecar", "daemonset") for s in (3, 6, 12, 24)]
    points += [point(node_entry(p, 3, n), 3, "nodes") for p in ("sidecar", "daemonset") for n in (2, 4, 6)]
    doc = scale_document(points)
    node = doc["fits"]["daemonset"]["containers_total"]["terms"]
    assert node["nodes"]["coef"] == pytest.approx(2.0) and node["pods"]["coef"] == pytest.approx(1.0)
    held = doc["holdout_nodes"]["daemonset"]["apiserver_endpointslice_watchers"]
    assert held["nodes"] == 6 and held["measured"] == 15 and held["error"] == pytest.approx(0.0, abs=1e-6)
    assert doc["holdout"]["daemonset"]["containers_total"]["services"] == 24
    cell = doc["projection"]["1000"]["daemonset"]["containers_total"]
    assert cell["nodes_in_model"] and cell["nodes"]["50"]["predicted"] == pytest.approx(2000 + 100, rel=1e-6)
    # 10 s = 30 nodes + s, s = 3.33 nodes: sidecars hold no less memory from 34 services on 10 nodes, 167 on 50.
    cross = {c["nodes"]: c["crosses_at_services"] for c in doc["crossovers"] if c["figure"] == "agent_memory_mib_total"}
    assert cross == {10: 34, 50: 167}
    text = write_scale_report(doc, tmp_path).read_text()
    assert "## The largest node count, held out" in text and "(3.4 services per node)" in text
    assert "| daemonset | 3 | 6 | 6 | 18 / 0 |" in text


@pytest.mark.parametrize("text,want", [("3", (3, [])), ("5", (5, [])), ("2,3,4,6", (3, [2, 3, 4, 6]))])
def test_nodes_is_one_count_or_the_node_axis(text: str, want: tuple) -> None:
    from patternbench.scale_points import parse_nodes

    assert parse_nodes(text) == want


@pytest.mark.parametrize("argv,message", [
    (["--nodes", "2,4"], "--nodes: at least three sizes"),
    (["--nodes", "4,3,6"], "rising"),
    (["--nodes", "2,3,99"], "holds at most"),
    (["--nodes", "0"], "--nodes must be from 1"),
    (["--nodes", "2,3,4", "--nodes-services", "x"], "--nodes-services: 'x' is not a whole number"),
])
def test_bad_node_axis_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from patternbench.cli import main

    assert main(["scale", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
