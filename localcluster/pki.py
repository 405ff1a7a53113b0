"""Certificates and keys for one local control plane: a CA, the API server's serving certificate,
client certificates for the admin and the components, and the service-account signing key; and
serving pairs with a CA of their own for helpers the API server calls (the external metrics API).

Everything is written once into ``<state>/pki`` and reused, so a restarted cluster keeps the
identities (and the kubeconfig) it had.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from serin import tls

VALIDITY = datetime.timedelta(days=365)
# How a container started with `--network slirp4netns:allow_host_loopback=true` reaches 127.0.0.1.
CONTAINER_HOST_ADDRESS = "10.0.2.2"

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

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the certificate the API server presents to admission webhooks (its own, apart
        from the cluster's, so that a webhook trusting it trusts the API server and nobody else)."""
        return self.path("webhook-client-ca.crt")

    @property
    def webhook_client_cert(self) -> Path:
        return self.path("webhook-client.crt")

    @property
    def webhook_client_key(self) -> Path:
        return self.path("webhook-client.key")

    def client_cert(self, identity: str) -> Path:
        return self.path(f"{identity}.crt")

    def client_key(self, identity: str) -> Path:
        return self.path(f"{identity}.key")


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def write_serving_pair(directory: Path, ip_addresses: list[str]) -> tuple[Path, Path, bytes]:
    """A fresh CA and a serving certificate for local HTTPS servers in tests.

    Returns the certificate and key paths and the CA bundle (PEM) that clients must trust.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = tls.new_ca("serin-test-ca", VALIDITY)
    cert, key = tls.issue_serving(ca_cert, ca_key, "serin-test-server", ["localhost"], ip_addresses, VALIDITY)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    _write(cert_path, tls.cert_pem(cert))
    _write(key_path, tls.key_pem(key), private=True)
    return cert_path, key_path, tls.cert_pem(ca_cert)


def ensure_serving_pair(
    directory: Path, common_name: str, dns_names: list[str], ip_addresses: list[str]
) -> tuple[Path, Path, Path]:
    """A CA of its own and a serving certificate it signed, in ``directory``, reused while valid.

    Returns the certificate, key and CA certificate paths. The pair is written again (with a new
    CA) when it is missing, expires within the renewal window or names other hosts; the CA's key
    is not kept, since nothing else is ever signed with it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_path = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    if cert_path.exists() and key_path.exists() and ca_path.exists():
        now = datetime.datetime.now(datetime.UTC)
        ca_pem = ca_path.read_bytes()
        stale = tls.ca_needs_renewal(ca_pem, now) or tls.needs_renewal(
            cert_path.read_bytes(), ca_pem, dns_names, ip_addresses, now
        )
        if not stale:
            return cert_path, key_path, ca_path
    ca_cert, ca_key = tls.new_ca(f"{common_name}-ca", VALIDITY)
    cert, key = tls.issue_serving(ca_cert, ca_key, common_name, dns_names, ip_addresses, VALIDITY)
    _write(key_path, tls.key_pem(key), private=True)
    _write(cert_path, tls.cert_pem(cert))
    _write(ca_path, tls.cert_pem(ca_cert))
    return cert_path, key_path, ca_path


def ensure_pki(directory: Path) -> Pki:
    """Create whatever is missing in ``directory`` and return where everything is."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if pki.ca_cert.exists() and pki.path("ca.key").exists():
        ca_key = tls.load_key(pki.path("ca.key").read_bytes())
        ca_cert = tls.load_cert(pki.ca_cert.read_bytes())
    else:
        ca_cert, ca_key = tls.new_ca("serin-localcluster-ca", VALIDITY)
        _write(pki.path("ca.key"), tls.key_pem(ca_key), private=True)
        _write(pki.ca_cert, tls.cert_pem(ca_cert))

    if not pki.serving_cert.exists():
        dns_names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        # 10.0.2.2: the host's loopback as a container on slirp4netns reaches it (Serin's image,
        # run by podman in the image test).
        addresses = ["127.0.0.1", "10.0.0.1", CONTAINER_HOST_ADDRESS]
        cert, key = tls.issue_serving(ca_cert, ca_key, "kube-apiserver", dns_names, addresses, VALIDITY)
        _write(pki.serving_key, tls.key_pem(key), private=True)
        _write(pki.serving_cert, tls.cert_pem(cert))

    for identity, (common_name, organization) in CLIENT_IDENTITIES.items():
        if pki.client_cert(identity).exists():
            continue
        cert, key = tls.issue_client(ca_cert, ca_key, common_name, organization, VALIDITY)
        _write(pki.client_key(identity), tls.key_pem(key), private=True)
        _write(pki.client_cert(identity), tls.cert_pem(cert))

    if not pki.webhook_client_cert.exists():
        webhook_ca, webhook_ca_key = tls.new_ca("serin-localcluster-webhook-client-ca", VALIDITY)
        cert, key = tls.issue_client(webhook_ca, webhook_ca_key, "kube-apiserver", None, VALIDITY)
        _write(pki.webhook_client_ca, tls.cert_pem(webhook_ca))
        _write(pki.webhook_client_key, tls.key_pem(key), private=True)
        _write(pki.webhook_client_cert, tls.cert_pem(cert))

    if not pki.service_account_key.exists():
        key = tls.new_key()
        _write(pki.service_account_key, tls.key_pem(key), private=True)
        _write(pki.service_account_public_key, tls.public_key_pem(key))
    return pki
