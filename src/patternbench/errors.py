"""Errors that end a command with exit code 2 and one line: bad input or environment."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or a missing prerequisite: the CLI prints the message alone and exits 2."""


class StepFailed(Exception):
    """A named bring-up step failed; carries the step name and where its logs are."""

    def __init__(self, step: str, reason: str, log_hint: str = "") -> None:
        self.step = step
        self.reason = reason
        self.log_hint = log_hint
        super().__init__(f"step {step!r} failed: {reason}")
