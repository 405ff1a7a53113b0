"""A ``MetricsProvider`` over Google Cloud Monitoring (formerly Stackdriver): MQL queries sent to
``POST {address}/v3/projects/{project}/timeSeries:query`` (``address`` defaults to
``https://monitoring.googleapis.com``), with the body ``{"query": <MQL>}``.

Credentials, from the MetricTemplate's Secret:

* ``project``: the Google Cloud project to query (its id or number);
* ``serviceAccountKey``: a service account key, the JSON file Google hands out (``client_email``,
  ``private_key``, ``private_key_id``, ``token_uri``).

There is no Google SDK here: the provider does the OAuth 2.0 service-account flow itself (Google's
"OAuth 2.0 for Server to Server Applications", RFC 7523). It signs a JWT with the key (RS256;
``iss`` the account, ``scope`` monitoring.read, ``aud`` the key's ``token_uri``, one hour from
``iat`` to ``exp``), exchanges it at ``token_uri`` for an access token, and keeps that token until
shortly before it expires. The token endpoint refusing the key (4xx) is ``InvalidCredentials``
naming the Secret; it being unreachable, slow or failing (5xx, 429) is ``MetricsUnavailable``. The
API refusing (401, 403) a token this provider had kept makes it fetch a new one and ask once more.

The answer becomes one number as in Flagger: the first value of the first point of the first time
series (the API lists a series' points newest first). No series, no point or no value (an empty
answer, also after following ``nextPageToken`` past empty pages) is ``NoValuesFound``, as is NaN.
The time window is the query's own (``| within 5m``, typically with ``{{ interval }}``): the API
takes none besides it. The API's 4xx (an MQL error: 400 INVALID_ARGUMENT; an unknown project: 404)
is ``InvalidQuery``, 401/403 ``InvalidCredentials``, 429/5xx/timeouts ``MetricsUnavailable``
(``serin.metrics.http``). MQL has no cheap syntax check (no validate-only request), so
``syntax_error`` says nothing.

How it differs from Flagger (``stackdriver.go``, which uses Google's Go client):

* ``serviceAccountKey`` is required. Flagger falls back to Application Default Credentials (GKE
  Workload Identity, the metadata server) without one; Serin takes credentials only from the Secret.
* An ``int64Value`` is its number; Flagger reads every value as a double and so gets 0 for an
  integer. A bool, string or distribution value is ``InvalidQuery`` (Flagger: 0), NaN is
  ``NoValuesFound`` (Flagger: NaN).
* ``address`` replaces the API's base URL (Flagger ignores it) and ``headers`` are sent with each
  API request (not to the token endpoint). Surrounding whitespace of ``project`` is dropped.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from serin import egress
from serin.kube.store import KubeStore
from serin.metrics.http import DEFAULT_TIMEOUT, HttpBackend, retrying_session, unanswered
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig

DEFAULT_ADDRESS = "https://monitoring.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Enough for timeSeries.query (what Flagger's IsOnline expects the account to have).
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google accepts assertions valid for at most an hour.
ASSERTION_LIFETIME = 3600
# A kept token is replaced this long before it expires (or at half its life, if that is shorter).
REFRESH_MARGIN = 300.0
# Empty pages followed, at most, before deciding the answer has no data.
MAX_PAGES = 10


def build(config: ProviderConfig, store: KubeStore) -> StackdriverProvider:
    """The Cloud Monitoring of a MetricTemplate: ``project`` and ``serviceAccountKey`` from its Secret."""
    project = config.credential("project").strip()
    account = ServiceAccount.from_key(config.credential("serviceAccountKey"), _secret(config))
    return StackdriverProvider(config, project, account)


def _secret(config: ProviderConfig) -> str:
    return f"Secret {config.secret_name}" if config.secret_name else "no secretRef"


@dataclass(frozen=True)
class ServiceAccount:
    """What of a service account key signs assertions; ``repr`` shows only the token endpoint."""

    email: str = field(repr=False)
    key_id: str = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)
    token_uri: str

    @classmethod
    def from_key(cls, key_json: str, secret: str) -> ServiceAccount:
        """Parse a key file's JSON; InvalidCredentials naming ``secret`` (never the key) when it is not one."""
        problem = f"stackdriver: serviceAccountKey in {secret} is not a service account key"
        try:
            key = json.loads(key_json)
        except ValueError:
            raise InvalidCredentials(f"{problem} (not JSON)") from None
        if not isinstance(key, dict):
            raise InvalidCredentials(f"{problem} (not a JSON object)")
        kind = key.get("type", "service_account")
        if kind != "service_account":
            raise InvalidCredentials(f"{problem}: its type is {str(kind)[:40]!r}, only service_account is supported")
        email, pem = key.get("client_email"), key.get("private_key")
        if not isinstance(email, str) or not email or not isinstance(pem, str) or not pem:
            raise InvalidCredentials(f"{problem} (it needs client_email and private_key)")
        token_uri = key.get("token_uri") or DEFAULT_TOKEN_URI
        if not isinstance(token_uri, str) or urlsplit(token_uri).scheme not in ("http", "https"):
            raise InvalidCredentials(f"{problem} (its token_uri is not an http(s) URL)")
        try:
            private_key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise InvalidCredentials(f"{problem} (its private_key is not a PEM private key)") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise InvalidCredentials(f"{problem} (its private_key is not an RSA key)")
        key_id = key.get("private_key_id")
        return cls(email, key_id if isinstance(key_id, str) else "", private_key, token_uri)

    def assertion(self, now: float) -> str:
        """A signed JWT asking ``token_uri`` for a monitoring.read token (RS256, valid for an hour)."""
        issued = int(now)
        header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
        if self.key_id:
            header["kid"] = self.key_id
        claims = {
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}".encode()
        signature = self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64url(signature)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    # Wall-clock second after which it is not used any more (before it expires).
    refresh_at: float


