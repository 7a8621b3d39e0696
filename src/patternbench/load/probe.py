"""One availability probe: a GET on a new connection (Connection: close), timed from its
start. Plain http.client, so the load process (gevent-patched) and the calibration (plain
threads) send exactly the same probe."""

from __future__ import annotations

import http.client
import time
import uuid
from typing import Any


def probe_once(host: str, port: int, timeout_s: float, path: str = "/") -> dict[str, Any]:
    """A probe record: `t` monotonic start, `ms` until the answer (or the failure), status, error."""
    start, wall = time.monotonic(), time.time()
    status, error = 0, ""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"X-Request-Id": "probe-" + uuid.uuid4().hex[:10], "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        status = resp.status
        if status != 200:
            error = f"HTTP{status}"
    except Exception as exc:  # noqa: BLE001 - every failure is a data point
        error = type(exc).__name__
    finally:
        conn.close()
    return {"kind": "probe", "t": start, "wall": wall, "ms": round((time.monotonic() - start) * 1000, 3), "status": status, "error": error}
