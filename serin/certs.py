"""Keep the TLS of Serin's admission webhooks trusted: a CA and a serving certificate, renewed before
they expire, and the CA injected as ``caBundle`` into the webhook configurations.

Three commands of ``serin-certs`` (docs/certificates.md): ``ensure`` keeps the pair in a
``kubernetes.io/tls`` Secret and injects the CA, ``write`` keeps it in files for a server run
outside the cluster, ``inject`` only injects a given CA. Every command is idempotent: it changes
nothing that is already right, so it can run as a Job, on every deploy, or by hand.

It touches nothing but the one Secret and the two webhook configurations it is named; it neither
restarts nor signals the server that serves the certificate.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config

from serin import tls

# The CA, the server's serving pair, and the client pair the API server presents to the webhooks
# (its admission configuration names them; the server checks for CLIENT_COMMON_NAME).
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key", "client.crt", "client.key")
PRIVATE_KEYS = frozenset({"ca.key", "tls.key", "client.key"})
CLIENT_COMMON_NAME = "kube-apiserver"
SECRET_TYPE = "kubernetes.io/tls"
CA_COMMON_NAME = "serin-webhook-ca"
MANAGED_BY = {"app.kubernetes.io/managed-by": "serin-certs"}
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
WEBHOOK_CONFIGURATIONS = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")
# Two replicas of the Job may write at once; the loser re-reads and usually finds nothing left to do.
ATTEMPTS = 5
REQUEST_TIMEOUT = 15.0


class CertsError(Exception):
    """A failure to report to the user as it is (exit status 1)."""


@dataclass(frozen=True)
class Want:
    """What the serving certificate must look like, and when a certificate or CA is due for renewal."""

    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    validity: datetime.timedelta = datetime.timedelta(days=365)
    ca_validity: datetime.timedelta = datetime.timedelta(days=3650)
    renew_before: datetime.timedelta = tls.DEFAULT_RENEW_BEFORE
    # Who the client certificate is issued to: the name the server checks the API server's for.
    client_name: str = CLIENT_COMMON_NAME


@dataclass(frozen=True)
class Outcome:
    """The four PEMs after ``refresh``; ``action`` is None when nothing had to change."""

    files: dict[str, bytes]
    action: str | None  # "created", "renewed certificate" or "renewed CA and certificate"
    reason: str | None
    expires: datetime.datetime  # of the serving certificate


@dataclass
class Report:
    """Lines for stdout (what was done) and stderr (what was skipped and why)."""

    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)


# ---- the renewal rule ------------------------------------------------------------------------


def _ca_problem(current: Mapping[str, bytes], now: datetime.datetime, renew_before: datetime.timedelta) -> str | None:
    ca_crt, ca_key = current.get("ca.crt"), current.get("ca.key")
    if not ca_crt:
        return "ca.crt is missing"
    if not ca_key:
        return "ca.key is missing"
    reason = tls.ca_needs_renewal(ca_crt, now, renew_before)
    if reason:
        return reason
    try:
        key = tls.load_key(ca_key)
    except ValueError as error:
        return f"ca.key is unparsable ({error})"
    if not tls.key_matches(tls.load_cert(ca_crt), key):
        return "ca.key does not belong to ca.crt"
    return None


def _cert_problem(current: Mapping[str, bytes], want: Want, now: datetime.datetime) -> str | None:
    cert_pem, key_pem = current.get("tls.crt"), current.get("tls.key")
    if not cert_pem:
        return "tls.crt is missing"
    if not key_pem:
        return "tls.key is missing"
    reason = tls.needs_renewal(cert_pem, current["ca.crt"], want.dns_names, want.ip_addresses, now, want.renew_before)
    if reason:
        return reason
    try:
        key = tls.load_key(key_pem)
    except ValueError as error:
        return f"tls.key is unparsable ({error})"
    if not tls.key_matches(tls.load_cert(cert_pem), key):
        return "tls.key does not belong to tls.crt"
    return None


def _client_problem(current: Mapping[str, bytes], want: Want) -> str | None:
    cert_pem, key_pem = current.get("client.crt"), current.get("client.key")
    if not cert_pem or not key_pem:
        return "the API server's client certificate is missing"
    try:
        subject = tls.load_cert(cert_pem).subject.rfc4514_string()
    except ValueError as error:
        return f"client.crt is unparsable ({error})"
    if subject != f"CN={want.client_name}":
        return f"the client certificate is issued to {subject}, not CN={want.client_name}"
    return None


def refresh(current: Mapping[str, bytes] | None, want: Want, now: datetime.datetime) -> Outcome:
    """The CA, serving certificate and API server client certificate to keep, given what is
    stored now (``None``: nothing).

    The serving certificate is reissued when ``tls.needs_renewal`` says so or its key does not
    match; the CA is kept unless it is itself unusable or within ``renew_before`` of expiry, in
    which case everything is replaced. The client certificate is reissued with the serving one,
    or when it is missing or due.
    """
    present = {key: value for key, value in (current or {}).items() if key in KEYS and value}
    ca_reason = _ca_problem(present, now, want.renew_before) if present else None
    if not present or ca_reason:
        ca_cert, ca_key = tls.new_ca(CA_COMMON_NAME, want.ca_validity, now)
        files = {"ca.crt": tls.cert_pem(ca_cert), "ca.key": tls.key_pem(ca_key)}
        action = "renewed CA and certificate" if present else "created"
        reason = ca_reason
    else:
        ca_cert, ca_key = tls.load_cert(present["ca.crt"]), tls.load_key(present["ca.key"])
        reason = _cert_problem(present, want, now)
        if reason is None:
            expires = tls.load_cert(present["tls.crt"]).not_valid_after_utc
            client_reason = _client_problem(present, want) or tls.needs_renewal(
                present["client.crt"], present["ca.crt"], (), (), now, want.renew_before
            )
            if client_reason is None:
                return Outcome({key: present[key] for key in KEYS}, None, None, expires)
            files = {key: present[key] for key in KEYS if not key.startswith("client.")}
            return Outcome(
                files | _client_pair(ca_cert, ca_key, want, now), "renewed client certificate", client_reason, expires
            )
        files = {"ca.crt": present["ca.crt"], "ca.key": present["ca.key"]}
        action = "renewed certificate"
    cert, key = tls.issue_serving(
        ca_cert, ca_key, want.common_name, want.dns_names, want.ip_addresses, want.validity, now
    )
    files |= {"tls.crt": tls.cert_pem(cert), "tls.key": tls.key_pem(key)}
    return Outcome(files | _client_pair(ca_cert, ca_key, want, now), action, reason, cert.not_valid_after_utc)


def _client_pair(ca_cert: Any, ca_key: Any, want: Want, now: datetime.datetime) -> dict[str, bytes]:
    cert, key = tls.issue_client(ca_cert, ca_key, want.client_name, None, want.validity, now)
    return {"client.crt": tls.cert_pem(cert), "client.key": tls.key_pem(key)}


def _done(outcome: Outcome, where: str, now: datetime.datetime) -> str:
    remaining = tls.describe_remaining(outcome.expires - now)
    if outcome.action is None:
        return f"up to date: {where} (certificate {remaining})"
    if outcome.action == "created":
        return f"created {where}: certificate {remaining}"
    return f"{outcome.action} in {where}: {remaining}; reason: {outcome.reason}"


# ---- files (local runs) ----------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes, private: bool) -> None:
    # A server or client reading while this runs sees either the old file or the new one, never
    # half of one; a key is never readable by others, not even for a moment.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def write_files(directory: Path, want: Want, now: datetime.datetime) -> list[str]:
    """Create or renew ``ca.crt``, ``ca.key``, ``tls.crt`` and ``tls.key`` in ``directory``.

    Returns what was done, then the paths a server (``tls.crt``, ``tls.key``) and its clients
    (``ca.crt``) use.
    """
    directory.mkdir(parents=True, exist_ok=True)
    current = {key: (directory / key).read_bytes() for key in KEYS if (directory / key).is_file()}
    outcome = refresh(current or None, want, now)
    if outcome.action is not None:
        # The CA goes first, so that a client which reloads it already trusts the new certificate.
        for key in KEYS:
            if current.get(key) != outcome.files[key]:
                _write_atomically(directory / key, outcome.files[key], key in PRIVATE_KEYS)
    lines = [_done(outcome, str(directory), now)]
    return lines + [str(directory / key) for key in ("ca.crt", "tls.crt", "tls.key")]


# ---- the API server --------------------------------------------------------------------------


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from ``kubeconfig`` (or ``$KUBECONFIG``), else from the Pod's service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            api: client.ApiClient = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
            return api
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    except config.ConfigException as error:
        if path:
            raise CertsError(f"cannot use kubeconfig {path}: {error}") from None
        raise CertsError(f"not running in a cluster and no --kubeconfig or KUBECONFIG given ({error})") from None
    except OSError as error:
        raise CertsError(f"cannot read kubeconfig {path}: {error}") from None


VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Target:
    """One object, named the way RBAC names it, so that a refusal can say which permission is missing."""

    resource: str  # e.g. "secrets", "mutatingwebhookconfigurations.admissionregistration.k8s.io"
    name: str
    namespace: str | None
    path: str  # the object's URL path
    label: str  # e.g. "secret serin-system/serin-webhook-tls"


def _request(
    api: client.ApiClient,
    method: str,
    target: Target,
    path: str | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """One request as plain JSON: the client's typed models would drop fields they do not know.

    Returns the status and the body for 2xx, 404, 409 and 422 (the callers' business); every
    other answer becomes a CertsError that says what was refused and why.
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    what = f"{VERBS[method]} {target.label}"
    try:
        method, url, headers, serialized, post = api.param_serialize(
            method=method,
            resource_path=path or target.path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, serialized, post, _request_timeout=REQUEST_TIMEOUT)
        response.read()  # type: ignore[no-untyped-call]
    except (OSError, ValueError, urllib3.exceptions.HTTPError, client.ApiException) as error:
        raise CertsError(f"{what}: cannot reach the API server: {error}") from None
    try:
        data: dict[str, Any] = json.loads(response.data or b"{}")
    except ValueError:
        data = {}
    status: int = response.status
    if 200 <= status < 300 or status in (404, 409, 422):
        return status, data
    message = data.get("message") or response.reason or ""
    if status == 401:
        raise CertsError(f"{what}: the API server did not accept the credentials (401 {message})")
    if status == 403:
        scope = f"in namespace {target.namespace}" if target.namespace else f"(cluster-scoped, name {target.name})"
        raise CertsError(
            f"{what}: forbidden: the identity needs RBAC verb {VERBS[method]!r} on {target.resource} {scope}"
            f" ({message})"
        )
    raise CertsError(f"{what}: {status} {message}")


def _secret_target(namespace: str, name: str) -> Target:
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    return Target("secrets", name, namespace, path, f"secret {namespace}/{name}")


def _webhook_target(kind: str, name: str) -> Target:
    resource = f"{kind}s"
    return Target(
        f"{resource}.admissionregistration.k8s.io", name, None, f"{ADMISSION}/{resource}/{name}", f"{kind}/{name}"
    )


def _decode(secret: Mapping[str, Any]) -> dict[str, bytes]:
    data: Mapping[str, str] = secret.get("data") or {}
    decoded: dict[str, bytes] = {}
    for key in KEYS:
        if data.get(key):
            try:
                decoded[key] = base64.b64decode(data[key])
            except ValueError:
                continue  # treated as missing: refresh replaces it
    return decoded


def _encode(files: Mapping[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(files[key]).decode("ascii") for key in KEYS}


def ensure_secret(
    api: client.ApiClient, namespace: str, name: str, want: Want, now: datetime.datetime
) -> tuple[bytes, str]:
    """Create or renew the TLS Secret; returns the CA (PEM) it holds and what was done.

    Writes carry the resourceVersion that was read, so a concurrent writer makes this one re-read
    and decide again instead of overwriting a certificate the other has already handed out.
    """
    target = _secret_target(namespace, name)
    for _ in range(ATTEMPTS):
        status, secret = _request(api, "GET", target)
        if status == 404:
            outcome = refresh(None, want, now)
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": MANAGED_BY},
                "type": SECRET_TYPE,
                "data": _encode(outcome.files),
            }
            status, answer = _request(api, "POST", target, f"/api/v1/namespaces/{namespace}/secrets", body)
        else:
            if secret.get("type") != SECRET_TYPE:
                raise CertsError(
                    f"{target.label} has type {secret.get('type')!r}, not {SECRET_TYPE!r}; a Secret's type cannot"
                    f" change: delete it (kubectl -n {namespace} delete secret {name}) and run this again"
                )
            outcome = refresh(_decode(secret), want, now)
            if outcome.action is None:
                return outcome.files["ca.crt"], _done(outcome, target.label, now)
            # The whole object goes back as read (other keys, labels, annotations and the
            # resourceVersion precondition included); only the keys this tool keeps change.
            secret["data"] = {**(secret.get("data") or {}), **_encode(outcome.files)}
            status, answer = _request(api, "PUT", target, body=secret)
        if status == 409 or (status == 404 and secret):
            continue  # created, changed or deleted by someone else since it was read: decide again
        if status == 404:
            raise CertsError(f"{target.label}: namespace {namespace} does not exist")
        if status == 422:
            raise CertsError(f"{target.label} was refused: {answer.get('message', '')}")
        return outcome.files["ca.crt"], _done(outcome, target.label, now)
    raise CertsError(f"{target.label} kept changing while it was being written; gave up after {ATTEMPTS} attempts")


def _webhooks(count: int) -> str:
    return f"{count} webhook{'' if count == 1 else 's'}"


def inject_ca_bundle(api: client.ApiClient, name: str, ca_pem: bytes, report: Report) -> None:
    """Set ``clientConfig.caBundle`` of every webhook in the mutating and the validating webhook
    configuration called ``name`` to ``ca_pem``, where it differs.

    A missing configuration is reported (``Report.err``); both missing is an error, since then
    nothing trusts the CA.
    """
    bundle = base64.b64encode(ca_pem).decode("ascii")
    missing = 0
    for kind in WEBHOOK_CONFIGURATIONS:
        target = _webhook_target(kind, name)
        refusal = ""
        for _ in range(ATTEMPTS):
            status, configuration = _request(api, "GET", target)
            if status == 404:
                missing += 1
                report.err.append(f"not found: {target.label} (no caBundle injected there)")
                break
            webhooks: list[dict[str, Any]] = configuration.get("webhooks") or []
            # A JSON patch touches caBundle alone (a replace would send back only the fields this
            # client knows); the test operations make it fail if the list was reordered meanwhile.
            patch: list[dict[str, Any]] = []
            for index, webhook in enumerate(webhooks):
                if (webhook.get("clientConfig") or {}).get("caBundle") != bundle:
                    patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
                    patch.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle})
            if not patch:
                report.out.append(f"up to date: {target.label} ({_webhooks(len(webhooks))})")
                break
            status, answer = _request(api, "PATCH", target, body=patch, content_type="application/json-patch+json")
            if status in (404, 409, 422):
                # A failed test operation answers 422 too: changed or deleted since it was read, so read it again.
                refusal = str(answer.get("message", ""))
                continue
            report.out.append(
                f"caBundle injected into {target.label} ({len(patch) // 2} of {_webhooks(len(webhooks))})"
            )
            break
        else:
            raise CertsError(f"patch {target.label}: gave up after {ATTEMPTS} attempts; last answer: {refusal}")
    if missing == len(WEBHOOK_CONFIGURATIONS):
        raise CertsError(
            f"neither {' nor '.join(f'{kind}/{name}' for kind in WEBHOOK_CONFIGURATIONS)} exists: nothing trusts the CA"
        )


