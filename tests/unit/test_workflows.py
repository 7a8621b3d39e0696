"""The checked-in workflows are valid and only run commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from patternbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def cli_commands() -> dict[str, set[str]]:
    """Subcommand -> its own subcommands (empty if none), from the real parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = {}
    for name, p in sub.choices.items():
        inner = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        out[name] = set(inner[0].choices) if inner else set()
    return out


def test_nightly_workflow_is_valid_and_complete() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    triggers = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads `on` as true
    assert triggers["schedule"][0]["cron"]
    assert "workflow_dispatch" in triggers
    assert {"kind", "any-cluster"} <= set(doc["jobs"])
    for job in doc["jobs"].values():
        assert job["runs-on"] and job["timeout-minutes"] <= 90
        uses = [s.get("uses", "") for s in job["steps"]]
        assert any(u.startswith("actions/upload-artifact") for u in uses)


def test_every_command_the_workflow_runs_exists() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    commands, targets = cli_commands(), make_targets()
    checked = 0
    for job in doc["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                for part in re.split(r"&&|;|\bthen\b|\belse\b", line):
                    words = shlex.split(part.replace("$(", "(").replace('"', ""), posix=True) if part.strip() else []
                    for i, word in enumerate(words):
                        if word.endswith("bin/patternbench"):
                            sub = words[i + 1]
                            assert sub in commands, f"unknown command: patternbench {sub}"
                            if commands[sub]:
                                assert words[i + 2] in commands[sub], f"unknown: patternbench {sub} {words[i + 2]}"
                            checked += 1
                        if word == "pytest":
                            assert (ROOT / words[i + 1]).is_dir(), f"pytest of a missing path {words[i + 1]}"
                            checked += 1
                        if word == "make":
                            assert words[i + 1] in targets, f"unknown make target {words[i + 1]}"
    assert checked >= 8


def test_make_has_the_promised_targets() -> None:
    assert {"setup", "test", "experiment", "study", "plan", "bench", "clean", "nightly"} <= make_targets()
