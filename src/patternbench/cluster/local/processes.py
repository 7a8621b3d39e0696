"""Host processes of the local cluster: start detached with a pid file and a log, find, stop.

Processes outlive the `patternbench cluster up` command (each in its own session), so every
one is found again by pid file, and as a fallback by what its command line names. A pid file
holds the pid and the process's start time: a pid the kernel gave to another process since
(pids wrap within minutes on a busy machine) has another start time, and is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    cmdline: tuple[str, ...]


def read_proc(pid: int) -> ProcInfo | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in stat may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return ProcInfo(pid=pid, ppid=int(fields[1]), cmdline=tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a))


@dataclass(frozen=True)
class ProcessRef:
    """A pid with its start time: the same pid with another start time is another process."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return cls(pid, int(fields[19]))

    @classmethod
    def parse(cls, text: str) -> ProcessRef | None:
        """A pid file's "PID START_TICKS"; None for anything else (an old pid file without
        the start time identifies nothing)."""
        parts = text.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        return cls(int(parts[0]), int(parts[1]))

    def alive(self) -> bool:
        now = ProcessRef.of(self.pid)
        return now is not None and now.start_ticks == self.start_ticks and read_proc(self.pid) is not None


def all_processes() -> list[ProcInfo]:
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_proc(int(entry))
            if info is not None and info.cmdline:
                procs.append(info)
    return procs


def descendants(roots: set[int], procs: list[ProcInfo]) -> set[int]:
    """Every process under `roots` in the parent tree (roots included)."""
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def matching(procs: list[ProcInfo], needles: tuple[str, ...]) -> set[int]:
    """Processes whose command line mentions any of `needles` (our dirs, our socket)."""
    me = os.getpid()
    return {p.pid for p in procs if p.pid != me and any(n in arg for arg in p.cmdline for n in needles)}


@dataclass
class Daemon:
    """One component process: its command, log file and pid file. `enter` is a prefix that
    execs the command inside a node's namespaces (nsenter): the pid stays the program's."""

    name: str
    argv: list[str]
    log_path: Path
    pid_path: Path
    enter: list[str] = field(default_factory=list)
    node: str = ""  # the node it belongs to; "" for the host's daemons
    proc: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> str:
        """Unique among a cluster's daemons: `etcd`, `pb-node-2/kubelet`."""
        return f"{self.node}/{self.name}" if self.node else self.name

    def start(self, env: dict[str, str] | None = None) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*self.enter, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
        self.proc = proc
        ref = ProcessRef.of(proc.pid)  # the child exists from the fork on: its start time is fixed
        self.pid_path.write_text(f"{proc.pid} {ref.start_ticks if ref else 0}")
        return proc.pid

    def pid(self) -> int | None:
        if self.proc is not None:
            # Started by this process: poll() is exact, and right after fork /proc still
            # shows our own command line, so the check below would race.
            return self.proc.pid if self.proc.poll() is None else None
        ref = self.recorded()
        # A recycled pid belongs to someone else: its start time differs from the one recorded.
        return ref.pid if ref is not None and ref.alive() else None

    def recorded(self) -> ProcessRef | None:
        """What the pid file says (None: no file, or one without a start time)."""
        try:
            return ProcessRef.parse(self.pid_path.read_text())
        except OSError:
            return None

    def running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])


def kill_all(pids: set[int], grace_s: float = 3.0) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL whatever is left; waits until all are gone."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = {p for p in pids if read_proc(p) is not None}
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap_children()
            if all(read_proc(p) is None for p in alive):
                return
            time.sleep(0.05)


def _reap_children() -> None:
    """Collect our own exited children, so a process we started in this run is not a zombie."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
