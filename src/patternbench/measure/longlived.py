"""Long-lived connections across an upgrade (issue 24), from grpcload's records and the
connection details the apps put on their calls (images/internal/h2watch):

- `conn` records: the load's own channels to the entry, one per connection when it ended;
- a call's `ended_conns`: an app's connections to its next hop (through its sidecar or its
  node's proxy) that ended since the channel's last call, how, and the channel's reconnect
  time. An upgraded proxy between two apps is seen only from there.

A replaced connection ended one of three ways: `goaway` (the server said GOAWAY, then the
client closed it when its streams were done: a clean drain), `goaway-then-cut` (GOAWAY, but
the server closed it with streams still open) or `cut` (no GOAWAY: the server went away).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from patternbench.stats import percentile

CLIENT_CLOSED = "closed"
STOPPED = "stopped"  # closed by the load at the end of the run
CLIENT_STOP = "client_stop"  # a stream the load ended itself (the case's end)
DRAIN_KINDS = ("goaway", "goaway-then-cut", "cut")


def drain_kind(end: str, goaway: bool) -> str | None:
    """How a replaced connection ended; None: the client closed it without a GOAWAY (not replaced)."""
    if end == STOPPED:
        return None  # still open when the run ended
    if goaway:
        return "goaway" if end == CLIENT_CLOSED else "goaway-then-cut"
    return None if end in (CLIENT_CLOSED, STOPPED, "") else "cut"


def _in(t: Any, start: float, end: float) -> bool:
    return isinstance(t, (int, float)) and start <= t <= end


def replaced_connections(records: Iterable[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """Every connection replaced within [start, end], once: the load's (`conn` records that
    ended then) and the apps' (a call's `ended_conns` then, measured by the app), each with
    how it ended and its reconnect: how long its channel went without a connection that had
    heard from its server (0 when a GOAWAY let the channel open the next one first)."""
    out: dict[str, dict[str, Any]] = {}
    conns = sorted((r for r in records if r.get("kind") == "conn"), key=lambda r: r.get("opened_t") or 0)
    for r in conns:
        how = drain_kind(r.get("end", ""), bool(r.get("goaway_t")))
        if not how or not _in(r.get("ended_t"), start, end):
            continue
        later = [max(0.0, c["ready_t"] - r["ended_t"]) for c in conns
                 if c.get("channel") == r.get("channel") and c is not r and (c.get("opened_t") or 0) > (r.get("opened_t") or 0) and c.get("ready_t")]
        out[r["id"]] = {"id": r["id"], "side": "load", "drain": how, "reconnect_s": min(later) if later else None}
    for r in records:
        if r.get("kind") not in ("user", "msg") or not _in(r.get("t"), start, end):
            continue
        for call in r.get("calls") or []:
            for gone in call.get("ended_conns") or []:
                how = drain_kind(gone.get("end", ""), bool(gone.get("goaway")))
                if how and gone.get("id"):
                    out[gone["id"]] = {"id": gone["id"], "side": "apps", "drain": how, "reconnect_s": gone.get("reconnect_s")}
    return list(out.values())


def http2_drain(replaced: list[dict[str, Any]]) -> str | None:
    """One word for how the replaced connections ended: one of DRAIN_KINDS when all ended the
    same way, `mixed` otherwise, None when none was replaced."""
    kinds = {r["drain"] for r in replaced}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def long_lived(records: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """The summary's long-lived keys over [start, end] (the upgrade's window, as failed
    requests are counted); all None without gRPC records (an HTTP workload)."""
    rpcs = [r for r in records if r.get("kind") == "user" and r.get("proto") == "grpc" and _in(r.get("t"), start, end)]
    streams = [r for r in records if r.get("kind") == "stream" and _in(r.get("ended_t"), start, end)]
    msgs = [r for r in records if r.get("kind") == "msg" and _in(r.get("t"), start, end)]
    conns = [r for r in records if r.get("kind") == "conn"]
    if not (rpcs or streams or msgs or conns):
        return {key: None for key in LONG_LIVED_KEYS}
    replaced = replaced_connections(records, start, end)
    reconnects = sorted(r["reconnect_s"] for r in replaced if isinstance(r.get("reconnect_s"), (int, float)))
    broken = [s for s in streams if s.get("end") != CLIENT_STOP]
    gaps = [m["gap_ms"] for m in msgs if isinstance(m.get("gap_ms"), (int, float))]
    return {
        "rpcs": len(rpcs),
        "rpcs_failed": sum(1 for r in rpcs if r.get("error")),
        "stream_messages": len(msgs),
        "streams_broken": len(broken),
        # Where each broken stream broke: its status and the hop its message names.
        "streams_broken_by": _count(f"{s.get('end')}: {_hop(s.get('detail', ''))}" for s in broken),
        "stream_gap_max_s": round(max(gaps) / 1000, 3) if gaps else None,
        "connections_replaced": len(replaced),
        "connections_goaway": sum(1 for r in replaced if r["drain"] != "cut"),
        "connections_reset": sum(1 for r in replaced if r["drain"] != "goaway"),
        "connections_replaced_by": _count(f"{r['side']}: {r['drain']}" for r in replaced),
        "reconnect_p99_s": round(percentile(reconnects, 99), 3) if reconnects else None,
        "http2_drain": http2_drain(replaced),
    }


LONG_LIVED_KEYS = ("rpcs", "rpcs_failed", "stream_messages", "streams_broken", "streams_broken_by", "stream_gap_max_s", "connections_replaced",
                   "connections_goaway", "connections_reset", "connections_replaced_by", "reconnect_p99_s", "http2_drain")


def _hop(detail: str) -> str:
    """The hop a broken stream's message names: the apps that relayed it prefix their service
    names ("orders: payments: cause" -> "orders -> payments"). The run of leading names ends
    at the first part that is no name (gRPC's "rpc error", a port of "dial tcp IP:PORT")."""
    names = []
    for part in (p.strip() for p in detail.split(":")[:-1]):
        if not _NAME.match(part):
            break
        names.append(part)
    return " -> ".join(names) if names else "entry"


_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # a service name: a DNS label that starts with a letter


def _count(keys: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))