class StackdriverProvider:
    """MQL queries against one project, with an access token kept across queries (thread-safe)."""

    def __init__(
        self,
        config: ProviderConfig,
        project: str,
        account: ServiceAccount,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = HttpBackend(config, DEFAULT_ADDRESS, timeout)
        self.project = project
        self.account = account
        self.clock = clock
        self.secret = _secret(config)
        # The token endpoint gets none of the template's headers, only the TLS choice.
        self.token_session = retrying_session()
        self.token_session.verify = not config.insecure_skip_verify
        self._token: _Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StackdriverProvider({self.backend.shown!r}, project={self.project!r})"

    def close(self) -> None:
        self.backend.close()
        self.token_session.close()

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """The first value of the first point of the first time series the MQL query returns."""
        body: dict[str, Any] = {"query": query}
        for _ in range(MAX_PAGES):
            answer = self._post_query(body, query)
            if not isinstance(answer, dict):
                raise InvalidQuery(f"stackdriver answer for query {query} is not a QueryTimeSeriesResponse")
            series = answer.get("timeSeriesData") or []
            if not isinstance(series, list):
                raise InvalidQuery(f"stackdriver answer for query {query} has a malformed timeSeriesData")
            page_token = answer.get("nextPageToken")
            if series or not page_token:
                return _first_value(series, query, answer.get("partialErrors"))
            # An empty page with more to come: the first series is on a later one.
            body = {"query": query, "pageToken": page_token}
        raise NoValuesFound(f"no values found for query {query} ({MAX_PAGES} pages without time series)")

    def syntax_error(self, query: str) -> str | None:
        """None: Cloud Monitoring cannot check MQL without running it."""
        return None

    def _post_query(self, body: dict[str, Any], query: str) -> Any:
        path = f"/v3/projects/{quote(self.project, safe='')}/timeSeries:query"
        token, kept = self._access_token()
        try:
            return self._request(path, body, token, query)
        except InvalidCredentials:
            if not kept:
                raise
        # A token kept from before was refused (revoked, or the clock is off): try once with a new one.
        self._forget(token)
        token, _ = self._access_token()
        return self._request(path, body, token, query)

    def _request(self, path: str, body: dict[str, Any], token: str, query: str) -> Any:
        return self.backend.request_json(
            "POST",
            path,
            f"query {query}",
            # Google's errors come pretty-printed unless asked not to; messages are cut at 300 characters.
            params={"prettyPrint": "false"},
            json_body=body,
            headers={"Authorization": f"Bearer {token}"},
        )

    def _access_token(self) -> tuple[str, bool]:
        """A usable access token, and whether it was kept from before."""
        with self._lock:
            now = self.clock()
            if self._token is not None and now < self._token.refresh_at:
                return self._token.value, True
            self._token = self._fetch_token(now)
            return self._token.value, False

    def _forget(self, token: str) -> None:
        with self._lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    def _fetch_token(self, now: float) -> _Token:
        uri = self.account.token_uri
        form = {"grant_type": JWT_GRANT, "assertion": self.account.assertion(now)}
        timeout = self.backend.timeout
        try:
            response = egress.fetch(self.token_session, "POST", uri, timeout, data=form)
        except egress.EgressError as error:
            raise unanswered(f"stackdriver token endpoint {uri}", "for a token", error) from None
        status = response.status
        if status == 429 or status >= 500:
            raise MetricsUnavailable(f"stackdriver token endpoint {uri} answered status {status}")
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status != 200:
            # OAuth's error fields are the server's words (invalid_grant: Invalid JWT Signature.), never ours.
            detail = ": ".join(
                egress.shortened(answer[key])[:150]
                for key in ("error", "error_description")
                if isinstance(answer.get(key), str)
            )
            raise InvalidCredentials(
                f"stackdriver token endpoint {uri} refused the service account key ({status}; it comes from "
                f"{self.secret}): {detail or 'no explanation'}"
            )
        value, lifetime = answer.get("access_token"), answer.get("expires_in", ASSERTION_LIFETIME)
        if not isinstance(value, str) or not value:
            raise InvalidCredentials(f"stackdriver token endpoint {uri} answered without an access_token")
        try:
            seconds = max(float(lifetime), 0.0)
        except (TypeError, ValueError):
            seconds = 0.0
        return _Token(value, now + max(seconds - REFRESH_MARGIN, seconds / 2))


def _first_value(series: list[Any], query: str, partial_errors: Any) -> float:
    """The first value of the first point of the first series, as a float."""
    if not series:
        raise NoValuesFound(f"no values found for query {query}{_partial(partial_errors)}")
    first = series[0]
    points = first.get("pointData") if isinstance(first, dict) else None
    if not points:
        raise NoValuesFound(f"no values found for query {query} (a time series without points)")
    values = points[0].get("values") if isinstance(points, list) and isinstance(points[0], dict) else None
    if not values:
        raise NoValuesFound(f"no values found for query {query} (a point without values)")
    typed = values[0] if isinstance(values, list) else None
    value = _number(typed, query)
    if math.isnan(value):
        raise NoValuesFound(f"no values found for query {query} (NaN)")
    return value


def _number(typed: Any, query: str) -> float:
    # A TypedValue in proto3 JSON: doubleValue a number (or "NaN", "Infinity"), int64Value a string.
    if isinstance(typed, dict):
        for key in ("doubleValue", "int64Value"):
            if key in typed and not isinstance(typed[key], bool):
                try:
                    return float(typed[key])
                except (TypeError, ValueError):
                    break
        else:
            kinds = ", ".join(sorted(typed)) or "nothing"
            raise InvalidQuery(f"query {query} returned {kinds}, not a number (doubleValue or int64Value)")
    raise InvalidQuery(f"query {query} returned a malformed value: {str(typed)[:100]}")


def _partial(errors: Any) -> str:
    # partialErrors are google.rpc.Status: what kept some of the data from the answer.
    if not isinstance(errors, list) or not errors:
        return ""
    messages = [str(error.get("message", "")) for error in errors if isinstance(error, dict)]
    return f" (partial errors: {'; '.join(message for message in messages if message)[:200]})"
