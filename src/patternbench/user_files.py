"""Files users hand the harness, read one way: bounded in size (/dev/zero is refused, not read
into memory: it once took 23 GB and the OOM killer took the cluster's pods), UTF-8, and for
YAML (topologies, agent files) no anchors or aliases (a few hundred bytes of aliases expand
to ~10^9 items when anything walks them), for JSON (summaries, baselines) an object. Every
problem is one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from patternbench.errors import UsageError

MAX_BYTES = 1 << 20  # YAML: a topology of 200 services is ~20 KB
MAX_JSON_BYTES = 64 << 20  # a summary of hundreds of trials is a few MB


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a document's size is what it reads."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"an alias (*{self.peek_event().anchor}) at line {mark.line + 1}: anchors and aliases are not accepted")
        return super().compose_node(parent, index)


def read_bounded(path: Path, what: str, most: int) -> bytes:
    """At most `most` bytes of the file; one line if it cannot be read or is larger."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(most + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path} ({exc.strerror})") from None
    if len(raw) > most:
        raise UsageError(f"{what} {path} is larger than {most // 1024} KiB")
    return raw


def read_text(path: Path, what: str) -> str:
    """The file's text, at most MAX_BYTES of UTF-8."""
    raw = read_bounded(path, what, MAX_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object, at most MAX_JSON_BYTES."""
    try:
        doc = json.loads(read_bounded(path, what, MAX_JSON_BYTES))
    except ValueError:
        raise UsageError(f"{what} {path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{what} {path} holds a JSON {type(doc).__name__}, not an object")
    return doc


def load_yaml(path: Path, what: str) -> Any:
    """The file's YAML document, checked as above."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what} {path}: not valid YAML{at} ({detail})") from None
