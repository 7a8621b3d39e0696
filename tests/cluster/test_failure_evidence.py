"""Every failed request explained, on the real cluster: a refusal of known length injected
at the entry (an iptables REJECT of new connections, after kube-proxy's DNAT, while the
Service keeps its ready endpoints) is captured probe by probe with how it failed, counted to
within a probe or two of the truth, and charged to the harness side — the host refused while
the Service had endpoints — never to the pattern, never left unattributed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from patternbench.cluster_calibration import VERDICTS
from patternbench.experiment import run_case
from patternbench.load.conntrack import bindings
from patternbench.load.runner import read_jsonl
from patternbench.outages import IPTABLES_COMMENT, Injection, ruled_outage
from patternbench.results.summary import summarize_case
from patternbench.specs.cases import PROFILES, Case
from patternbench.specs.topology import Pattern, load_topology

pytestmark = pytest.mark.cluster

LENGTH_S = 1.0
PROBE_INTERVAL_S = PROFILES["short"].load.probe_interval_s


def refuse_new_connections(port: int) -> list[str]:
    """A REJECT of new connections to the entry only: keep-alive users go on answering."""
    return [
        "OUTPUT", "-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "--ctorigdst", "127.0.0.1", "--ctorigdstport", str(port),
        "-m", "comment", "--comment", IPTABLES_COMMENT, "-j", *VERDICTS["refused"],
    ]


def test_an_injected_refusal_is_captured_and_charged_to_the_harness(cluster: object, tmp_path: Path) -> None:
    out = tmp_path / "none-control"
    injected: dict[str, Injection] = {}

    def inject_in_the_before_phase() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "before" not in {m["phase"] for m in read_jsonl(out / "timeline.jsonl")}:
            time.sleep(0.1)
        port = urlsplit(json.loads((out / "deployment.json").read_text())["entry_url"]).port
        assert port is not None
        time.sleep(1.0)
        injected["refused"] = ruled_outage("refused", refuse_new_connections(port), port, LENGTH_S)

    injector = threading.Thread(target=inject_in_the_before_phase, daemon=True)
    injector.start()
    run_case(cluster, load_topology(), Case(Pattern.NONE, None), PROFILES["short"], out)
    injector.join(timeout=30)
    truth = injected["refused"]

    probes = [r for r in read_jsonl(out / "requests.jsonl") if r["kind"] == "probe"]
    refused = [p for p in probes if p["error"]]
    # Each refused probe says how: an ICMP port-unreachable from this host, not a reset.
    assert refused and all(p["how"] == "icmp-refused" and p["icmp"] == {"type": 3, "code": 3, "from": "127.0.0.1"} for p in refused), refused[:3]
    # ... all inside the injected window, and as many as the probe stream sent into it.
    assert all(truth.start - PROBE_INTERVAL_S <= p["t"] <= truth.end for p in refused)
    assert len(refused) == pytest.approx((truth.end - truth.start) / PROBE_INTERVAL_S, abs=3)
    # Answered probes name the pod that answered, and carry their source port.
    answered = [p for p in probes if not p["error"]]
    assert all(p["pod"] and p["sport"] > 1024 for p in answered)

    # The evidence is there: the Service's endpoints, each new connection's target, the
    # host's proxy log, per-container CPU wait, CPU pressure.
    deployment = json.loads((out / "deployment.json").read_text())
    slices = [r for r in read_jsonl(out / "endpoints.jsonl") if r["service"] == deployment["entry_service"]]
    ready = {ip for r in slices for ep in r["endpoints"] if ep["ready"] for ip in ep["ips"]}
    assert len(ready) == load_topology().service(load_topology().entry).replicas
    new = [e for events in bindings((out / "conntrack-events.log").read_text().splitlines()).values() for e in events]
    assert {e["reply"]["src"] for e in new} == ready
    assert len(new) >= 0.9 * len(answered)
    assert (out / "logs" / "kube-proxy-host.log").exists()
    assert {r["cid"] for r in read_jsonl(out / "sched.jsonl")} and read_jsonl(out / "pressure.jsonl")

    # Every failure has its cause: the host refused while the Service had ready endpoints.
    entry = summarize_case(out)
    assert entry["failed_requests"] == len(refused)
    assert entry["failures_by_cause"] == {"unattributed": 0, "kube-proxy-lag": len(refused)}
    assert entry["pattern_failures"] == 0 and entry["harness_failures"] == len(refused)
    assert entry["cpu_wait"] and "app" in entry["cpu_wait"]
