"""Open-loop load at a constant arrival rate (wrk2's model): request i is due at
t0 + i/R and starts then whatever the earlier ones are doing; its latency counts from when
it was due, not from when it was sent. A stall therefore shows as the latency of every
request it delayed — coordinated omission cannot hide it — and how late the sender itself
was (`lag_ms`) says whether the harness, not the target, fell behind.

Runs inside the gevent-patched load process (locust_process.py); importing it patches nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import gevent
import gevent.pool
from geventhttpclient import HTTPClient

from patternbench.load.records import answer_trail, failure_detail
from patternbench.stats import percentile


def nearest_rank(values: list[float], q: float) -> float | None:
    """stats.percentile, to the microsecond."""
    value = percentile(values, q)
    return None if value is None else round(value, 3)


@dataclass
class OpenLoop:
    """Requests at `rps` per second against `host`, each recorded through `write`."""

    host: str
    rps: float
    write: Callable[[dict[str, Any]], None]
    connections: int = 200
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    path: str = "/"
    latencies_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    failures: int = 0
    due: int = 0

    def __post_init__(self) -> None:
        split = urlsplit(self.host)
        self.client = HTTPClient(split.hostname, split.port or 80, concurrency=self.connections,
                                 connection_timeout=self.connect_timeout_s, network_timeout=self.timeout_s)
        self.in_flight = gevent.pool.Group()

    def one(self, intended: float) -> None:
        sent = time.monotonic()
        status, error, via, body, exc = 0, "", "", None, None
        rid = uuid.uuid4().hex[:16]
        response = None
        try:
            response = self.client.get(self.path, headers={"X-Request-Id": rid})
            body = response.read()
            status = response.status_code
            via = response.get("via") or ""
            if not 200 <= status < 400:
                error = f"HTTP{status}"
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            exc, error = e, type(e).__name__
        done = time.monotonic()
        ms = (done - intended) * 1000
        lag = (sent - intended) * 1000
        self.lags_ms.append(lag)
        if error:
            self.failures += 1
        else:
            self.latencies_ms.append(ms)
        record: dict[str, Any] = {
            "kind": "user", "mode": "open", "t": intended, "wall": time.time() - (done - intended), "ms": round(ms, 3),
            "lag_ms": round(lag, 3), "status": status, "error": error, "via": via,
            **(answer_trail(body) if status else {}), "request_id": rid,
        }
        if error:
            record["detail"] = failure_detail(None, exc) if exc else failure_detail(_Answer(body), None)
        self.write(record)

    def run(self, until: Callable[[], bool]) -> None:
        """Start requests on schedule until `until()` says stop (checked every few ms)."""
        interval = 1.0 / self.rps
        t0 = time.monotonic()
        while not until():
            now = time.monotonic()
            # Every request already due starts now: a late sender catches up, it never skips.
            while t0 + self.due * interval <= now:
                self.in_flight.spawn(self.one, t0 + self.due * interval)
                self.due += 1
            gevent.sleep(max(0.0, min(0.005, t0 + self.due * interval - time.monotonic())))

    def finish(self, timeout_s: float) -> None:
        """Wait for the requests in flight, so each is recorded."""
        self.in_flight.join(timeout=timeout_s)

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        done = len(self.latencies_ms) + self.failures
        return {
            "mode": "open", "offered_rps": self.rps, "due": self.due, "requests": done, "failures": self.failures,
            "achieved_rps": round(done / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "median_ms": nearest_rank(self.latencies_ms, 50), "p99_ms": nearest_rank(self.latencies_ms, 99),
            "lag_p50_ms": nearest_rank(self.lags_ms, 50), "lag_p99_ms": nearest_rank(self.lags_ms, 99),
            "lag_max_ms": round(max(self.lags_ms), 3) if self.lags_ms else None,
        }


class _Answer:
    """The bits of a response failure_detail() reads."""

    def __init__(self, body: bytes | None) -> None:
        self.content = body or b""
        self.text = self.content.decode("utf-8", "replace")
