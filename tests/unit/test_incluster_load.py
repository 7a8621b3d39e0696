"""The in-cluster load's own logic, run as the pods would run it but as processes on this
machine: one Locust master and two workers of `patternbench.load.incluster`, against a local
HTTP server; every request recorded once, served by /records, counted by the master; and the
harness's clock estimate (pure)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from patternbench.load.cluster_load import best_offset
from patternbench.load.incluster_protocol import read_lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_read_lines_stops_at_the_last_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    assert read_lines(str(path), 0) == b""
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    assert read_lines(str(path), 0) == b'{"a":1}\n{"a":2}\n'
    assert read_lines(str(path), 8) == b'{"a":2}\n'
    assert read_lines(str(path), 16) == b""  # the line being written waits for the next read
    assert read_lines(str(path), 0, limit=10) == b'{"a":1}\n'


def test_best_offset_takes_the_shortest_round_trip_and_bounds_its_error() -> None:
    # The pod's clock runs 5 s ahead; the second sample has the shortest round trip.
    samples = [(10.0, 15.004, 10.010), (20.0, 25.001, 20.002), (30.0, 35.030, 30.040)]
    offset = best_offset(samples)
    assert offset.offset_s == pytest.approx(5.0) and offset.uncertainty_s == pytest.approx(0.001) and offset.samples == 3


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b'{"pod":"local"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "1.1 test")
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def get_json(url: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as resp:
        return json.loads(resp.read())


def start_roles(tmp_path: Path, base: dict, roles: tuple[str, ...], controls: list[int]) -> list[subprocess.Popen[bytes]]:
    procs = []
    for role, control in zip(roles, controls):
        records = tmp_path / f"{role}-{control}"
        records.mkdir()
        env = {**os.environ, "PB_LOAD": json.dumps({**base, "control_port": control, "records_dir": str(records)})}
        procs.append(subprocess.Popen([sys.executable, "-m", "patternbench.load.incluster", role], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def wait_done(control: int, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            state = get_json(f"http://127.0.0.1:{control}/state")
        except OSError:
            state = {}
        if state.get("phase") in ("done", "failed"):
            break
        time.sleep(0.3)
    return state


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def records_of(control: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{control}/records/0", timeout=5) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines()]


def test_the_open_loop_is_shared_by_the_workers_and_recorded_once(tmp_path: Path) -> None:
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    target.handle_error = lambda *_: None
    threading.Thread(target=target.serve_forever, daemon=True).start()
    controls = [free_port() for _ in range(3)]
    base = {"host": f"http://127.0.0.1:{target.server_address[1]}", "rate_per_user": 1, "users": 1, "spawn_rate": 1, "rps": 60,
            "duration_s": 3, "workers": 2, "master_port": free_port(), "master_host": "127.0.0.1"}
    procs = start_roles(tmp_path, base, ("master", "worker", "worker"), controls)
    try:
        state = wait_done(controls[0])
        assert state.get("phase") == "done", state
        summary = state["summary"]
        lines = records_of(controls[1]) + records_of(controls[2])
        assert summary["mode"] == "open" and summary["workers_done"] == 2
        assert len(lines) == summary["requests"] == sum(summary["written_by_worker"].values())
        assert 60 <= len(lines) <= 60 * 5  # 60/s for the 3 s between the master's start and stop messages
        assert all(r["mode"] == "open" and r["status"] == 200 for r in lines)
    finally:
        stop_all(procs)
        target.shutdown()


def test_a_master_two_workers_and_a_prober_record_every_request_once(tmp_path: Path) -> None:
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    target.handle_error = lambda *_: None  # users stopped mid-request leave broken pipes: not this test's subject
    threading.Thread(target=target.serve_forever, daemon=True).start()
    controls = [free_port() for _ in range(4)]
    base = {"host": f"http://127.0.0.1:{target.server_address[1]}", "rate_per_user": 10, "users": 4, "spawn_rate": 100,
            "duration_s": 3, "workers": 2, "master_port": free_port(), "master_host": "127.0.0.1", "probe_interval_s": 0.05}
    procs = start_roles(tmp_path, base, ("master", "worker", "worker", "prober"), controls)
    try:
        state = wait_done(controls[0])
        assert state.get("phase") == "done", state
        summary = state["summary"]
        lines = []
        for control in controls[1:3]:
            worker = get_json(f"http://127.0.0.1:{control}/state")
            got = records_of(control)
            assert worker["phase"] == "done" and len(got) == worker["written"]
            lines += got
            clock = get_json(f"http://127.0.0.1:{control}/clock")
            assert abs(clock["wall"] - time.time()) < 1
        # Every request the master counted is one record, once, with the host's schema.
        assert summary["workers_done"] == 2 and sorted(summary["written_by_worker"].values()) == sorted(
            get_json(f"http://127.0.0.1:{c}/state")["written"] for c in controls[1:3])
        assert len(lines) == summary["requests"] > 20
        assert len({r["request_id"] for r in lines}) == len(lines)
        assert all(r["kind"] == "user" and r["status"] == 200 and r["via"] == "1.1 test" and r["error"] == "" for r in lines)
        # The prober: a probe every 50 ms until told to stop, each answered.
        assert get_json(f"http://127.0.0.1:{controls[3]}/stop", method="POST") == {"stopping": True}
        prober = wait_done(controls[3], 10)
        probes = records_of(controls[3])
        assert prober["phase"] == "done" and len(probes) == prober["written"] >= 40
        assert all(p["status"] == 200 and p["pod"] == "local" for p in probes), probes[:2]
    finally:
        stop_all(procs)
        target.shutdown()


def test_errors_inside_the_users_task_are_counted_not_lost() -> None:
    """A user whose task raises before any request (as a URL of "//" did) records nothing:
    the summary must count it, or a load that sent nothing reads as a clean one. (In its own
    process: Locust monkey-patches the standard library when imported.)"""
    script = """
import gevent.monkey; gevent.monkey.patch_all()
import json, time
from locust import User, constant, task
from locust.env import Environment
from patternbench.load.users import users_summary

class Broken(User):
    wait_time = constant(0.05)

    @task
    def fail(self):
        raise ValueError("invalid request URI '//'")

env = Environment(user_classes=[Broken])
runner = env.create_local_runner()
runner.start(2, spawn_rate=100)
time.sleep(0.5)
runner.quit()
print(json.dumps(users_summary(env, cpu_warning=False)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["requests"] == 0 and summary["exceptions"] >= 2, summary


def test_a_case_whose_load_sent_nothing_or_failed_is_incomplete() -> None:
    from patternbench.results.summary import load_gaps

    user = [{"kind": "user", "t": 1.0}]
    assert load_gaps({}, {"requests": 1, "exceptions": 0}, user) == []
    assert load_gaps({}, {}, []) == []  # no load summary: reported missing as a file elsewhere
    assert load_gaps({}, {"requests": 0}, []) == ["the load's requests (none recorded)"]
    assert "3 errors inside Locust's users" in load_gaps({}, {"exceptions": 3}, user)[0]
    assert "worker-1 does not answer" in load_gaps({"load_failed": {"error": "load pod worker-1 does not answer"}}, {"requests": 1}, user)[0]
