"""The load generator inside the cluster: Locust's distributed mode, one master pod and N
worker pods (issue 23), run as `python -m patternbench.load.incluster master|worker|prober` with its
settings as JSON in PB_LOAD.

Each worker records every request of its users with the same schema as the load process on
the host (users.user_record) into its own file, and serves it, with its clock and its state,
on a small HTTP port (CONTROL_PORT) that the harness reads through the API server's pod proxy:

- GET /records/<offset>: the file's bytes from `offset` to its last complete line (at most
  PULL_BYTES); the harness appends them to the case's requests.jsonl as they come;
- GET /clock: {"mono", "wall"} read while answering (the harness's offset estimate);
- GET /state: the phase (waiting, running, done), lines written, and at the end the summary;
- POST /stop (master, prober): end the load, or the probes, now.

A third role, `prober`, sends the probe stream (probe.py) from its own pod.

Locust's messages carry only control: a worker's `pb_done` tells the master how many lines it
wrote, so the harness knows when it has every line of every worker. The pods stay up after the
load so the harness can read the rest; it deletes them.
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Iterable  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.pool  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from locust import events  # noqa: E402
from locust.env import Environment  # noqa: E402

from patternbench.load.incluster_protocol import CONTROL_PORT, MASTER_PORT, RECORDS_FILE, read_lines  # noqa: E402
from patternbench.load.openloop import OpenLoop  # noqa: E402
from patternbench.load.probe import probe_once  # noqa: E402
from patternbench.load.records import merge_summaries  # noqa: E402
from patternbench.load.users import Records, entry_user, record_requests, users_summary  # noqa: E402


class Control:
    """The HTTP side of one pod: records, clock, state, stop."""

    def __init__(self, records_path: str, port: int = CONTROL_PORT) -> None:
        self.records_path = records_path
        self.port = port
        self.state: dict[str, Any] = {"phase": "waiting", "written": 0}
        self.stop_requested = False

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return self._answer(start_response, 200, b"ok", "text/plain")
        if path == "/clock":
            return self._json(start_response, {"mono": time.monotonic(), "wall": time.time()})
        if path == "/state":
            return self._json(start_response, self.state)
        if path == "/stop" and method == "POST":
            self.stop_requested = True
            return self._json(start_response, {"stopping": True})
        if path.startswith("/records/"):
            try:
                offset = int(path.removeprefix("/records/"))
            except ValueError:
                return self._answer(start_response, 400, b"offset: a whole number", "text/plain")
            return self._answer(start_response, 200, read_lines(self.records_path, offset), "application/x-ndjson")
        return self._answer(start_response, 404, b"not found", "text/plain")

    @staticmethod
    def _answer(start_response: Callable[..., Any], status: int, body: bytes, kind: str) -> list[bytes]:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        start_response(f"{status} {reason}", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    def _json(self, start_response: Callable[..., Any], doc: dict[str, Any]) -> list[bytes]:
        return self._answer(start_response, 200, json.dumps(doc).encode(), "application/json")

    def serve(self) -> WSGIServer:
        server = WSGIServer(("0.0.0.0", self.port), self.app, log=None, error_log=None)
        server.start()
        return server


def run_master(settings: dict[str, Any], control: Control) -> None:
    """Wait for every worker, run the load (Locust's users, or with `rps` the open loop: each
    worker its share), stop it, and wait for each worker's count of what it wrote."""
    env = Environment(user_classes=[entry_user(settings["host"], float(settings["rate_per_user"]))], events=events, host=settings["host"])
    master = env.create_master_runner("*", int(settings.get("master_port", MASTER_PORT)))
    done: dict[str, dict[str, Any]] = {}
    master.register_message("pb_done", lambda environment, msg, **_: done.__setitem__(msg.node_id, dict(msg.data)))
    expected = int(settings["workers"])
    open_loop = bool(settings.get("rps"))
    deadline = time.monotonic() + float(settings.get("connect_timeout_s", 120))
    while len(master.clients.ready) < expected:
        if time.monotonic() > deadline:
            control.state.update(phase="failed", error=f"{len(master.clients.ready)} of {expected} workers connected")
            return
        gevent.sleep(0.2)
    started = time.monotonic()
    if open_loop:
        master.send_message("pb_open", {"rps": float(settings["rps"]) / expected, "connections": int(settings.get("connections", 200)),
                                        "timeout_s": float(settings.get("request_timeout_s", 5.0))})
    else:
        master.start(int(settings["users"]), spawn_rate=float(settings["spawn_rate"]))
    control.state.update(phase="running", started_mono=started)
    stop_at = started + float(settings["duration_s"])
    while time.monotonic() < stop_at and not control.stop_requested:
        gevent.sleep(0.1)
    if open_loop:
        master.send_message("pb_stop", {})
    else:
        master.stop()
    deadline = time.monotonic() + 30
    while len(done) < expected and time.monotonic() < deadline:
        gevent.sleep(0.1)
    written = {node: int(d["written"]) for node, d in done.items()}
    cpu_warning = bool(master.worker_cpu_warning_emitted or master.cpu_warning_emitted)
    if open_loop:
        summary = {**merge_summaries([d["summary"] for d in done.values()]), "cpu_warning": cpu_warning}
    else:
        # A worker's last stats report follows its pb_done (test_stop fires first): wait for the
        # master's count to reach what the workers wrote.
        deadline = time.monotonic() + 10
        while env.stats.total.num_requests < sum(written.values()) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        summary = users_summary(env, cpu_warning)
    summary.update({"duration_s": round(time.monotonic() - started, 3), "workers": expected, "workers_done": len(done), "written_by_worker": written})
    master.quit()
    control.state.update(phase="done", summary=summary)


