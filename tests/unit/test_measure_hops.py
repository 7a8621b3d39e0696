from __future__ import annotations

import pytest

from patternbench.measure import (
    Location,
    NodeRollout,
    calls,
    grouping,
    hop_kind,
    hop_summary,
    max_concurrent,
    node_rollouts,
    parse_via,
    pods_in,
    proxies_per_request,
    request_hops,
    requests_per_agent,
    via_entries,
    via_kinds,
)
from patternbench.specs.topology import Pattern, expected_hop_counts

ANSWER = {
    "service": "frontend", "pod": "f-1", "via": "1.1 sidecar/f-1",
    "downstream": [
        {"service": "orders", "status": 200, "via": "1.1 sidecar/o-1, 1.1 sidecar/f-1", "answer": {
            "service": "orders", "pod": "o-1", "via": "1.1 sidecar/f-1, 1.1 sidecar/o-1",
            "downstream": [{"service": "payments", "status": 200, "via": "1.1 sidecar/p-2, 1.1 sidecar/o-1",
                            "answer": {"service": "payments", "pod": "p-2"}}],
        }},
    ],
}


def test_via_parsing() -> None:
    assert via_entries("1.1 node/n1, 1.1 node/n2") == ["node/n1", "node/n2"]
    assert via_entries("1.1 sidecar/a (n1), 1.1 node/n2 (n2)") == ["sidecar/a", "node/n2"]
    assert via_kinds("1.1 sidecar/a,1.1 node/b") == ["sidecar", "node"]
    assert via_entries(None) == [] and via_entries("") == []
    entry = parse_via("1.1 sidecar/a-1 (pb-node-2)")[0]
    assert (entry.mode, entry.name, entry.node) == ("sidecar", "a-1", "pb-node-2")
    assert entry.location == Location("a-1", "pb-node-2")
    assert parse_via("1.1 node/pb-node-3 (pb-node-3)")[0].location == Location(None, "pb-node-3")


def test_calls_walk_the_whole_tree() -> None:
    assert [(a, b) for a, b, _ in calls(ANSWER)] == [("frontend", "orders"), ("orders", "payments")]


def test_pods_and_proxies() -> None:
    assert pods_in(ANSWER) == {"f-1": 1, "o-1": 1, "p-2": 1}
    assert proxies_per_request(ANSWER, "1.1 sidecar/f-1") == 5
    assert proxies_per_request({"service": "a", "pod": "a-1"}, "") == 0


def test_hop_kind_from_where_things_ran() -> None:
    assert hop_kind(Location("a", "n1"), Location("a", "n1")) == "loopback"
    assert hop_kind(Location("a", "n1"), Location("b", "n1")) == "same_node"
    assert hop_kind(Location("a", "n1"), Location(None, "n1")) == "same_node"
    assert hop_kind(Location(None, "n1"), Location(None, "n2")) == "cross_node"
    assert hop_kind(Location("a", None), Location("b", "n1")) == "unknown"


# Recorded trails of one request (frontend -> orders -> payments) in each pattern: frontend
# and orders on n1, payments on n2, so one call stays on n1 and one crosses to n2.
def _record(entry_via: str, call_vias: tuple[str, str]) -> dict:
    return {
        "kind": "user", "status": 200, "via": entry_via, "entry": ["f-1", "n1"],
        "calls": [
            {"src": ["f-1", "n1"], "dst": ["o-1", "n1"], "via": call_vias[0]},
            {"src": ["o-1", "n1"], "dst": ["p-1", "n2"], "via": call_vias[1]},
        ],
    }


TRAILS = {
    "none": _record("", ("", "")),
    "sidecar": _record("1.1 sidecar/f-1 (n1)", ("1.1 sidecar/o-1 (n1), 1.1 sidecar/f-1 (n1)", "1.1 sidecar/p-1 (n2), 1.1 sidecar/o-1 (n1)")),
    "daemonset": _record("", ("1.1 node/n1 (n1), 1.1 node/n1 (n1)", "1.1 node/n2 (n2), 1.1 node/n1 (n1)")),
}


