"""`go build` with progress: a cold build of Kubernetes or the collector takes minutes, and
one line for all of them leaves a user guessing whether it hangs. `go list -deps` says how
many packages the build needs (and downloads the modules first: its own step), `go build -v`
names each package as it compiles it, and a heartbeat counts them every `every_s` seconds."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from patternbench.errors import UsageError
from patternbench.progress import Progress

HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class GoBuild:
    """One `go build` of `packages` in `cwd`; `what` names it in progress lines and errors."""

    what: str
    cmd: list[str]  # the `go build ...` command, without -v
    packages: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path


def count_compiled(log: Path) -> int:
    """Packages `go build -v` has named so far (one per line; other lines are errors)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if line and " " not in line and not line.startswith("#"))


def needed_packages(build: GoBuild, progress: Progress) -> int | None:
    """How many packages the build depends on (the standard library's included); downloads
    the modules it needs. None when `go list` cannot tell (the build then says why)."""
    with progress.step(f"{build.what}: fetch modules and list packages"):
        result = subprocess.run(["go", "list", "-deps", *build.packages], cwd=build.cwd, env=build.env, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return len(result.stdout.split())


def run_go_build(build: GoBuild, progress: Progress, every_s: float = HEARTBEAT_S) -> None:
    """Run the build, its output into `build.log`; a heartbeat line every `every_s` seconds
    while it compiles; a one-line UsageError naming the log when it fails."""
    total = needed_packages(build, progress)
    build.log.parent.mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    started = time.monotonic()

    def heartbeat() -> None:
        while not done.wait(every_s):
            compiled = count_compiled(build.log)
            of = f" of {total} needed" if total else ""
            progress.say(f"   {build.what}: {compiled} packages compiled{of} (cached ones are not counted), {time.monotonic() - started:.0f}s")

    beat = threading.Thread(target=heartbeat, name="go-build-heartbeat", daemon=True)
    with build.log.open("w") as handle:
        beat.start()
        try:
            result = subprocess.run([*build.cmd[:2], "-v", *build.cmd[2:]], cwd=build.cwd, env=build.env, stdout=handle, stderr=subprocess.STDOUT)
        finally:
            done.set()
            beat.join()
    if result.returncode != 0:
        lines = [line for line in build.log.read_text(errors="replace").splitlines() if " " in line or line.startswith("#")]
        raise UsageError(f"building {build.what} failed: {(lines or ['(no output)'])[-1]} (full log: {build.log})")
