"""The OpenTelemetry Collector and the log sink run as processes on this host, outside
Kubernetes: the collector's smoke test (kill -9 and upgrade, lines lost or repeated) and
`make bench`'s figures (its build times, image size and memory at rest)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from patternbench.build.components import cache_root
from patternbench.build.images import OTELCOL_AGENT_DIR, OTELCOL_ARGS, OTELCOL_CONFIG, OTELCOL_DIR, OTELCOL_RELEASES, build_go_binaries, otelcol_source_key

SIDECAR_CONFIG = OTELCOL_AGENT_DIR / "config-sidecar.yaml"
NODE_CONFIG = OTELCOL_AGENT_DIR / "config-node.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cached_otelcol_binary(tag: str, root: Path | None = None) -> Path | None:
    """The collector binary for image tag v1/v2 if the cache already has it built, else None."""
    release = OTELCOL_RELEASES[tag]
    release_dir = OTELCOL_DIR / release
    if not (release_dir / "go.sum").is_file():
        return None
    binary = (root or cache_root()) / "otelcol" / f"{release}-{otelcol_source_key(release_dir)}" / "otelcol"
    return binary if binary.is_file() else None


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _wait_until_answers(url: str, deadline_s: float, proc: subprocess.Popen[bytes], what: str) -> None:
    def check() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering at {url}")
        _get(url, timeout=1.0)

    for attempt in Retrying(stop=stop_after_delay(deadline_s), wait=wait_fixed(0.1), reraise=True,
                            retry=retry_if_exception_type(OSError)):
        with attempt:
            check()


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def logsink(work: Path) -> Iterator[str]:
    """Build and start the log sink on a free loopback port; yields its base URL."""
    binary = build_go_binaries(("logsink",), "local", work / "bin")["logsink"]
    port = free_port()
    proc = subprocess.Popen([str(binary)], env={"LISTEN": f"127.0.0.1:{port}"},
                            stdout=subprocess.DEVNULL, stderr=(work / "logsink.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answers(base + "/readyz", 10, proc, "logsink")
        yield base
    finally:
        _stop(proc)


def sink_stats(base: str) -> dict:
    return json.loads(_get(base + "/stats"))


@contextmanager
def collector(binary: Path, config: Path, env: dict[str, str], log: Path,
              image_args: tuple[str, ...] = OTELCOL_ARGS) -> Iterator[subprocess.Popen[bytes]]:
    """Start the collector with the image's arguments, `config` in place of the mounted one,
    and `env` (HEALTH_ENDPOINT set to a free port); wait for its health_check. Stopped with
    SIGTERM on exit unless already gone."""
    health = f"127.0.0.1:{free_port()}"
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HEALTH_ENDPOINT": health, **env}
    args = [a.replace(OTELCOL_CONFIG, str(config)) for a in image_args]
    proc = subprocess.Popen([str(binary), *args], env=full_env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    try:
        _wait_until_answers(f"http://{health}/", 30, proc, f"the collector ({binary.parent.name})")
        yield proc
    finally:
        _stop(proc)


def wait_for_unique(base: str, want: int, deadline_s: float = 30.0) -> dict:
    """Wait until the sink holds `want` unique lines (or the deadline); returns its stats."""
    retrying = Retrying(stop=stop_after_delay(deadline_s), wait=wait_fixed(0.2),
                        retry=retry_if_result(lambda s: s["total"]["unique"] < want), retry_error_callback=lambda rs: rs.outcome.result())
    return retrying(sink_stats, base)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status VmRSS."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class AppLog:
    """Writes the app's numbered JSON lines (images/internal/applog's format) to a file, plain
    (sidecar: the app's LOG_PATH) or wrapped in the CRI format (node: the kubelet's file)."""

    def __init__(self, path: Path, pod: str, instance: str = "smoke0", cri: bool = False) -> None:
        self.path, self.pod, self.instance, self.cri = path, pod, instance, cri
        self.seq = 0
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, count: int) -> None:
        with self.path.open("a") as out:
            for _ in range(count):
                self.seq += 1
                now = datetime.now(timezone.utc)
                line = json.dumps({"pod": self.pod, "instance": self.instance, "seq": self.seq,
                                   "request_id": f"r{self.seq}", "ts": now.isoformat().replace("+00:00", "Z")}, separators=(",", ":"))
                if self.cri:
                    line = f"{now.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} stdout F {line}"
                out.write(line + "\n")


def measure_rss_at_rest(binary: Path, work: Path, settle_s: float = 10.0) -> float:
    """The collector's VmRSS in MiB after `settle_s` idle with the node config, one pod's
    log of 100 lines already shipped: the figure `make bench` records as otelcol_rss_mib."""
    with logsink(work) as sink:
        pods = work / "pods"
        AppLog(pods / "app-ns_app-1_uid1" / "app" / "0.log", "app-1", cri=True).write(100)
        env = {"SINK_OTLP_URL": sink + "/v1/logs", "PODS_DIR": str(pods), "APP_NAMESPACE": "app-ns",
               "OTELCOL_STORAGE": str(work / "state-rss")}
        with collector(binary, NODE_CONFIG, env, work / "otelcol-rss.log") as proc:
            wait_for_unique(sink, 100)
            time.sleep(settle_s)  # at rest: what it holds when there is nothing to do
            return rss_mib(proc.pid)
