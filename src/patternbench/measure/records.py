"""A record is one line of a case's JSONL files (a request, a pod event, a sample)."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def ok(record: Record) -> bool:
    return not record.get("error") and 200 <= int(record.get("status") or 0) < 400


def in_window(records: list[Record], start: float, end: float) -> list[Record]:
    return [r for r in records if start <= r["t"] < end]
