"""The report's opening: the article's question answered in a few lines. For each claim, the
figures that answer it, sidecar against DaemonSet per agent, with the difference of their
medians and its 95 % interval; which pattern wins, by how much, only where the interval
excludes zero; and every claim that did not hold, with its causes."""

from __future__ import annotations

from typing import Any

from patternbench.results.report_format import fmt
from patternbench.specs.figures import CLAIMS, answering

Summary = dict[str, Any]


def _verdict(row: dict[str, Any], unit: str) -> str:
    """Who wins on this figure (lower is better for every figure that answers a claim)."""
    if row["excludes_zero"] is None:
        return "one trial each: no interval (run with --repeat 3)"
    if not row["excludes_zero"]:
        return "no difference shown"
    winner = "DaemonSet" if row["difference"] > 0 else "sidecar"
    return f"**{winner}**, lower by {fmt(abs(row['difference']))} {unit}"


def answer_text(summary: Summary) -> list[str]:
    """The verdict table and the claims that failed; empty without a sidecar and a DaemonSet case side by side."""
    rows = {(r["metric"], r["a"]): r for r in summary.get("differences") or [] if not summary["cases"].get(r["a"], {}).get("naive")}
    if not rows:
        return []
    cases = summary["cases"]
    out = [
        "## The answer: sidecar or DaemonSet", "",
        "Per claim, each agent's sidecar case against its DaemonSet case: the medians over the trials, their difference "
        "(sidecar − DaemonSet) with its 95 % bootstrap interval, and the winner where the interval excludes zero "
        "(lower is better for every figure here).", "",
        "| claim | figure | sidecar case | sidecar | DaemonSet | difference [95 %] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for claim, title in CLAIMS.items():
        for figure in answering(claim):
            for (metric, a), r in rows.items():
                if metric != figure.name:
                    continue
                ci = f" [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]" if r["ci95"] else ""
                out.append(
                    f"| {title.split(':')[0]} | {figure.name} ({figure.unit}) | {a} | {fmt(figure.of(cases[a]))} | {fmt(figure.of(cases[r['b']]))} "
                    f"| {fmt(r['difference'])}{ci} | {_verdict(r, figure.unit)} |"
                )
    failed = summary.get("failed_claims") or {}
    out += [""]
    if failed:
        out += [f"Claims that did not hold ({len(failed)} cases; causes under *Claims checked*):", ""]
        out += [f"- {case}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") for case, problems in failed.items()]
    else:
        out += ["Every asserted claim held in every case."]
    return out + [""]
