"""The collector distributions and configs as files: one release per build, configs that
name only what the distributions compile in, a build key that follows the sources."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from patternbench.build.images import OTELCOL_AGENT_DIR, OTELCOL_DIR, OTELCOL_RELEASES, otelcol_source_key


def _requires(release: str) -> dict[str, str]:
    text = (OTELCOL_DIR / release / "go.mod").read_text()
    return dict(re.findall(r"^\s*(\S+) (v\S+?)(?: // indirect)?$", text, re.M))


@pytest.mark.parametrize("release", sorted(OTELCOL_RELEASES.values()))
def test_every_collector_module_at_one_release(release: str) -> None:
    minor = release.split(".")[1]  # v0.165.1 -> 165
    reqs = _requires(release)
    core = {m: v for m, v in reqs.items() if m.startswith("go.opentelemetry.io/collector")}
    contrib = {m: v for m, v in reqs.items() if m.startswith("github.com/open-telemetry/opentelemetry-collector-contrib/")}
    assert core and contrib
    unstable = {v for v in core.values() if v.startswith("v0.")}
    stable = {v for v in core.values() if v.startswith("v1.")}
    assert unstable == {f"v0.{minor}.0"}, unstable
    assert len(stable) == 1, stable  # v1.x modules: one release too
    assert set(contrib.values()) == {release}, contrib  # the distribution is named after its contrib release
    main = (OTELCOL_DIR / release / "main.go").read_text()
    assert f'const release = "{release[1:]}"' in main


def test_the_two_images_are_two_releases() -> None:
    assert OTELCOL_RELEASES["v1"] < OTELCOL_RELEASES["v2"]
    filelog = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver"
    assert _requires(OTELCOL_RELEASES["v1"])[filelog] != _requires(OTELCOL_RELEASES["v2"])[filelog]


@pytest.mark.parametrize("name", ["config-sidecar.yaml", "config-node.yaml"])
def test_configs_name_only_compiled_components(name: str) -> None:
    config = yaml.safe_load((OTELCOL_AGENT_DIR / name).read_text())
    compiled = {"filelog", "otlphttp", "debug", "batch", "file_storage", "health_check"}
    used = set(config["receivers"]) | set(config["exporters"]) | set(config["extensions"]) | set(config.get("processors") or {})
    assert used <= compiled, used - compiled
    pipeline = config["service"]["pipelines"]["logs"]
    assert pipeline["receivers"] == ["filelog"] and pipeline["exporters"] == ["otlphttp"]
    # Offsets survive a restart, and nothing is acknowledged before the sink has it.
    filelog = config["receivers"]["filelog"]
    assert filelog["storage"] == "file_storage" and filelog["start_at"] == "beginning"
    assert "processors" not in pipeline
    assert config["exporters"]["otlphttp"]["sending_queue"] == {"enabled": False}
    assert config["exporters"]["otlphttp"]["logs_endpoint"] == "${env:SINK_OTLP_URL}"
    if name == "config-node.yaml":
        assert [op["type"] for op in filelog["operators"]] == ["container"]
        assert filelog["include_file_path"] is True


def test_source_key_follows_the_sources(tmp_path: Path) -> None:
    release = OTELCOL_DIR / OTELCOL_RELEASES["v1"]
    copy = tmp_path / "dist"
    shutil.copytree(release, copy)
    key = otelcol_source_key(copy)
    assert key == otelcol_source_key(release)
    (copy / "README.md").write_text("not a source")
    assert otelcol_source_key(copy) == key
    (copy / "main.go").write_text((copy / "main.go").read_text() + "\n// changed\n")
    assert otelcol_source_key(copy) != key
