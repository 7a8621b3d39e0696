"""`make bench`: benchmarks that print numbers and merge them into results/bench.json.

Each figure is the median of several runs of the real command, min and max printed beside
it, because this machine is noisy. Other parts of patternbench add their own keys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from patternbench.errors import UsageError


def timed(cmd: list[str]) -> float:
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise UsageError(f"{' '.join(cmd)} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return elapsed


def bench_cluster(runs: int) -> dict[str, float]:
    """Warm-cache `cluster up` (command start to node Ready and CoreDNS Ready) and `cluster down`."""
    pb = [sys.executable, "-m", "patternbench.cli"]
    subprocess.run([*pb, "cluster", "down"], capture_output=True)
    ups, downs = [], []
    for i in range(runs):
        ups.append(timed([*pb, "cluster", "up"]))
        downs.append(timed([*pb, "cluster", "down"]))
        print(f"  run {i + 1}/{runs}: cluster up {ups[-1]:.1f}s, down {downs[-1]:.1f}s", flush=True)
    return {
        "cluster_up_s": round(statistics.median(ups), 2),
        "cluster_up_s_min": round(min(ups), 2),
        "cluster_up_s_max": round(max(ups), 2),
        "cluster_down_s": round(statistics.median(downs), 2),
        "cluster_down_s_max": round(max(downs), 2),
    }


def bench_proxy(runs: int) -> dict[str, float]:
    """The mesh proxy's cost per hop, direct vs through a two-proxy chain, side by side in
    one run (cmd/proxybench), and every image's size."""
    from patternbench.components import cache_root
    from patternbench.images import build_data_plane, build_go_binaries

    bin_dir = cache_root() / "images" / "bench" / "bin"
    build_go_binaries(("app", "meshproxy", "proxybench"), "bench", bin_dir)
    result = subprocess.run(
        [str(bin_dir / "proxybench"), "-bin", str(bin_dir), "-rounds", str(max(runs, 1)), "-seconds", "5"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise UsageError(f"proxybench failed: {result.stderr.strip()[-300:]}")
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in json.loads(result.stdout).items()}
    for archive in build_data_plane():
        name = archive.ref.rsplit("/", 1)[-1].replace(":", "_").replace("-", "_")
        figures[f"image_size_mib_{name}"] = round(archive.size_mib, 2)
    return figures


BENCHES: dict[str, Callable[[int], dict[str, float]]] = {"cluster": bench_cluster, "proxy": bench_proxy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patternbench-bench")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args(argv)
    out = args.results / "bench.json"
    try:
        args.results.mkdir(parents=True, exist_ok=True)
        figures = json.loads(out.read_text()) if out.exists() else {}
        for name in args.only or sorted(BENCHES):
            print(f"bench {name} ({args.runs} runs)", flush=True)
            new = BENCHES[name](args.runs)
            figures.update(new)
            for key, value in new.items():
                print(f"  {key:<28} {value}")
        out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    except UsageError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
