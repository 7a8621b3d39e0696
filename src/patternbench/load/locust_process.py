"""The load process: Locust as a library (FastHttpUser), plus a constant-rate probe stream.

Run as `python -m patternbench.load.locust_process CONFIG.json`. Every request becomes one
JSON line in the records file, flushed as it is written, so an interrupted run keeps what
it measured. Times: `t` is time.monotonic() at the request's start (CLOCK_MONOTONIC is one
clock for every process on the machine, so observers in the orchestrator share the
timeline) and `wall` the wall clock.

Locust's users are closed-loop: they send less while the service is slow. With `rps` set,
the users are replaced by an open-loop arrival rate (openloop.py): requests start on
schedule and their latency counts from when they were due. The probe stream is open-loop: it starts a request every `probe_interval_s` whatever the answers do, so an
outage is dated from the start of the first failing probe (as OpenShift's disruption
sampler does), to within one interval.
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
from locust import events  # noqa: E402
from locust.env import Environment  # noqa: E402

from patternbench.lifeline import ParentWatch  # noqa: E402
from patternbench.load import conntrack  # noqa: E402
from patternbench.load.openloop import OpenLoop  # noqa: E402
from patternbench.load.probe import probe_once  # noqa: E402
from patternbench.load.users import Records, entry_user, record_requests, users_summary  # noqa: E402


def main(config_path: str) -> int:
    config = json.loads(open(config_path).read())
    records = Records(config["records"])
    host = config["host"].rstrip("/")
    env = Environment(user_classes=[entry_user(host, float(config["rate_per_user"]))], events=events)
    record_requests(env, records)

    split = urlsplit(host)
    probe_port = split.port or 80
    worker = int(config.get("worker", 0))

    on_connect_failure = (lambda sport: conntrack.lookup(sport, probe_port)) if config.get("conntrack") else None

    def probe() -> None:
        records.write(probe_once(split.hostname or "127.0.0.1", probe_port, config["probe_timeout_s"], on_connect_failure=on_connect_failure))

    in_flight = gevent.pool.Group()

    def probe_stream() -> None:
        interval = config["probe_interval_s"]
        next_at = time.monotonic()
        while True:
            in_flight.spawn(probe)
            next_at += interval
            gevent.sleep(max(0.0, next_at - time.monotonic()))

    # Locust and its imports leave ~10^5 long-lived objects that every full collection walks:
    # a measured 0.6 s pause at 3000 req/s, during which nothing is sent. Freeze them out of
    # the collector's reach and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    stop_file = config.get("stop_file")
    started = time.monotonic()
    cpu_started = time.process_time()
    stop_at = started + config["duration_s"]

    parent = ParentWatch()

    def should_stop() -> bool:
        # Also when the orchestrator is gone: nobody would read what is sent from here on.
        return time.monotonic() >= stop_at or bool(stop_file and os.path.exists(stop_file)) or parent.orphaned()

    # Probes come from one process only (worker 0), however many share the load.
    prober = gevent.spawn(probe_stream) if worker == 0 and config.get("probe_interval_s") else None
    open_loop: OpenLoop | None = None
    runner = None
    if config.get("users_off"):
        pass  # a gRPC workload: grpcload sends it, this process sends the probes
    elif config.get("rps"):
        open_loop = OpenLoop(host, float(config["rps"]), records.write, connections=int(config.get("connections", 200)),
                             timeout_s=float(config.get("request_timeout_s", 5.0)))
        sender = gevent.spawn(open_loop.run, should_stop)
    else:
        runner = env.create_local_runner()
        runner.start(config["users"], spawn_rate=config["spawn_rate"])

    def progress() -> None:
        while True:
            gevent.sleep(config.get("progress_interval_s", 5))
            if runner is None and open_loop is None:
                continue
            if open_loop is not None:
                done = len(open_loop.latencies_ms) + open_loop.failures
                line = {"requests": done, "failures": open_loop.failures, "rps": round(done / max(1e-9, time.monotonic() - started), 1)}
            else:
                total = env.stats.total
                line = {"requests": total.num_requests, "failures": total.num_failures, "rps": round(total.current_rps, 1)}
            print(json.dumps({"progress": {"elapsed_s": round(time.monotonic() - started, 1), "worker": worker, **line}}), flush=True)

    reporter = gevent.spawn(progress)
    while not should_stop():
        gevent.sleep(0.1)
    if prober is not None:
        prober.kill()
    reporter.kill()
    if open_loop is not None:
        sender.join(timeout=1)
        elapsed = time.monotonic() - started
        open_loop.finish(timeout_s=float(config.get("request_timeout_s", 5.0)) + 1)
    elif runner is not None:
        runner.quit()
    in_flight.join(timeout=config["probe_timeout_s"])  # in-flight probes finish and are recorded
    cpu_share = (time.process_time() - cpu_started) / max(1e-9, time.monotonic() - started)
    if open_loop is not None:
        summary = {
            **open_loop.summary(elapsed),
            "avg_rps": open_loop.summary(elapsed)["achieved_rps"],
            # Locust warns at 90 % CPU; the open-loop sender is judged the same way.
            "cpu_warning": cpu_share >= 0.9,
        }
    elif runner is not None:
        summary = users_summary(env, bool(runner.cpu_warning_emitted))
    else:
        summary = {"mode": "probes", "requests": 0, "failures": 0, "cpu_warning": cpu_share >= 0.9}
    summary.update({"duration_s": round(time.monotonic() - started, 3), "cpu_share": round(cpu_share, 3), "worker": worker})
    with open(config["summary"], "w") as handle:
        json.dump(summary, handle)
    print(json.dumps({"done": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
