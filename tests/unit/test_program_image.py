"""Images of packaged programs (issue 25): the binary and the libraries the loader maps for
it, an image config with the program's stop signal, the same digest for the same inputs;
and the HAProxy agent file rendered for a run (its config valid for HAProxy itself)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from patternbench import cli
from patternbench.build.program_image import ProgramBuild, ProgramVersion, build_program_images, stage
from patternbench.render import RenderOptions, render
from patternbench.specs.agent_file import load_agent_file
from patternbench.specs.patterns import Pattern
from patternbench.specs.topology import DEFAULT_TOPOLOGY, load_topology

HAPROXY = Path("/usr/sbin/haproxy")
AGENT_FILE = Path(__file__).resolve().parents[2] / "agents" / "haproxy.yaml"
needs_haproxy = pytest.mark.skipif(not HAPROXY.is_file(), reason="haproxy is not installed (make setup installs it)")


def image_config(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]).read())  # type: ignore[union-attr]
        return json.loads(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]).read())  # type: ignore[union-attr]


@needs_haproxy
def test_the_staged_tree_runs_the_program_alone(tmp_path: Path) -> None:
    """Nothing but the staged files: chrooted into them, the program starts (every library
    it loads is there) and is the packaged one."""
    build = ProgramBuild(HAPROXY, "SIGUSR1", {"v1": ProgramVersion(), "v2": ProgramVersion()})
    fs = stage(build, HAPROXY, tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in fs.files()}
    assert "usr/sbin/haproxy" in names and any(n.startswith("lib64/ld-linux") for n in names)
    out = subprocess.run(["chroot", str(tmp_path), "/usr/sbin/haproxy", "-v"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("HAProxy version 2.")


@needs_haproxy
def test_an_image_says_its_stop_signal_and_the_same_inputs_give_the_same_digest(tmp_path: Path) -> None:
    build = ProgramBuild(HAPROXY, "SIGUSR1", {"v2": ProgramVersion()})
    first = build_program_images(build, {"v2": "agents.local/haproxy:test"}, tmp_path / "a")[0]
    again = build_program_images(build, {"v2": "agents.local/haproxy:test"}, tmp_path / "b")[0]
    assert first.digest == again.digest and first.path != again.path
    config = image_config(first.path)["config"]
    assert config["StopSignal"] == "SIGUSR1" and config["Entrypoint"] == ["/usr/sbin/haproxy"] and config["User"] == "65532:65532"
    other = build_program_images(ProgramBuild(HAPROXY, "SIGTERM", {"v2": ProgramVersion()}), {"v2": "agents.local/haproxy:test"}, tmp_path / "c")[0]
    assert other.digest != first.digest


@needs_haproxy
def test_the_haproxy_agent_renders_a_config_haproxy_accepts_for_every_service(tmp_path: Path) -> None:
    agent = load_agent_file(AGENT_FILE)
    assert agent.file is not None and agent.file.build is not None and agent.file.build.stop_signal == "SIGUSR1"
    objs = render(load_topology(DEFAULT_TOPOLOGY), Pattern("sidecar"), RenderOptions(run_id="pb-t", stand_ins=("haproxy",)))
    apps = [o["metadata"]["name"] for o in objs if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "pb-t"]
    twins = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"}
    assert set(twins) == {f"{a}-pods" for a in apps}
    assert all("nodePort" not in p for t in twins.values() for p in t["spec"]["ports"])
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "haproxy-config")["data"]
    assert set(config) == {"haproxy.cfg"}
    for app in apps:
        assert f"backend svc_{app}\n" in config["haproxy.cfg"] and f"{app}-pods.pb-t.svc.cluster.local:15006" in config["haproxy.cfg"]
    (tmp_path / "haproxy.cfg").write_text(config["haproxy.cfg"])
    checked = subprocess.run([str(HAPROXY), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                             env={**os.environ, "POD_NAME": "p", "NODE_NAME": "n"})
    assert checked.returncode == 0, checked.stdout + checked.stderr



def test_a_program_whose_libraries_do_not_resolve_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_provider: None) -> None:
    """A program the loader cannot complete (a library it links is gone) would not start in
    its image: the agent file naming it exits 2 with one line, before any cluster."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a program with a missing library")
    (tmp_path / "gone.c").write_text("int gone(void) { return 1; }\n")
    (tmp_path / "main.c").write_text("int gone(void);\nint main(void) { return gone(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libpbgone.so"), str(tmp_path / "gone.c")], check=True)
    subprocess.run(["gcc", "-o", str(tmp_path / "prog"), str(tmp_path / "main.c"), f"-L{tmp_path}", "-lpbgone"], check=True)
    (tmp_path / "libpbgone.so").unlink()
    agent = {"name": "p", "kind": "mesh", "images": {"v1": "x.org/p:1", "v2": "x.org/p:2"}, "proxy": {"outbound_port": 15001, "inbound_port": 15006},
             "build": {"program": str(tmp_path / "prog"), "packages": {"v1": "p=1"}},
             "sidecar": {"container": {"securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}}}}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    assert cli.main(["run", "--agent-file", str(path), "--trust-agent-files"]) == 2
    err = capsys.readouterr().err
    assert "build.program" in err and "needs libpbgone.so, which this machine's loader cannot find" in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
