"""The README's answer is copied from a run's report by a script, not typed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("readme_answer", REPO / "scripts" / "readme_answer.py")
readme_answer = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(readme_answer)  # type: ignore[union-attr]


def test_the_answer_block_is_replaced_from_the_report(tmp_path: Path) -> None:
    run = tmp_path / "pb-261203-100000-abcd"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"started_wall": 1796300000, "finished_wall": 1796300840, "cases_planned": ["a", "b"], "repeat": 3}))
    (run / "report.md").write_text("# r\n\n## The answer: sidecar or DaemonSet\n\n| claim |\n|---|\n| Resources |\n\n## Side by side\n\nlong tables\n")
    (run / "intervals.png").write_bytes(b"png")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- answer:start -->\nold\n<!-- answer:end -->\nrest\n")
    assert readme_answer.main([str(run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| Resources |" in text and "long tables" not in text
    assert "2 cases × 3 trials; the trials took 14 min" in text and "![intervals.png](docs/intervals.png)" in text and text.endswith("rest\n")
    assert (tmp_path / "docs" / "intervals.png").read_bytes() == b"png"
