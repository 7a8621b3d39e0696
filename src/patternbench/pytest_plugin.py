"""pytest plugin: options, markers and the session-wide cluster fixture.

One cluster per test session: the first test that asks for `cluster` brings it up, and
the session's end always takes it down again (unless --keep-cluster).
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from patternbench.cluster.registry import ProviderOptions, get_provider
from patternbench.errors import StepFailed, UsageError
from patternbench.progress import Progress
from patternbench.run_options import PROVIDER_OPTIONS, RUN_OPTIONS, RunPlan, add_options, provider_options, resolve_run


def pytest_addoption(parser: pytest.Parser) -> None:
    """The same flags, defaults and help as `patternbench run` (run_options.py)."""
    group = parser.getgroup("patternbench")
    add_options(group.addoption, PROVIDER_OPTIONS + RUN_OPTIONS, pytest=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a real cluster (brought up once per session)")
    config.addinivalue_line("markers", "faults: parametrized with the fault cases instead of the upgrade matrix")
    config.addinivalue_line("markers", "cluster_down: takes the session's cluster down; runs after every other test")
    get = _getter(config)
    try:
        # Parsed and checked before any test (and so any cluster) starts, as on the command line.
        config.stash[PLAN] = resolve_run(get)
        config.stash[PROVIDER] = provider_options(get)
    except UsageError as exc:
        pytest.exit(f"patternbench: {exc}", returncode=2)


def _getter(config: pytest.Config) -> Callable[[str], Any]:
    return lambda dest: config.getoption(dest, default=None)


PLAN = pytest.StashKey[RunPlan]()
PROVIDER = pytest.StashKey[ProviderOptions]()


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
    provider = get_provider(config.getoption("provider"), config.stash[PROVIDER], Progress())
    try:
        provider.create()
    except (UsageError, StepFailed) as exc:
        pytest.fail(f"cluster up failed: {exc}", pytrace=False)
    try:
        yield provider
    finally:
        if not config.getoption("keep_cluster"):
            provider.delete()


@pytest.fixture(scope="session")
def kube_api(cluster: object) -> object:
    """An official-client ApiClient for the session's cluster."""
    return kube_config.new_client_from_config(config_file=str(cluster.kubeconfig()))  # type: ignore[attr-defined]


@pytest.fixture
def namespace(kube_api: object) -> Iterator[str]:
    """A fresh namespace per test, labelled as ours, deleted afterwards (kr8s's pattern)."""
    core = client.CoreV1Api(kube_api)
    name = f"pb-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"patternbench.dev/owner": "tests"})))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
