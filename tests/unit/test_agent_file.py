"""Bring your own agent: agent files validated before anything is deployed (one line, exit
2), rendered where the built-in agent of their kind would run, upgraded to their own v2."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from patternbench import cli
from patternbench.errors import UsageError
from patternbench.operate.upgrade import upgrade_targets
from patternbench.render import RenderOptions, render
from patternbench.specs.agent_file import load_agent_file, parse_agent_file
from patternbench.specs.agents import AGENTS, Placement
from patternbench.specs.cases import default_matrix
from patternbench.specs.patterns import Pattern, pattern_spec
from patternbench.specs.topology import load_topology

OWN = Path(__file__).resolve().parents[2] / "agents" / "own-logagent.yaml"

GOOD = {
    "name": "shipper", "kind": "log",
    "images": {"v1": "example.org/shipper:1.0", "v2": "example.org/shipper:1.1"},
    "sidecar": {"container": {"args": ["--tail", "/var/log/app/app.log"],
                              "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}}},
    "node": {"container": {"volumeMounts": [{"name": "logs", "mountPath": "/var/log/pods", "readOnly": True},
                                            {"name": "state", "mountPath": "/state"}],
                           "securityContext": {"runAsUser": 0, "capabilities": {"drop": ["ALL"]}}},
             "volumes": [{"name": "logs", "hostPath": {"path": "/var/log/pods"}},
                         {"name": "state", "hostPath": {"path": "/var/lib/patternbench-agents/shipper", "type": "DirectoryOrCreate"}}]},
}
NODE_MOUNTS = GOOD["node"]["container"]["volumeMounts"]
ROOT_NO_CAPS = {"runAsUser": 0, "capabilities": {"drop": ["ALL"]}}


def write(tmp_path: Path, doc: object, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def changed(**edits: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        target = doc
        for key in parents:
            target = target[key]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return doc


MALFORMED = [
    ("bad yaml", "name: [unclosed\n", "not valid YAML"),
    ("not a mapping", "- a\n- b\n", "expected a mapping"),
    ("unknown key", changed(colour="blue"), "colour: unknown key"),
    ("bad name", changed(name="Not_A_Label"), "name: expected a DNS label"),
    ("name with a newline", changed(name="front\n"), "name: expected a DNS label"),  # "$" matched before it: it passed
    ("built-in name", changed(name="logging"), "is patternbench's own agent"),
    ("unknown kind", changed(kind="metrics"), "unknown kind 'metrics'"),
    ("missing versions", changed(images={"v1": "a:1"}), "images.v2: missing"),
    ("no images", changed(images=None), "images: expected a mapping"),
    ("same image twice", changed(images={"v1": "a:1", "v2": "a:1"}), "v1 and v2 are the same image"),
    ("hostPath in a sidecar", changed(sidecar__volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "hostPath is not allowed in a sidecar"),
    ("image in the container", changed(sidecar__container={"image": "x:1"}), "sidecar.container.image: set by patternbench"),
    ("mount of no volume", changed(node__container={"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}), "mounts 'nope', which is not among its volumes"),
    ("no placement", changed(sidecar=None, node=None), "give at least one"),
    ("mesh without ports", changed(kind="mesh"), "proxy: expected a mapping"),
    ("proxy on a log agent", changed(proxy={"outbound_port": 15001, "inbound_port": 15006}), "only a mesh agent has proxy ports"),
    ("missing archive", changed(archives={"v1": "nowhere.tar"}), "nowhere.tar does not exist"),
    ("config not text", changed(config={"a.yaml": {"nested": 1}}), "config.a.yaml: expected a file name mapped"),
    # The trust model (agent_trust.py): each of these was accepted before, and each is root on
    # the host (or a step towards it) from a node container.
    ("the host's root mounted", changed(node__volumes=[{"name": "logs", "hostPath": {"path": "/"}}, GOOD["node"]["volumes"][1]]), "node.volumes.logs.hostPath.path: '/': a host path other than"),
    ("pod logs writable", changed(node__container__volumeMounts=[{"name": "logs", "mountPath": "/var/log/pods"}, NODE_MOUNTS[1]]), "/var/log/pods is mounted writable"),
    ("another agent's state", changed(node__volumes=[GOOD["node"]["volumes"][0], {"name": "state", "hostPath": {"path": "/var/lib/patternbench-agents/otelcol"}}]), "a host path other than"),
    ("own state, escaped with ..", changed(node__volumes=[GOOD["node"]["volumes"][0], {"name": "state", "hostPath": {"path": "/var/lib/patternbench-agents/shipper/../../../etc"}}]), "a host path other than"),
    ("a socket", changed(node__volumes=[GOOD["node"]["volumes"][0], {"name": "state", "hostPath": {"path": "/var/lib/patternbench-agents/shipper", "type": "Socket"}}]), "only a directory may be mounted"),
    ("a secret volume", changed(node__volumes=[GOOD["node"]["volumes"][0], {"name": "state", "secret": {"secretName": "x"}}]), "secret volumes are not among"),
    ("privileged", changed(node__container__securityContext={**ROOT_NO_CAPS, "privileged": True}), "node.container.securityContext.privileged"),
    ("SYS_ADMIN", changed(node__container__securityContext={**ROOT_NO_CAPS, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}), "capabilities.add: adds ['SYS_ADMIN']"),
    ("root with its capabilities", changed(node__container__securityContext={"runAsUser": 0}), "must drop ALL"),
    ("no security context", changed(node__container__securityContext=None), "must drop ALL"),
    ("privilege escalation", changed(node__container__securityContext={**ROOT_NO_CAPS, "allowPrivilegeEscalation": True}), "allowPrivilegeEscalation: true"),
    ("no seccomp", changed(node__container__securityContext={**ROOT_NO_CAPS, "seccompProfile": {"type": "Unconfined"}}), "seccompProfile: Unconfined"),
    ("config outside the directory", changed(config={"a.yaml": {"file": "../../etc/hostname"}}), "lies outside the agent file's directory"),
    ("config from an absolute path", changed(config={"a.yaml": {"file": "/etc/hostname"}}), "lies outside the agent file's directory"),
    # A packaged program's images (issue 25): the program checked on this machine first.
    ("build: no such program", changed(build={"program": "/usr/sbin/no-such-proxy"}), "build.program: /usr/sbin/no-such-proxy is not installed"),
    ("build: a relative program", changed(build={"program": "haproxy"}), "build.program: expected the program's absolute path"),
    ("build: not executable", changed(build={"program": "/etc/passwd"}), "build.program: /etc/passwd is not executable"),
    ("build: a script", changed(build={"program": "/usr/bin/ldd"}), "build.program: /usr/bin/ldd is not an ELF program"),
    ("build: not from a package", changed(build={"program": "/proc/self/exe"}), "was not installed by a Debian package (an agent file may do this only with --trust-agent-files)"),
    ("build: a bad signal", changed(build={"program": "/usr/sbin/haproxy", "stop_signal": "SIGNOPE"}), "build.stop_signal: 'SIGNOPE' is not a signal name"),
    ("build: a bad package", changed(build={"program": "/usr/sbin/haproxy", "packages": {"v1": "haproxy 2.6"}}), "build.packages.v1: 'haproxy 2.6' is not PACKAGE=VERSION"),
    ("build: one binary twice", changed(build={"program": "/usr/sbin/haproxy"}), "v1 and v2 are built from the same binary"),
    ("build: unknown key", changed(build={"program": "/usr/sbin/haproxy", "from": "x"}), "build.from: unknown key"),
    ("build: a cluster image's name", changed(build={"program": "/usr/sbin/haproxy", "packages": {"v1": "haproxy=1"}}, images={"v1": "patternbench.local/app:v1", "v2": "x:2"}), "images.v1: 'patternbench.local/app:v1' is a name the cluster's own images use"),
    ("a template that does not parse", changed(config={"a.cfg.j2": "{% for s in services %}"}), "config.a.cfg.j2: a.cfg.j2 line 1"),
    ("a template reading an unknown name", changed(config={"a.cfg.j2": "{{ nope }}"}), "config.a.cfg.j2: a.cfg.j2: 'nope' is undefined"),
    ("a template reaching out of the sandbox", changed(config={"a.cfg.j2": "{{ services.__class__.__mro__ }}"}), "config.a.cfg.j2"),
    ("pod_dns not a bool", changed(kind="mesh", proxy={"outbound_port": 15001, "inbound_port": 15006, "pod_dns": "yes"}), "proxy.pod_dns: expected true or false"),
    ("unknown proxy key", changed(kind="mesh", proxy={"outbound_port": 15001, "inbound_port": 15006, "discovery": "dns"}), "proxy.discovery: unknown key"),
]


@pytest.mark.parametrize("doc,message", [(d, m) for _, d, m in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_agent_files_exit_2_with_one_line(doc: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_provider: None) -> None:
    path = write(tmp_path, doc)
    assert cli.main(["run", "--agent-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_the_trust_flag_lifts_the_trust_models_limits(tmp_path: Path) -> None:
    doc = changed(node__volumes=[{"name": "logs", "hostPath": {"path": "/"}}, GOOD["node"]["volumes"][1]],
                  node__container__securityContext={"privileged": True}, config={"h": {"file": "/etc/hostname"}})
    with pytest.raises(UsageError, match="--trust-agent-files"):
        parse_agent_file(write(tmp_path, doc))
    agent = parse_agent_file(write(tmp_path, doc), trusted=True)
    assert agent.parts[Placement.NODE].container["securityContext"]["privileged"] is True
    assert agent.config["h"] == Path("/etc/hostname").read_text()


def oci_archive(path: Path, name: str) -> Path:
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1,
                                                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]}
    data = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_imports_only_its_own_image(tmp_path: Path) -> None:
    oci_archive(tmp_path / "v1.tar", "example.org/shipper:1.0")
    oci_archive(tmp_path / "pause.tar", "patternbench.local/pause:3.10.1")
    parse_agent_file(write(tmp_path, changed(archives={"v1": "v1.tar"})))  # its own image: fine
    with pytest.raises(UsageError, match="archives.v1: .*pause.tar imports 'patternbench.local/pause:3.10.1'"):
        parse_agent_file(write(tmp_path, changed(archives={"v1": "pause.tar"})))
    # Declared as the cluster's own image: refused whatever the archive holds.
    doc = changed(images={"v1": "patternbench.local/pause:3.10.1", "v2": "example.org/shipper:1.1"}, archives={"v1": "pause.tar"})
    with pytest.raises(UsageError, match="images.v1: 'patternbench.local/pause:3.10.1' is a name the cluster's own images use"):
        parse_agent_file(write(tmp_path, doc))
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(UsageError, match="not an OCI image archive"):
        parse_agent_file(write(tmp_path, changed(archives={"v1": "junk.tar"})))
    parse_agent_file(write(tmp_path, changed(archives={"v1": "pause.tar"})), trusted=True)


def test_a_missing_file_and_a_pattern_it_cannot_run_in(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_provider: None) -> None:
    assert cli.main(["run", "--agent-file", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read agent file" in capsys.readouterr().err
    sidecar_only = write(tmp_path, changed(node=None))
    assert cli.main(["run", "--agent-file", str(sidecar_only), "--pattern", "daemonset"]) == 2
    assert "the daemonset pattern runs it per node, and the file gives no container for that" in capsys.readouterr().err


def test_it_stands_in_for_the_built_in_agent_of_its_kind(tmp_path: Path) -> None:
    spec = load_agent_file(write(tmp_path, changed(node=None)))
    assert spec.stands_in_for == "logging" and spec.placements == frozenset({Placement.POD})
    assert pattern_spec(Pattern.SIDECAR).runs("shipper") and not pattern_spec(Pattern.DAEMONSET).runs("shipper")
    assert not pattern_spec(Pattern.HYBRID).runs("shipper")  # hybrid runs the log agent per node
    ids = [c.id for c in default_matrix(agents=["logging"])]
    assert "sidecar-shipper" in ids and "daemonset-shipper" not in ids and "sidecar-logging" in ids
    assert not any(i.startswith("sidecar-shipper") and i.endswith("naive") for i in ids)


@pytest.mark.parametrize("pattern", [Pattern.SIDECAR, Pattern.DAEMONSET, Pattern.HYBRID])
def test_own_log_agent_renders_where_the_built_in_one_does(pattern: Pattern) -> None:
    """The agent file of our own log agent takes the built-in's place, container for
    container: same images, same placement, the app's log shared the same way."""
    spec = load_agent_file(OWN)
    topology = load_topology()
    builtin = render(topology, pattern, RenderOptions(run_id="pb-x"))
    mine = render(topology, pattern, RenderOptions(run_id="pb-x", stand_ins=(spec.name,)))
    ours = upgrade_targets(builtin, "logging")
    theirs = upgrade_targets(mine, spec.name)
    assert [(t.kind, t.namespace, t.init, t.image) for t in ours] == [(t.kind, t.namespace, t.init, t.image) for t in theirs]
    assert upgrade_targets(mine, "logging") == []  # it took the place, it did not join it
    assert spec.image_for("v2", theirs[0].image) == "patternbench.local/logagent:v2"
    for d in (o for o in mine if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "pb-x"):
        app = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "app")
        env = {e["name"]: e.get("value") for e in app.get("env", [])}
        assert (env.get("LOG_PATH") == "/var/log/app/app.log") == (pattern is Pattern.SIDECAR)


def test_a_run_keeps_its_agent_files_and_reads_them_back(tmp_path: Path) -> None:
    from patternbench.specs.agent_file import keep_with_run, register_run_agents

    spec = load_agent_file(write(tmp_path, GOOD))
    keep_with_run([spec], tmp_path / "run")
    del AGENTS[spec.name]
    [again] = register_run_agents(tmp_path / "run")
    assert again.name == "shipper" and again.images_by_version == GOOD["images"]


def test_parse_keeps_what_the_file_says(tmp_path: Path) -> None:
    agent = parse_agent_file(write(tmp_path, changed(config={"c.yaml": "x: 1\n"})))
    assert agent.config == {"c.yaml": "x: 1\n"} and set(agent.parts) == {Placement.POD, Placement.NODE}


def test_the_same_name_from_another_file_is_an_error(tmp_path: Path) -> None:
    from patternbench.errors import UsageError

    load_agent_file(write(tmp_path, GOOD, "a.yaml"))
    load_agent_file(write(tmp_path, GOOD, "copy.yaml"))  # the same text (a run's copy): fine
    with pytest.raises(UsageError, match="defined twice"):
        load_agent_file(write(tmp_path, changed(images={"v1": "x:1", "v2": "x:2"}), "other.yaml"))
