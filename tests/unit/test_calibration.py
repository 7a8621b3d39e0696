"""The outage definition on recorded probe streams, and calibration against a real local
server (no cluster): each kind of outage is caused by its real mechanism."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from patternbench import measure
from patternbench.calibration import Injection, compare, document, expected_s, load_calibration, parse_kinds, parse_lengths, write
from patternbench.errors import UsageError

DATA = Path(__file__).parent / "data"


def recorded(kind: str) -> dict:
    return json.loads((DATA / f"probes-{kind}.json").read_text())


def old_definition(probes: list[dict], start: float, end: float) -> float:
    """Downtime as it was before issue #11: failures only, the outage ending at the start of
    the next successful probe."""
    total, opened = 0.0, None
    for p in sorted((p for p in probes if start <= p["t"] < end), key=lambda r: r["t"]):
        if not measure.ok(p):
            opened = p["t"] if opened is None else opened
        elif opened is not None:
            total, opened = total + p["t"] - opened, None
    return total + (end - opened if opened is not None else 0.0)


@pytest.mark.parametrize("kind", ["refused", "reset", "dropped", "hang"])
def test_recorded_outages_are_measured_within_50_ms(kind: str) -> None:
    doc = recorded(kind)
    start, end = doc["injected"]
    probes = doc["probes"]
    spans = measure.outage_spans(probes, start - 1.0, end + 2.4)
    assert len(spans) == 1
    assert abs(spans[0].length - (end - start)) * 1000 <= 50 + doc["uncertainty_s"] * 1000
    cause = {"refused": "error_s", "reset": "error_s", "dropped": "slow_s", "hang": "slow_s"}[kind]
    assert getattr(spans[0], cause) == pytest.approx(spans[0].length)


def test_the_recorded_drop_and_hang_were_under_reported_before() -> None:
    """The issue's bug, on real streams: a 2 s drop read as about 1 s (the retransmitted SYNs
    succeeded), a 2 s hang as nothing at all (no probe failed)."""
    drop, hang = recorded("dropped"), recorded("hang")
    assert old_definition(drop["probes"], -1.0, drop["injected"][1] + 2.4) == pytest.approx(1.0, abs=0.06)
    assert old_definition(hang["probes"], -1.0, hang["injected"][1] + 2.4) == 0.0


def test_compare_and_the_hang_shorter_than_the_deadline() -> None:
    probes = recorded("refused")["probes"]
    row = compare(Injection("refused", 0.0, recorded("refused")["injected"][1]), probes, 1000.0)
    assert abs(row.error_ms) <= 50 and row.outages == 1 and row.error_downtime_s > 0.9
    assert expected_s(Injection("hang", 0.0, 0.5), 1000.0) == 0.0  # every request answered in time
    assert expected_s(Injection("hang", 0.0, 2.0), 1000.0) == 2.0
    assert expected_s(Injection("dropped", 0.0, 0.5), 1000.0) == 0.5


def test_calibration_files(tmp_path: Path) -> None:
    assert load_calibration(tmp_path / "run") is None
    doc = document([], "local 127.0.0.1", 1000.0, 0.025)
    write(tmp_path, doc)
    assert load_calibration(tmp_path / "run")["target"] == "local 127.0.0.1"  # the latest, beside the run
    assert len(list((tmp_path / "calibrations").glob("calibration-*.json"))) == 1


@pytest.mark.parametrize("text,message", [
    ("", "give at least one"), ("refused,smoke", "unknown outage kind 'smoke'"),
])
def test_bad_kinds(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_kinds(text)


@pytest.mark.parametrize("text,message", [("", "at least one length"), ("1,x", "'x' is not a number"), ("0", "outside"), ("31", "outside")])
def test_bad_lengths(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_lengths(text)


def test_calibrate_a_local_server_refused_reset_hang() -> None:
    """Real mechanisms on a real server on 127.0.0.1, the real probe; a short deadline keeps it quick."""
    from patternbench.outages import calibrate_local

    rows = calibrate_local(["refused", "reset", "hang"], [0.6], slo_ms=200, settle_s=0.5, probe_timeout_s=0.6)
    for row in rows:
        # Every kind counts its whole length (the hang outlasts the 200 ms deadline): the length
        # the outage really had, which a loaded machine stretches past the 0.6 s asked (a make
        # test read 0.6208 s, failing the old ±10 ms check on how long a sleep took).
        assert row.injected_s >= 0.6 and row.expected_s == pytest.approx(row.injected_s)
        # 50 ms, plus however late the probe stream itself ran (a loaded machine's doing).
        assert abs(row.error_ms) <= 50 + row.probe_lag_ms, row


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None, reason="the dropped outage needs root and iptables")
def test_calibrate_a_dropped_outage_and_leave_no_rule() -> None:
    from patternbench.outages import IPTABLES_COMMENT, calibrate_local

    [row] = calibrate_local(["dropped"], [1.2], slo_ms=1000, settle_s=0.5)
    assert abs(row.error_ms) <= 50 + row.truth_uncertainty_ms + row.probe_lag_ms, row
    assert row.slow_downtime_s == pytest.approx(row.measured_s)
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert IPTABLES_COMMENT not in rules


def test_cluster_entry_rules() -> None:
    """The cluster's outages match the entry by conntrack's original destination (the filter
    table sees the packet after kube-proxy's DNAT); a kind it cannot inject is an error."""
    from patternbench.cluster_calibration import CLUSTER_KINDS, entry_rule
    from patternbench.outages import IPTABLES_COMMENT

    refused, dropped = (entry_rule(k, 31234) for k in CLUSTER_KINDS)
    for rule in (refused, dropped):
        assert rule[0] == "OUTPUT" and "--ctorigdstport" in rule and "31234" in rule and IPTABLES_COMMENT in rule
    assert refused[-3:] == ["REJECT", "--reject-with", "icmp-port-unreachable"] and dropped[-1] == "DROP"
    with pytest.raises(UsageError, match="not 'hang'"):
        entry_rule("hang", 31234)


def test_the_in_cluster_rule_matches_the_service_address_before_its_dnat() -> None:
    from patternbench.cluster_calibration import forward_rule
    from patternbench.outages import IPTABLES_COMMENT

    rule = forward_rule("refused", "10.96.0.42", 80)
    assert rule[0] == "FORWARD" and rule[rule.index("--ctorigdst") + 1] == "10.96.0.42" and rule[rule.index("--ctorigdstport") + 1] == "80"
    assert IPTABLES_COMMENT in rule and rule[-3:] == ["REJECT", "--reject-with", "icmp-port-unreachable"]
    assert forward_rule("dropped", "10.96.0.42", 80)[-1] == "DROP"
    with pytest.raises(UsageError, match="not 'hang'"):
        forward_rule("hang", "10.96.0.42", 80)
