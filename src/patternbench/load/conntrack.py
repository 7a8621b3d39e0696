"""The host's conntrack, read for evidence: where the kernel sent a connection (the DNAT
target is the reply tuple's source) and when that binding was made. Two sources: a refused
probe's own entry, looked up right after the refusal (an entry that outlives the refusal is
an older binding: a fresh one answered only by a reset is deleted at once), and the
`conntrack -E` event stream of the entry port (NEW: a binding made, with its target)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

_FIELD = re.compile(r"\b(src|dst|sport|dport)=(\S+)")
_STAMP = re.compile(r"^\[(\d+\.\d+)\]\s*")
_EVENT = re.compile(r"^\[(NEW|UPDATE|DESTROY)\]\s*")
_STATES = {"SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}


def parse_line(line: str) -> dict[str, Any] | None:
    """One line of `conntrack -L` or `conntrack -E -o timestamp` -> {state, orig: {src, dst,
    sport, dport}, reply: {...}} plus `event` and `wall` for an event; the first four
    address fields are the original direction, the next four the reply."""
    out: dict[str, Any] = {}
    rest = line.strip()
    if m := _STAMP.match(rest):
        out["wall"] = float(m.group(1))
        rest = rest[m.end():]
    if m := _EVENT.match(rest):
        out["event"] = m.group(1)
        rest = rest[m.end():]
    words = rest.split()
    if not words or words[0] != "tcp":
        return None
    fields = _FIELD.findall(rest)
    if len(fields) < 8:
        return None
    out["state"] = next((w for w in words[2:5] if w in _STATES), "")

    def tuple_of(pairs: list[tuple[str, str]]) -> dict[str, Any]:
        t: dict[str, Any] = dict(pairs)
        t["sport"], t["dport"] = int(t["sport"]), int(t["dport"])
        return t

    out["orig"], out["reply"] = tuple_of(fields[:4]), tuple_of(fields[4:8])
    return out


def lookup(sport: int, dport: int, timeout_s: float = 2.0) -> dict[str, Any]:
    """The entries for one source port to one destination port, as evidence on a probe
    record: {"conntrack": [entries]} or {"conntrack_error": why}."""
    cmd = ["conntrack", "-L", "-p", "tcp", "--orig-port-src", str(sport), "--orig-port-dst", str(dport)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"conntrack_error": str(exc)[:120]}
    if done.returncode != 0:
        return {"conntrack_error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:120]}
    return {"conntrack": [e for e in (parse_line(line) for line in done.stdout.splitlines()) if e is not None]}


def forget_unnated(host: str, dport: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Delete the bindings to host:dport that carry no DNAT (the reply comes from the address
    the connection was sent to), and return them (`conntrack -D` prints what it deleted).

    A connection the Service rejected (kube-proxy's REJECT while it had no endpoint, e.g. the
    readiness poll before kube-proxy programmed a new Service) leaves an entry in SYN_SENT,
    unreplied and not NATed, for conntrack's SYN_SENT timeout (120 s): the ICMP error does not
    end it. A later connection from the same source port matches that entry, keeps its "no
    NAT" decision and is refused by the host itself (kubernetes/kubernetes#48719; kube-proxy's
    conntrack reconciler cleans up UDP only)."""
    cmd = ["conntrack", "-D", "-p", "tcp", "--orig-dst", host, "--orig-port-dst", str(dport), "--reply-src", host]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    return [e for e in (parse_line(line) for line in done.stdout.splitlines()) if e is not None]


def events_command(dport: int) -> list[str]:
    """`conntrack -E` for new and ended bindings to one port, stamped with the wall clock."""
    return ["conntrack", "-E", "-p", "tcp", "--orig-port-dst", str(dport), "-e", "NEW,DESTROY", "-o", "timestamp"]


def bindings(lines: list[str]) -> dict[int, list[dict[str, Any]]]:
    """NEW events by source port, in order: which target each new connection was sent to."""
    out: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        e = parse_line(line)
        if e is not None and e.get("event") == "NEW":
            out.setdefault(e["orig"]["sport"], []).append(e)
    return out
