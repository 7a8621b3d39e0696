from __future__ import annotations

import base64
import ipaddress
import json
import tomllib

import yaml

from patternbench.cluster.local import configs
from patternbench.cluster.local.settings import LocalSettings

S = LocalSettings()


def test_addresses_derive_from_the_ranges() -> None:
    assert S.node_ip == "10.244.0.1"
    assert S.apiserver_service_ip == "10.96.0.1"
    assert S.dns_service_ip == "10.96.0.10"
    assert ipaddress.ip_address(S.node_ip) in ipaddress.ip_network(S.node_pod_cidr)
    assert ipaddress.ip_network(S.node_pod_cidr).subnet_of(ipaddress.ip_network(S.pod_cidr))


def test_containerd_config_is_our_own_and_cannot_lower_oom_scores() -> None:
    doc = tomllib.loads(configs.containerd_config(S))
    assert doc["root"].startswith(str(S.state_dir))
    assert doc["state"].startswith(str(S.run_dir))
    assert doc["grpc"]["address"] == str(S.containerd_socket)
    assert doc["grpc"]["address"] != "/run/containerd/containerd.sock"
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == configs.PAUSE_IMAGE
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(S.cni_conf_dir)


def test_kubelet_config_runs_on_cgroup_v1_with_cluster_dns() -> None:
    doc = yaml.safe_load(configs.kubelet_config(S))
    assert doc["failCgroupV1"] is False
    assert doc["cgroupDriver"] == "cgroupfs"
    assert doc["failSwapOn"] is False
    assert doc["clusterDNS"] == ["10.96.0.10"]
    assert doc["containerRuntimeEndpoint"] == f"unix://{S.containerd_socket}"
    assert doc["authentication"]["anonymous"]["enabled"] is False
    assert doc["resolvConf"] != "/etc/resolv.conf"


def test_cni_bridge_uses_hairpin_host_local_and_no_masquerade() -> None:
    doc = json.loads(configs.cni_conflist(S))
    bridge = doc["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == S.bridge
    assert bridge["hairpinMode"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"][0][0] == {"subnet": S.node_pod_cidr, "gateway": S.node_ip}


def test_kube_proxy_serves_nodeports_on_loopback_in_iptables_mode() -> None:
    doc = yaml.safe_load(configs.kube_proxy_config(S))
    assert doc["mode"] == "iptables"
    assert "127.0.0.0/8" in doc["nodePortAddresses"]
    assert doc["iptables"]["localhostNodePorts"] is True
    assert doc["clusterCIDR"] == S.pod_cidr


def test_apiserver_flags_enforce_rbac_node_authz_and_node_restriction() -> None:
    args = configs.apiserver_args(S)
    assert "--authorization-mode=Node,RBAC" in args
    assert "--enable-admission-plugins=NodeRestriction" in args
    assert f"--advertise-address={S.node_ip}" in args
    assert f"--service-cluster-ip-range={S.service_cidr}" in args


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
