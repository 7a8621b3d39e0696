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


def test_cpu_shares_and_the_busiest_processes() -> None:
    """Two psutil.cpu_times() a second apart on 2 CPUs: 0.6 s user, 1.0 s system, 0.2 s
    steal, 0.2 s idle of 2.0 s; and the names that used the most CPU, as shares of the machine."""
    from collections import namedtuple

    from patternbench.observe.host import busiest, cpu_shares

    Times = namedtuple("Times", "user nice system idle iowait irq softirq steal")
    before = Times(10.0, 0.0, 5.0, 100.0, 1.0, 0.0, 0.0, 3.0)
    after = Times(10.6, 0.0, 6.0, 100.2, 1.0, 0.0, 0.0, 3.2)
    assert cpu_shares(before, after) == {"busy": 0.9, "system": 0.5, "steal": 0.1}
    before = {1: ("kubelet", 5.0), 2: ("containerd", 2.0), 3: ("etcd", 1.0), 4: ("kworker/0:1-events", 9.0)}
    after = {1: ("kubelet", 5.5), 2: ("containerd", 3.0), 3: ("etcd", 1.0), 4: ("kworker/0:1-mm", 9.1), 5: ("runc", 0.3)}
    # pid 4 renamed itself: its 0.1 s, not its 9.1 s; runc is new: all of its 0.3 s.
    assert busiest(before, after, 1.0, 2, keep=3) == [["containerd", 0.5], ["kubelet", 0.25], ["runc", 0.15]]


def test_the_pressure_sampler_writes_the_shares_and_the_busiest_processes(tmp_path) -> None:
    import time

    from patternbench.observe.host import PressureSampler

    sampler = PressureSampler(tmp_path / "p.jsonl", interval_s=0.2)
    if not sampler.available():
        pytest.skip("no PSI on this kernel")
    # Work, not sleep, in the window: on an idle machine no process may use a measurable share
    # in 0.3 s and `top` is rightly empty (this test failed so on an idle machine).
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        pass
    row = sampler.rows()[0]
    assert set(row) == {"t", "cpu_some", "busy", "system", "steal", "top"}
    assert 0.0 <= row["busy"] <= 1.0 and row["top"] and all(0 < share <= 1 for _, share in row["top"])
