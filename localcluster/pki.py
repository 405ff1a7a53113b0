"""Certificates and keys for one local control plane: a CA, the API server's serving certificate,
client certificates for the admin and the components, and the service-account signing key.

Everything is written once into ``<state>/pki`` and reused, so a restarted cluster keeps the
identities (and the kubeconfig) it had.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)

# Identities the API server's default RBAC bootstrap policy already knows.
CLIENT_IDENTITIES = {
    "admin": ("serin-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
}


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    @property
    def serving_cert(self) -> Path:
        return self.path("apiserver.crt")

    @property
    def serving_key(self) -> Path:
        return self.path("apiserver.key")

    @property
    def service_account_key(self) -> Path:
        return self.path("service-account.key")

    @property
    def service_account_public_key(self) -> Path:
        return self.path("service-account.pub")

    def client_cert(self, identity: str) -> Path:
        return self.path(f"{identity}.crt")

    def client_key(self, identity: str) -> Path:
        return self.path(f"{identity}.key")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def new_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_serving(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    dns_names: list[str],
    ip_addresses: list[str],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate; clients check only its SANs, never the common name."""
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    return _issue(_name(common_name), key, ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, sans), key


def write_serving_pair(directory: Path, ip_addresses: list[str]) -> tuple[Path, Path, bytes]:
    """A fresh CA and a serving certificate for local HTTPS servers in tests.

    Returns the certificate and key paths and the CA bundle (PEM) that clients must trust.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca("serin-test-ca")
    cert, key = issue_serving(ca_cert, ca_key, "serin-test-server", ["localhost"], ip_addresses)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(key), private=True)
    return cert_path, key_path, ca_cert.public_bytes(serialization.Encoding.PEM)


def ensure_pki(directory: Path) -> Pki:
    """Create whatever is missing in ``directory`` and return where everything is."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if pki.ca_cert.exists() and pki.path("ca.key").exists():
        ca_key = serialization.load_pem_private_key(pki.path("ca.key").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    else:
        ca_cert, ca_key = new_ca("serin-localcluster-ca")
        _write(pki.path("ca.key"), _key_pem(ca_key), private=True)
        _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))

    if not pki.serving_cert.exists():
        dns_names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        cert, key = issue_serving(ca_cert, ca_key, "kube-apiserver", dns_names, ["127.0.0.1", "10.0.0.1"])
        _write(pki.serving_key, _key_pem(key), private=True)
        _write(pki.serving_cert, cert.public_bytes(serialization.Encoding.PEM))

    for identity, (common_name, organization) in CLIENT_IDENTITIES.items():
        if pki.client_cert(identity).exists():
            continue
        key = _new_key()
        cert = _issue(_name(common_name, organization), key, ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(pki.client_key(identity), _key_pem(key), private=True)
        _write(pki.client_cert(identity), cert.public_bytes(serialization.Encoding.PEM))

    if not pki.service_account_key.exists():
        key = _new_key()
        _write(pki.service_account_key, _key_pem(key), private=True)
        _write(
            pki.service_account_public_key,
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
    return pki
