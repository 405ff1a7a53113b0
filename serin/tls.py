"""Certificates for TLS that Kubernetes trusts: a CA, serving and client certificates it signs, PEM
conversion, and the rule that says when a serving certificate must be replaced.

Pure certificate logic over ``cryptography``: no Kubernetes client, no files, no network. The
clock is read only when a caller passes no ``now``; ``needs_renewal`` always takes it. Keys are
EC P-256, signatures SHA-256.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_RENEW_BEFORE = datetime.timedelta(days=30)

# Certificates start a little in the past so that a peer whose clock runs behind accepts them at once.
BACKDATE = datetime.timedelta(minutes=5)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """EC keys sign: TLS handshakes always, certificates (and CRLs) only for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(
    common_name: str, validity: datetime.timedelta, now: datetime.datetime | None = None
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA certificate and its key, valid from ``now`` (minus a little) for ``validity``."""
    key = new_key()
    start = _now(now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    validity: datetime.timedelta,
    now: datetime.datetime | None,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key()
    start = _now(now)
    # A certificate cannot be trusted longer than its CA, so it ends with it at the latest; renewing
    # the CA then renews both together.
    end = min(start + validity, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _sans(dns_names: Iterable[str], ip_addresses: Iterable[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    return sans


def issue_serving(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    validity: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A server certificate (serverAuth) signed by the CA, and its new key.

    Clients check only the SANs, never the common name, so every host name and IP address that
    clients use must be in ``dns_names`` or ``ip_addresses``. The certificate ends with the CA at
    the latest.
    """
    sans = _sans(dns_names, ip_addresses)
    if not sans:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    return _issue(ca_cert, ca_key, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, validity, now, sans)


def issue_client(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    organization: str | None,
    validity: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A client certificate (clientAuth) signed by the CA, and its new key.

    Kubernetes reads the user name from the common name and a group from the organization.
    """
    subject = _name(common_name, organization)
    return _issue(ca_cert, ca_key, subject, ExtendedKeyUsageOID.CLIENT_AUTH, validity, now)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (what Kubernetes TLS Secrets and Python's ssl expect)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_cert(pem: bytes) -> x509.Certificate:
    """The first certificate in ``pem``; ValueError when there is none or it is malformed."""
    return x509.load_pem_x509_certificate(pem)


def load_key(pem: bytes) -> PrivateKey:
    """An unencrypted EC private key; ValueError when ``pem`` holds anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as error:  # raised for an encrypted key without a password
        raise ValueError(str(error)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"expected an EC private key, got {type(key).__name__}")
    return key


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of the certificate's public key."""
    return cert.public_key() == key.public_key()


def describe_remaining(remaining: datetime.timedelta) -> str:
    """'expires in 29 days', 'expires in 5 hours', or 'expired'."""
    if remaining <= datetime.timedelta(0):
        return "expired"
    if remaining >= datetime.timedelta(days=2):
        # Rounded: a certificate issued for 365 days just now expires in 365 days, not 364.
        return f"expires in {round(remaining / datetime.timedelta(days=1))} days"
    hours = int(remaining.total_seconds() // 3600)
    return f"expires in {hours} hour{'s' if hours != 1 else ''}" if hours else "expires in less than an hour"


def _span(duration: datetime.timedelta) -> str:
    hours = int(duration.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        return f"{hours // 24} days"
    return f"{hours} hours" if hours else f"{int(duration.total_seconds())} seconds"


def _expiry_reason(
    cert: x509.Certificate, now: datetime.datetime, renew_before: datetime.timedelta, what: str
) -> str | None:
    if cert.not_valid_before_utc > now:
        return f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    remaining = cert.not_valid_after_utc - now
    if remaining <= renew_before:
        return f"{what} {describe_remaining(remaining)} (renewal is due {_span(renew_before)} before expiry)"
    return None


def _cert_sans(cert: x509.Certificate) -> set[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {f"DNS:{name.lower()}" for name in extension.get_values_for_type(x509.DNSName)}
    names |= {f"IP:{address}" for address in extension.get_values_for_type(x509.IPAddress)}
    return names


def san_set(dns_names: Iterable[str], ip_addresses: Iterable[str]) -> set[str]:
    """SANs in a comparable form: ``DNS:<lower-case name>`` and ``IP:<canonical address>``."""
    names = {f"DNS:{name.lower()}" for name in dns_names}
    names |= {f"IP:{ipaddress.ip_address(address)}" for address in ip_addresses}
    return names


def needs_renewal(
    cert_pem: bytes,
    ca_pem: bytes,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    now: datetime.datetime,
    renew_before: datetime.timedelta = DEFAULT_RENEW_BEFORE,
) -> str | None:
    """Why the serving certificate ``cert_pem`` must be replaced, or None when it is fine.

    It must be when it cannot be parsed, was not signed by the CA in ``ca_pem``, is not yet valid,
    expires within ``renew_before`` of ``now``, or its SANs differ from the wanted ones (missing or
    extra names alike). The CA's own expiry is the caller's concern (``ca_needs_renewal``).
    """
    try:
        cert = load_cert(cert_pem)
    except ValueError as error:
        return f"certificate is unparsable ({error})"
    try:
        ca_cert = load_cert(ca_pem)
    except ValueError as error:
        return f"CA certificate is unparsable ({error})"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return f"certificate is not signed by the CA {ca_cert.subject.rfc4514_string()}"
    reason = _expiry_reason(cert, now, renew_before, "certificate")
    if reason:
        return reason
    have, want = _cert_sans(cert), san_set(dns_names, ip_addresses)
    if have != want:
        differences = [f"missing {name}" for name in sorted(want - have)]
        differences += [f"extra {name}" for name in sorted(have - want)]
        return f"SANs differ: {', '.join(differences)}"
    return None


def ca_needs_renewal(
    ca_pem: bytes, now: datetime.datetime, renew_before: datetime.timedelta = DEFAULT_RENEW_BEFORE
) -> str | None:
    """Why the CA certificate ``ca_pem`` must be replaced (unparsable, not a CA, not yet valid or
    expiring within ``renew_before``), or None."""
    try:
        ca_cert = load_cert(ca_pem)
    except ValueError as error:
        return f"CA certificate is unparsable ({error})"
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return "CA certificate is not a CA (basicConstraints)"
    return _expiry_reason(ca_cert, now, renew_before, "CA certificate")
