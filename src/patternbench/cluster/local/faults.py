"""Fault mechanisms of the local provider: real signals to real processes.

A container's process is found through its node's containerd (the shim's `init.pid`); the
API server is one of our own daemons. Every fault hands back an undo that is safe to call
twice and never signals a process that is no longer the one it froze (pids are recycled).
"""

from __future__ import annotations

import os
import signal
from typing import Callable

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from patternbench.cluster.local.processes import Daemon, ProcessRef
from patternbench.cluster.local.settings import LocalSettings
from patternbench.cluster.provider import ContainerRef
from patternbench.errors import UsageError

TASKS_DIR = "io.containerd.runtime.v2.task/k8s.io"


def container_pid(s: LocalSettings, target: ContainerRef) -> int:
    """The container's main process on the host, from its node's containerd shim."""
    node = s.node(target.node)
    container_id = target.container_id.split("://", 1)[-1]
    pid_file = node.containerd_state / TASKS_DIR / container_id / "init.pid"
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        raise UsageError(f"no running process for {target.namespace}/{target.pod}/{target.container} on {target.node} ({pid_file})") from None


def kill_container(s: LocalSettings, target: ContainerRef) -> None:
    os.kill(container_pid(s, target), signal.SIGKILL)


def freeze_container(s: LocalSettings, target: ContainerRef) -> Callable[[], None]:
    """SIGSTOP the container's process: alive, holding its sockets, answering nothing."""
    pid = container_pid(s, target)
    ref = ProcessRef.of(pid)
    if ref is None:
        raise UsageError(f"{target.pod}/{target.container} exited before it could be frozen")
    os.kill(pid, signal.SIGSTOP)

    def undo() -> None:
        if ref.alive():  # a liveness probe may have had it killed and restarted meanwhile
            os.kill(ref.pid, signal.SIGCONT)

    return undo


def stop_apiserver(s: LocalSettings, daemon: Daemon, restart: Callable[[], None]) -> Callable[[], None]:
    """Stop the API server as a crash would (SIGKILL: a graceful stop waits a minute for its
    watches to drain, serving nothing meanwhile) and wait until it is gone; the undo starts it
    again with the same flags and waits until it is ready."""
    pid = daemon.pid()
    ref = ProcessRef.of(pid) if pid is not None else None
    if ref is None:
        raise UsageError("the local API server is not running")
    os.kill(ref.pid, signal.SIGKILL)
    Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.02), retry=retry_if_result(lambda alive: alive))(ref.alive)
    done = {"restarted": False}

    def undo() -> None:
        if not done["restarted"]:
            done["restarted"] = True
            restart()

    return undo
