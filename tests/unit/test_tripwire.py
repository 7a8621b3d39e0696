"""The host tripwire's kernel-log lines, read back as records a probe can be matched to."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from patternbench.observe.host import KernelLog, tripwire_record

NODNAT = ("12,40001,1796314661040,-;pb-tripwire nodnat IN= OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=60 TOS=0x00 PREC=0x00 "
          "TTL=64 ID=64058 DF PROTO=TCP SPT=40004 DPT=32631 WINDOW=65495 RES=0x00 SYN URGP=0 \n")


def test_a_tripwire_line_parses_to_its_time_kind_and_ports():
    assert tripwire_record(NODNAT, "pb-tripwire") == {
        "t": 1796314.66104, "kind": "nodnat", "src": "127.0.0.1", "dst": "127.0.0.1", "proto": "TCP", "sport": 40004, "dport": 32631,
    }


def test_other_kernel_lines_and_continuations_are_not_tripwire_records():
    assert tripwire_record("6,40002,1796314661050,-;pb-cni0: port 3(veth3c4377b2) entered forwarding state\n", "pb-tripwire") is None
    assert tripwire_record(" SUBSYSTEM=net\n", "pb-tripwire") is None
    assert tripwire_record("12,1,2,-;pb-tripwirex nodnat SPT=1 DPT=2\n", "pb-tripwire") is None


def test_the_kernel_log_reads_tripwire_records_until_drained(tmp_path: Path):
    """A FIFO stands in for /dev/kmsg (records per read, EAGAIN when drained)."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    log = KernelLog("pb-tripwire", tmp_path / "tripwire.jsonl", source=fifo).start()
    os.write(writer, NODNAT.encode())
    log.stop()
    os.close(writer)
    rows = (tmp_path / "tripwire.jsonl").read_text().splitlines()
    assert len(rows) == 1 and '"sport": 40004' in rows[0]


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/dev/kmsg", os.W_OK), reason="writing the kernel log needs root")
def test_the_kernel_log_keeps_only_what_was_written_after_it_started(tmp_path: Path):
    tag = f"pb-test{os.getpid()}"
    kmsg = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(kmsg, f"{tag} before SPT=1 DPT=2\n".encode())
        log = KernelLog(tag, tmp_path / "tripwire.jsonl").start()
        os.write(kmsg, f"{tag} after SPT=3 DPT=4\n".encode())
        log.stop()
    finally:
        os.close(kmsg)
    rows = [json.loads(line) for line in (tmp_path / "tripwire.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["sport"], r["dport"]) for r in rows] == [("after", 3, 4)]
    assert abs(rows[0]["t"] - time.monotonic()) < 5  # the probes' clock
