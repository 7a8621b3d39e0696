"""Evidence this machine holds for a case: each service proxy's and kubelet's log, sliced to
the case, and the entry port's conntrack events (a provider's HostEvidence ability); and the
host's CPU pressure every second (/proc/pressure/cpu), so starvation shows as such."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

PRESSURE = Path("/proc/pressure/cpu")


class LogSlices:
    """Remembers where each log ends at start; at stop copies what was written since into
    `<out_dir>/logs/<name>.log`."""

    def __init__(self, logs: dict[str, Path], out_dir: Path) -> None:
        self.logs = logs
        self.out_dir = out_dir / "logs"
        self.offsets: dict[str, int] = {}

    def start(self) -> LogSlices:
        for name, path in self.logs.items():
            self.offsets[name] = path.stat().st_size if path.exists() else 0
        return self

    def stop(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, path in self.logs.items():
            if not path.exists():
                continue
            with path.open("rb") as src:
                offset = self.offsets.get(name, 0)
                src.seek(offset if offset <= path.stat().st_size else 0)  # a restarted daemon's log starts over
                (self.out_dir / f"{name}.log").write_bytes(src.read())


def stall_share(before: int, after: int, seconds: float) -> float:
    """The share of a wall-clock interval during which some runnable task waited for a CPU
    (PSI's `some` total is in microseconds)."""
    return round(max(0, after - before) / 1e6 / seconds, 4) if seconds > 0 else 0.0


def read_some_total(path: Path = PRESSURE) -> int | None:
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(part.split("=", 1) for part in first.split()[1:])
    return int(fields["total"])


class PressureSampler:
    """Writes pressure.jsonl: every `interval_s`, the share of it that runnable tasks waited
    for a CPU ({"t", "cpu_some"}). Nothing when the kernel has no PSI."""

    def __init__(self, out: Path, interval_s: float = 1.0) -> None:
        self.out = out
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        last, last_t = read_some_total(), time.monotonic()
        with self.out.open("a", buffering=1) as handle:
            while last is not None and not self._stop.wait(self.interval_s):
                now, now_t = read_some_total(), time.monotonic()
                if now is None:
                    return
                handle.write(json.dumps({"t": now_t, "cpu_some": stall_share(last, now, now_t - last_t)}) + "\n")
                last, last_t = now, now_t

    def start(self) -> PressureSampler:
        if PRESSURE.exists():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ConntrackEvents:
    """Writes conntrack-events.log: the host's `conntrack -E` NEW and DESTROY events for the
    entry port (where each new connection was sent), while the case runs."""

    def __init__(self, port: int, out: Path) -> None:
        self.port = port
        self.out = out
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConntrackEvents:
        from patternbench.lifeline import die_with_parent
        from patternbench.load.conntrack import events_command

        handle = self.out.open("ab")
        try:
            self._proc = subprocess.Popen(events_command(self.port), stdout=handle, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        except OSError:
            self._proc = None  # no conntrack tool: the evidence is missing, and attribution says so
        finally:
            handle.close()
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
