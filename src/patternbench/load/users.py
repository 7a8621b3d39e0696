"""What a Locust user of the harness does and what it records, one definition for every
process that runs users: the local load process (locust_process.py) and the in-cluster master
and workers (incluster.py), which must name the same user class (Locust's master dispatches
users to its workers by class name)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from locust import FastHttpUser, constant_throughput, task
from locust.env import Environment

from patternbench.load.records import answer_trail, failure_detail

USER_CLASS = "EntryUser"


class Records:
    """Append-only JSON lines, flushed per line (an interrupted run keeps what it measured)."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "a", buffering=1)
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.written += 1


def entry_user(host: str, rate_per_user: float) -> type[FastHttpUser]:
    """The user class: GET / of the entry at `rate_per_user` requests/s, each with its id."""

    class EntryUser(FastHttpUser):
        wait_time = constant_throughput(rate_per_user)
        network_timeout = 5.0
        connection_timeout = 2.0

        @task
        def root(self) -> None:
            self.client.get("/", headers={"X-Request-Id": uuid.uuid4().hex[:16]}, name="/")

    EntryUser.host = host
    assert EntryUser.__name__ == USER_CLASS
    return EntryUser


def user_record(response_time: float, response: Any = None, exception: Any = None, **kw: Any) -> dict[str, Any]:
    """One request of a user, as the `request` event reports it: `t` (monotonic) and `wall`
    at its start, its time, status, error, the Via trail and, on failure, what failed."""
    now = time.monotonic()
    status = getattr(response, "status_code", 0) or 0
    headers = getattr(response, "headers", None) or {}
    return {
        "kind": "user",
        "t": now - response_time / 1000.0,
        "wall": kw.get("start_time") or time.time() - response_time / 1000.0,
        "ms": round(response_time, 3),
        "status": status,
        "error": type(exception).__name__ if exception else ("" if 200 <= status < 400 else f"HTTP{status}"),
        "via": headers.get("Via", "") if hasattr(headers, "get") else "",
        # Failed answers carry their trail too: which entry pod and which call failed.
        **(answer_trail(getattr(response, "content", None)) if status else {}),
        "request_id": (headers.get("X-Request-Id", "") if hasattr(headers, "get") else ""),
        **({"detail": failure_detail(response, exception)} if exception or not 200 <= status < 400 else {}),
    }


def record_requests(env: Environment, records: Records) -> None:
    """Every request of `env`'s users becomes one record."""

    @env.events.request.add_listener
    def on_request(request_type: str, name: str, response_time: float, response: Any = None, exception: Any = None, **kw: Any) -> None:
        records.write(user_record(response_time, response, exception, **kw))


def users_summary(env: Environment, cpu_warning: bool) -> dict[str, Any]:
    total = env.stats.total
    return {
        "mode": "users",
        "requests": total.num_requests,
        "failures": total.num_failures,
        "median_ms": total.median_response_time,
        "p99_ms": total.get_response_time_percentile(0.99),
        "avg_rps": total.total_rps,
        "cpu_warning": cpu_warning,
        # Errors raised inside the users' task (not failed requests: no request was recorded),
        # reported to Locust's master by its workers. Any is a broken load.
        "exceptions": sum(int(row["count"]) for row in env.runner.exceptions.values()) if env.runner else 0,
    }
