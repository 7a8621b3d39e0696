"""Scrapes of the API server's own /metrics at the two ends of a trial's steady phase (not a
periodic sampler: a full scrape is megabytes the API server renders and we parse, and the
steady phase needs only its start and its end). Only the lines measure/apiserver.py reads are
kept, with their TYPE lines; a scrape the cluster refuses (no access to /metrics) is recorded
as its error and the figures are left out."""

from __future__ import annotations

import json
import time
from pathlib import Path

from kubernetes import client

from patternbench.measure.apiserver import READ_METRICS


def kept_lines(text: str) -> str:
    """The lines of the metrics measure/apiserver.py reads (samples and their # TYPE)."""
    out = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split(" ", 3)[2]
        elif line.startswith("#") or not line:
            continue
        else:
            name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in READ_METRICS or (line.startswith("# TYPE ") and any(m.startswith(name + "_") for m in READ_METRICS)):
            out.append(line)
    return "\n".join(out) + "\n"


def scrape(api: client.ApiClient) -> str:
    """GET /metrics with the client's credentials (kubernetes >= 37: param_serialize, then call_api)."""
    method, url, headers, body, post = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, post, _request_timeout=15)
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {resp.status}: {resp.data[:200]!r}")
    return kept_lines(resp.data.decode())


class ApiServerScrapes:
    """Appends one record per scrape to `out` (apiserver.jsonl): label, monotonic t, the kept
    metrics text or the error."""

    def __init__(self, api: client.ApiClient, out: Path) -> None:
        self.api, self.out = api, out

    def take(self, label: str) -> float:
        """Scrape now; returns the seconds it took (the caller keeps its phase's length)."""
        start = time.monotonic()
        record: dict[str, object] = {"label": label}
        try:
            record["text"] = scrape(self.api)
        except Exception as exc:  # noqa: BLE001 - a missing figure, said so, not a failed trial
            record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        record["t"] = time.monotonic()
        try:
            with self.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError:
            pass  # the figures are missing from the summary, which says so; the trial goes on
        return record["t"] - start  # type: ignore[operator]
