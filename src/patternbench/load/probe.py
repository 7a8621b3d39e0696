"""One availability probe: a GET on a new connection (Connection: close), timed from the
moment its SYN is sent. Plain http.client, so the load process (gevent-patched) and the
calibration (plain threads) send exactly the same probe.

Each probe also keeps the evidence a failure needs to be explained (attribution.py): its
source port (to find its conntrack entry), how it failed at the socket (`how`: an ICMP
error, i.e. an iptables REJECT such as kube-proxy's "no endpoints" rule, tells itself apart
from a TCP reset by a pod through the socket's error queue, IP_RECVERR), and for a good
answer the pod that gave it."""

from __future__ import annotations

import _socket  # the C module: never gevent-patched, so a non-blocking read stays non-blocking
import errno
import http.client
import json
import os
import socket
import struct
import time
import uuid
from typing import Any, Callable

# <linux/in.h>, <linux/in6.h>, <linux/errqueue.h>
IP_RECVERR, IPV6_RECVERR = 11, 25
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data


def icmp_error(sock: socket.socket) -> dict[str, Any] | None:
    """The ICMP error queued on the socket (type, code, who sent it), or None (a TCP reset
    or a timeout queues none). Never blocks."""
    raw = _socket.socket(sock.family, sock.type, 0, os.dup(sock.fileno()))
    try:
        _data, ancillary, _flags, _addr = raw.recvmsg(64, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except OSError:
        return None
    finally:
        raw.close()
    for _level, _type, data in ancillary:
        if len(data) < _EXTENDED_ERR.size:
            continue
        _errno, origin, icmp_type, icmp_code, *_ = _EXTENDED_ERR.unpack_from(data)
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        sender = ""
        if origin == SO_EE_ORIGIN_ICMP and len(data) >= _EXTENDED_ERR.size + 8:
            sender = socket.inet_ntoa(data[_EXTENDED_ERR.size + 4:_EXTENDED_ERR.size + 8])
        return {"type": icmp_type, "code": icmp_code, "from": sender}
    return None


class TracedConnection(http.client.HTTPConnection):
    """http.client's connection on a socket whose error queue is on; after a failure it
    still knows its source port and what refused it."""

    sport: int = 0
    icmp: dict[str, Any] | None = None
    connected: bool = False
    # Monotonic time just before connect(): when the SYN left (probe_once says why).
    sent_at: float | None = None

    def connect(self) -> None:
        family, kind, proto, _name, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.settimeout(self.timeout)
        self.sock = sock
        try:
            if self.source_address:
                sock.bind(self.source_address)
            self.sent_at = time.monotonic()
            sock.connect(address)
            self.connected = True
        except OSError:
            self.icmp = icmp_error(sock)
            raise
        finally:
            try:
                self.sport = sock.getsockname()[1]
            except OSError:
                pass
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def failure_kind(exc: BaseException, conn: TracedConnection) -> str:
    """How a probe failed at the socket: `icmp-refused` (an ICMP error: an iptables REJECT),
    `rst-refused` (a TCP reset to the SYN: a host or pod with nothing listening),
    `connect-timeout`, `reset` / `closed` / `read-timeout` after connecting, or `other`."""
    if not conn.connected:
        if conn.icmp is not None:
            return "icmp-refused" if isinstance(exc, ConnectionRefusedError) else "icmp-" + type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            return "rst-refused"
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return "connect-timeout"
        return "connect-" + type(exc).__name__
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "read-timeout"
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "reset"
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead, BrokenPipeError)):
        return "closed"
    return "other"


def answering_pod(body: bytes) -> str | None:
    """The entry pod that answered (the app's answer names itself first)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer.get("pod") if isinstance(answer, dict) else None


ANSWER_BYTES = 1000  # of an error answer's body kept in its record


def probe_once(
    host: str, port: int, timeout_s: float, path: str = "/",
    on_connect_failure: Callable[[int], dict[str, Any]] | None = None, source_port: int = 0,
) -> dict[str, Any]:
    """A probe record: `t` monotonic time its SYN was sent, `ms` from then until the answer
    (or the failure), status, error, `sport`, `queued_ms` (the harness's own delay between
    starting the probe and sending it: not the service's time, so not in `ms`; dated by its
    start, a probe sent after the next one reorders the stream around an outage's edge and
    splits it in two, as 4 of 30 drops on a loaded machine did), `asked_ms`
    once connected (from the SYN to sending the request: the handshake, plus any wait for
    the GIL or the hub); `pod` for an answer, `answer` (its body's first ANSWER_BYTES) for an error status, `how` (failure_kind) and `icmp` for a failure.
    `on_connect_failure(sport)` adds evidence to the record of a probe that could not connect
    (after it is timed). `source_port` pins the source port (the kernel picks one by default)."""
    start, wall = time.monotonic(), time.time()
    status, error = 0, ""
    extra: dict[str, Any] = {}
    conn = TracedConnection(host, port, timeout=timeout_s, source_address=("", source_port) if source_port else None)
    asked: float | None = None
    try:
        conn.connect()
        asked = time.monotonic()
        conn.request("GET", path, headers={"X-Request-Id": "probe-" + uuid.uuid4().hex[:10], "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        status = resp.status
        extra["pod"] = answering_pod(body)
        if status != 200:
            error = f"HTTP{status}"
            # The error answer's own words (the app's JSON names the hop that failed and why;
            # a proxy's text its error): without them a 502 can be charged but not explained.
            extra["answer"] = body[:ANSWER_BYTES].decode("utf-8", errors="replace")
    except Exception as exc:  # noqa: BLE001 - every failure is a data point
        error = type(exc).__name__
        extra["how"] = failure_kind(exc, conn)
        if conn.icmp is not None:
            extra["icmp"] = conn.icmp
    finally:
        conn.close()
    done = time.monotonic()
    sent = conn.sent_at if conn.sent_at is not None else start
    ms = round((done - sent) * 1000, 3)
    if on_connect_failure is not None and error and not conn.connected and conn.sport:
        extra.update(on_connect_failure(conn.sport))
    return {
        "kind": "probe", "t": sent, "wall": wall + (sent - start), "ms": ms, "queued_ms": round((sent - start) * 1000, 3),
        **({"asked_ms": round((asked - sent) * 1000, 3)} if asked is not None else {}),
        "status": status, "error": error, "sport": conn.sport, **extra,
    }
