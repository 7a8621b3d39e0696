from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from patternbench import pki


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.new_ca()


def test_ca_is_a_self_signed_ca(ca: pki.KeyPair) -> None:
    cert = ca.cert
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    cert.verify_directly_issued_by(cert)


def test_apiserver_cert_has_every_san_clients_use(ca: pki.KeyPair) -> None:
    dns, ips = pki.apiserver_sans("10.96.0.1", "10.244.0.1", "node-a")
    leaf = pki.issue(ca, "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True).cert
    leaf.verify_directly_issued_by(ca.cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    assert "kubernetes.default.svc.cluster.local" in san.get_values_for_type(x509.DNSName)
    got_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert got_ips == {"10.96.0.1", "127.0.0.1", "10.244.0.1"}
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH not in usages


def test_client_cert_names_user_and_groups(ca: pki.KeyPair) -> None:
    leaf = pki.issue(ca, "system:node:n1", ("system:nodes",), client=True).cert
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_not_signed_by_another_ca(ca: pki.KeyPair) -> None:
    other = pki.new_ca("other")
    leaf = pki.issue(other, "x", client=True).cert
    with pytest.raises(Exception):
        leaf.verify_directly_issued_by(ca.cert)


def test_a_cert_must_have_a_purpose(ca: pki.KeyPair) -> None:
    with pytest.raises(ValueError):
        pki.issue(ca, "nothing")


def test_signing_key_pair_matches(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization

    private, public = pki.new_signing_key()
    key = serialization.load_pem_private_key(private, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    pub = serialization.load_pem_public_key(public)
    assert pub.public_numbers() == key.public_key().public_numbers()


def test_keypair_write_protects_the_key(ca: pki.KeyPair, tmp_path) -> None:
    cert_path, key_path = ca.write(tmp_path, "ca")
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()).subject == ca.cert.subject
    assert ipaddress.ip_address("127.0.0.1")


def test_keys_are_private_from_the_first_byte(tmp_path) -> None:
    """The file is created with 0600 (not written 0644 and chmod'ed after), and an existing
    world-readable file is made private before its new content goes in."""
    import os
    import stat

    from patternbench import pki

    old_umask = os.umask(0)  # the mode must not depend on a umask that happens to hide it
    try:
        (tmp_path / "old.key").write_bytes(b"x")
        os.chmod(tmp_path / "old.key", 0o666)
        pair = pki.new_ca()
        _, key = pair.write(tmp_path, "ca")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_bytes() == pair.key_pem
        pki.write_with_mode(tmp_path / "old.key", b"secret", 0o600)
        assert stat.S_IMODE((tmp_path / "old.key").stat().st_mode) == 0o600 and (tmp_path / "old.key").read_bytes() == b"secret"
        assert stat.S_IMODE((tmp_path / "ca.crt").stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)
