from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from patternbench.errors import UsageError
from patternbench.load.records import failure_detail, hop_trail
from patternbench.load.runner import LoadConfig, read_jsonl

ANSWER = {"service": "f", "downstream": [{"service": "o", "status": 200, "via": "1.1 sidecar/o-1, 1.1 sidecar/f-1",
          "answer": {"service": "o", "downstream": [{"service": "p", "status": 200, "via": "1.1 sidecar/p-1, 1.1 sidecar/o-1", "answer": {"service": "p"}}]}}]}


def test_hop_trail_collects_every_call() -> None:
    assert hop_trail(json.dumps(ANSWER).encode()) == ["sidecar/o-1", "sidecar/f-1", "sidecar/p-1", "sidecar/o-1"]
    assert hop_trail(b"not json") == [] and hop_trail(None) == []


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
