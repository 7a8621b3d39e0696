"""What the load process keeps of each answer: pure functions, importable without gevent."""

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
