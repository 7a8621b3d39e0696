"""Child processes that die with the orchestrator: a `kill -9` of `patternbench run` must not
leave its load generator sending requests and appending records for an hour.

Two mechanisms, because each alone has a gap: the kernel's parent-death signal (prctl
PR_SET_PDEATHSIG) fires when the thread that forked the child exits, and the child's own
check that its parent is still the one it was born to covers a fork from a thread that is
long gone.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For subprocess.Popen(preexec_fn=...): SIGKILL this child when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ParentWatch:
    """In the child: whether the parent it started under is gone (it was re-parented)."""

    def __init__(self) -> None:
        self.parent = os.getppid()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent
