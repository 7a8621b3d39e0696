"""Evidence this machine holds for a case: each service proxy's and kubelet's log, sliced to
the case, and the entry port's conntrack events (a provider's HostEvidence ability); and the
host's CPU pressure every second (/proc/pressure/cpu), so starvation shows as such; and the
lines the provider's tripwire writes to the kernel log (connections no pod can have seen)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from patternbench.lifeline import die_with_parent
from patternbench.load.conntrack import events_command

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


class MetricsSnapshots:
    """Each Prometheus endpoint read at start and at stop into `<out_dir>/metrics/<name>.
    {start,end}.prom`: a case's share of a counter or a histogram is the difference."""

    def __init__(self, urls: dict[str, str], out_dir: Path) -> None:
        self.urls = urls
        self.out_dir = out_dir / "metrics"

    def _snap(self, suffix: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, url in self.urls.items():
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own proxy's metrics
                    (self.out_dir / f"{name}.{suffix}.prom").write_bytes(answer.read())
            except OSError:
                continue  # missing evidence shows as a missing file

    def start(self) -> MetricsSnapshots:
        self._snap("start")
        return self

    def stop(self) -> None:
        self._snap("end")


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


class PeriodicSampler:
    """Every `interval_s` on a thread of its own, `rows()` appended to `out` as JSON lines,
    until stopped; nothing when `available()` says the source is missing."""

    def __init__(self, out: Path, interval_s: float = 1.0) -> None:
        self.out = out
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def available(self) -> bool:
        return True

    def rows(self) -> list[dict]:
        raise NotImplementedError

    def _run(self) -> None:
        with self.out.open("a", buffering=1) as handle:
            while not self._stop.wait(self.interval_s):
                try:
                    rows = self.rows()
                except OSError:
                    continue  # a source that vanished mid-read (a container that ended): next tick
                for row in rows:
                    handle.write(json.dumps(row) + "\n")

    def start(self) -> PeriodicSampler:
        if self.available():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


PRESSURE_INTERVAL_S = 1.0  # its rows' spacing also shows when the host ran none of the harness
TOP_PROCESSES = 5  # the host's busiest process names kept per pressure row


def cpu_shares(before: Any, after: Any) -> dict[str, float]:
    """The machine's CPU over an interval from two psutil.cpu_times(): the busy share (not
    idle or iowait), the system (kernel) share and the steal share (time the hypervisor ran
    something else: a starved or paused VM)."""
    spent = {f: max(0.0, getattr(after, f, 0.0) - getattr(before, f, 0.0)) for f in after._fields}
    total = sum(spent.values()) or 1.0
    idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
    kernel = spent.get("system", 0.0) + spent.get("irq", 0.0) + spent.get("softirq", 0.0)
    return {"busy": round(1 - idle / total, 4), "system": round(kernel / total, 4), "steal": round(spent.get("steal", 0.0) / total, 4)}


def process_cpu() -> dict[int, tuple[str, float]]:
    """Per process of the host: its name and CPU seconds so far."""
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is not None:
            out[proc.pid] = (proc.info.get("name") or "?", times.user + times.system)
    return out


def busiest(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float, cpus: int, keep: int = TOP_PROCESSES) -> list[list[Any]]:
    """[[process name, share of the machine's CPU]] of the `keep` busiest names over the
    interval, per process by its pid (a kernel worker renames itself with its work); a process
    new in the interval counts all its CPU."""
    used: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent = cpu - before[pid][1] if pid in before else cpu
        if spent > 0:
            used[name] = used.get(name, 0.0) + spent
    top = sorted(used.items(), key=lambda nu: -nu[1])[:keep]
    return [[n, round(u / seconds / cpus, 4)] for n, u in top] if seconds > 0 else []


class PressureSampler(PeriodicSampler):
    """Writes pressure.jsonl: every `interval_s`, the share of it that runnable tasks waited
    for a CPU (`cpu_some`, PSI), the machine's busy, kernel and steal shares, and its busiest
    processes (`top`): what starved the cluster when it was starved. Nothing when the kernel
    has no PSI."""

    def __init__(self, out: Path, interval_s: float = PRESSURE_INTERVAL_S) -> None:
        super().__init__(out, interval_s)
        self._last: tuple[int | None, float] = (read_some_total(), time.monotonic())
        self._cpus = psutil.cpu_count() or 1
        self._times, self._procs = psutil.cpu_times(), process_cpu()

    def available(self) -> bool:
        return self._last[0] is not None

    def rows(self) -> list[dict]:
        (last, last_t), now, now_t = self._last, read_some_total(), time.monotonic()
        if now is None or last is None:
            return []
        times, procs = psutil.cpu_times(), process_cpu()
        row = {"t": now_t, "cpu_some": stall_share(last, now, now_t - last_t), **cpu_shares(self._times, times),
               "top": busiest(self._procs, procs, now_t - last_t, self._cpus)}
        self._last, self._times, self._procs = (now, now_t), times, procs
        return [row]


class ConntrackEvents:
    """Writes conntrack-events.log: the host's `conntrack -E` NEW and DESTROY events for the
    entry port (where each new connection was sent), while the case runs."""

    def __init__(self, port: int, out: Path) -> None:
        self.port = port
        self.out = out
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConntrackEvents:
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


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def container_sched(cgroup: Path) -> dict[str, float]:
    """One container's CPU time so far: on a CPU (`run_ms`) and runnable but waiting for one
    (`wait_ms`), summed over its live tasks' /proc/<pid>/schedstat; and the time its CFS quota
    throttled it (`throttled_ms`, cpu.stat; 0 without a CPU limit)."""
    run = wait = 0
    for pid in _read(cgroup / "tasks").split():
        fields = _read(Path("/proc") / pid / "schedstat").split()
        if len(fields) >= 2:
            run += int(fields[0])
            wait += int(fields[1])
    stat = dict(line.split() for line in _read(cgroup / "cpu.stat").splitlines() if len(line.split()) == 2)
    return {"run_ms": run / 1e6, "wait_ms": wait / 1e6, "throttled_ms": int(stat.get("throttled_time", 0)) / 1e6}


def container_cgroups(root: Path) -> dict[str, Path]:
    """Container id -> its cgroup directory, under a kubelet's cgroupfs root
    (<root>/<node>/kubepods/[<qos>/]pod<uid>/<container id>)."""
    out: dict[str, Path] = {}
    for pod_dir in list(root.glob("*/kubepods/pod*")) + list(root.glob("*/kubepods/*/pod*")):
        try:
            entries = list(pod_dir.iterdir())
        except OSError:
            continue  # the pod's cgroup went between the glob and the read: a pod that ended
        for entry in entries:
            if entry.is_dir() and len(entry.name) == 64:
                out[entry.name] = entry
    return out


class SchedSampler(PeriodicSampler):
    """Writes sched.jsonl: every `interval_s`, each container's cumulative run, run-queue wait
    and throttled time ({"t", "cid", ...}), so starvation of an agent or an app shows."""

    def __init__(self, root: Path, out: Path, interval_s: float = 1.0) -> None:
        super().__init__(out, interval_s)
        self.root = root

    def available(self) -> bool:
        return self.root.is_dir()

    def rows(self) -> list[dict]:
        t = time.monotonic()
        return [{"t": t, "cid": cid, **container_sched(cgroup)} for cid, cgroup in container_cgroups(self.root).items()]


KMSG = Path("/dev/kmsg")
_LOG_FIELD = re.compile(r"\b(SRC|DST|SPT|DPT|PROTO)=(\S+)")


def tripwire_record(kmsg_record: str, prefix: str) -> dict | None:
    """One /dev/kmsg record ("prio,seq,usec,flags;message") of the tripwire -> {t (the
    kernel's monotonic clock, s), kind, src, dst, sport, dport, proto}; None for other lines."""
    head, _, message = kmsg_record.partition(";")
    if not message.startswith(prefix + " "):
        return None
    fields = head.split(",")
    if len(fields) < 3 or not fields[2].isdigit():
        return None
    kind = message[len(prefix) + 1:].split(" ", 1)[0]
    out: dict = {"t": int(fields[2]) / 1e6, "kind": kind}
    for key, value in _LOG_FIELD.findall(message):
        out[key.lower()] = int(value) if key in ("SPT", "DPT") else value
    out["sport"], out["dport"] = out.pop("spt", None), out.pop("dpt", None)
    return out


class KernelLog:
    """Writes tripwire.jsonl: the kernel-log lines of the provider's tripwire written while
    the case ran (read from /dev/kmsg; its clock is the monotonic one the probes use)."""

    def __init__(self, prefix: str, out: Path, source: Path = KMSG) -> None:
        self.prefix = prefix
        self.out = out
        self.source = source
        self._fd: int | None = None

    def start(self) -> KernelLog:
        try:
            self._fd = os.open(self.source, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self._fd = None  # no kernel log here: the evidence is missing, and attribution says so
            return self
        try:
            os.lseek(self._fd, 0, os.SEEK_END)  # /dev/kmsg: from the next record on
        except OSError:
            pass  # not seekable (a pipe): it only holds what is written from now on anyway
        return self

    def stop(self) -> None:
        if self._fd is None:
            return
        rows = []
        try:
            while True:
                try:
                    record = os.read(self._fd, 8192).decode(errors="replace")
                except BlockingIOError:
                    break
                except BrokenPipeError:  # the ring buffer overwrote records before we read them
                    rows.append({"kind": "lost"})
                    continue
                if (row := tripwire_record(record, self.prefix)) is not None:
                    rows.append(row)
        finally:
            os.close(self._fd)
            self._fd = None
        self.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