# ---- command line ----------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> datetime.timedelta:
    """``720h``, ``90d``, ``1h30m``: Go-style durations (plus ``d`` for days), all positive."""
    parts = _DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 720h, 90d or 1h30m)")
    duration = datetime.timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))
    if duration <= datetime.timedelta(0):
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return duration


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def default_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service is reached by from the API server (and from Pods)."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serin-certs", description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    def renewal_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--ip", action="append", type=_ip, default=[], help="IP SAN (repeatable)")
        command.add_argument("--dns", action="append", default=[], help="DNS SAN (repeatable)")
        command.add_argument(
            "--renew-before", type=parse_duration, default="720h", help="renew this long before expiry (720h)"
        )
        command.add_argument("--validity", type=parse_duration, default="8760h", help="certificate lifetime (8760h)")
        command.add_argument("--ca-validity", type=parse_duration, default="87600h", help="CA lifetime (87600h)")
        command.add_argument(
            "--client-name",
            default=CLIENT_COMMON_NAME,
            help=f"common name of the API server's client certificate ({CLIENT_COMMON_NAME})",
        )

    ensure = commands.add_parser("ensure", help="keep the pair in a Secret and inject the CA into the webhooks")
    ensure.add_argument("--namespace", default="serin-system")
    ensure.add_argument("--service", default="serin", help="Service in front of the webhook server")
    ensure.add_argument("--secret", default="serin-webhook-tls")
    ensure.add_argument("--webhook-config", default="serin", help="name of both webhook configurations")
    ensure.add_argument("--kubeconfig", help="default: $KUBECONFIG, else the Pod's service account")
    renewal_options(ensure)
    ensure.set_defaults(handler=_ensure)

    write = commands.add_parser("write", help="keep the pair in files, for a server run outside the cluster")
    write.add_argument("--dir", type=Path, required=True)
    renewal_options(write)
    write.set_defaults(handler=_write)

    inject = commands.add_parser("inject", help="only inject a CA file into the webhook configurations")
    inject.add_argument("--ca-file", type=Path, required=True)
    inject.add_argument("--webhook-config", required=True)
    inject.add_argument("--kubeconfig")
    inject.set_defaults(handler=_inject)
    return parser