def run_worker(settings: dict[str, Any], control: Control) -> None:
    env = Environment(user_classes=[entry_user(settings["host"], float(settings["rate_per_user"]))], events=events)
    records = Records(control.records_path)
    record_requests(env, records)
    worker = env.create_worker_runner(settings["master_host"], int(settings.get("master_port", MASTER_PORT)))
    control.state.update(phase="connected", index=worker.worker_index)
    stop_open = gevent.event.Event()

    def counted() -> None:
        control.state["written"] = records.written

    def finished(extra: dict[str, Any]) -> None:
        # The load is stopped: what is in the file is all there will be.
        counted()
        control.state["phase"] = "done"
        worker.send_message("pb_done", {"written": records.written, **extra})

    @events.test_start.add_listener
    def on_start(**_: Any) -> None:
        control.state["phase"] = "running"

    @events.test_stop.add_listener
    def on_stop(**_: Any) -> None:
        finished({})

    def open_loop(share: dict[str, Any]) -> None:
        control.state["phase"] = "running"
        loop = OpenLoop(settings["host"], float(share["rps"]), records.write, connections=int(share["connections"]), timeout_s=float(share["timeout_s"]))
        started = time.monotonic()
        loop.run(stop_open.is_set)
        elapsed = time.monotonic() - started
        loop.finish(timeout_s=float(share["timeout_s"]) + 1)
        finished({"summary": loop.summary(elapsed)})

    worker.register_message("pb_open", lambda environment, msg, **_: gevent.spawn(open_loop, msg.data))
    worker.register_message("pb_stop", lambda environment, msg, **_: stop_open.set())
    # Locust's runner keeps its greenlets in a Group that empties when the master says quit.
    ticker = gevent.spawn(lambda: [(counted(), gevent.sleep(0.5)) for _ in iter(int, 1)])
    worker.greenlet.join()
    ticker.kill()
    counted()
    control.state["phase"] = "done"


def run_prober(settings: dict[str, Any], control: Control) -> None:
    """The probe stream from its own pod: a probe every `probe_interval_s`, whatever the
    answers do (probe.py), until POST /stop or `duration_s`."""
    split = urlsplit(settings["host"])
    records = Records(control.records_path)
    interval, timeout = float(settings["probe_interval_s"]), float(settings.get("probe_timeout_s", 2.0))
    in_flight = gevent.pool.Group()

    def probe() -> None:
        records.write(probe_once(split.hostname or "", split.port or 80, timeout))

    control.state["phase"] = "running"
    stop_at = time.monotonic() + float(settings["duration_s"])
    next_at = time.monotonic()
    while time.monotonic() < stop_at and not control.stop_requested:
        in_flight.spawn(probe)
        control.state["written"] = records.written
        next_at += interval
        gevent.sleep(max(0.0, next_at - time.monotonic()))
    in_flight.join(timeout=timeout + 1)  # in-flight probes finish and are recorded
    control.state.update(phase="done", written=records.written)


def main(role: str) -> int:
    settings = json.loads(os.environ["PB_LOAD"])
    # As the host's load process does: a URL ending in "/" makes each GET "//", which the
    # HTTP client refuses before any request is recorded.
    settings["host"] = settings["host"].rstrip("/")
    records_dir = settings.get("records_dir", "/records")
    control = Control(os.path.join(records_dir, RECORDS_FILE), int(settings.get("control_port", CONTROL_PORT)))
    server = control.serve()
    stopping = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    roles = {"master": run_master, "worker": run_worker, "prober": run_prober}
    if role not in roles:
        print(f"incluster: unknown role {role!r} (master, worker or prober)", file=sys.stderr)
        return 2
    try:
        roles[role](settings, control)
    except Exception as exc:  # noqa: BLE001 - the harness reads the failure from /state
        control.state.update(phase="failed", error=f"{type(exc).__name__}: {exc}")
    print(json.dumps({"state": control.state}), flush=True)
    stopping.wait()  # the harness reads what is left, then deletes the pod
    server.stop(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
