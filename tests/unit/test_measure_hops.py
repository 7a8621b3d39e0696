from __future__ import annotations

from patternbench.measure import calls, pods_in, proxies_per_request, via_entries, via_kinds

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
    assert via_kinds("1.1 sidecar/a,1.1 node/b") == ["sidecar", "node"]
    assert via_entries(None) == [] and via_entries("") == []


def test_calls_walk_the_whole_tree() -> None:
    assert [(a, b) for a, b, _ in calls(ANSWER)] == [("frontend", "orders"), ("orders", "payments")]


def test_pods_and_proxies() -> None:
    assert pods_in(ANSWER) == {"f-1": 1, "o-1": 1, "p-2": 1}
    assert proxies_per_request(ANSWER, "1.1 sidecar/f-1") == 5
    assert proxies_per_request({"service": "a", "pod": "a-1"}, "") == 0
