from __future__ import annotations

import base64
import ipaddress
import json
import tomllib

import pytest
import yaml

from patternbench.cluster.local import configs
from patternbench.cluster.local.settings import NODE_VIEW, LocalSettings, MachineSize, parse_node_count
from patternbench.errors import UsageError

S = LocalSettings()
N1, N2, N3 = S.nodes
MACHINE = MachineSize(cpus=2, memory_mib=24 * 1024)


def test_three_nodes_by_default_each_with_its_own_addresses_and_directories() -> None:
    assert [n.name for n in S.nodes] == ["pb-node-1", "pb-node-2", "pb-node-3"]
    assert S.host_ip == "10.250.0.1"
    assert [n.ip for n in S.nodes] == ["10.250.0.11", "10.250.0.12", "10.250.0.13"]
    assert [n.pod_cidr for n in S.nodes] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert N1.gateway == "10.244.1.1"
    for node in S.nodes:
        assert ipaddress.ip_network(node.pod_cidr).subnet_of(ipaddress.ip_network(S.pod_cidr))
        assert ipaddress.ip_address(node.ip) in ipaddress.ip_network(S.node_network)
    assert len({n.containerd_socket for n in S.nodes}) == 3 and len({n.cgroup_parent for n in S.nodes}) == 3
    assert S.apiserver_service_ip == "10.96.0.1" and S.dns_service_ip == "10.96.0.10"
    assert LocalSettings(node_count=1).nodes[0].name == "pb-node-1"


def test_each_node_sees_its_own_directory_at_the_shared_paths() -> None:
    targets = {str(t) for _, t in N1.view_binds()}
    assert targets == set(NODE_VIEW) and "/var/log/pods" in targets and "/var/lib/kubelet" in targets
    assert N1.host_path("/var/log/pods/ns_pod_uid/app/0.log") != N2.host_path("/var/log/pods/ns_pod_uid/app/0.log")
    assert str(N2.host_path("/var/log/pods/x")).startswith(str(N2.state_dir))
    with pytest.raises(ValueError):
        N1.host_path("/etc/passwd")


def test_containerd_config_is_the_nodes_own_and_cannot_lower_oom_scores() -> None:
    doc = tomllib.loads(configs.containerd_config(N2))
    assert doc["root"].startswith(str(N2.state_dir))
    assert doc["state"].startswith(str(N2.run_dir))
    assert doc["grpc"]["address"] == str(N2.containerd_socket)
    assert doc["grpc"]["address"] != "/run/containerd/containerd.sock"
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == configs.PAUSE_IMAGE
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(N2.cni_conf_dir)


def test_kubelet_config_runs_on_cgroup_v1_under_the_nodes_cgroup_with_an_honest_share() -> None:
    doc = yaml.safe_load(configs.kubelet_config(S, N3, MACHINE))
    assert doc["failCgroupV1"] is False
    assert doc["cgroupDriver"] == "cgroupfs"
    assert doc["cgroupRoot"] == "/patternbench/pb-node-3"
    assert doc["failSwapOn"] is False
    assert doc["clusterDNS"] == ["10.96.0.10"]
    assert doc["containerRuntimeEndpoint"] == f"unix://{N3.containerd_socket}"
    assert doc["address"] == N3.ip and doc["healthzBindAddress"] == N3.ip
    assert doc["podLogsDir"] == "/var/log/pods"
    assert doc["authentication"]["anonymous"]["enabled"] is False
    assert doc["resolvConf"] != "/etc/resolv.conf"
    # 3 nodes on 2 cores / 24 GiB: each offers a third of the machine.
    assert doc["systemReserved"] == {"cpu": "1334m", "memory": "16384Mi"}
    assert configs.node_reservation(MACHINE, 1) == {"cpu": "0m", "memory": "0Mi"}


def test_cni_bridge_per_node_uses_hairpin_host_local_and_no_masquerade() -> None:
    doc = json.loads(configs.cni_conflist(S, N2))
    bridge = doc["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == N2.bridge
    assert bridge["hairpinMode"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["dataDir"] == str(N2.cni_ipam_dir)
    assert bridge["ipam"]["ranges"][0][0] == {"subnet": "10.244.2.0/24", "gateway": "10.244.2.1"}


def test_kube_proxy_on_a_node_and_on_the_host() -> None:
    node = yaml.safe_load(configs.kube_proxy_config(S, N1))
    assert node["mode"] == "iptables" and node["hostnameOverride"] == "pb-node-1"
    assert f"{N1.ip}/32" in node["nodePortAddresses"]
    assert node["conntrack"]["maxPerCore"] == 0  # not writable from a node's network namespace
    assert node["clusterCIDR"] == S.pod_cidr
    host = yaml.safe_load(configs.kube_proxy_config(S, None))
    assert host["nodePortAddresses"] == ["127.0.0.0/8"] and host["iptables"]["localhostNodePorts"] is True
    assert host["healthzBindAddress"].startswith("127.0.0.1:")


def test_apiserver_flags_enforce_rbac_node_authz_and_node_restriction() -> None:
    args = configs.apiserver_args(S)
    assert "--authorization-mode=Node,RBAC" in args
    assert "--enable-admission-plugins=NodeRestriction" in args
    assert f"--advertise-address={S.host_ip}" in args
    assert f"--service-cluster-ip-range={S.service_cidr}" in args


def test_kubelet_args_name_the_node() -> None:
    args = configs.kubelet_args(S, N2)
    assert "--hostname-override=pb-node-2" in args and f"--node-ip={N2.ip}" in args
    assert any(a.endswith("kubelet-pb-node-2.yaml") for a in args)


@pytest.mark.parametrize("raw,message", [
    ("0", "at least 1 node"), ("-2", "at least 1 node"), ("abc", "whole number"), ("2.5", "whole number"), ("", "whole number"),
    ("9", "holds at most 8 local nodes"),
])
def test_bad_node_counts_are_one_line_errors(raw: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_node_count(raw, MACHINE)


def test_node_counts_within_the_machine() -> None:
    assert parse_node_count("3", MACHINE) == 3 and parse_node_count(" 8 ", MACHINE) == 8
    assert parse_node_count("50", MACHINE, local=False) == 50
    assert MachineSize(cpus=1, memory_mib=512).max_nodes() == 1


def test_coredns_has_no_upstream_forwarder() -> None:
    corefile = configs.coredns_corefile(S)
    assert "forward" not in corefile and "proxy" not in corefile
    assert "kubernetes cluster.local" in corefile
    objs = configs.coredns_manifests(S, "img:1")
    service = next(o for o in objs if o["kind"] == "Service")
    assert service["spec"]["clusterIP"] == S.dns_service_ip
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1" and container["imagePullPolicy"] == "Never"


def test_kubeconfig_embeds_credentials() -> None:
    text = configs.kubeconfig("https://127.0.0.1:6443", b"CA", b"CERT", b"KEY", "alice")
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "patternbench"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == b"CA"
    user = doc["users"][0]
    assert user["name"] == "alice"
    assert base64.b64decode(user["user"]["client-key-data"]) == b"KEY"


def test_etcd_listens_only_on_loopback() -> None:
    urls = [a for a in configs.etcd_args(S) if a.startswith("--listen-")]
    assert urls and all("127.0.0.1" in a or a.endswith("=") for a in urls)
