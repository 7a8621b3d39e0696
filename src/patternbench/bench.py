"""`make bench`: benchmarks that print numbers and merge them into results/bench.json.

Each figure is the median of several runs of the real command, min and max printed beside
it, because this machine is noisy. Other parts of patternbench add their own keys.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from kubernetes import client
from kubernetes import config as kube_config
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from patternbench import calibration
from patternbench.build import otelcol_local
from patternbench.build.components import cache_root
from patternbench.build.images import build_data_plane, build_go_binaries, build_otelcol
from patternbench.build.load_image import build_load_image
from patternbench.build.program_image import build_program_images
from patternbench.cluster.local.provider import LocalProvider
from patternbench.cluster.provider import abilities
from patternbench.cluster.registry import ProviderOptions, get_provider
from patternbench.errors import UsageError
from patternbench.experiment import run_case, run_matrix
from patternbench.load.cluster_load import ClusterLoad
from patternbench.load.runner import LoadConfig, LoadProcess, read_jsonl
from patternbench.load.sweep import max_sustained, run_sweep, step_from_records
from patternbench.measure.attribution import by_owner
from patternbench.operate.deploy import deploy_run, load_generator_image
from patternbench.operate.kube import Deployer
from patternbench.outages import calibrate_local
from patternbench.progress import Progress
from patternbench.render import RenderOptions, render
from patternbench.results.durations import time_under_load
from patternbench.results.report import write_report
from patternbench.results.rundir import LOAD_SUMMARY, REQUESTS
from patternbench.specs.agent_file import load_agent_file
from patternbench.specs.cases import PROFILES, Case, default_matrix
from patternbench.specs.generated_topology import layered
from patternbench.specs.topology import Pattern, load_topology
from patternbench.stats import percentile


def timed(cmd: list[str]) -> float:
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise UsageError(f"{' '.join(cmd)} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return elapsed


def _up_down(nodes: int, runs: int) -> tuple[list[float], list[float]]:
    pb = [sys.executable, "-m", "patternbench.cli"]
    subprocess.run([*pb, "cluster", "down"], capture_output=True)
    ups, downs = [], []
    for i in range(runs):
        ups.append(timed([*pb, "cluster", "up", "--nodes", str(nodes)]))
        downs.append(timed([*pb, "cluster", "down"]))
        print(f"  {nodes} node(s), run {i + 1}/{runs}: cluster up {ups[-1]:.1f}s, down {downs[-1]:.1f}s", flush=True)
    return ups, downs


def cluster_cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time of these processes and of their reaped children (/proc/<pid>/stat
    utime, stime, cutime, cstime), in seconds."""

    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / tick


def idle_cpu_m(window_s: float = 20.0) -> float:
    """The whole local cluster's own CPU at rest (control plane, every node's daemons, their
    shims and pods such as CoreDNS), in millicores: CPU time over a quiet window."""

    provider = LocalProvider(progress=Progress(quiet=True))
    pids = provider.owned_processes()
    before = cluster_cpu_seconds(pids)
    start = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - start
    return (cluster_cpu_seconds(provider.owned_processes()) - before) / elapsed * 1000


def bench_cluster(runs: int) -> dict[str, float]:
    """Warm-cache `cluster up` (command start to every node Ready and CoreDNS Ready) and
    `cluster down`, for the default 3 nodes and for 1; the cluster's own CPU at rest."""
    pb = [sys.executable, "-m", "patternbench.cli"]
    ups1, _ = _up_down(1, max(1, runs - 1))
    ups, downs = _up_down(3, runs)
    timed([*pb, "cluster", "up", "--nodes", "3"])
    time.sleep(10)  # let bring-up's own work (image GC, first syncs) settle
    idle = [idle_cpu_m() for _ in range(max(1, runs - 1))]
    timed([*pb, "cluster", "down"])
    return {
        "cluster_up_s": round(statistics.median(ups), 2),
        "cluster_up_s_min": round(min(ups), 2),
        "cluster_up_s_max": round(max(ups), 2),
        "cluster_up_1node_s": round(statistics.median(ups1), 2),
        "cluster_down_s": round(statistics.median(downs), 2),
        "cluster_down_s_max": round(max(downs), 2),
        "cluster_idle_cpu_m": round(statistics.median(idle), 1),
        "cluster_idle_cpu_m_max": round(max(idle), 1),
    }


