"""Alerts: what a step tells a Canary's AlertProviders, which providers want it, and the HTTP post
that every chat type shares.

An ``Alert`` is chat-neutral (the Canary, a message, a severity and ordered title/value fields);
each type module (``slack``, ``msteams``, ``discord``, ``rocket``, ``gchat``, ``webhook``) turns it
into its service's JSON and posts it with ``post_json``. ``notifier_for`` picks the module for an
AlertProvider's ``spec.type``.

The alerts Flagger sends, and so Serin (message, severity, whether ``alert_fields`` carries the
Canary's details):

* ``New <Kind> detected, initialization completed.`` info, details
* ``New revision detected, progressing canary analysis.`` info, details
* ``Canary analysis completed successfully, promotion finished.`` info
* ``Canary analysis was skipped, promotion finished.`` info
* ``Canary is waiting for approval.`` / ``Canary traffic increase is waiting for approval.`` /
  ``Canary promotion is waiting for approval.`` warn (not for a gate with ``muteAlert``)
* ``Rolling back manual webhook invoked`` warn
* ``Failed checks threshold reached <n>`` error
* ``Progress deadline exceeded <why>`` error

Errors are the engine's (``serin.ports``), never ``requests``' own, and never carry the address's
path or query or the proxy's credentials: an incoming-webhook URL *is* the credential (Slack's,
Discord's and Teams' carry their token in the path), and these messages end up in Events and logs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from serin import egress
from serin.model import Analysis, Canary
from serin.ports import InvalidCredentials, PermanentError, TemporaryError

Severity = Literal["info", "warn", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warn", "error")
_RANK: Mapping[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}

# A chat service that has not answered in 5 s is down for this tick: an alert must not hold up the
# rollouts of every other Canary the tick has to step (Flagger waits 5 s too).
DEFAULT_TIMEOUT = 5.0
# What an AlertProvider without ``username``/``channel`` posts as and to (Flagger: "flagger", "general").
DEFAULT_USERNAME = "serin"
DEFAULT_CHANNEL = "general"
# Statuses that may change if asked again: a timeout or rate limit on the service's side, and
# server errors other than 501 (not implemented: it will not be, on the next tick either).
_TEMPORARY_STATUSES = frozenset({408, 429})
# What is read of an alert service's answer: its status is the answer.
MAX_ALERT_ANSWER_BYTES = 64 * 1024

# Every AlertProvider ``spec.type`` and the module that posts to it, imported when first used. Each
# has ``build(destination: Destination) -> Notifier``.
NOTIFIER_MODULES: Mapping[str, str] = {
    "slack": "serin.notify.slack",
    "msteams": "serin.notify.msteams",
    "discord": "serin.notify.discord",
    "rocket": "serin.notify.rocket",
    "gchat": "serin.notify.gchat",
    "webhook": "serin.notify.webhook",
}


@dataclass(frozen=True)
class Alert:
    """One alert about one Canary, the same for every chat type.

    ``fields`` is ordered (title, value) pairs, because chats show them in the order given and
    Flagger's order (Cluster, Target, thresholds, routing) is what its users know.
    """

    name: str
    namespace: str
    message: str
    severity: Severity = "info"
    fields: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # A typo'd severity would otherwise pick no colour and match no provider, silently.
        if self.severity not in _RANK:
            raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)} (got {self.severity!r})")

    @property
    def subject(self) -> str:
        """``name.namespace``: how Flagger's messages name the Canary (as author, subtitle or summary)."""
        return f"{self.name}.{self.namespace}"


def alert_fields(canary: Canary, *, details: bool = True, cluster: str = "") -> tuple[tuple[str, str], ...]:
    """The fields Flagger adds to an alert: ``Cluster`` when a cluster name is configured, then with
    ``details`` the Canary's target, failed checks threshold, progress deadline and traffic routing
    (Flagger sends these with the alerts that start something: initialization and a new revision)."""
    fields: list[tuple[str, str]] = []
    if cluster:
        fields.append(("Cluster", cluster))
    if not details:
        return tuple(fields)
    target = canary.target_ref
    fields += [
        ("Target", f"{target.kind}/{target.name}.{canary.namespace}"),
        ("Failed checks threshold", str(canary.analysis.threshold)),
        ("Progress deadline", f"{canary.progress_deadline_seconds}s"),
    ]
    routing = _traffic_routing(canary.analysis)
    if routing:
        fields.append(("Traffic routing", routing))
    return tuple(fields)


def _traffic_routing(analysis: Analysis) -> str:
    """Flagger's one-line summary of the strategy, in its order of precedence (empty: none applies)."""
    if analysis.step_weight:
        return f"Weight step: {analysis.step_weight} max: {analysis.max_weight}"
    if analysis.step_weights:
        return f"Weight steps: {','.join(str(step) for step in analysis.step_weights)} max: {analysis.max_weight}"
    if analysis.match:
        return "A/B Testing"
    if analysis.iterations:
        return "Blue/Green"
    return ""


def canary_alert(
    canary: Canary, message: str, severity: Severity, *, details: bool = False, cluster: str = ""
) -> Alert:
    """The alert about ``canary``, its fields built by ``alert_fields``."""
    return Alert(
        canary.name, canary.namespace, message, severity, alert_fields(canary, details=details, cluster=cluster)
    )


