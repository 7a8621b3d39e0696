"""The host evidence samplers survive containers that come and go while they read."""

from __future__ import annotations

import pytest


def test_container_cgroups_skip_a_pod_that_ends_while_they_are_read(tmp_path) -> None:
    """A pod's cgroup can go between the directory walk and the read: it is skipped."""
    from patternbench.observe import host

    pod = tmp_path / "node-1" / "kubepods" / "burstable" / "pod1234"
    (pod / ("c" * 64)).mkdir(parents=True)
    gone = tmp_path / "node-1" / "kubepods" / "burstable" / "pod-gone"
    real_glob = type(tmp_path).glob

    def glob_with_a_vanished_pod(self, pattern):
        found = list(real_glob(self, pattern))
        return found + ([gone] if pattern.endswith("*/pod*") else [])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(tmp_path), "glob", glob_with_a_vanished_pod)
        assert list(host.container_cgroups(tmp_path)) == ["c" * 64]
