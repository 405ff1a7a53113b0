"""Webhook TLS: what serin.tls issues, when it says a certificate must be renewed, and the
``serin-certs`` tool's renewal rule and ``write`` command on files."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from serin import certs, tls

NOW = datetime.datetime(2030, 1, 15, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
YEAR = 365 * DAY
DNS = ["serin", "serin.serin-system", "serin.serin-system.svc", "serin.serin-system.svc.cluster.local"]
IPS = ["127.0.0.1"]


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, tls.PrivateKey]:
    return tls.new_ca("test-ca", 10 * YEAR, NOW)


def sans_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(extension.get_values_for_type(x509.DNSName)), {
        str(address) for address in extension.get_values_for_type(x509.IPAddress)
    }


# ---- issuing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dns_names", "ip_addresses"),
    [
        pytest.param(DNS, [], id="service-names"),
        pytest.param(["localhost"], ["127.0.0.1"], id="dns-and-ipv4"),
        pytest.param([], ["127.0.0.1", "::1"], id="ipv4-and-ipv6-only"),
    ],
)
def test_serving_certificate_is_signed_by_the_ca_with_exactly_the_sans(
    ca: tuple[x509.Certificate, tls.PrivateKey], dns_names: list[str], ip_addresses: list[str]
) -> None:
    ca_cert, ca_key = ca
    cert, key = tls.issue_serving(ca_cert, ca_key, "serin", dns_names, ip_addresses, YEAR, NOW)

    cert.verify_directly_issued_by(ca_cert)
    assert sans_of(cert) == (set(dns_names), {str(ipaddress.ip_address(ip)) for ip in ip_addresses})
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls.key_matches(cert, key)
    assert cert.not_valid_after_utc == NOW + YEAR
    assert tls.load_cert(tls.cert_pem(cert)) == cert
    assert tls.key_matches(cert, tls.load_key(tls.key_pem(key)))


def test_a_certificate_ends_with_its_ca_at_the_latest() -> None:
    ca_cert, ca_key = tls.new_ca("short-ca", 30 * DAY, NOW)
    cert, _ = tls.issue_serving(ca_cert, ca_key, "serin", ["serin"], [], YEAR, NOW)
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_client_certificate_carries_user_and_group(ca: tuple[x509.Certificate, tls.PrivateKey]) -> None:
    cert, _ = tls.issue_client(ca[0], ca[1], "serin-admin", "system:masters", YEAR, NOW)
    cert.verify_directly_issued_by(ca[0])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "serin-admin"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]


def test_a_serving_certificate_needs_a_san(ca: tuple[x509.Certificate, tls.PrivateKey]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        tls.issue_serving(ca[0], ca[1], "serin", [], [], YEAR, NOW)


def _rsa_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"not a key", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(_rsa_key_pem(), id="rsa-key"),
    ],
)
def test_load_key_accepts_only_ec_keys(pem: bytes) -> None:
    with pytest.raises(ValueError):
        tls.load_key(pem)


# ---- renewal ---------------------------------------------------------------------------------


def _signed_by_another_ca() -> bytes:
    other_cert, other_key = tls.new_ca("test-ca", 10 * YEAR, NOW)  # same name, other key
    cert, _key = tls.issue_serving(other_cert, other_key, "serin", DNS, IPS, YEAR, NOW)
    return tls.cert_pem(cert)


@pytest.mark.parametrize(
    ("validity", "now", "dns_names", "ip_addresses", "expected"),
    [
        pytest.param(YEAR, NOW, DNS, IPS, None, id="fresh"),
        pytest.param(YEAR, NOW + 300 * DAY, DNS, IPS, None, id="65-days-left"),
        pytest.param(10 * DAY, NOW, DNS, IPS, "certificate expires in 10 days", id="expires-in-10-days"),
        pytest.param(YEAR, NOW + 355 * DAY, DNS, IPS, "certificate expires in 10 days", id="aged-to-10-days"),
        pytest.param(YEAR, NOW + 400 * DAY, DNS, IPS, "certificate expired", id="expired"),
        pytest.param(YEAR, NOW - DAY, DNS, IPS, "not valid before", id="not-yet-valid"),
        pytest.param(YEAR, NOW, [*DNS, "serin.example.com"], IPS, "missing DNS:serin.example.com", id="dns-added"),
        pytest.param(YEAR, NOW, DNS, [*IPS, "10.0.0.7"], "missing IP:10.0.0.7", id="ip-added"),
        pytest.param(YEAR, NOW, DNS[:2], IPS, "extra DNS:serin.serin-system.svc", id="dns-removed"),
        pytest.param(YEAR, NOW, [name.upper() for name in DNS], IPS, None, id="dns-names-ignore-case"),
        pytest.param(YEAR, NOW, list(reversed(DNS)), IPS, None, id="san-order-ignored"),
    ],
)
def test_needs_renewal(
    ca: tuple[x509.Certificate, tls.PrivateKey],
    validity: datetime.timedelta,
    now: datetime.datetime,
    dns_names: list[str],
    ip_addresses: list[str],
    expected: str | None,
) -> None:
    cert, _ = tls.issue_serving(ca[0], ca[1], "serin", DNS, IPS, validity, NOW)
    reason = tls.needs_renewal(tls.cert_pem(cert), tls.cert_pem(ca[0]), dns_names, ip_addresses, now, 30 * DAY)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize(
    ("cert_pem", "ca_pem", "expected"),
    [
        pytest.param(_signed_by_another_ca(), None, "not signed by the CA", id="other-ca"),
        pytest.param(b"garbage", None, "certificate is unparsable", id="garbage-certificate"),
        pytest.param(b"", None, "certificate is unparsable", id="empty-certificate"),
        pytest.param(None, b"garbage", "CA certificate is unparsable", id="garbage-ca"),
    ],
)
def test_needs_renewal_refuses_what_it_cannot_trust(
    ca: tuple[x509.Certificate, tls.PrivateKey],
    cert_pem: bytes | None,
    ca_pem: bytes | None,
    expected: str,
) -> None:
    good, _ = tls.issue_serving(ca[0], ca[1], "serin", DNS, IPS, YEAR, NOW)
    pem = cert_pem if cert_pem is not None else tls.cert_pem(good)
    reason = tls.needs_renewal(pem, ca_pem if ca_pem is not None else tls.cert_pem(ca[0]), DNS, IPS, NOW)
    assert reason is not None and expected in reason


def test_the_ca_itself_is_not_accepted_as_serving_certificate_even_if_self_signed(
    ca: tuple[x509.Certificate, tls.PrivateKey],
) -> None:
    # A self-signed CA verifies against itself; its missing SANs still make it unfit to serve.
    reason = tls.needs_renewal(tls.cert_pem(ca[0]), tls.cert_pem(ca[0]), DNS, IPS, NOW)
    assert reason is not None and reason.startswith("SANs differ")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(NOW, None, id="fresh"),
        pytest.param(NOW + 10 * YEAR - 10 * DAY, "CA certificate expires in 10 days", id="expiring"),
        pytest.param(NOW + 11 * YEAR, "CA certificate expired", id="expired"),
    ],
)
def test_ca_needs_renewal(
    ca: tuple[x509.Certificate, tls.PrivateKey], now: datetime.datetime, expected: str | None
) -> None:
    reason = tls.ca_needs_renewal(tls.cert_pem(ca[0]), now, 30 * DAY)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize(
    ("pem", "expected"),
    [
        pytest.param(b"garbage", "unparsable", id="garbage"),
        pytest.param(None, "not a CA", id="leaf-certificate"),
    ],
)
def test_ca_needs_renewal_refuses_what_is_no_ca(
    ca: tuple[x509.Certificate, tls.PrivateKey], pem: bytes | None, expected: str
) -> None:
    leaf, _ = tls.issue_serving(ca[0], ca[1], "serin", DNS, IPS, YEAR, NOW)
    reason = tls.ca_needs_renewal(pem if pem is not None else tls.cert_pem(leaf), NOW)
    assert reason is not None and expected in reason


# ---- the serin-certs tool: renewal rule ----------------------------------------------------


def want(**changes: Any) -> certs.Want:
    base = certs.Want(
        common_name="serin.serin-system.svc",
        dns_names=tuple(DNS),
        ip_addresses=(),
        validity=YEAR,
        ca_validity=10 * YEAR,
        renew_before=30 * DAY,
    )
    return dataclasses.replace(base, **changes)


def test_refresh_creates_everything_from_nothing() -> None:
    outcome = certs.refresh(None, want(), NOW)
    assert outcome.action == "created"
    assert set(outcome.files) == {"ca.crt", "ca.key", "tls.crt", "tls.key", "client.crt", "client.key"}
    assert tls.needs_renewal(outcome.files["tls.crt"], outcome.files["ca.crt"], DNS, [], NOW) is None
    # What the API server presents to the webhooks, and the server checks it was issued to.
    client = tls.load_cert(outcome.files["client.crt"])
    assert client.subject.rfc4514_string() == "CN=kube-apiserver"
    assert tls.needs_renewal(outcome.files["client.crt"], outcome.files["ca.crt"], [], [], NOW) is None


@pytest.mark.parametrize(
    ("later", "changes", "tamper", "action", "ca_kept"),
    [
        pytest.param(DAY, {}, None, None, True, id="fresh-kept"),
        pytest.param(340 * DAY, {}, None, "renewed certificate", True, id="certificate-due-ca-kept"),
        pytest.param(DAY, {"dns_names": ("serin",)}, None, "renewed certificate", True, id="sans-changed-ca-kept"),
        pytest.param(DAY, {}, "tls.key", "renewed certificate", True, id="foreign-serving-key"),
        pytest.param(DAY, {}, "drop-tls.crt", "renewed certificate", True, id="missing-certificate"),
        pytest.param(10 * YEAR - 10 * DAY, {}, None, "renewed CA and certificate", False, id="ca-due"),
        pytest.param(DAY, {}, "ca.key", "renewed CA and certificate", False, id="foreign-ca-key"),
        pytest.param(DAY, {}, "drop-ca.key", "renewed CA and certificate", False, id="missing-ca-key"),
        pytest.param(DAY, {}, "drop-client.crt", "renewed client certificate", True, id="missing-client-certificate"),
    ],
)
def test_refresh_renews_the_certificate_and_keeps_the_ca_unless_the_ca_is_due(
    later: datetime.timedelta, changes: dict[str, object], tamper: str | None, action: str | None, ca_kept: bool
) -> None:
    first = certs.refresh(None, want(), NOW).files
    stored = dict(first)
    if tamper and tamper.startswith("drop-"):
        del stored[tamper.removeprefix("drop-")]
    elif tamper:
        stored[tamper] = tls.key_pem(tls.new_key())

    outcome = certs.refresh(stored, want(**changes), NOW + later)

    assert outcome.action == action
    assert (outcome.files["ca.crt"] == first["ca.crt"]) is ca_kept
    assert (outcome.files["tls.crt"] == first["tls.crt"]) is (action in (None, "renewed client certificate"))
    assert (outcome.files["client.crt"] == first["client.crt"]) is (action is None)
    assert tls.needs_renewal(outcome.files["client.crt"], outcome.files["ca.crt"], [], [], NOW + later) is None
    dns_names = changes.get("dns_names", DNS)
    assert isinstance(dns_names, tuple | list)
    assert tls.needs_renewal(outcome.files["tls.crt"], outcome.files["ca.crt"], dns_names, [], NOW + later) is None


# ---- the serin-certs tool: `write` ---------------------------------------------------------


def run_write(directory: Path, now: datetime.datetime, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    status = certs.main(["write", "--dir", str(directory), "--ip", "127.0.0.1", "--dns", "localhost", *extra], now)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines: list[str] = captured.out.splitlines()
    return lines


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")}


def test_write_twice_keeps_the_files_until_renewal_is_due(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "tls"
    lines = run_write(directory, NOW, capsys)
    assert lines[0].startswith("created ") and "expires in 365 days" in lines[0]
    assert lines[1:] == [str(directory / name) for name in ("ca.crt", "tls.crt", "tls.key")]
    for name, mode in {"ca.key": 0o600, "tls.key": 0o600, "ca.crt": 0o644, "tls.crt": 0o644}.items():
        assert stat.S_IMODE((directory / name).stat().st_mode) == mode, name
    first = snapshot(directory)

    lines = run_write(directory, NOW + 300 * DAY, capsys)
    assert lines[0].startswith("up to date: ")
    assert snapshot(directory) == first

    lines = run_write(directory, NOW + 340 * DAY, capsys)
    assert lines[0].startswith("renewed certificate in ") and "reason: certificate expires in 25 days" in lines[0]
    renewed = snapshot(directory)
    assert renewed["ca.crt"] == first["ca.crt"] and renewed["ca.key"] == first["ca.key"]
    assert renewed["tls.crt"] != first["tls.crt"] and renewed["tls.key"] != first["tls.key"]
    assert (
        tls.needs_renewal(renewed["tls.crt"], renewed["ca.crt"], ["localhost"], ["127.0.0.1"], NOW + 340 * DAY) is None
    )


def test_write_renews_at_once_when_renew_before_exceeds_the_validity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_write(tmp_path, NOW, capsys)
    first = snapshot(tmp_path)
    status = certs.main(["write", "--dir", str(tmp_path), "--ip", "127.0.0.1", "--dns", "localhost"], NOW)
    assert status == 0 and snapshot(tmp_path) == first
    capsys.readouterr()
    lines = run_write(tmp_path, NOW, capsys, "--renew-before", "9000h")
    assert lines[0].startswith("renewed certificate")
    assert snapshot(tmp_path)["tls.crt"] != first["tls.crt"]
    assert snapshot(tmp_path)["ca.crt"] == first["ca.crt"]


def test_write_needs_a_san(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs.main(["write", "--dir", str(tmp_path)], NOW) == 1
    assert "--ip or --dns" in capsys.readouterr().err


# ---- the serin-certs tool: arguments -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("720h", 30 * DAY, id="hours"),
        pytest.param("90d", 90 * DAY, id="days"),
        pytest.param("1h30m", datetime.timedelta(minutes=90), id="combined"),
        pytest.param("1.5h", datetime.timedelta(minutes=90), id="fraction"),
        pytest.param("45s", datetime.timedelta(seconds=45), id="seconds"),
    ],
)
def test_parse_duration(text: str, expected: datetime.timedelta) -> None:
    assert certs.parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", [pytest.param(t, id=t or "empty") for t in ["", "720", "h", "1w", "0h", "-1h", "1h x"]]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(Exception, match="duration"):
        certs.parse_duration(text)


def test_default_dns_names() -> None:
    assert certs.default_dns_names("serin", "serin-system") == DNS
