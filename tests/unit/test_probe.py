"""A probe says how it failed: a reset, an ICMP error (an iptables REJECT), a timeout."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from patternbench.load import probe as probe_module
from patternbench.load.probe import probe_once


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/fail":
            body = b'{"pod": "entry-7d9f", "downstream": [{"error": "EOF"}]}' + b" " * 2000
            self.send_response(502)
        else:
            body = b'{"pod": "entry-7d9f", "node": "n1"}'
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_answer_names_the_pod_and_the_source_port(server):
    record = probe_once("127.0.0.1", server, 1.0)
    assert record["status"] == 200 and record["error"] == "" and record["pod"] == "entry-7d9f"
    assert 1024 < record["sport"] < 65536


def test_an_error_answer_keeps_its_words(server):
    record = probe_once("127.0.0.1", server, 1.0, path="/fail")
    assert record["status"] == 502 and record["error"] == "HTTP502" and record["pod"] == "entry-7d9f"
    assert record["answer"].startswith('{"pod": "entry-7d9f", "downstream": [{"error": "EOF"}]}') and len(record["answer"]) == 1000
    assert "answer" not in probe_once("127.0.0.1", server, 1.0)


def test_a_port_with_no_listener_is_refused_by_a_reset_and_the_evidence_hook_sees_its_port():
    seen = []
    record = probe_once("127.0.0.1", free_port(), 1.0, on_connect_failure=lambda sport: seen.append(sport) or {"looked_up": sport})
    assert record["error"] == "ConnectionRefusedError" and record["how"] == "rst-refused" and "icmp" not in record
    assert seen == [record["sport"]] and record["looked_up"] == record["sport"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables"), reason="adds an iptables REJECT rule: root only")
def test_an_iptables_reject_is_told_apart_from_a_reset(server):
    rule = ["INPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(server), "-j", "REJECT", "-m", "comment", "--comment", "patternbench-test"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        record = probe_once("127.0.0.1", server, 1.0)
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    assert record["how"] == "icmp-refused", record
    assert record["icmp"] == {"type": 3, "code": 3, "from": "127.0.0.1"}


def test_a_listener_that_never_answers_is_a_read_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        record = probe_once("127.0.0.1", silent.getsockname()[1], 0.3)
    assert record["how"] == "read-timeout" and record["status"] == 0


def test_a_probe_is_dated_by_its_syn_and_its_request_not_by_when_its_thread_began(server, monkeypatch):
    """A probe's thread can wait for the GIL between starting and sending; that wait is the
    harness's, not the service's: `t` is the SYN, `queued_ms` the wait, `ms` excludes it."""
    real = probe_module.TracedConnection.connect

    def late_connect(self):
        time.sleep(0.2)  # the thread waits before it sends
        real(self)

    monkeypatch.setattr(probe_module.TracedConnection, "connect", late_connect)
    before = time.monotonic()
    record = probe_once("127.0.0.1", server, 1.0)
    after = time.monotonic()
    assert record["error"] == "" and record["queued_ms"] >= 200
    assert record["t"] >= before + 0.2  # dated after the wait: by its SYN
    assert record["t"] + record["ms"] / 1000 <= after + 1e-6  # its time excludes the wait (ms rounded to 1 µs)
    assert 0 <= record["asked_ms"] <= record["ms"]