# The proxies meshproxy is compared with: command -> Debian package (scripts/setup-host.sh).
PROXY_PEERS = {"haproxy": "haproxy", "nginx": "nginx"}


def bench_proxy(runs: int) -> dict[str, float]:
    """One proxy hop, meshproxy side by side with HAProxy and nginx in one run
    (cmd/proxybench): pinned cores, `runs` interleaved rounds, open loop at 1000 and 5000
    req/s, closed-loop maximum; and every image's size."""

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
    under_load = time_under_load(sorted(out.glob("pb-*"))[-1])
    return {
        "experiment_matrix_s": round(elapsed, 1),
        "experiment_matrix_cases": cases,
        # Over the time the load really ran (warm-up to end of every case, upgrades included):
        # what is left is the harness's own set-up, waits and teardown.
        "harness_overhead_ratio": round(elapsed / under_load, 3) if under_load else None,
        # Over the configured phases only (upgrade windows counted as overhead): the older figure.
        "harness_overhead_ratio_configured": round(elapsed / phases, 3),
        "experiment_time_under_load_s": round(under_load, 1),
        "experiment_claims_held": int(result.returncode == 0),
    }


def _local_cluster() -> Any:
    """The local provider with its cluster up (brought up if needed)."""

    provider = get_provider("local", progress=Progress(quiet=True))
    if not provider.is_up():
        provider.create()
    return provider


def bench_soak(runs: int) -> dict[str, Any]:
    """Every failed request explained, at volume: `runs` x 25 rounds of short cases (the
    control, a sidecar proxy's rolling and in-place upgrades, a DaemonSet proxy's upgrade),
    interleaved, with the failure evidence on; the count of each cause over every case."""

    cases = [
        Case(Pattern.NONE, None), Case(Pattern.SIDECAR, "mesh"), Case(Pattern.SIDECAR, "mesh", upgrade="in-place"),
        Case(Pattern.DAEMONSET, "mesh"),
    ]
    rounds = 25 * runs
    run_dir = run_matrix(_local_cluster(), load_topology(), cases, PROFILES["short"], Path("results") / "bench-soak", repeat=rounds, share_deployments=False)
    summary = write_report(run_dir)
    causes = summary["failures_by_cause"]

    owners = by_owner(causes)
    return {
        "soak_rounds": rounds,
        "soak_sidecar_upgrades": 2 * rounds, "soak_daemonset_upgrades": rounds, "soak_control_cases": rounds,
        "soak_failed_requests": sum(causes.values()),
        "soak_unattributed_failures": owners["unattributed"], "soak_harness_failures": owners["harness"],
        "soak_pattern_failures": owners["pattern"],
        "soak_failures_by_cause": causes,
        "soak_run": str(run_dir),
    }


def bench_capture(runs: int) -> dict[str, Any]:
    """What the failure evidence costs: the control case with and without it, side by side
    and interleaved (`runs` pairs); CPU of the orchestrator and its children per second of
    load, and the probes' p99."""

    provider, topology, profile = _local_cluster(), load_topology(), PROFILES["full"]
    cpu: dict[bool, list[float]] = {True: [], False: []}
    p99: dict[bool, list[float]] = {True: [], False: []}

    def used() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        # A first case loads the images into the nodes: its CPU would land on one arm.
        run_case(provider, topology, Case(Pattern.NONE, None), profile, Path(tmp) / "warm-up")
        for k in range(runs):
            for capture in (k % 2 == 0, k % 2 != 0):  # alternate which arm goes first
                out = Path(tmp) / f"{k}-{capture}"
                before = used()
                run_case(provider, topology, Case(Pattern.NONE, None), profile, out, capture=capture)
                cpu[capture].append((used() - before) / time_under_load(Path(tmp), out.name))
                probes = [r["ms"] for r in read_jsonl(out / REQUESTS) if r.get("kind") == "probe" and not r.get("error")]
                p99[capture].append(percentile(probes, 99) or 0.0)
    median = statistics.median
    return {
        "capture_cpu_share_of_a_core": round(median(cpu[True]) - median(cpu[False]), 4),
        "capture_off_cpu_per_load_s": round(median(cpu[False]), 4),
        "capture_on_cpu_per_load_s": round(median(cpu[True]), 4),
        "capture_off_probe_p99_ms": round(median(p99[False]), 2),
        "capture_on_probe_p99_ms": round(median(p99[True]), 2),
    }


