"""A `kill -9` of the orchestrator takes its load process with it (no cluster needed: the
load runs against a plain HTTP server on 127.0.0.1)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from patternbench.cluster.local.processes import read_proc


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_a_killed_orchestrator_takes_its_load_process_with_it(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    orchestrator = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from patternbench.load.runner import LoadConfig, LoadProcess
        load = LoadProcess("http://127.0.0.1:{server.server_port}", LoadConfig(users=2), Path({str(tmp_path)!r}), max_duration_s=600)
        load.start()
        print(load.proc.pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert orchestrator.stdout is not None
        load_pid = int(orchestrator.stdout.readline())
        records = tmp_path / "requests.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (records.exists() and records.stat().st_size > 0):
            time.sleep(0.2)
        assert records.stat().st_size > 0, "the load never sent a request"
        os.kill(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and read_proc(load_pid) is not None:
            time.sleep(0.05)
        assert read_proc(load_pid) is None, "the load process outlived the orchestrator"
        size = records.stat().st_size
        time.sleep(1)
        assert records.stat().st_size == size, "records still being appended"
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
        server.shutdown()
