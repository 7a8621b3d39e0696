"""What the in-cluster load pods (incluster.py) and the harness (cluster_load.py) agree on:
ports and the records endpoint's reading rule. Free of gevent and of the Kubernetes client,
so each side imports it without the other's baggage (incluster patches the whole process
for gevent the moment it is imported)."""

from __future__ import annotations

CONTROL_PORT = 8090  # /records/<offset>, /clock, /state, /stop
MASTER_PORT = 5557  # Locust's master (zmq)
PULL_BYTES = 4 << 20  # at most this much per /records read
RECORDS_FILE = "requests.jsonl"


def read_lines(path: str, offset: int, limit: int = PULL_BYTES) -> bytes:
    """The file's bytes from `offset` up to its last complete line (a line being written is
    left for the next read); nothing for a file not yet made."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return b""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""