def trivial_target() -> tuple[subprocess.Popen[bytes], str]:
    """The app binary with no downstream and its log discarded, on a free 127.0.0.1 port:
    the cheapest real HTTP answer this project has, so the harness is what is measured."""

    binary = build_go_binaries(("app",), "bench", cache_root() / "images" / "bench" / "bin")["app"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(binary)], env={"SERVICE_NAME": "bench", "POD_NAME": "bench", "LISTEN": f"127.0.0.1:{port}", "LOG_PATH": "/dev/null"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.1), retry=retry_if_exception_type(OSError), reraise=True):
        with attempt, socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    return proc, f"http://127.0.0.1:{port}"


LOAD_RATES = [1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 10000.0]


def bench_load(runs: int) -> dict[str, float]:
    """The harness's own capacity: open-loop load with every request recorded, at rising
    offered rates, against a trivial target on 127.0.0.1 (no app chain, no cluster); the
    highest rate sustained (load.sweep.saturation: on schedule, no errors, p99 <= 100 ms
    from the intended start). Once with one process, once with a worker per core."""

    # The harness shares this machine: a busy one (a cluster running) starves the sender, and
    # the figure says so rather than passing for the harness's limit.
    figures: dict[str, float] = {"load_bench_loadavg_1m": round(os.getloadavg()[0], 2)}
    target, url = trivial_target()
    try:
        for workers in sorted({1, os.cpu_count() or 1}):
            with tempfile.TemporaryDirectory() as tmp:
                steps = run_sweep(url, LOAD_RATES, Path(tmp), step_s=6, workers=workers,
                                  on_step=lambda s: print(f"  {workers} worker(s) {s.offered_rps:>6.0f}/s: achieved {s.achieved_rps:.0f}/s, p99 {s.p99_ms} ms, "
                                                          f"sender lag p99 {s.lag_p99_ms} ms, cpu {s.cpu_share} {s.saturated or ''}", flush=True))
            best = max_sustained(steps)
            figures[f"load_max_rps_{workers}_workers"] = best
            sustained = [s for s in steps if not s.saturated]
            if sustained:
                top = sustained[-1]
                # CPU time of the load processes per request at the best step: what bounds one core.
                figures[f"load_cpu_us_per_request_{workers}_workers"] = round(sum(top.cpu_share) * (top.end - top.start) / max(1, top.recorded) * 1e6, 1)
            if steps and steps[-1].saturated:
                print(f"  {workers} worker(s) stopped at {steps[-1].offered_rps:g}/s: {steps[-1].saturated}", flush=True)
        figures["load_max_rps"] = max(v for k, v in figures.items() if k.startswith("load_max_rps_"))
        figures["load_bench_loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        figures["load_workers"] = os.cpu_count() or 1
    finally:
        target.kill()
        target.wait()
    return figures


def bench_load_chain(runs: int) -> dict[str, float]:
    """How many requests per second one Locust process drives against the `none` pattern
    (the full app chain on the local cluster) without Locust's CPU warning: rising steps,
    the best step that stayed under it."""

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
                summary = json.loads((Path(tmp) / LOAD_SUMMARY).read_text())
            steps[f"load_rps_at_{users}_users"] = round(summary["avg_rps"], 1)
            print(f"  {users} users: {summary['avg_rps']:.0f} req/s, cpu warning {summary['cpu_warning']}", flush=True)
            if summary["cpu_warning"]:
                break
            best = max(best, summary["avg_rps"])

        Deployer(kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))).undeploy(run.run_id, graceful=False)
    finally:
        if brought_up:
            provider.delete()
    return {"load_chain_max_rps": round(best, 1), **{k.replace("load_", "load_chain_", 1): v for k, v in steps.items()}}