@pytest.mark.parametrize("pattern,want", [
    ("none", {"same_node": 1, "cross_node": 1}),
    ("sidecar", {"loopback": 5, "same_node": 1, "cross_node": 1}),
    ("daemonset", {"same_node": 5, "cross_node": 1}),
])
def test_hops_of_recorded_trails(pattern: str, want: dict) -> None:
    assert dict(request_hops(TRAILS[pattern])) == want
    summary = hop_summary([TRAILS[pattern]])
    assert summary["cross_node_share"] == 0.5
    expected = expected_hop_counts(Pattern(pattern), 2)
    assert sum(summary["hops"].values()) == expected["total"]
    assert summary["hops"].get("loopback", 0) == expected["loopback"]


def test_a_cross_node_call_is_one_cross_node_hop_in_every_pattern() -> None:
    for record in TRAILS.values():
        assert request_hops(record)["cross_node"] == 1


def test_hops_are_not_guessed_from_the_mode_when_nodes_are_missing() -> None:
    old = {"kind": "user", "status": 200, "via": "", "entry": ["f-1", None],
           "calls": [{"src": ["f-1", None], "dst": ["o-1", None], "via": "1.1 sidecar/o-1, 1.1 sidecar/f-1"}]}
    assert dict(request_hops(old)) == {"unknown": 3}
    assert hop_summary([old])["cross_node_share"] is None


def test_request_grouping_per_proxy_instance() -> None:
    records = [TRAILS["daemonset"], TRAILS["daemonset"], {**TRAILS["daemonset"], "status": 503}]
    per = requests_per_agent(records)
    assert per == {"node/n1": 2, "node/n2": 2}
    assert grouping({"node/n1": 10, "node/n2": 4, "node/n3": 7, "sidecar/a": 3}) == {
        "node": {"instances": 3, "min": 4, "median": 7, "max": 10},
        "sidecar": {"instances": 1, "min": 3, "median": 3, "max": 3},
    }


def _pod(t: float, uid: str, node: str, ready: bool, event: str = "MODIFIED", deleting: bool = False, app: str = "logagent") -> dict:
    return {"t": t, "uid": uid, "node": node, "ready": ready, "event": event, "deleting": deleting, "role": "agent", "app": app}


def test_node_rollouts_from_the_pod_watch() -> None:
    # Upgrade starts at t=100. n1: old stops at 101, new Ready at 103 (2 s without agent).
    # n2: new Ready at 105 before the old one is deleted at 106 (a surge: no gap).
    records = [
        _pod(90, "o1", "n1", True, "LISTED"), _pod(90, "o2", "n2", True, "LISTED"),
        _pod(101, "o1", "n1", True, deleting=True), _pod(102, "o1", "n1", False, "DELETED", True),
        _pod(102, "x1", "n1", False, "ADDED"), _pod(103, "x1", "n1", True),
        _pod(104, "x2", "n2", False, "ADDED"), _pod(105, "x2", "n2", True),
        _pod(106, "o2", "n2", True, deleting=True),
        {"t": 101, "uid": "app", "node": "n1", "ready": False, "event": "MODIFIED", "role": "app"},
    ]
    rollouts = node_rollouts(records, start=100, end=200)
    assert rollouts == [NodeRollout("logagent", "n1", 1.0, 3.0), NodeRollout("logagent", "n2", 6.0, 5.0)]
    assert [r.down_s for r in rollouts] == [2.0, 0.0]
    assert max_concurrent([i for r in rollouts if (i := r.down_interval)]) == 1


def test_max_concurrent_counts_overlaps_only() -> None:
    assert max_concurrent([(0, 2), (2, 4)]) == 1
    assert max_concurrent([(0, 3), (1, 4), (2, 5)]) == 3
    assert max_concurrent([]) == 0
