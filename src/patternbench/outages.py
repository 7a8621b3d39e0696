"""Outages of a known kind and length, caused by real mechanisms on a plain HTTP server on
127.0.0.1 — the calibration's target when there is no cluster:

- refused: the listener is closed (the kernel answers SYNs with RST) and reopened;
- reset: connections are accepted and reset (SO_LINGER 0) before any answer;
- dropped: an iptables DROP rule for the server's port on the loopback interface (SYNs
  vanish; the client's kernel retransmits after 1 s, then 3 s), always removed again;
- hang: the server holds every request until the outage ends, then answers them all.

`calibrate_local` runs the normal probe stream against it while injecting each outage and
compares injected with measured (calibration.compare).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import re
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from patternbench.calibration import KINDS, PROBE_INTERVAL_S, Comparison, Injection, compare
from patternbench.errors import UsageError
from patternbench.load.probe import probe_once
from patternbench.progress import Progress

IPTABLES_COMMENT = "patternbench-calibrate"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"


_REQUEST_ID = re.compile(rb"(?im)^x-request-id:\s*(\S+)")


@dataclass
class LocalTarget:
    """A small threaded HTTP/1.1 server (keep-alive, GET only) whose availability we control."""

    host: str = "127.0.0.1"
    port: int = 0
    mode: str = "ok"  # ok | reset
    served: int = 0
    # X-Request-Id -> when its answer was written (monotonic): the server's side of a latency.
    answered: dict[str, float] = field(default_factory=dict)
    gate: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LocalTarget:
        self.gate.set()
        self._listen()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4096)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST instead of FIN
            return
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                self.gate.wait()  # a hang holds every request here until it ends
                close = b"connection: close" in head.lower()
                conn.sendall(ANSWER + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
                written = time.monotonic()
                rid = _REQUEST_ID.search(head)
                with self._lock:
                    self.served += 1
                    if rid:
                        self.answered[rid.group(1).decode()] = written
                if close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close_listener(self) -> None:
        """Stop listening: new connections are refused. shutdown() wakes the accept thread."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def reopen_listener(self) -> None:
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        self.gate.set()
        self.close_listener()


# ---- iptables: a DROP rule on one loopback port, never left behind --------------------------


def drop_rule(port: int) -> list[str]:
    """SYNs to 127.0.0.1:`port` vanish: the local target's dropped outage."""
    return ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "DROP", "-m", "comment", "--comment", IPTABLES_COMMENT]


def _iptables(*args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """iptables on this machine, or inside network namespace `netns` (a local node's)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    try:
        return subprocess.run([*prefix, "iptables", "-w", "5", *args], capture_output=True, text=True, timeout=15)
    except FileNotFoundError:
        raise UsageError("the dropped and refused outages need iptables (apt-get install iptables) and root") from None


def sweep_drop_rules(netns: str | None = None) -> int:
    """Remove every calibration rule (a crashed calibration's leftovers) from this machine's
    tables or namespace `netns`'s; how many."""
    removed = 0
    for chain in ("INPUT", "OUTPUT", "FORWARD"):
        for line in _iptables("-S", chain, netns=netns).stdout.splitlines():
            if IPTABLES_COMMENT in line and line.startswith(f"-A {chain}"):
                spec = [s.strip('"') for s in line.split()[1:]]  # drop "-A"
                if _iptables("-D", *spec, netns=netns).returncode == 0:
                    removed += 1
    return removed


@dataclass
class DropWindow:
    """When the rule went in and came out: each moment is known to lie between the monotonic
    times before and after its iptables call."""

    added: tuple[float, float] = (0.0, 0.0)
    removed: tuple[float, float] = (0.0, 0.0)


@contextlib.contextmanager
def rule_in_place(rule: list[str], port: int, netns: str | None = None) -> Iterator[DropWindow]:
    """`rule` (for traffic to `port`) is in place inside the block, on this machine or in a
    local node's network namespace `netns`; it goes whatever happens (finally, and atexit if
    the interpreter is stopped in between). The yielded window is filled in as the rule goes
    in and comes out."""
    if port < 1024 and netns is None:  # in a node's namespace the rule matches one Service address
        raise UsageError(f"refusing to block traffic to a system port ({port})")
    assert IPTABLES_COMMENT in rule, "every calibration rule carries the comment its sweep looks for"
    sweep = functools.partial(sweep_drop_rules, netns)
    before = time.monotonic()
    added = _iptables("-I", *rule, netns=netns)
    after = time.monotonic()
    if added.returncode != 0:
        raise UsageError(f"iptables could not add the calibration rule: {(added.stderr.strip().splitlines() or ['?'])[-1]} (needs root)")
    window = DropWindow(added=(before, after))
    atexit.register(sweep)
    try:
        yield window
    finally:
        before = time.monotonic()
        removed = _iptables("-D", *rule, netns=netns)
        window.removed = (before, time.monotonic())
        if removed.returncode != 0:
            # The rule may still block the entry: sweep every rule of ours, and say so (the
            # measured outage would run on past the injected one).
            sweep()
            atexit.unregister(sweep)
            raise UsageError(f"iptables could not remove the calibration rule: {(removed.stderr.strip().splitlines() or ['?'])[-1]}; every calibration rule was swept")
        atexit.unregister(sweep)


def dropped(port: int) -> contextlib.AbstractContextManager[DropWindow]:
    """SYNs to 127.0.0.1:`port` are dropped inside the block."""
    return rule_in_place(drop_rule(port), port)


@contextlib.contextmanager
def icmp_unlimited(netns: str) -> Iterator[None]:
    """Inside the block, namespace `netns` sends every ICMP error it makes: a REJECT there
    answers each refused probe at once. By default Linux sends a host one destination-
    unreachable per second after a burst of 6 (net.ipv4.icmp_ratelimit, per namespace; loopback
    is exempt, so the host's own rules never met it), and 40 probes a second then waited out
    their SYN's retransmission instead of being refused. The setting is restored after."""
    key = "net.ipv4.icmp_ratelimit"
    read = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-n", key], capture_output=True, text=True, timeout=15)
    if read.returncode != 0:
        raise UsageError(f"cannot read {key} in network namespace {netns}: {read.stderr.strip()}")
    before = read.stdout.strip()
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}=0"], check=True, timeout=15)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={before}"], check=True, timeout=15)