def bench_calibration(runs: int) -> dict[str, float]:
    """`calibration_max_error_ms`: the worst error over outages of every kind (refused,
    reset, dropped, hang; 0.5 s and 2 s) injected on a local 127.0.0.1 server and measured by
    the probe stream. (Against a pod on the cluster: TODO, see `patternbench calibrate`.)"""

    rows = calibrate_local(list(calibration.KINDS), [0.5, 2.0], 1000.0)
    for r in rows:
        print(f"  {r.kind:<8} expected {r.expected_s:6.3f}s measured {r.measured_s:6.3f}s error {r.error_ms:+7.1f} ms", flush=True)
    doc = calibration.document(rows, "local 127.0.0.1", 1000.0, calibration.PROBE_INTERVAL_S)
    calibration.write(Path("results"), doc)
    return {"calibration_max_error_ms": doc["max_error_ms"] or 0.0}


def bench_otelcol(runs: int) -> dict[str, float]:
    """The OpenTelemetry Collector as a log agent: its two images' build time cold (an empty
    module and build cache, in a temporary directory: downloads and compiles everything) and
    warm (the cache as `make test` finds it), their sizes, and the collector's resident
    memory at rest with the node config (median of `runs`)."""

    build = [sys.executable, "-c", "from patternbench.build.images import build_otelcol; build_otelcol()"]
    scratch = Path(tempfile.mkdtemp(prefix="pb-otelcol-cold-"))
    try:
        env = dict(os.environ, PATTERNBENCH_CACHE=str(scratch / "cache"), GOCACHE=str(scratch / "gocache"))
        start = time.monotonic()
        result = subprocess.run(build, env=env, capture_output=True, text=True)
        cold = time.monotonic() - start
        if result.returncode != 0:
            raise UsageError(f"cold collector build failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], capture_output=True)  # the module cache is read-only
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"  cold build of v1 and v2: {cold:.1f}s", flush=True)
    archives = build_otelcol()  # fills the real cache if it was empty
    warm = [timed(build) for _ in range(max(runs, 1))]
    figures: dict[str, float] = {"otelcol_build_cold_s": round(cold, 1), "otelcol_build_warm_s": round(statistics.median(warm), 2)}
    for archive in archives:
        figures[f"otelcol_image_mib_{archive.ref.rsplit(':', 1)[1]}"] = round(archive.size_mib, 2)
    figures["otelcol_image_mib"] = max(v for k, v in figures.items() if k.startswith("otelcol_image_mib_"))
    binary = otelcol_local.cached_otelcol_binary("v1")
    assert binary is not None
    rss = []
    for i in range(max(runs, 1)):
        with tempfile.TemporaryDirectory(prefix="pb-otelcol-rss-") as work:
            rss.append(otelcol_local.measure_rss_at_rest(binary, Path(work)))
        print(f"  run {i + 1}: VmRSS at rest {rss[-1]:.1f} MiB", flush=True)
    figures["otelcol_rss_mib"] = round(statistics.median(rss), 1)
    return figures


HAPROXY_AGENT = Path(__file__).resolve().parents[2] / "agents" / "haproxy.yaml"


