"""Copy a run's answer into the README: the verdict section of its report.md and one plot,
between the README's `<!-- answer:start -->` and `<!-- answer:end -->` markers, with the
run's date and the command that made it. Nothing is typed by hand.

usage: python scripts/readme_answer.py RUN_DIR [--readme README.md] [--plot intervals.png]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

START, END = "<!-- answer:start -->", "<!-- answer:end -->"
COMMAND = "make experiment"


def answer_section(report: str) -> list[str]:
    """The report's '## The answer' section, without its heading."""
    lines = report.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## The answer"))
    except StopIteration:
        raise SystemExit("readme_answer: the report has no '## The answer' section (did the run have sidecar and DaemonSet trials?)") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1:end]


def block(run_dir: Path, plot: str, docs: Path) -> list[str]:
    meta = json.loads((run_dir / "run.json").read_text())
    when = dt.datetime.fromtimestamp(meta.get("started_wall", 0), dt.timezone.utc).strftime("%Y-%m-%d")
    took = meta.get("finished_wall", 0) - meta.get("started_wall", 0)
    out = [START, "", f"From `{COMMAND}` on this machine (2 cores), {when}, run `{run_dir.name}`: "
           f"{len(meta.get('cases_planned', []))} cases × {meta.get('repeat', 1)} trials; the trials took {took / 60:.0f} min.",
           *answer_section((run_dir / "report.md").read_text())]
    source = run_dir / plot
    if source.exists():
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, docs / plot)
        out += [f"![{plot}]({docs.name}/{plot})", ""]
    return out + [END]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--plot", default="intervals.png")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if START not in text or END not in text:
        print(f"readme_answer: {args.readme} has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(head + "\n".join(block(args.run_dir, args.plot, args.readme.parent / "docs")) + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
