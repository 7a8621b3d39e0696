"""Fixtures for the cluster tests: the netcheck image, loaded once per session."""

from __future__ import annotations

import pytest

from patternbench.build.images import ImageArchive, build_project_images


@pytest.fixture(scope="session")
def netcheck_image(cluster: object) -> ImageArchive:
    (archive,) = build_project_images(("netcheck",), "test")
    cluster.load_images([archive])  # type: ignore[attr-defined]
    return archive
