"""The local cluster answers only its owner (issue 22): every port of ours on loopback or the
nodes' bridge, no anonymous API request, etcd only with its own CA's client certificate,
kubelets that ask the API server before serving, and pods that reach the API server but no
other service of the host."""

from __future__ import annotations

import base64
import http.server
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from test_local_cluster import deploy_netcheck  # tests/cluster is on sys.path (rootdir-relative import)

from patternbench.build.images import ImageArchive

pytestmark = pytest.mark.cluster


def tls_context(pki_dir: Path, ca: str, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=str(pki_dir / f"{ca}.crt"))
    tls.check_hostname = False
    if cert is not None:
        tls.load_cert_chain(str(cert), str(key))
    return tls


def status_of(url: str, tls: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(url, context=tls, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def client_pair_from_kubeconfig(kubeconfig: Path, out: Path) -> tuple[Path, Path]:
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    cert, key = out / "client.crt", out / "client.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    return cert, key


def test_every_port_of_ours_listens_on_loopback_or_the_bridge_only(cluster: object) -> None:
    s = cluster.settings  # type: ignore[attr-defined]
    owned = cluster.owned_processes()  # type: ignore[attr-defined]
    ours = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in owned]
    assert any(c.laddr.port == s.apiserver_port for c in ours), "the API server's listener was not found"
    wide = [(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name()) for c in ours if c.laddr.ip not in ("127.0.0.1", "::1", s.host_ip)]
    assert not wide, f"listening beyond loopback and the bridge: {wide}"


def test_an_anonymous_api_request_is_refused(cluster: object) -> None:
    s = cluster.settings  # type: ignore[attr-defined]
    anonymous = tls_context(s.pki_dir, "ca")
    for path in ("/api/v1/namespaces", "/version", "/livez"):
        assert status_of(f"{s.apiserver_url}{path}", anonymous) == 401, path
    admin = tls_context(s.pki_dir, "ca", s.pki_dir / "admin.crt", s.pki_dir / "admin.key")
    assert status_of(f"{s.apiserver_url}/livez", admin) == 200


def test_etcd_refuses_a_client_without_its_own_cas_certificate(cluster: object) -> None:
    s = cluster.settings  # type: ignore[attr-defined]
    url = f"{s.etcd_url}/health"
    refused = (urllib.error.URLError, ssl.SSLError, ConnectionError)  # TLS 1.3 refuses the certificate after the handshake
    with pytest.raises(refused):  # no certificate
        status_of(url, tls_context(s.pki_dir, "etcd-ca"))
    with pytest.raises(refused):  # cluster-admin's, from the cluster CA: not etcd's
        status_of(url, tls_context(s.pki_dir, "etcd-ca", s.pki_dir / "admin.crt", s.pki_dir / "admin.key"))
    apiserver = tls_context(s.pki_dir, "etcd-ca", s.pki_dir / "apiserver-etcd-client.crt", s.pki_dir / "apiserver-etcd-client.key")
    assert status_of(url, apiserver) == 200
    with socket.create_connection(("127.0.0.1", s.etcd_client_port), timeout=5) as plain:  # no plaintext either
        plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not plain.recv(100).startswith(b"HTTP/1.1 200")


def test_a_kubelet_asks_the_api_server_before_it_serves(cluster: object, tmp_path: Path) -> None:
    """kube-proxy's certificate is signed by the cluster CA but may not read a node's pods."""
    s = cluster.settings  # type: ignore[attr-defined]
    node = s.nodes[0]
    url = f"https://{node.ip}:{s.kubelet_port}/pods"
    cert, key = client_pair_from_kubeconfig(s.kubeconfig_dir / "kube-proxy.yaml", tmp_path)
    assert status_of(url, tls_context(s.pki_dir, "ca", cert, key)) == 403
    assert status_of(url, tls_context(s.pki_dir, "ca", s.pki_dir / "admin.crt", s.pki_dir / "admin.key")) == 200
    assert status_of(url, tls_context(s.pki_dir, "ca")) == 401


def fetch_from_pod(base: str, url: str) -> tuple[int, bytes]:
    """netcheck's GET of `url` from inside its pod: the status and the start of the body."""
    try:
        with urllib.request.urlopen(f"{base}/fetch?url={url}", timeout=10) as resp:
            return resp.status, resp.read()[:200]
    except urllib.error.HTTPError as err:
        return err.code, err.read()[:200]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host service")

    def log_message(self, *args: object) -> None:
        pass


def test_a_pod_reaches_the_api_server_but_no_other_host_service(cluster: object, kube_api: object, namespace: str, netcheck_image: ImageArchive) -> None:
    s = cluster.settings  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Hello)  # a service the host runs for itself
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()  # it answers on the host
        node_port = deploy_netcheck(kube_api, namespace, netcheck_image, replicas=1)
        base = f"http://127.0.0.1:{node_port}"
        status, body = fetch_from_pod(base, f"http://{s.host_ip}:{port}/")
        assert status == 502 and b"refused" in body, (status, body)
        status, body = fetch_from_pod(base, "http://10.96.0.1:443/")
        assert status == 400 and b"HTTPS server" in body, (status, body)  # plain HTTP to the API server's TLS port: it answered
    finally:
        server.shutdown()
