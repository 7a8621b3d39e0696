from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from patternbench import cli
from patternbench.cluster.local import steps
from patternbench.cluster.local.processes import Daemon, ProcessRef, ProcInfo, descendants, kill_all, matching
from patternbench.cluster.local.settings import LocalSettings
from patternbench.errors import UsageError


def test_descendants_walks_the_tree() -> None:
    procs = [ProcInfo(1, 0, ("init",)), ProcInfo(10, 1, ("shim",)), ProcInfo(11, 10, ("pause",)), ProcInfo(12, 11, ("app",)), ProcInfo(20, 1, ("other",))]
    assert descendants({10}, procs) == {10, 11, 12}
    assert descendants(set(), procs) == set()


def test_matching_looks_at_every_argument() -> None:
    procs = [ProcInfo(5, 1, ("containerd-shim-runc-v2", "-address", "/run/patternbench/local/containerd/containerd.sock")), ProcInfo(6, 1, ("containerd", "-address", "/run/containerd/containerd.sock"))]
    assert matching(procs, ("/run/patternbench/local",)) == {5}


def test_daemon_start_pidfile_log_and_kill(tmp_path: Path) -> None:
    d = Daemon("sleeper", [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"], tmp_path / "s.log", tmp_path / "s.pid")
    pid = d.start()
    assert d.running() and int((tmp_path / "s.pid").read_text().split()[0]) == pid
    steps.wait_until("the log line", lambda: "hi" in d.log_tail(), 10, d)
    # A second handle that only knows the pid file finds the same process (once it has
    # exec'd: before that, /proc shows our own command line).
    again = Daemon("sleeper", d.argv, d.log_path, d.pid_path)
    assert again.pid() == pid
    kill_all({pid}, grace_s=2)
    assert not d.running()


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    """A pid the kernel gave to another process: its start time is not the one recorded, so
    it is not ours, whatever its command line (the old check took any process there, an
    unrelated one included, for the daemon, and teardown would have killed it)."""
    me = ProcessRef.of(os.getpid())
    assert me is not None
    daemon = Daemon("etcd", [sys.executable], tmp_path / "x.log", tmp_path / "x.pid")
    (tmp_path / "x.pid").write_text(f"{me.pid} {me.start_ticks + 1}")
    assert daemon.pid() is None and not daemon.running()
    (tmp_path / "x.pid").write_text(str(os.getpid()))  # a pid file without the start time identifies nothing
    assert daemon.pid() is None
    (tmp_path / "x.pid").write_text(f"{me.pid} {me.start_ticks}")
    assert daemon.pid() == os.getpid()


def _settings_with_free_ports(tmp_path: Path, apiserver_port: int) -> LocalSettings:
    """Every port free but the API server's (a cluster may be up while this runs)."""
    free = []
    for _ in range(8):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            free.append(probe.getsockname()[1])
    return LocalSettings(
        apiserver_port=apiserver_port, etcd_client_port=free[0], etcd_peer_port=free[1], kubelet_port=free[2],
        kubelet_healthz_port=free[3], proxy_healthz_port=free[4], proxy_metrics_port=free[5],
        controller_manager_port=free[6], scheduler_port=free[7], run_dir=tmp_path / "run", state_dir=tmp_path / "state",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="preflight checks root first")
def test_preflight_refuses_a_port_another_process_holds_and_accepts_our_own(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        settings = _settings_with_free_ports(tmp_path, taken)
        (tmp_path / "run").mkdir()
        settings.host_proxy_marker.write_text("")  # this test is about ports, not chains
        with pytest.raises(UsageError, match=f"port {taken} \\(kube-apiserver\\) is already taken by pid {os.getpid()} "):
            steps.preflight(settings, owned=set())
        # The same listener, recorded as one of our cluster's processes: an earlier cluster of
        # ours, which the sweep after the preflight stops.
        steps.preflight(settings, owned={os.getpid()})


@pytest.mark.skipif(os.geteuid() != 0, reason="reads and changes the host's iptables")
def test_preflight_refuses_another_clusters_chains_and_the_sweep_keeps_them(tmp_path: Path) -> None:
    """A CNI-* chain on the host is never ours (the CNI runs in the nodes' namespaces): cluster
    up must refuse before its sweep, and a sweep without our kube-proxy marker keeps KUBE-*."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings = _settings_with_free_ports(tmp_path, sock.getsockname()[1])
    chain = f"CNI-PBTEST-{os.getpid()}"
    subprocess.run(["iptables", "-N", chain], check=True)
    try:
        with pytest.raises(UsageError, match="another Kubernetes or CNI runs on this machine"):
            steps.preflight(settings, owned=set())
        (tmp_path / "run").mkdir()
        settings.host_proxy_marker.write_text("")  # a host kube-proxy of ours ran: its chains are ours
        steps.preflight(settings, owned=set())
    finally:
        subprocess.run(["iptables", "-X", chain], check=False)


def test_cli_unknown_provider_exits_2_with_one_line(capsys) -> None:
    assert cli.main(["cluster", "status", "--provider", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown provider 'nope'" in err


def test_cli_missing_kubeconfig_exits_2(tmp_path: Path, capsys) -> None:
    assert cli.main(["cluster", "status", "--provider", "kubeconfig", "--kubeconfig", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "patternbench.cli", "cluster", "up", "--provider", "kind", "--nodes", "1"],
        capture_output=True, text=True, env={**os.environ, "PATH": "/nonexistent"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("patternbench:")


@pytest.mark.parametrize("argv,message", [
    (["run", "--pattern", "mystery"], "unknown pattern 'mystery'"),
    (["run", "--agent", "tracing"], "unknown agent 'tracing'"),
    (["run", "--duration", "0"], "--duration must be above 0"),
    (["run", "--users", "5000"], "more than one load process can drive"),
    (["run", "--results", "/proc/patternbench-cannot-write"], "cannot write results"),
    (["run", "--provider", "kubeconfig", "--kubeconfig", "/nonexistent/config", "--results", "/tmp"], "does not exist"),
    (["deploy", "--pattern", "sidecars"], "unknown pattern 'sidecars'"),
    (["report", "/nonexistent/run"], "not a run directory"),
])
def test_bad_experiment_input_exits_2_before_any_load(argv: list[str], message: str, capsys) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sigterm_runs_the_same_cleanup_as_ctrl_c_and_exits_143() -> None:
    """A run stopped by SIGTERM (CI's timeout, `kill`) cleans up like Ctrl-C: its finally
    blocks run (undeploy, the partial report, the cluster it brought up)."""
    code = (
        "import os, signal, sys, time\n"
        "from patternbench import cli\n"
        "def command(args, progress):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(10)\n"
        "        return 0\n"
        "    finally:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)  # a second one does not cut the cleanup\n"
        "        time.sleep(0.2)\n"
        "        print('cleaned up', flush=True)\n"
        "cli.COMMANDS['clean'] = command\n"
        "status = cli.main(['clean'])\n"
        "print('handler restored', signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143
    assert done.stdout.splitlines() == ["cleaned up", "handler restored True"]
    assert done.stderr.splitlines() == ["patternbench: already stopping, cleaning up", "patternbench: terminated (SIGTERM); what ran was cleaned up"]
