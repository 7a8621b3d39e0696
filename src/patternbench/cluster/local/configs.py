"""Config files and command lines of the local cluster's components: pure functions of the settings.

Kept apart from the code that starts processes so unit tests can check every flag and file.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from patternbench import pki
from patternbench.cluster.local.settings import POD_LOGS_DIR, LocalSettings, MachineSize, NodeSettings
from patternbench.load.placement import kubelet_flags as load_node_flags

PAUSE_IMAGE = "patternbench.local/pause:3.10.1"


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    """A kubeconfig with everything embedded, so it can be copied anywhere on the machine."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "patternbench", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": "patternbench", "context": {"cluster": "patternbench", "user": user}}],
        "current-context": "patternbench",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def containerd_config(node: NodeSettings) -> str:
    """A node's containerd config: own root, state and socket; never the system default.

    restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE, so lowering a container's
    OOM score (as kubelet asks for the sandbox) would be refused; containerd clamps instead.
    """
    return f"""version = 2
root = "{node.containerd_root}"
state = "{node.containerd_state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.containerd_socket}.ttrpc"

[debug]
  address = "{node.containerd_state}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{node.cni_conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""


def cni_conflist(s: LocalSettings, node: NodeSettings) -> str:
    """A bridge network with host-local IPAM and hairpin mode (a pod can reach itself via a Service).

    ipMasq is off: pods only talk to the node and to each other, so no traffic is NATed out.
    """
    doc = {
        "cniVersion": "0.4.0",
        "name": s.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.cni_ipam_dir),
                    "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2)


def node_reservation(machine: MachineSize, node_count: int) -> dict[str, str]:
    """systemReserved that leaves each node 1/N of the machine as allocatable.

    Every kubelet's cAdvisor sees the whole machine; without this, 3 nodes would together
    offer 3 machines' worth of CPU and memory to the scheduler.
    """
    cpu_m = machine.cpus * 1000
    mem = machine.memory_mib
    return {"cpu": f"{cpu_m - cpu_m // node_count}m", "memory": f"{mem - mem // node_count}Mi"}


def kubelet_config(s: LocalSettings, node: NodeSettings, machine: MachineSize) -> str:
    """KubeletConfiguration of one node: cgroup v1 (failCgroupV1: false), cgroupfs under the
    node's own cgroup root, the node's containerd, health on the node's address."""
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": s.kubelet_port,
        "healthzBindAddress": node.ip,
        "healthzPort": s.kubelet_healthz_port,
        "readOnlyPort": 0,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_parent,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        # The node's own /var/log/pods (its mount namespace binds the node's directory there):
        # kubelets sharing one log directory would delete each other's logs.
        "podLogsDir": POD_LOGS_DIR,
        "clusterDNS": [s.dns_service_ip],
        "clusterDomain": s.cluster_domain,
        # An empty resolv.conf: pods never learn the host's upstream resolvers.
        "resolvConf": str(s.state_dir / "kubelet-resolv.conf"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(s.pki_dir / "ca.crt")},
        },
        # Every request is authorized by the API server (SubjectAccessReview), as upstream
        # kubeadm does: a certificate the cluster CA signed is not enough to exec into a pod.
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(s.pki_dir / f"kubelet-{node.name}.crt"),
        "tlsPrivateKeyFile": str(s.pki_dir / f"kubelet-{node.name}.key"),
        "staticPodPath": "",
        "serializeImagePulls": False,
        "systemReserved": node_reservation(machine, len(s.nodes)),
        # The nodes share one disk: eviction must not fire because the machine's disk is
        # as full as it always is.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "makeIPTablesUtilChains": False,
        "protectKernelDefaults": False,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "maxPods": 110,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kube_proxy_config(s: LocalSettings, node: NodeSettings | None) -> str:
    """iptables mode. On a node: NodePorts on the node's address, health on it too. On the
    host (node None): an edge kube-proxy that serves NodePorts and Service addresses on the
    host's loopback (localhostNodePorts sets route_localnet), as a load balancer would."""
    if node is None:
        # kube-proxy waits 30 s for a Node of its own name before it programs anything: the
        # host's proxy takes the first node's name (only externalTrafficPolicy: Local would
        # notice, and no patternbench Service uses it).
        name, health_host, node_ports = s.nodes[0].name, "127.0.0.1", ["127.0.0.0/8"]
    else:
        name, health_host, node_ports = node.name, node.ip, ["127.0.0.0/8", f"{node.ip}/32"]
    # One kubeconfig for every kube-proxy: the host's and the nodes' reach the API server at
    # the same address (the bridge's).
    kubeconfig = s.kubeconfig_dir / "kube-proxy.yaml"
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": name,
        "bindAddress": health_host,
        "healthzBindAddress": f"{health_host}:{s.proxy_healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{s.proxy_metrics_port}",
        "clusterCIDR": s.pod_cidr,
        "nodePortAddresses": node_ports,
        # Upstream's sync periods, written out: a "0s" minSyncPeriod is defaulted to 1 s anyway
        # (v1alpha1 defaulting; /configz on the metrics port shows MinSyncPeriod 1s).
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
        # Leave conntrack's table size alone: nf_conntrack_max cannot be written from a
        # network namespace other than the host's, and may not be writable here at all.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def etcd_args(s: LocalSettings) -> list[str]:
    """TLS with client certificates from etcd's own CA on both ports (kubeadm's layout): only
    the API server's client certificate opens it, not any the cluster CA signed."""
    pki = s.pki_dir
    peer = f"https://127.0.0.1:{s.etcd_peer_port}"
    return [
        "--name=patternbench",
        f"--data-dir={s.state_dir / 'etcd'}",
        f"--listen-client-urls={s.etcd_url}",
        f"--advertise-client-urls={s.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=patternbench={peer}",
        "--client-cert-auth",
        f"--trusted-ca-file={pki / 'etcd-ca.crt'}",
        f"--cert-file={pki / 'etcd-server.crt'}",
        f"--key-file={pki / 'etcd-server.key'}",
        "--peer-client-cert-auth",
        f"--peer-trusted-ca-file={pki / 'etcd-ca.crt'}",
        f"--peer-cert-file={pki / 'etcd-peer.crt'}",
        f"--peer-key-file={pki / 'etcd-peer.key'}",
        "--listen-metrics-urls=",
        # A throwaway cluster: no fsync waits make bring-up and experiments faster.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]


def apiserver_args(s: LocalSettings) -> list[str]:
    pki = s.pki_dir
    return [
        f"--etcd-servers={s.etcd_url}",
        f"--etcd-cafile={pki / 'etcd-ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        # The bridge's host address only (not 0.0.0.0): no other machine's network reaches it.
        f"--bind-address={s.host_ip}",
        # No anonymous requests at all; the harness checks health with its client certificate.
        "--anonymous-auth=false",
        f"--secure-port={s.apiserver_port}",
        # The host's address on the nodes' bridge: the `kubernetes` Service's endpoint, which
        # pods on every node reach through their node.
        f"--advertise-address={s.host_ip}",
        f"--service-cluster-ip-range={s.service_cidr}",
        f"--service-node-port-range={s.node_ports[0]}-{s.node_ports[1]}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=false",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_args(s: LocalSettings) -> list[str]:
    pki = s.pki_dir
    kubeconfig = s.kubeconfig_dir / "controller-manager.yaml"
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={s.controller_manager_port}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={s.service_cidr}",
        f"--cluster-cidr={s.pod_cidr}",
        "--allocate-node-cidrs=false",
        # Nodes and routes are the host's own business here, not a cloud's.
        "--controllers=*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
        "--node-monitor-grace-period=40s",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_args(s: LocalSettings) -> list[str]:
    kubeconfig = s.kubeconfig_dir / "scheduler.yaml"
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={s.scheduler_port}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kubelet_args(s: LocalSettings, node: NodeSettings) -> list[str]:
    return [
        f"--config={node.state_dir / 'kubelet-config.yaml'}",
        f"--kubeconfig={s.kubeconfig_dir / f'kubelet-{node.name}.yaml'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        *(load_node_flags() if node.load else []),
        "--v=1",
    ]


def kube_proxy_args(config_path: Path) -> list[str]:
    return [f"--config={config_path}", "--v=1"]


def containerd_args(node: NodeSettings) -> list[str]:
    return ["--config", str(node.state_dir / "containerd.toml"), "--log-level", "warn"]


def coredns_corefile(s: LocalSettings) -> str:
    """No `forward` plugin: names outside the cluster get NXDOMAIN/SERVFAIL, nothing leaves."""
    return f""".:53 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {s.cluster_domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    reload
    loadbalance
}}
"""


def coredns_manifests(s: LocalSettings, image: str) -> list[dict]:
    """CoreDNS as kubeadm deploys it (RBAC, ConfigMap, Deployment, kube-dns Service), one replica."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": coredns_corefile(s)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                    {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                ],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "initialDelaySeconds": 30,
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "40Mi"},
                                    "limits": {"memory": "170Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                                },
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": s.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def write_text(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return pki.write_with_mode(path, text.encode(), mode)
