"""Progress output for long steps: one line when a step starts, one when it ends, with its time."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, TextIO


@dataclass
class Progress:
    """Prints named, timed steps to stderr and remembers their durations."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    durations: dict[str, float] = field(default_factory=dict)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f" • {name} ...")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.say(f" ✗ {name} ({time.monotonic() - start:.1f}s)")
            raise
        elapsed = time.monotonic() - start
        self.durations[name] = elapsed
        self.say(f" ✓ {name} ({elapsed:.1f}s)")
