"""What the load process keeps of each answer: pure functions, importable without gevent."""

from __future__ import annotations

import json
from typing import Any


def hop_trail(body: bytes | None) -> list[str]:
    """Every Via entry of every call in the app's answer tree (which proxies served it)."""
    try:
        answer = json.loads(body or b"")
    except ValueError:
        return []
    trail: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        for down in node.get("downstream") or []:
            # "1.1 node/n1, 1.1 node/n2" -> ["node/n1", "node/n2"]
            trail.extend(part.split()[-1] for part in (down.get("via") or "").split(",") if part.strip())
            if isinstance(down.get("answer"), dict):
                walk(down["answer"])

    if isinstance(answer, dict):
        walk(answer)
    return trail


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
