"""Via trails and call records: which proxies and pods a request passed.

Pure functions from records to numbers: nothing here talks to a cluster."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from patternbench.specs.agents import proxy_mode


@dataclass(frozen=True)
class ViaEntry:
    """One proxy of a Via trail: '1.1 sidecar/<pod> (<node>)' or '1.1 node/<node> (<node>)'."""

    mode: str
    name: str
    node: str | None

    @property
    def instance(self) -> str:
        return f"{self.mode}/{self.name}"

    @property
    def location(self) -> Location:
        """A sidecar runs inside its pod; a node proxy in its node's own network (hostNetwork).
        A mode no agent spec knows is an error: guessing its place would misclassify hops."""
        mode = proxy_mode(self.mode)
        if mode.in_pod or mode.own_pod:  # a sidecar in its app's pod; a waypoint in a pod of its own
            return Location(pod=self.name, node=self.node)
        return Location(pod=None, node=self.node or self.name)


@dataclass(frozen=True)
class Location:
    """Where a process ran: in a pod (pod set) or in a node's own network (pod None)."""

    pod: str | None
    node: str | None


_VIA_ENTRY = re.compile(r"^\S+\s+(?P<mode>[^/\s]+)/(?P<name>\S+)(?:\s+\((?P<node>[^)]*)\))?")


def parse_via(via: str | None) -> list[ViaEntry]:
    """A Via header as the proxies wrote it, in the order of the list (RFC 9110 7.6.3)."""
    entries = []
    for part in (via or "").split(","):
        match = _VIA_ENTRY.match(part.strip())
        if match:
            entries.append(ViaEntry(match["mode"], match["name"], match["node"] or None))
    return entries


def via_entries(via: str | None) -> list[str]:
    """'1.1 sidecar/a (n1), 1.1 node/n1' -> ['sidecar/a', 'node/n1']."""
    return [e.instance for e in parse_via(via)]


def via_kinds(via: str | None) -> list[str]:
    """The proxy modes a Via trail passed: ['sidecar', 'sidecar']."""
    return [e.mode for e in parse_via(via)]


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
