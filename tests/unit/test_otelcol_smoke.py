"""Smoke test of the OpenTelemetry Collector as a log agent, outside Kubernetes: the shipped
configs (agents/otelcol/config-*.yaml) tail a file the way they would in a pod, export to
the real log sink over OTLP/HTTP, and survive a kill -9 followed by an upgrade (v1's binary
killed mid-stream, v2's started on the same file_storage): no line lost, duplicates counted.

Skipped unless both collector binaries are in the build cache (`build_otelcol()`, or
`patternbench images build` once the collector is part of it); builds only the log sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from patternbench.build import otelcol_local as oc

V1, V2 = oc.cached_otelcol_binary("v1"), oc.cached_otelcol_binary("v2")
pytestmark = pytest.mark.skipif(V1 is None or V2 is None, reason="collector binaries not built (patternbench.build.images.build_otelcol)")


class Writer(threading.Thread):
    """Appends lines in small bursts until stopped, as a busy app would."""

    def __init__(self, log: oc.AppLog, burst: int = 20, every_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.log, self.burst, self.every_s = log, burst, every_s
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            self.log.write(self.burst)

    def stop(self) -> None:
        self.halt.set()
        self.join()


@pytest.mark.parametrize("mode", ["sidecar", "node"])
def test_kill_and_upgrade_loses_nothing(mode: str, tmp_path: Path, record_property) -> None:
    if mode == "sidecar":
        log = oc.AppLog(tmp_path / "app" / "app.log", "app-1")
        config, env = oc.SIDECAR_CONFIG, {"LOG_GLOB": str(tmp_path / "app" / "*.log"), "POD_NAME": "app-1"}
    else:
        pods = tmp_path / "pods"
        log = oc.AppLog(pods / "app-ns_app-1_uid1" / "app" / "0.log", "app-1", cri=True)
        # Another namespace and another container of the pod: not the agent's to read.
        oc.AppLog(pods / "agents-ns_logsink-1_uid2" / "logsink" / "0.log", "sink", cri=True).write(10)
        oc.AppLog(pods / "app-ns_app-1_uid1" / "meshproxy" / "0.log", "proxy", cri=True).write(10)
        config, env = oc.NODE_CONFIG, {"PODS_DIR": str(pods), "APP_NAMESPACE": "app-ns"}
    env["OTELCOL_STORAGE"] = str(tmp_path / "state")
    with oc.logsink(tmp_path) as sink:
        env["SINK_OTLP_URL"] = sink + "/v1/logs"
        collector_log = tmp_path / "otelcol.log"
        log.write(1000)
        writer = Writer(log)
        with oc.collector(V1, config, env, collector_log) as proc:
            stats = oc.wait_for_unique(sink, 1000)
            assert stats["total"]["unique"] >= 1000, stats
            writer.start()
            time.sleep(1.0)  # shipping while lines arrive
            proc.kill()  # kill -9, mid-stream
            proc.wait()
        killed_at = log.seq
        log.write(500)  # written while no agent runs
        with oc.collector(V2, config, env, collector_log):
            time.sleep(0.5)
            writer.stop()
            stats = oc.wait_for_unique(sink, log.seq)
    total = stats["total"]
    record_property("lines", log.seq)
    record_property("duplicated", total["duplicated"])
    print(f"\n{mode}: {log.seq} lines ({killed_at} when v1 was killed), sink: {total}, batches {stats['batches']}, "
          f"largest {stats['max_batch_lines']}, unparsed {stats['unparsed']}")
    assert total["unique"] == log.seq and total["missing"] == 0, (total, collector_log.read_text()[-2000:])
    assert set(stats["sources"]) == {"app-1"}  # nothing from other namespaces or containers
    assert stats["unparsed"] == 0
