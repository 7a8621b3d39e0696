"""Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator


def via_entries(via: str | None) -> list[str]:
    """'1.1 sidecar/a, 1.1 node/n1' -> ['sidecar/a', 'node/n1'] (RFC 9110 Via list)."""
    entries = []
    for part in (via or "").split(","):
        fields = part.strip().split()
        if len(fields) >= 2:
            entries.append(fields[1])
    return entries


def via_kinds(via: str | None) -> list[str]:
    """The proxy modes a Via trail passed: ['sidecar', 'sidecar']."""
    return [entry.split("/", 1)[0] for entry in via_entries(via)]


def calls(answer: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every service-to-service call in an app answer tree: (caller, callee, downstream record)."""
    for down in answer.get("downstream") or []:
        yield answer["service"], down["service"], down
        if down.get("answer"):
            yield from calls(down["answer"])


def pods_in(answer: dict[str, Any]) -> Counter[str]:
    """How many times each pod served a request in this tree (each logs one line per request)."""
    seen: Counter[str] = Counter({answer["pod"]: 1})
    for _, _, down in calls(answer):
        if down.get("answer"):
            seen[down["answer"]["pod"]] += 1
    return seen


def proxies_per_request(answer: dict[str, Any], response_via: str | None = None) -> int:
    """Proxy hops one client request passed: on the entry and on every downstream call."""
    hops = len(via_entries(response_via)) if response_via is not None else len(via_entries(answer.get("via")))
    return hops + sum(len(via_entries(down.get("via"))) for _, _, down in calls(answer))
