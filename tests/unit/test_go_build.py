"""go_build: a real `go build` of a tiny module, its heartbeat and its one-line failure."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from patternbench.build.go_build import GoBuild, count_compiled, run_go_build
from patternbench.errors import UsageError
from patternbench.progress import Progress

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs go")


def tiny_module(tmp_path: Path, body: str) -> GoBuild:
    src = tmp_path / "src"
    (src / "cmd" / "hello").mkdir(parents=True)
    (src / "go.mod").write_text("module example.local/hello\n\ngo 1.22\n")
    (src / "cmd" / "hello" / "main.go").write_text(body)
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    cmd = ["go", "build", "-o", str(tmp_path / "out") + "/", "./cmd/hello"]
    return GoBuild("hello", cmd, ["./cmd/hello"], src, env, tmp_path / "logs" / "build.log")


def test_a_cold_build_counts_what_it_compiles_and_beats(tmp_path: Path) -> None:
    build = tiny_module(tmp_path, 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n')
    out = io.StringIO()
    run_go_build(build, Progress(stream=out), every_s=0.2)
    assert (tmp_path / "out" / "hello").is_file()
    compiled = count_compiled(build.log)
    # A cold GOCACHE compiles fmt and its dependencies, and the command itself.
    assert compiled > 10
    assert "example.local/hello/cmd/hello" in build.log.read_text()
    text = out.getvalue()
    assert "hello: fetch modules and list packages" in text
    assert "packages compiled of" in text  # at least one heartbeat during a cold std build


def test_a_failed_build_names_the_error_and_the_log(tmp_path: Path) -> None:
    build = tiny_module(tmp_path, "package main\n\nfunc main() { undefinedThing() }\n")
    with pytest.raises(UsageError) as err:
        run_go_build(build, Progress(quiet=True), every_s=60)
    message = str(err.value)
    assert "undefinedThing" in message and str(build.log) in message and "\n" not in message


def test_count_compiled_skips_downloads_and_errors(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    log.write_text("go: downloading x v1\ninternal/abi\nruntime\n# example/x\n./x.go:1:1: bad\n")
    assert count_compiled(log) == 2
    assert count_compiled(tmp_path / "missing.log") == 0