def wanted(alert_severity: str, provider_severity: str) -> bool:
    """Whether a Canary's alert entry with ``provider_severity`` gets an alert of ``alert_severity``.

    The entry's severity is the lowest it gets: info every alert, warn warn and error, error error
    only (Flagger's table). An empty one is info, the CRD's documented default (Flagger itself sends
    nothing for an empty severity, which contradicts its own documentation). An unknown severity is
    a ValueError: the CRD refuses one, so it is a bug, not a user's choice to honour quietly.
    """
    threshold = provider_severity or "info"
    for severity in (alert_severity, threshold):
        if severity not in _RANK:
            raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    return _RANK[alert_severity] >= _RANK[threshold]


class Notifier(Protocol):
    def send(self, alert: Alert) -> None:
        """Post the alert; TemporaryError when the service is down, slow or rate-limiting (worth
        another try on a later tick), PermanentError when it refused the message (fix the provider)."""


@dataclass(frozen=True)
class Destination:
    """Where one AlertProvider's alerts go, its defaults applied. The address, proxy and token are
    credentials, so they are left out of the repr (and so out of logs)."""

    address: str = field(repr=False)
    channel: str = DEFAULT_CHANNEL
    username: str = DEFAULT_USERNAME
    proxy: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT


def notifier_for(
    type: str,
    address: str,
    channel: str = "",
    username: str = "",
    proxy: str = "",
    *,
    token: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> Notifier:
    """The notifier for an AlertProvider: ``type`` is its ``spec.type``, ``address`` its
    ``spec.address`` or the ``address`` of its Secret, ``token`` the Secret's ``token`` (a bearer
    token; only Slack and the generic webhook send one, as in Flagger).

    PermanentError for an unknown type or an address that is not an http(s) URL: the provider is
    wrong, and every alert sent through it would fail the same way.
    """
    module_name = NOTIFIER_MODULES.get(type)
    if module_name is None:
        raise PermanentError(
            f"alert provider type {type!r} is not supported (supported: {', '.join(NOTIFIER_MODULES)})"
        )
    check_address(address)
    destination = Destination(
        address=address,
        channel=channel or DEFAULT_CHANNEL,
        username=username or DEFAULT_USERNAME,
        proxy=proxy,
        token=token,
        timeout=timeout,
    )
    # Imported here: the type modules build on this one.
    notifier: Notifier = importlib.import_module(module_name).build(destination)
    return notifier


def check_address(address: str) -> None:
    """PermanentError unless ``address`` is an absolute http(s) URL; the message never repeats it."""
    if not address:
        raise PermanentError("the alert provider has no address")
    try:
        parts = urlsplit(address)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise PermanentError("the alert provider's address is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError("the alert provider's address is not an http(s) URL")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: enough to say which service failed, without the path
    (where webhook tokens live) or user info."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the alert address"
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def post_json(
    url: str, payload: Mapping[str, Any], proxy: str = "", timeout: float = DEFAULT_TIMEOUT, *, token: str = ""
) -> None:
    """POST ``payload`` as JSON; return on a 2xx, raise the engine's errors otherwise.

    ``proxy`` (an http(s) URL, credentials allowed) carries the request; without one the usual
    ``HTTPS_PROXY``/``NO_PROXY`` environment applies. ``token`` is sent as a bearer token. Redirects
    are not followed: a POST redirected becomes a GET and the alert would be lost while looking
    sent. Every 2xx is success (Flagger wants exactly 200; a generic webhook may well answer 202/204).

    * unreachable, a timeout, 408, 429, a 5xx other than 501: TemporaryError
    * 401, 403: InvalidCredentials; another 3xx or 4xx, 501, an invalid URL or proxy, a TLS
      failure: PermanentError
    """
    where = origin(url)
    proxies = {"http": proxy, "https": proxy} if proxy else None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # ``from None`` throughout: requests' messages and causes repeat the full URL, token included.
    if proxy:
        try:
            check_address(proxy)
        except PermanentError:
            raise PermanentError("the alert provider's proxy is not a valid URL") from None
    try:
        with egress.session() as client:
            answer = egress.fetch(
                client,
                "POST",
                url,
                timeout,
                max_bytes=MAX_ALERT_ANSWER_BYTES,
                json=dict(payload),
                headers=headers,
                proxies=proxies,
            )
    except egress.NoAnswerInTime:
        raise TemporaryError(f"{where} did not answer within {timeout:g}s") from None
    except egress.InvalidAddress:
        raise PermanentError("the alert provider's address is not a valid URL") from None
    except egress.EgressError as error:
        via = " through the alert provider's proxy" if proxy else ""
        kind = TemporaryError if error.temporary else PermanentError
        raise kind(f"cannot reach {where}{via}: {error}") from None
    status = answer.status
    if 200 <= status < 300:
        return
    snippet = egress.excerpt(answer) if answer.body else ""
    said = f"{where} answered {status}" + (f": {snippet}" if snippet else "")
    if status in (401, 403):
        raise InvalidCredentials(said)
    if status in _TEMPORARY_STATUSES or (status >= 500 and status != 501):
        raise TemporaryError(said)
    if 300 <= status < 400:
        raise PermanentError(f"{said} (a redirect: give the address it redirects to)")
    raise PermanentError(said)
