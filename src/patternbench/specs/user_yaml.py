"""The YAML files users hand the harness (topologies, agent files), read one way: at most
MAX_BYTES, UTF-8, no anchors or aliases (a 700-byte alias bomb expands to ~10^9 items when
anything walks it), yaml.safe_load. Every problem is one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from patternbench.errors import UsageError

MAX_BYTES = 1 << 20  # a topology of 200 services is ~20 KB; /dev/zero is refused, not read


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a document's size is what it reads."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"an alias (*{self.peek_event().anchor}) at line {mark.line + 1}: anchors and aliases are not accepted")
        return super().compose_node(parent, index)


def read_text(path: Path, what: str) -> str:
    """The file's text, at most MAX_BYTES of UTF-8."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{what} {path}: larger than {MAX_BYTES // 1024} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def load(path: Path, what: str) -> Any:
    """The file's YAML document, checked as above."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what} {path}: not valid YAML{at} ({detail})") from None
