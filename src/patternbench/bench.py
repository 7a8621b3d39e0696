"""`make bench`: benchmarks that print numbers and merge them into results/bench.json.

Each figure is the median of several runs of the real command, min and max printed beside
it, because this machine is noisy. Other parts of patternbench add their own keys.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from patternbench.errors import UsageError


def timed(cmd: list[str]) -> float:
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise UsageError(f"{' '.join(cmd)} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return elapsed


def bench_cluster(runs: int) -> dict[str, float]:
    """Warm-cache `cluster up` (command start to node Ready and CoreDNS Ready) and `cluster down`."""
    pb = [sys.executable, "-m", "patternbench.cli"]
    subprocess.run([*pb, "cluster", "down"], capture_output=True)
    ups, downs = [], []
    for i in range(runs):
        ups.append(timed([*pb, "cluster", "up"]))
        downs.append(timed([*pb, "cluster", "down"]))
        print(f"  run {i + 1}/{runs}: cluster up {ups[-1]:.1f}s, down {downs[-1]:.1f}s", flush=True)
    return {
        "cluster_up_s": round(statistics.median(ups), 2),
        "cluster_up_s_min": round(min(ups), 2),
        "cluster_up_s_max": round(max(ups), 2),
        "cluster_down_s": round(statistics.median(downs), 2),
        "cluster_down_s_max": round(max(downs), 2),
    }


# The proxies meshproxy is compared with: command -> Debian package (scripts/setup-host.sh).
PROXY_PEERS = {"haproxy": "haproxy", "nginx": "nginx"}


def bench_proxy(runs: int) -> dict[str, float]:
    """One proxy hop, meshproxy side by side with HAProxy and nginx in one run
    (cmd/proxybench): pinned cores, `runs` interleaved rounds, open loop at 1000 and 5000
    req/s, closed-loop maximum; and every image's size."""
    import shutil

    from patternbench.components import cache_root
    from patternbench.images import build_data_plane, build_go_binaries

    for command, package in PROXY_PEERS.items():
        if shutil.which(command) is None:
            raise UsageError(f"{command} is not installed: apt-get install {package} (or run scripts/setup-host.sh)")
    if shutil.which("taskset") is None:
        raise UsageError("taskset is not installed: apt-get install util-linux")
    if (os.cpu_count() or 1) < 2:
        raise UsageError("the proxy bench needs 2 cores: one for the app and the proxies, one for the load generator")
    bin_dir = cache_root() / "images" / "bench" / "bin"
    build_go_binaries(("app", "meshproxy", "proxybench"), "bench", bin_dir)
    cmd = [str(bin_dir / "proxybench"), "-bin", str(bin_dir), "-rounds", str(max(runs, 1)), "-seconds", "10", "-max-seconds", "5"]
    # proxybench stops every proxy it started on SIGINT/SIGTERM, and they die with it if it is killed.
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    if result.returncode != 0:
        raise UsageError(f"proxybench failed (exit {result.returncode}); its messages are above")
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in json.loads(result.stdout).items()}
    for archive in build_data_plane():
        name = archive.ref.rsplit("/", 1)[-1].replace(":", "_").replace("-", "_")
        figures[f"image_size_mib_{name}"] = round(archive.size_mib, 2)
    return figures


def bench_experiments(runs: int) -> dict[str, float]:
    """The full default matrix with the full profile, cluster up (warm cache) and down
    included: `experiment_matrix_s`, and its wall time over the configured load phases."""
    from patternbench.experiment import PROFILES, default_matrix

    pb = [sys.executable, "-m", "patternbench.cli"]
    subprocess.run([*pb, "cluster", "down"], capture_output=True)
    out = Path("results") / "bench-experiments"  # kept: a failed claim can be read in its report
    start = time.monotonic()
    result = subprocess.run([*pb, "run", "--profile", "full", "--results", str(out)], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode == 1:
        print(f"  claims failed: {result.stderr.strip().splitlines()[-3:]}", flush=True)
    if result.returncode not in (0, 1):
        raise UsageError(f"patternbench run failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    cases = len(default_matrix())
    phases = cases * PROFILES["full"].load_phases_s
    return {
        "experiment_matrix_s": round(elapsed, 1),
        "experiment_matrix_cases": cases,
        "harness_overhead_ratio": round(elapsed / phases, 3),
        "experiment_claims_held": int(result.returncode == 0),
    }


def bench_load(runs: int) -> dict[str, float]:
    """How many requests per second one Locust process drives against the `none` pattern
    without Locust's CPU warning: rising steps, the best step that stayed under it."""
    import tempfile

    from patternbench.cluster.local.provider import LocalProvider
    from patternbench.deploy import Deployer, deploy_run
    from patternbench.load.runner import LoadConfig, LoadProcess
    from patternbench.progress import Progress
    from patternbench.topology import Pattern, load_topology

    provider = LocalProvider(progress=Progress(quiet=True))
    brought_up = not provider.is_up()
    if brought_up:
        provider.create()
    best, steps = 0.0, {}
    try:
        run = deploy_run(provider, load_topology(), Pattern.NONE, progress=Progress(quiet=True))
        for users in (10, 25, 50, 100):
            with tempfile.TemporaryDirectory() as tmp:
                load = LoadProcess(run.entry_url, LoadConfig(users=users, spawn_rate=100, rate_per_user=20), Path(tmp), max_duration_s=15)
                load.start()
                assert load.proc is not None
                load.proc.wait(timeout=60)
                summary = json.loads((Path(tmp) / "load-summary.json").read_text())
            steps[f"load_rps_at_{users}_users"] = round(summary["avg_rps"], 1)
            print(f"  {users} users: {summary['avg_rps']:.0f} req/s, cpu warning {summary['cpu_warning']}", flush=True)
            if summary["cpu_warning"]:
                break
            best = max(best, summary["avg_rps"])
        from kubernetes import config

        Deployer(config.new_client_from_config(config_file=str(provider.kubeconfig()))).undeploy(run.run_id, graceful=False)
    finally:
        if brought_up:
            provider.delete()
    return {"load_max_rps": round(best, 1), **steps}


BENCHES: dict[str, Callable[[int], dict[str, float]]] = {
    "cluster": bench_cluster,
    "proxy": bench_proxy,
    "load": bench_load,
    "experiments": bench_experiments,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patternbench-bench")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args(argv)
    out = args.results / "bench.json"
    try:
        args.results.mkdir(parents=True, exist_ok=True)
        figures = json.loads(out.read_text()) if out.exists() else {}
        for name in args.only or sorted(BENCHES):
            print(f"bench {name} ({args.runs} runs)", flush=True)
            new = BENCHES[name](args.runs)
            figures.update(new)
            for key, value in new.items():
                print(f"  {key:<28} {value}")
        out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    except UsageError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
