"""Progress output for long steps: one line when a step starts, one when it ends, with its
time; for a run's trials, a live bar in a terminal (tqdm) and plain lines elsewhere (CI)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

from tqdm import tqdm


@dataclass
class Progress:
    """Prints named, timed steps to stderr and remembers their durations."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    durations: dict[str, float] = field(default_factory=dict)
    _bar: Any = None  # the live bar while one is shown: lines are written above it

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
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

    @property
    def live(self) -> bool:
        """A terminal reads this: a live bar fits (CI logs get plain lines instead)."""
        return not self.quiet and hasattr(self.stream, "isatty") and self.stream.isatty()

    @contextmanager
    def bar(self, total: int, what: str) -> Iterator[Any]:
        """A live bar of `total` units in a terminal (None elsewhere); update it with
        `bar.update(1)` and `bar.set_postfix_str(...)`."""
        if not self.live:
            yield None
            return
        self._bar = tqdm(total=total, desc=what, file=self.stream, unit=" trial", dynamic_ncols=True, leave=True)
        try:
            yield self._bar
        finally:
            self._bar.close()
            self._bar = None
