"""The long-lived figures from grpcload's records and the apps' connection details."""

from __future__ import annotations

import pytest

from patternbench.measure.longlived import LONG_LIVED_KEYS, drain_kind, http2_drain, long_lived, replaced_connections


def rpc(t: float, error: str = "", calls: list | None = None) -> dict:
    return {"kind": "user", "proto": "grpc", "t": t, "error": error, "status": 0 if error else 200, "calls": calls or []}


@pytest.mark.parametrize("end,goaway,want", [
    ("closed", True, "goaway"), ("eof", True, "goaway-then-cut"), ("rst", True, "goaway-then-cut"),
    ("eof", False, "cut"), ("rst", False, "cut"), ("timeout", False, "cut"), ("closed", False, None), ("stopped", False, None), ("stopped", True, None),
])
def test_drain_kind(end: str, goaway: bool, want: str | None) -> None:
    assert drain_kind(end, goaway) == want


def test_http_workload_has_none_of_the_keys() -> None:
    assert long_lived([{"kind": "user", "t": 1.0, "error": ""}], 0, 10) == {k: None for k in LONG_LIVED_KEYS}


def test_replacements_seen_by_the_load_and_by_the_apps_count_once_each() -> None:
    records = [
        # The load's channel: its first connection drained by GOAWAY, its next ready before it ended (reconnect 0).
        {"kind": "conn", "id": "load#1", "channel": "ch0", "opened_t": 0.5, "ready_t": 0.5, "goaway_t": 5.0, "ended_t": 5.1, "end": "closed"},
        {"kind": "conn", "id": "load#2", "channel": "ch0", "opened_t": 5.0, "ready_t": 5.02, "ended_t": 20.0, "end": "stopped"},
        # Another channel's connection, open all along: not replaced.
        {"kind": "conn", "id": "load#3", "channel": "ch1", "opened_t": 0.5, "ready_t": 0.5, "ended_t": 20.0, "end": "stopped"},
        # An app's channel: its connection through the old proxy drained (said once, on the next call).
        rpc(6.0, calls=[{"src": ["a", "n1"], "dst": ["b", "n2"], "via": "", "ended_conns": [{"id": "app-a#1", "end": "closed", "goaway": True, "reconnect_s": 0.004}]}]),
        rpc(6.1, calls=[{"src": ["a", "n1"], "dst": ["b", "n2"], "via": ""}]),
        # Another app's connection cut (its proxy died: no GOAWAY), and one closed idle (no replacement).
        rpc(7.0, calls=[{"src": ["c", "n2"], "dst": ["d", "n3"], "via": "", "ended_conns": [
            {"id": "app-c#3", "end": "eof", "goaway": False, "reconnect_s": 1.4}, {"id": "app-c#2", "end": "closed", "goaway": False}]}]),
        rpc(7.5, error="grpc:Unavailable"),
        # Outside the window: neither counted.
        rpc(30.0, error="grpc:Unavailable", calls=[{"ended_conns": [{"id": "app-x#1", "end": "rst", "goaway": False, "reconnect_s": 9}]}]),
    ]
    got = long_lived(records, 4.0, 20.0)
    assert got["rpcs"] == 4 and got["rpcs_failed"] == 1
    assert got["connections_replaced"] == 3
    assert got["connections_goaway"] == 2 and got["connections_reset"] == 1
    assert got["connections_replaced_by"] == {"apps: cut": 1, "apps: goaway": 1, "load: goaway": 1}
    assert got["reconnect_p99_s"] == 1.4
    assert got["http2_drain"] == "mixed"
    replaced = {r["id"]: r for r in replaced_connections(records, 4.0, 20.0)}
    assert set(replaced) == {"load#1", "app-a#1", "app-c#3"}
    assert replaced["load#1"]["reconnect_s"] == 0


def test_streams_broken_and_where() -> None:
    records = [
        {"kind": "msg", "stream": "s0", "t": 5.0, "gap_ms": 100.0},
        {"kind": "msg", "stream": "s0", "t": 6.5, "gap_ms": 1500.0},
        {"kind": "stream", "stream": "s0", "ended_t": 6.0, "end": "Unavailable", "detail": "backend: db: the stream ended"},
        {"kind": "stream", "stream": "s1", "ended_t": 6.2, "end": "Unavailable", "detail": "backend: db: connection reset"},
        {"kind": "stream", "stream": "s2", "ended_t": 19.0, "end": "client_stop"},
        {"kind": "stream", "stream": "s3", "ended_t": 3.0, "end": "Unavailable", "detail": "before the window"},
        # gRPC's own words are no hops: the run of names ends at "rpc error" or at "dial tcp IP:PORT"'s port.
        {"kind": "stream", "stream": "s4", "ended_t": 7.0, "end": "Unavailable",
         "detail": 'orders: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 10.250.0.13:15001: connect: connection refused"'},
        {"kind": "stream", "stream": "s5", "ended_t": 7.0, "end": "Unavailable", "detail": 'closing transport due to: connection error: desc = "error reading from server: EOF"'},
    ]
    got = long_lived(records, 4.0, 20.0)
    assert got["streams_broken"] == 4
    assert got["streams_broken_by"] == {"Unavailable: backend -> db": 2, "Unavailable: orders": 1, "Unavailable: entry": 1}
    assert got["stream_gap_max_s"] == 1.5 and got["stream_messages"] == 2
    assert got["connections_replaced"] == 0 and got["http2_drain"] is None and got["reconnect_p99_s"] is None


def test_http2_drain_one_word() -> None:
    assert http2_drain([{"drain": "goaway"}, {"drain": "goaway"}]) == "goaway"
    assert http2_drain([{"drain": "goaway"}, {"drain": "cut"}]) == "mixed"
    assert http2_drain([]) is None


def test_the_report_section_only_for_grpc_cases() -> None:
    from patternbench.results.report import long_lived_text

    assert long_lived_text({"sidecar-mesh": {"workload": "http"}}) == []
    entry = {"workload": "grpc-stream", "rpcs": 0, "streams_broken": 2, "streams_broken_by": {"Internal: orders -> payments": 2},
             "stream_gap_max_s": 0.4, "connections_replaced": 3, "connections_replaced_by": {"apps: goaway-then-cut": 3},
             "reconnect_p99_s": 0.05, "http2_drain": "goaway-then-cut"}
    lines = long_lived_text({"daemonset-mesh": entry})
    assert lines[0] == "## Long-lived connections"
    row = next(line for line in lines if line.startswith("| daemonset-mesh"))
    assert "2 (Internal: orders -> payments 2)" in row and "3 (apps: goaway-then-cut 3)" in row and row.endswith("| goaway-then-cut |")
