"""The load process: Locust as a library (FastHttpUser), plus a constant-rate probe stream.

Run as `python -m patternbench.load.locust_process CONFIG.json`. Every request becomes one
JSON line in the records file, flushed as it is written, so an interrupted run keeps what
it measured. Times: `t` is time.monotonic() at the request's start (CLOCK_MONOTONIC is one
clock for every process on the machine, so observers in the orchestrator share the
timeline) and `wall` the wall clock.

Locust's users are closed-loop: they send less while the service is slow. The probe stream
is open-loop: it starts a request every `probe_interval_s` whatever the answers do, so an
outage is dated from the start of the first failing probe (as OpenShift's disruption
sampler does), to within one interval.
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
from locust import FastHttpUser, constant_throughput, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from patternbench.load.records import failure_detail, answer_trail  # noqa: E402


class Records:
    """Append-only JSON lines, flushed per line."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def main(config_path: str) -> int:
    config = json.loads(open(config_path).read())
    records = Records(config["records"])
    host = config["host"].rstrip("/")
    rate = float(config["rate_per_user"])

    class EntryUser(FastHttpUser):
        wait_time = constant_throughput(rate)
        network_timeout = 5.0
        connection_timeout = 2.0

        @task
        def root(self) -> None:
            self.client.get("/", headers={"X-Request-Id": uuid.uuid4().hex[:16]}, name="/")

    EntryUser.host = host
    env = Environment(user_classes=[EntryUser], events=events)

    @env.events.request.add_listener
    def on_request(request_type: str, name: str, response_time: float, response: Any = None, exception: Any = None, **kw: Any) -> None:
        now = time.monotonic()
        status = getattr(response, "status_code", 0) or 0
        headers = getattr(response, "headers", None) or {}
        records.write({
            "kind": "user",
            "t": now - response_time / 1000.0,
            "wall": kw.get("start_time") or time.time() - response_time / 1000.0,
            "ms": round(response_time, 3),
            "status": status,
            "error": type(exception).__name__ if exception else ("" if 200 <= status < 400 else f"HTTP{status}"),
            "via": headers.get("Via", "") if hasattr(headers, "get") else "",
            **(answer_trail(getattr(response, "content", None)) if status == 200 else {}),
            "request_id": (headers.get("X-Request-Id", "") if hasattr(headers, "get") else ""),
            **({"detail": failure_detail(response, exception)} if exception or not 200 <= status < 400 else {}),
        })

    split = urlsplit(host)
    probe_port = split.port or 80

    def probe() -> None:
        start, wall = time.monotonic(), time.time()
        status, error = 0, ""
        conn = http.client.HTTPConnection(split.hostname, probe_port, timeout=config["probe_timeout_s"])
        try:
            conn.request("GET", "/", headers={"X-Request-Id": "probe-" + uuid.uuid4().hex[:10], "Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            if status != 200:
                error = f"HTTP{status}"
        except Exception as exc:  # noqa: BLE001 - every failure is a data point
            error = type(exc).__name__
        finally:
            conn.close()
        records.write({"kind": "probe", "t": start, "wall": wall, "ms": round((time.monotonic() - start) * 1000, 3), "status": status, "error": error})

    in_flight = gevent.pool.Group()

    def probe_stream() -> None:
        interval = config["probe_interval_s"]
        next_at = time.monotonic()
        while True:
            in_flight.spawn(probe)
            next_at += interval
            gevent.sleep(max(0.0, next_at - time.monotonic()))

    runner = env.create_local_runner()
    prober = gevent.spawn(probe_stream)
    runner.start(config["users"], spawn_rate=config["spawn_rate"])
    started = time.monotonic()

    def progress() -> None:
        while True:
            gevent.sleep(config.get("progress_interval_s", 5))
            total = env.stats.total
            print(json.dumps({"progress": {"elapsed_s": round(time.monotonic() - started, 1), "requests": total.num_requests,
                                           "failures": total.num_failures, "rps": round(total.current_rps, 1)}}), flush=True)

    reporter = gevent.spawn(progress)
    stop_at = started + config["duration_s"]
    stop_file = config.get("stop_file")
    while time.monotonic() < stop_at:
        gevent.sleep(0.1)
        if stop_file and __import__("os").path.exists(stop_file):
            break
    prober.kill()
    reporter.kill()
    runner.quit()
    in_flight.join(timeout=config["probe_timeout_s"])  # in-flight probes finish and are recorded
    total = env.stats.total
    summary = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "median_ms": total.median_response_time,
        "p99_ms": total.get_response_time_percentile(0.99),
        "avg_rps": total.total_rps,
        "cpu_warning": bool(runner.cpu_warning_emitted),
        "duration_s": round(time.monotonic() - started, 3),
    }
    with open(config["summary"], "w") as handle:
        json.dump(summary, handle)
    print(json.dumps({"done": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