def bench_haproxy(runs: int) -> dict[str, float]:
    """HAProxy as the mesh (agents/haproxy.yaml): its two images' sizes (the packaged binary
    and its libraries) and its resident memory at rest as a sidecar, with the config a run
    renders for the default topology (median of `runs`, 5 s after start)."""
    agent = load_agent_file(HAPROXY_AGENT)
    assert agent.file is not None and agent.file.build is not None
    figures: dict[str, float] = {}
    for archive in build_program_images(agent.file.build, agent.file.images):
        figures[f"haproxy_image_mib_{archive.ref.rsplit(':', 1)[1]}"] = round(archive.size_mib, 2)
    figures["haproxy_image_mib"] = max(figures.values())
    objs = render(load_topology(), Pattern.SIDECAR, RenderOptions(run_id="pb-bench", stand_ins=(agent.name,)))
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == agent.file.config_map)["data"]["haproxy.cfg"]
    rss = []
    with tempfile.TemporaryDirectory(prefix="pb-haproxy-rss-") as work:
        (Path(work) / "haproxy.cfg").write_text(config)
        env = dict(os.environ, POD_NAME="bench-pod", NODE_NAME="bench-node")
        for i in range(max(runs, 1)):
            proc = subprocess.Popen([str(agent.file.build.program), "-db", "-f", str(Path(work) / "haproxy.cfg")], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                time.sleep(5.0)  # at rest: started, its resolvers asking, no request
                if proc.poll() is not None:
                    raise UsageError(f"haproxy exited at once: {(proc.stderr.read().decode().strip().splitlines() or ['?'])[-1]}")  # type: ignore[union-attr]
                rss.append(otelcol_local.rss_mib(proc.pid))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            print(f"  run {i + 1}: VmRSS at rest {rss[-1]:.1f} MiB", flush=True)
    figures["haproxy_rss_mib"] = round(statistics.median(rss), 1)
    return figures


def bench_load_image(runs: int) -> dict[str, float]:
    """The in-cluster load generator's image (build/load_image.py): its size packed and
    unpacked, its files, and how long a build takes (median of `runs`)."""
    times, manifest = [], {}
    with tempfile.TemporaryDirectory(prefix="pb-bench-loadgen-") as tmp:
        for i in range(max(runs, 1)):
            started = time.monotonic()
            _, manifest = build_load_image(Path(tmp) / str(i))
            times.append(time.monotonic() - started)
    return {
        "load_image_mib": round(int(manifest["archive_bytes"]) / (1 << 20), 2),
        "load_image_tree_mib": round(int(manifest["tree_bytes"]) / (1 << 20), 2),
        "load_image_files": int(manifest["files"]),
        "load_image_build_s": round(statistics.median(times), 2),
    }


INCLUSTER_RATES = [250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0]


def bench_incluster_load(runs: int) -> dict[str, Any]:
    """The in-cluster load's own capacity (issue 23): open-loop steps from worker pods on the
    load node against a trivial in-cluster target (one service of two pods, no calls, no
    agent) at its Service address, with 1 and 2 workers; the highest rate sustained
    (sweep.saturation: on schedule, no errors, p99 <= 100 ms from the intended start)."""

    provider = get_provider("local", ProviderOptions(min_load_nodes=1), Progress(quiet=True))
    provider.create()  # idempotent; adds the load node if the cluster has none
    api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
    core = client.CoreV1Api(api)
    run = deploy_run(provider, layered(1, replicas=2), Pattern.NONE, progress=Progress(quiet=True))
    figures: dict[str, Any] = {"incluster_load_machine_cores": os.cpu_count() or 1}
    try:
        image = load_generator_image(provider, Progress(quiet=True))
        ip, port = run.entry_in_cluster(core)
        target = f"http://{ip}:{port}"
        for workers in (1, 2):
            steps = []
            for rate in INCLUSTER_RATES:
                with tempfile.TemporaryDirectory() as tmp:
                    records = Path(tmp) / REQUESTS
                    load = ClusterLoad(core, run.load_namespace, image, target, records, workers=workers, rps=rate, duration_s=6,
                                       clock_shared=abilities(provider).clock_shared, name=f"bench-{workers}w-{int(rate)}")
                    try:
                        load.start()
                        start = time.monotonic()
                        summary = load.run()
                    finally:
                        load.delete()
                    step = step_from_records(rate, read_jsonl(records), summary, start, time.monotonic())
                steps.append(step)
                print(f"  {workers} worker pod(s) {rate:>6.0f}/s: achieved {step.achieved_rps:.0f}/s, p99 {step.p99_ms} ms, "
                      f"sender lag p99 {step.lag_p99_ms} ms {step.saturated or ''}", flush=True)
                if step.saturated:
                    break
            figures[f"incluster_load_max_rps_{workers}_workers"] = max_sustained(steps)
        figures["incluster_load_max_rps"] = max(v for k, v in figures.items() if k.startswith("incluster_load_max_rps_"))
        figures["incluster_load_rps_per_worker"] = {w: round(figures[f"incluster_load_max_rps_{w}_workers"] / w, 1) for w in (1, 2)}
    finally:
        Deployer(api).undeploy(run.run_id, graceful=False)
    return figures


BENCHES: dict[str, Callable[[int], dict[str, Any]]] = {
    "cluster": bench_cluster,
    "load-image": bench_load_image,
    "incluster-load": bench_incluster_load,
    "proxy": bench_proxy,
    "load": bench_load,
    "load-chain": bench_load_chain,
    "experiments": bench_experiments,
    "calibration": bench_calibration,
    "otelcol": bench_otelcol,
    "haproxy": bench_haproxy,
    "soak": bench_soak,
    "capture": bench_capture,
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
