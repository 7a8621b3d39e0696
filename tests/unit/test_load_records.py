from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from patternbench.errors import UsageError
from patternbench.load.records import answer_trail, failure_detail
from patternbench.load.runner import LoadConfig, read_jsonl

ANSWER = {"service": "f", "pod": "f-1", "node": "n1", "downstream": [
    {"service": "o", "status": 200, "via": "1.1 sidecar/o-1 (n2), 1.1 sidecar/f-1 (n1)", "answer": {
        "service": "o", "pod": "o-1", "node": "n2", "downstream": [
            {"service": "p", "status": 200, "via": "1.1 sidecar/p-1 (n2), 1.1 sidecar/o-1 (n2)", "answer": {"service": "p", "pod": "p-1", "node": "n2"}},
            {"service": "q", "status": 503, "error": "no endpoint"}]}}]}


def test_answer_trail_keeps_every_call_with_its_pods_and_nodes() -> None:
    trail = answer_trail(json.dumps(ANSWER).encode())
    assert trail["entry"] == ["f-1", "n1"]
    assert trail["calls"] == [
        {"src": ["f-1", "n1"], "dst": ["o-1", "n2"], "via": "1.1 sidecar/o-1 (n2), 1.1 sidecar/f-1 (n1)"},
        {"src": ["o-1", "n2"], "dst": ["p-1", "n2"], "via": "1.1 sidecar/p-1 (n2), 1.1 sidecar/o-1 (n2)"},
        {"src": ["o-1", "n2"], "dst": None, "via": ""},
    ]
    assert answer_trail(b"not json") == {"entry": None, "calls": []} and answer_trail(None)["calls"] == []


def test_failure_detail_finds_the_innermost_failed_call() -> None:
    failing = {"service": "f", "downstream": [{"service": "o", "status": 502, "answer": {"service": "o", "downstream": [
        {"service": "p", "status": 502, "error": "meshproxy: dial tcp: connection refused"}]}}]}
    response = SimpleNamespace(content=json.dumps(failing).encode(), text="")
    assert failure_detail(response, None) == "o -> p: 502 meshproxy: dial tcp: connection refused"
    assert failure_detail(None, ConnectionRefusedError("refused")) == "refused"
    assert failure_detail(SimpleNamespace(content=b"meshproxy: no ready endpoint", text="meshproxy: no ready endpoint"), None) == "meshproxy: no ready endpoint"


def test_read_jsonl_skips_a_line_cut_short(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


@pytest.mark.parametrize("config,message", [
    (LoadConfig(users=0), "--users must be at least 1"),
    (LoadConfig(users=1000, rate_per_user=10), "more than one load process can drive"),
    (LoadConfig(rate_per_user=0), "must be positive"),
    (LoadConfig(probe_interval_s=5), "probe interval"),
])
def test_bad_load_settings(config: LoadConfig, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config.validate()


def test_answer_trail_is_the_go_load_clients_on_the_shared_fixture() -> None:
    """grpcload's trail (images/cmd/grpcload/trail.go) and this one read one fixture the same way."""
    fixture = json.loads((Path(__file__).parents[2] / "images" / "cmd" / "grpcload" / "testdata" / "trail.json").read_text())
    assert answer_trail(json.dumps(fixture["answer"]).encode()) == fixture["trail"]