def ruled_outage(kind: str, rule: list[str], port: int, length_s: float, netns: str | None = None) -> Injection:
    """An outage made by an iptables rule held for `length_s`. The rule takes effect somewhere
    inside each iptables call: date each change at its call's midpoint, and keep half the
    calls' durations as the truth's own uncertainty."""
    with rule_in_place(rule, port, netns) as window:
        time.sleep(max(0.0, length_s - (time.monotonic() - sum(window.added) / 2)))
    start, end = sum(window.added) / 2, sum(window.removed) / 2
    uncertainty = (window.added[1] - window.added[0] + window.removed[1] - window.removed[0]) / 2
    return Injection(kind, start, end, uncertainty)


# ---- injecting one outage and the probe stream ------------------------------------------------


def inject(target: LocalTarget, kind: str, length_s: float) -> Injection:
    """Cause one outage of `kind` lasting `length_s` on `target`; when it really began and
    ended (the mechanism's own moments: the listener closed/reopened, the rule in/out, the
    gate shut/opened)."""
    if kind == "refused":
        target.close_listener()
        start = time.monotonic()
        time.sleep(length_s)
        target.reopen_listener()
        return Injection(kind, start, time.monotonic())
    if kind == "reset":
        target.mode = "reset"
        start = time.monotonic()
        time.sleep(length_s)
        target.mode = "ok"
        return Injection(kind, start, time.monotonic())
    if kind == "hang":
        target.gate.clear()
        start = time.monotonic()
        time.sleep(length_s)
        target.gate.set()
        return Injection(kind, start, time.monotonic())
    if kind == "dropped":
        return ruled_outage(kind, drop_rule(target.port), target.port, length_s)
    raise UsageError(f"unknown outage kind {kind!r} (choose from {', '.join(KINDS)})")


@dataclass
class ProbeStream:
    """The probe stream of the load process, in threads: one probe every `interval_s`, each
    on a new connection, whatever the earlier ones are doing."""

    host: str
    port: int
    interval_s: float = PROBE_INTERVAL_S
    timeout_s: float = 2.0
    records: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _one(self) -> None:
        self.records.append(probe_once(self.host, self.port, self.timeout_s))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            t = threading.Thread(target=self._one, daemon=True)
            t.start()
            self._threads.append(t)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> ProbeStream:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=self.timeout_s + 1)


def calibrate_local(
    kinds: list[str], lengths: list[float], slo_ms: float, settle_s: float = 1.5,
    probe_timeout_s: float | None = None, progress: Progress | None = None,
) -> list[Comparison]:
    """Every kind x length against a LocalTarget, one at a time with quiet time between, and
    what the probe stream measured of each. The probe timeout defaults to the load
    process's (2 s), raised to twice the deadline so a timed-out probe always reads as slow."""
    progress = progress or Progress(quiet=True)
    if "dropped" in kinds:
        sweep_drop_rules()
    target = LocalTarget().start()
    rows: list[Comparison] = []
    try:
        timeout_s = probe_timeout_s if probe_timeout_s is not None else max(2.0, 2 * slo_ms / 1000)
        with ProbeStream(target.host, target.port, timeout_s=timeout_s) as stream:
            for kind in kinds:
                for length in lengths:
                    time.sleep(settle_s)
                    injection = inject(target, kind, length)
                    # Wait out the probes sent during the outage (they may take their timeout).
                    time.sleep(stream.timeout_s + settle_s)
                    row = compare(injection, list(stream.records), slo_ms, margin_s=settle_s)
                    progress.say(f"   {kind:<8} {length:5.2f}s -> measured {row.measured_s:6.3f}s ({row.error_ms:+.1f} ms)")
                    rows.append(row)
    finally:
        target.stop()
    return rows