def _want(args: argparse.Namespace, dns_names: list[str], common_name: str, report: Report) -> Want:
    for longer, label in ((args.validity, "--validity"), (args.ca_validity, "--ca-validity")):
        if args.renew_before >= longer:
            report.err.append(f"warning: --renew-before is not shorter than {label}: every run will renew")
    return Want(
        common_name=common_name,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(args.ip),
        validity=args.validity,
        ca_validity=args.ca_validity,
        renew_before=args.renew_before,
        client_name=args.client_name,
    )


def _ensure(args: argparse.Namespace, now: datetime.datetime, report: Report) -> None:
    dns_names = args.dns or default_dns_names(args.service, args.namespace)
    want = _want(args, dns_names, f"{args.service}.{args.namespace}.svc", report)
    api = api_client(args.kubeconfig)
    try:
        ca_pem, line = ensure_secret(api, args.namespace, args.secret, want, now)
        report.out.append(line)
        inject_ca_bundle(api, args.webhook_config, ca_pem, report)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _write(args: argparse.Namespace, now: datetime.datetime, report: Report) -> None:
    if not args.ip and not args.dns:
        raise CertsError("give at least one --ip or --dns: the certificate is only valid for its SANs")
    want = _want(args, args.dns, (args.dns or args.ip)[0], report)
    try:
        report.out.extend(write_files(args.dir, want, now))
    except OSError as error:
        raise CertsError(f"cannot write to {args.dir}: {error}") from None


def _inject(args: argparse.Namespace, now: datetime.datetime, report: Report) -> None:
    try:
        ca_pem = args.ca_file.read_bytes()
    except OSError as error:
        raise CertsError(f"cannot read {args.ca_file}: {error}") from None
    try:
        tls.load_cert(ca_pem)
    except ValueError as error:
        raise CertsError(f"{args.ca_file} holds no PEM certificate ({error})") from None
    api = api_client(args.kubeconfig)
    try:
        inject_ca_bundle(api, args.webhook_config, ca_pem, report)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None, now: datetime.datetime | None = None) -> int:
    """Run one command; 0 on success, 1 with a message on stderr on failure."""
    args = _parser().parse_args(argv)
    report = Report()
    failure: CertsError | None = None
    try:
        args.handler(args, now or datetime.datetime.now(datetime.UTC), report)
    except CertsError as error:
        failure = error
    # What was done before a failure is still reported: the Secret may exist although injection failed.
    for line in report.out:
        print(line)
    for line in report.err:
        print(line, file=sys.stderr)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
