"""pytest plugin: options, markers and the session-wide cluster fixture.

One cluster per test session: the first test that asks for `cluster` brings it up, and
the session's end always takes it down again (unless --keep-cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from patternbench.agents import UPGRADABLE
from patternbench.cluster.registry import PROVIDER_NAMES, ProviderOptions, get_provider
from patternbench.errors import StepFailed, UsageError
from patternbench.progress import Progress


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("patternbench")
    group.addoption("--provider", default="local", choices=PROVIDER_NAMES, help="cluster provider for cluster tests")
    group.addoption("--keep-cluster", action="store_true", help="leave the cluster up after the session")
    group.addoption("--bin-dir", type=Path, default=None, help="Kubernetes binaries to use instead of building them")
    group.addoption("--nodes", default="3", help="cluster tests: nodes of the cluster (default 3)")
    group.addoption("--kubeconfig-file", type=Path, default=None, help="kubeconfig provider: the file to use")
    group.addoption("--pattern", action="append", help="experiments: only this pattern (repeatable)")
    group.addoption("--agent", action="append", choices=list(UPGRADABLE), help="experiments: only this agent (repeatable)")
    group.addoption("--profile", default="short", choices=["short", "full"], help="experiments: phase lengths and load (default short)")
    group.addoption("--duration", type=float, default=None, help="experiments: seconds of load before and after the upgrade")
    group.addoption("--users", type=int, default=None, help="experiments: Locust users")
    group.addoption("--results-dir", type=Path, default=Path("results"), help="experiments: where runs are written")
    group.addoption("--max-failed-requests", type=int, default=0, help="experiments: zero-downtime threshold")
    # Text, parsed in pytest_configure: bad input is one line and exit 2, as on the command line.
    group.addoption("--fault", action="append", default=None, help="experiments: run the fault family for this fault (repeatable; default: one fault case per pattern)")
    group.addoption("--fault-duration", default=None, help="experiments: seconds a timed fault lasts")
    group.addoption("--repeat", default=None, help="experiments: run every case N times, interleaved (default 1)")
    group.addoption("--slo-ms", default=None, help="experiments: a probe slower than this is unavailable (default 1000)")
    group.addoption("--rps", default=None, help="experiments: open-loop load at R requests/s instead of Locust users")
    group.addoption("--upgrade", action="append", default=None, help="experiments: upgrade strategy rolling and/or in-place (default both; repeatable)")
    group.addoption("--injection", default=None, help="experiments: client or webhook sidecar injection (default: client, plus the sidecar proxy's upgrades with the webhook)")
    group.addoption("--agent-file", action="append", default=None, help="experiments: bring your own agent (YAML); it runs beside the built-in agent of its kind (repeatable)")
    group.addoption("--sweep", default=None, help="experiments: latency and cost against load per pattern (--pattern, default all) at rising offered rates R1,R2,... (default: a short smoke on one pattern)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a real cluster (brought up once per session)")
    config.addinivalue_line("markers", "faults: parametrized with the fault cases instead of the upgrade matrix")
    config.addinivalue_line("markers", "cluster_down: takes the session's cluster down; runs after every other test")
    try:
        config.stash[MEASUREMENT] = measurement_options(config)
        from patternbench.cli import load_agent_files
        from patternbench.patterns import Pattern

        chosen = [Pattern.parse(p, "--pattern") for p in config.getoption("--pattern", default=None) or []] or None
        load_agent_files(config.getoption("--agent-file", default=None) or [], chosen)
        from patternbench.cli import check_strategies

        check_strategies(config.getoption("--upgrade", default=None), chosen, config.getoption("--agent", default=None))
        if config.getoption("--injection", default=None) is not None:
            from patternbench.webhook_injector import check_injection

            check_injection(config.getoption("--injection"))
    except UsageError as exc:
        pytest.exit(f"patternbench: {exc}", returncode=2)


@dataclass(frozen=True)
class Measurement:
    """The measurement options, parsed: trials per case, deadline, open-loop rate, sweep."""

    repeat: int = 1
    slo_ms: float | None = None
    rps: float | None = None
    sweep: list[float] | None = None


MEASUREMENT = pytest.StashKey[Measurement]()


def measurement_options(config: pytest.Config) -> Measurement:
    """Parsed and checked before any test (and so any cluster) starts."""
    from patternbench.options import parse_repeat, parse_rps, parse_slo_ms, parse_sweep

    def get(name: str) -> object:
        return config.getoption(name, default=None)

    m = Measurement(
        repeat=parse_repeat(get("--repeat")) if get("--repeat") is not None else 1,
        slo_ms=parse_slo_ms(get("--slo-ms")) if get("--slo-ms") is not None else None,
        rps=parse_rps(get("--rps")) if get("--rps") is not None else None,
        sweep=parse_sweep(get("--sweep")) if get("--sweep") is not None else None,
    )
    if m.rps is not None and get("--users") is not None:
        raise UsageError("--rps and --users are two load modes: give one")
    return m


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first, then cluster tests; tests that take the cluster down run last, so
    every other cluster test still has it. (sort is stable: file order is kept otherwise.)"""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("cluster_down") is not None:
            return 2
        return 1 if item.get_closest_marker("cluster") is not None else 0

    items.sort(key=rank)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[object]:
    """The session's cluster provider, up and Ready; torn down at the end of the session."""
    config = request.config
    from patternbench.cluster.registry import parse_node_count

    provider_name = config.getoption("--provider")
    try:
        nodes = parse_node_count(config.getoption("--nodes"), local=provider_name == "local")
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    options = ProviderOptions(
        nodes=nodes,
        bin_dir=config.getoption("--bin-dir"),
        kubeconfig=config.getoption("--kubeconfig-file"),
    )
    provider = get_provider(provider_name, options, Progress())
    try:
        provider.create()
    except (UsageError, StepFailed) as exc:
        pytest.fail(f"cluster up failed: {exc}", pytrace=False)
    try:
        yield provider
    finally:
        if not config.getoption("--keep-cluster"):
            provider.delete()


@pytest.fixture(scope="session")
def kube_api(cluster: object) -> object:
    """An official-client ApiClient for the session's cluster."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig()))  # type: ignore[attr-defined]


@pytest.fixture
def namespace(kube_api: object) -> Iterator[str]:
    """A fresh namespace per test, labelled as ours, deleted afterwards (kr8s's pattern)."""
    import uuid

    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = f"pb-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"patternbench.dev/owner": "tests"})))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
