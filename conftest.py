"""Repo-local fixtures, shared by tests/ and experiments/. The pytest plugin
(patternbench.pytest_plugin) holds everything a user of the package needs: options,
markers, the cluster fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def agent_files_dir() -> Path:
    """The agent files shipped with the repo (agents/*.yaml)."""
    return REPO / "agents"


@pytest.fixture(autouse=True)
def agent_registry() -> Iterator[None]:
    """Agent files register agents process-wide; each test leaves the registry as it found it."""
    from patternbench.specs.agents import AGENTS

    before = dict(AGENTS)
    yield
    AGENTS.clear()
    AGENTS.update(before)


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command gets as far as choosing a cluster: bad input must stop first."""
    from patternbench import cli

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("bad input reached the provider")

    monkeypatch.setattr(cli, "get_provider", refuse)
