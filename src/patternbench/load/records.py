"""What the load process keeps of each answer, and its summaries merged: pure functions,
importable without gevent."""

from __future__ import annotations

import json
from typing import Any


def answer_trail(body: bytes | None) -> dict[str, Any]:
    """Where the request ran, from the app's answer tree: the entry pod and its node, and for
    every service-to-service call the calling pod, the called pod (with their nodes) and the
    response's Via trail. Hops are classified from these names later (measure.py)."""
    try:
        answer = json.loads(body or b"")
    except ValueError:
        return {"entry": None, "calls": []}
    if not isinstance(answer, dict):
        return {"entry": None, "calls": []}
    calls: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        for down in node.get("downstream") or []:
            callee = down.get("answer") if isinstance(down.get("answer"), dict) else None
            calls.append({
                "src": [node.get("pod"), node.get("node")],
                "dst": [callee.get("pod"), callee.get("node")] if callee else None,
                # An ambient call's `tunnel` is its whole path (L4 proxies and waypoint, callee
                # side first like a Via); the waypoint's Via entry is in it too.
                "via": down.get("tunnel") or down.get("via") or "",
                # gRPC calls: the connection that carried the call and the channel's
                # connections that ended since its last call (measure/longlived.py).
                **{k: down[k] for k in ("conn", "ended_conns") if k in down},
            })
            if callee:
                walk(callee)

    walk(answer)
    return {"entry": [answer.get("pod"), answer.get("node")], "calls": calls}


def failure_detail(response: Any, exception: Any) -> str:
    """Why a request failed, briefly: the innermost downstream error of the answer, or the exception."""
    if exception is not None and response is None:
        return str(exception)[:200]
    try:
        answer = json.loads(getattr(response, "content", b"") or b"")
    except ValueError:
        return (getattr(response, "text", "") or str(exception or ""))[:200]
    while isinstance(answer, dict):
        failed = [d for d in answer.get("downstream") or [] if d.get("error") or (d.get("status") or 0) >= 400]
        if not failed:
            break
        down = failed[0]
        if isinstance(down.get("answer"), dict) and not down.get("error"):
            answer = down["answer"]
            continue
        return f"{answer.get('service')} -> {down.get('service')}: {down.get('status')} {down.get('error', '')}"[:200]
    return str(exception or "")[:200]


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several workers: counts and rates add up; latency percentiles cannot be
    merged from percentiles, so they are left to the records (measure.latency_ms); a CPU
    warning in any worker marks the whole run."""
    out: dict[str, Any] = {"mode": parts[0].get("mode"), "workers": len(parts)}
    for key in ("requests", "failures", "due", "offered_rps", "achieved_rps", "avg_rps"):
        if any(key in p for p in parts):
            out[key] = round(sum(float(p.get(key) or 0) for p in parts), 1)
    out["lag_p99_ms"] = max((p.get("lag_p99_ms") or 0.0) for p in parts)
    out["lag_max_ms"] = max((p.get("lag_max_ms") or 0.0) for p in parts)
    out["cpu_warning"] = any(p.get("cpu_warning") for p in parts)
    out["cpu_share"] = [p.get("cpu_share") for p in parts]
    out["duration_s"] = max(float(p.get("duration_s") or 0) for p in parts)
    return out
