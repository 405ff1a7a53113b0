"""The stackdriver provider (Google Cloud Monitoring) against a local server of the test's own.

There is no Cloud Monitoring emulator to run, so ``FakeGoogle`` (on 127.0.0.1) implements the two
endpoints the provider talks to, as Google documents them:

* the OAuth 2.0 token endpoint of "Using OAuth 2.0 for Server to Server Applications"
  (developers.google.com/identity/protocols/oauth2/service-account): a form POST with
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion=<JWT>``. It verifies the
  JWT's RS256 signature with the public half of a key pair the test generates, and its claims
  (``iss`` the account, ``scope``, ``aud`` the token URI, ``iat``/``exp`` at most an hour apart and
  current), answering ``{access_token, expires_in, token_type}`` or 400 ``invalid_grant``.
* ``POST /v3/projects/{project}/timeSeries:query`` of the Cloud Monitoring API v3 REST reference
  (cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/query): a JSON body
  ``{query, pageToken}``, a bearer token it issued, and an answer shaped as QueryTimeSeriesResponse
  (``timeSeriesData[].pointData[].values[]``, TypedValue ``doubleValue``/``int64Value``,
  ``nextPageToken``, ``partialErrors``); errors in Google's JSON error format.

The service account key the provider gets is the key file's JSON, its ``token_uri`` pointing at the
local server; ``config.address`` points the API at it too.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from serin.metrics.stackdriver import StackdriverProvider, build
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig
from tests.unit.fake_store import FakeStore
from tests.unit.servers import FakeApi, JsonHandler, serving

EMAIL = "serin-canary@test-project.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef"
PROJECT = "test-project"
SECRET = "test/stackdriver"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
MQL = "fetch k8s_container | metric 'kubernetes.io/container/restart_count' | within 5m"


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return generate_key()


class Clock:
    """Wall-clock seconds that only move when told; shared by the provider and the server."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@dataclass
class Received:
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGoogleState:
    public_key: rsa.RSAPublicKey
    clock: Clock
    token_lifetime: int = 3600
    # A (status, body) for the token endpoint to answer instead of checking the assertion.
    token_answer: tuple[int, Any] | None = None
    # Each query answer in turn, the last one repeated.
    answers: list[tuple[int, Any]] = field(default_factory=lambda: [(200, {})])
    delay: float = 0.0
    issued: list[str] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    assertions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    queries: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeGoogle(FakeApi):
    def __init__(self, state: FakeGoogleState) -> None:
        super().__init__(GoogleHandler)
        self.state = state

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GoogleHandler(JsonHandler):
    server: FakeGoogle
    json_separators = (",", ":")

    def do_POST(self) -> None:
        raw = self.read_body()
        parts = urlsplit(self.path)
        if parts.path == "/token":
            self.answer(*self.token(parse_qs(raw.decode())))
        elif parts.path == f"/v3/projects/{PROJECT}/timeSeries:query":
            self.answer(*self.query(parts.path, parse_qs(parts.query), json.loads(raw)))
        else:
            self.answer(404, google_error(404, "NOT_FOUND", f"{parts.path} not found"))

    def token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        state = self.server.state
        if state.token_answer is not None:
            return state.token_answer
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        try:
            header_part, claims_part, signature_part = form["assertion"][0].split(".")
            header = json.loads(b64url_decode(header_part))
            claims = json.loads(b64url_decode(claims_part))
        except (KeyError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        try:
            state.public_key.verify(
                b64url_decode(signature_part),
                f"{header_part}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        now = state.clock()
        checks = {
            "alg": header.get("alg") == "RS256",
            "kid": header.get("kid") == KEY_ID,
            "iss": claims.get("iss") == EMAIL,
            "scope": claims.get("scope") == SCOPE,
            "aud": claims.get("aud") == self.server.token_uri,
            "iat": isinstance(claims.get("iat"), int) and claims["iat"] <= now + 60,
            "exp": isinstance(claims.get("exp"), int) and now < claims["exp"] <= claims["iat"] + 3600,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {', '.join(failed)}"}
        with state.lock:
            state.assertions.append((header, claims))
            token = f"ya29.token-{len(state.issued) + 1}"
            state.issued.append(token)
            state.valid_tokens.add(token)
        return 200, {"access_token": token, "expires_in": state.token_lifetime, "token_type": "Bearer"}

    def query(self, path: str, params: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        state = self.server.state
        with state.lock:
            state.queries.append(Received(path, params, dict(self.headers), body))
        authorization = self.headers.get("Authorization", "")
        if authorization.removeprefix("Bearer ") not in state.valid_tokens:
            message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
            return 401, google_error(401, "UNAUTHENTICATED", message)
        if state.delay:
            time.sleep(state.delay)
        with state.lock:
            return state.answers.pop(0) if len(state.answers) > 1 else state.answers[0]


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def series(*points: list[dict[str, Any]]) -> dict[str, Any]:
    """One TimeSeriesData with the given points (each a list of TypedValues), newest first."""
    return {
        "labelValues": [{"stringValue": "podinfo"}],
        "pointData": [
            {
                "values": values,
                "timeInterval": {"startTime": "2024-05-01T10:00:00Z", "endTime": f"2024-05-01T10:0{i}:00Z"},
            }
            for i, values in enumerate(points)
        ],
    }


def response(*data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    descriptor = {
        "labelDescriptors": [{"key": "resource.container_name"}],
        "pointDescriptors": [{"key": "value.restart_count", "valueType": "DOUBLE", "metricKind": "GAUGE"}],
    }
    return {"timeSeriesDescriptor": descriptor, "timeSeriesData": list(data), **extra}


def double(value: Any) -> dict[str, Any]:
    return {"doubleValue": value}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def google(account_key: rsa.RSAPrivateKey, clock: Clock) -> Iterator[FakeGoogle]:
    with serving(FakeGoogle(FakeGoogleState(account_key.public_key(), clock))) as running:
        yield running


def key_json(google: FakeGoogle, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **changes: Any) -> str:
    """A service account key file as Google hands it out, its token_uri at the local server."""
    document = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": pem(key),
        "client_email": EMAIL,
        "client_id": "112233445566778899",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": google.token_uri,
    }
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not None})


def config(google: FakeGoogle, secret: dict[str, str]) -> ProviderConfig:
    return ProviderConfig(
        type="stackdriver",
        address=google.url,
        headers=(("X-Goog-User-Project", (PROJECT,)),),
        secret_name=SECRET,
        secret=tuple(secret.items()),
    )


def provider_for(google: FakeGoogle, key: str, clock: Clock, project: str = PROJECT) -> StackdriverProvider:
    provider = build(config(google, {"project": project, "serviceAccountKey": key}), FakeStore())
    provider.clock = clock
    provider.backend.timeout = 2.0
    return provider


@pytest.fixture
def provider(google: FakeGoogle, account_key: rsa.RSAPrivateKey, clock: Clock) -> StackdriverProvider:
    return provider_for(google, key_json(google, account_key), clock)


# --- values -----------------------------------------------------------------------------------


def test_value_and_what_the_server_received(google: FakeGoogle, provider: StackdriverProvider, clock: Clock) -> None:
    google.state.answers = [(200, response(series([double(0.42)])))]
    assert provider.query(MQL) == 0.42
    # The token: an RS256 JWT of the account, for monitoring.read, addressed to the token URI.
    [(header, claims)] = google.state.assertions
    assert header == {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
    assert claims == {
        "iss": EMAIL,
        "scope": SCOPE,
        "aud": google.token_uri,
        "iat": int(clock.now),
        "exp": int(clock.now) + 3600,
    }
    # The query: the project's timeSeries:query, the MQL in the body (its window is its own), the token.
    [received] = google.state.queries
    assert received.path == f"/v3/projects/{PROJECT}/timeSeries:query"
    assert received.params == {"prettyPrint": ["false"]}
    assert received.body == {"query": MQL}
    assert received.headers["Authorization"] == "Bearer ya29.token-1"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Goog-User-Project"] == PROJECT


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(response(series([{"int64Value": "17"}])), 17.0, id="int64-as-string"),
        pytest.param(response(series([double(5)])), 5.0, id="double-written-as-integer"),
        pytest.param(response(series([double(1.5)], [double(9.0)])), 1.5, id="newest-point"),
        pytest.param(response(series([double(2.5), double(7.0)])), 2.5, id="first-value-column"),
        pytest.param(response(series([double(3.0)]), series([double(4.0)])), 3.0, id="first-series"),
        pytest.param(response(series([double("Infinity")])), float("inf"), id="infinity-is-a-value"),
        pytest.param(response(series([double(0)])), 0.0, id="zero"),
    ],
)
def test_values(google: FakeGoogle, provider: StackdriverProvider, answer: dict[str, Any], expected: float) -> None:
    google.state.answers = [(200, answer)]
    assert provider.query(MQL) == expected


def test_empty_pages_are_followed(google: FakeGoogle, provider: StackdriverProvider) -> None:
    google.state.answers = [(200, {"nextPageToken": "page-2"}), (200, response(series([double(0.9)])))]
    assert provider.query(MQL) == 0.9
    assert [received.body for received in google.state.queries] == [
        {"query": MQL},
        {"query": MQL, "pageToken": "page-2"},
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param({}, f"no values found for query {MQL}", id="empty-answer"),
        pytest.param(response(), f"no values found for query {MQL}", id="no-series"),
        pytest.param(
            {"partialErrors": [{"code": 4, "message": "Query deadline exceeded for some shards"}]},
            f"no values found for query {MQL} (partial errors: Query deadline exceeded for some shards)",
            id="partial-errors-named",
        ),
        pytest.param(
            response(series()), f"no values found for query {MQL} (a time series without points)", id="no-points"
        ),
        pytest.param(response(series([])), f"no values found for query {MQL} (a point without values)", id="no-values"),
        pytest.param(response(series([double("NaN")])), f"no values found for query {MQL} (NaN)", id="nan"),
    ],
)
def test_no_values(google: FakeGoogle, provider: StackdriverProvider, answer: dict[str, Any], message: str) -> None:
    google.state.answers = [(200, answer)]
    with pytest.raises(NoValuesFound) as caught:
        provider.query(MQL)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            response(series([{"boolValue": True}])),
            f"query {MQL} returned boolValue, not a number (doubleValue or int64Value)",
            id="bool",
        ),
        pytest.param(
            response(series([{"distributionValue": {"count": "3", "mean": 1.2}}])),
            f"query {MQL} returned distributionValue, not a number (doubleValue or int64Value)",
            id="distribution",
        ),
        pytest.param(
            response(series([{"int64Value": "many"}])), f"query {MQL} returned a malformed value: ", id="not-a-number"
        ),
        pytest.param(
            {"timeSeriesData": "none"},
            f"stackdriver answer for query {MQL} has a malformed timeSeriesData",
            id="malformed",
        ),
    ],
)
def test_answers_that_are_not_one_number(
    google: FakeGoogle, provider: StackdriverProvider, answer: dict[str, Any], message: str
) -> None:
    google.state.answers = [(200, answer)]
    with pytest.raises(InvalidQuery) as caught:
        provider.query(MQL)
    assert str(caught.value).startswith(message)


def test_syntax_error_is_not_checked(provider: StackdriverProvider) -> None:
    assert provider.syntax_error("fetch nonsense |||") is None


# --- errors of the API ------------------------------------------------------------------------


def test_refused_query_is_invalid(google: FakeGoogle, provider: StackdriverProvider) -> None:
    error = google_error(400, "INVALID_ARGUMENT", "Line 1, column 7: Unknown table 'k8s_containr'.")
    google.state.answers = [(400, error)]
    with pytest.raises(InvalidQuery) as caught:
        provider.query(MQL)
    assert str(caught.value) == (
        f"stackdriver at {google.url} answered status 400 for query {MQL}: "
        "Line 1, column 7: Unknown table 'k8s_containr'."
    )


@pytest.mark.parametrize("status", [500, 429])
def test_server_errors_are_unavailable(google: FakeGoogle, provider: StackdriverProvider, status: int) -> None:
    google.state.answers = [(status, google_error(status, "INTERNAL", "Internal error encountered."))]
    with pytest.raises(MetricsUnavailable) as caught:
        provider.query(MQL)
    assert str(caught.value).startswith(f"stackdriver at {google.url} answered status {status} for query {MQL}: ")


def test_timeout_is_unavailable(google: FakeGoogle, provider: StackdriverProvider) -> None:
    google.state.delay = 0.8
    provider.backend.timeout = 0.3
    with pytest.raises(MetricsUnavailable) as caught:
        provider.query(MQL)
    assert str(caught.value) == (
        f"stackdriver at {google.url} did not answer query {MQL} in time: no answer within 0.3s"
    )


def test_unreachable_token_endpoint_is_unavailable(
    google: FakeGoogle, account_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    provider = provider_for(google, key_json(google, account_key, token_uri="http://127.0.0.1:9/token"), clock)
    provider.token_session = requests.Session()  # no retries: fail at once
    with pytest.raises(MetricsUnavailable) as caught:
        provider.query(MQL)
    assert str(caught.value).startswith("stackdriver token endpoint http://127.0.0.1:9/token unreachable: ")


def test_failing_token_endpoint_is_unavailable(google: FakeGoogle, provider: StackdriverProvider) -> None:
    google.state.token_answer = (500, {"error": "internal_failure"})
    with pytest.raises(MetricsUnavailable) as caught:
        provider.query(MQL)
    assert str(caught.value) == f"stackdriver token endpoint {google.token_uri} answered status 500"
    assert google.state.queries == []


# --- credentials ------------------------------------------------------------------------------


def test_key_the_token_endpoint_refuses(google: FakeGoogle, clock: Clock) -> None:
    other_key = generate_key()  # not the account's: the signature does not verify
    key = key_json(google, other_key)
    provider = provider_for(google, key, clock)
    with pytest.raises(InvalidCredentials) as caught:
        provider.query(MQL)
    message = str(caught.value)
    assert message == (
        f"stackdriver token endpoint {google.token_uri} refused the service account key (400; it comes from "
        f"Secret {SECRET}): invalid_grant: Invalid JWT Signature."
    )
    assert "PRIVATE KEY" not in message and pem(other_key) not in message
    assert google.state.queries == []


def test_refused_token_is_invalid_credentials(google: FakeGoogle, provider: StackdriverProvider) -> None:
    error = google_error(
        403, "PERMISSION_DENIED", "Permission monitoring.timeSeries.list denied (or it may not exist)."
    )
    google.state.answers = [(403, error)]
    with pytest.raises(InvalidCredentials) as caught:
        provider.query(MQL)
    assert str(caught.value) == (
        f"stackdriver at {google.url} refused the credentials (403; they come from Secret {SECRET})"
    )


@pytest.mark.parametrize("missing", ["project", "serviceAccountKey"])
def test_missing_secret_key(google: FakeGoogle, account_key: rsa.RSAPrivateKey, missing: str) -> None:
    secret = {"project": PROJECT, "serviceAccountKey": key_json(google, account_key)}
    del secret[missing]
    with pytest.raises(InvalidCredentials) as caught:
        build(config(google, secret), FakeStore())
    assert str(caught.value) == f"stackdriver needs {missing} in its credentials: Secret {SECRET} has none"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param(None, " (not JSON)", id="not-json"),
        pytest.param({"private_key": None}, " (it needs client_email and private_key)", id="no-private-key"),
        pytest.param(
            {"private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"},
            " (its private_key is not a PEM private key)",
            id="broken-pem",
        ),
        pytest.param({"token_uri": "file:///etc/passwd"}, " (its token_uri is not an http(s) URL)", id="bad-token-uri"),
        pytest.param(
            {"type": "external_account"},
            ": its type is 'external_account', only service_account is supported",
            id="workload-identity-federation",
        ),
        pytest.param({"private_key": "ec"}, " (its private_key is not an RSA key)", id="not-rsa"),
    ],
)
def test_malformed_service_account_key(
    google: FakeGoogle, account_key: rsa.RSAPrivateKey, changes: dict[str, Any] | None, problem: str
) -> None:
    if changes is None:
        key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"  # a PEM where the key file's JSON belongs
    elif changes.get("private_key") == "ec":
        key = key_json(google, ec.generate_private_key(ec.SECP256R1()))
    else:
        key = key_json(google, account_key, **changes)
    with pytest.raises(InvalidCredentials) as caught:
        build(config(google, {"project": PROJECT, "serviceAccountKey": key}), FakeStore())
    message = str(caught.value)
    assert message == f"stackdriver: serviceAccountKey in Secret {SECRET} is not a service account key{problem}"
    assert "c2VjcmV0" not in message and "PRIVATE KEY" not in message


def test_repr_shows_no_credentials(provider: StackdriverProvider, account_key: rsa.RSAPrivateKey) -> None:
    text = f"{provider!r} {provider.account!r}"
    assert "PRIVATE" not in text and EMAIL not in text
    assert text.startswith("StackdriverProvider('http://127.0.0.1:")


# --- the access token is kept ----------------------------------------------------------------


def test_token_is_kept_until_shortly_before_it_expires(
    google: FakeGoogle, provider: StackdriverProvider, clock: Clock
) -> None:
    google.state.answers = [(200, response(series([double(1.0)])))]
    provider.query(MQL)
    clock.now += 3299  # an hour's token is replaced five minutes before it expires
    provider.query(MQL)
    assert google.state.issued == ["ya29.token-1"]
    clock.now += 1
    provider.query(MQL)
    assert google.state.issued == ["ya29.token-1", "ya29.token-2"]
    authorizations = [received.headers["Authorization"] for received in google.state.queries]
    assert authorizations == ["Bearer ya29.token-1", "Bearer ya29.token-1", "Bearer ya29.token-2"]


def test_short_lived_token_is_kept_half_its_life(
    google: FakeGoogle, provider: StackdriverProvider, clock: Clock
) -> None:
    google.state.token_lifetime = 120
    google.state.answers = [(200, response(series([double(1.0)])))]
    provider.query(MQL)
    clock.now += 59
    provider.query(MQL)
    clock.now += 1
    provider.query(MQL)
    assert google.state.issued == ["ya29.token-1", "ya29.token-2"]


def test_kept_token_refused_is_replaced_once(google: FakeGoogle, provider: StackdriverProvider) -> None:
    google.state.answers = [(200, response(series([double(1.0)])))]
    provider.query(MQL)
    google.state.valid_tokens.clear()  # revoked before it expired
    assert provider.query(MQL) == 1.0
    authorizations = [received.headers["Authorization"] for received in google.state.queries]
    assert authorizations == ["Bearer ya29.token-1", "Bearer ya29.token-1", "Bearer ya29.token-2"]


def test_fresh_token_refused_is_not_retried(google: FakeGoogle, provider: StackdriverProvider) -> None:
    google.state.answers = [(403, google_error(403, "PERMISSION_DENIED", "Cloud Monitoring API has not been used."))]
    with pytest.raises(InvalidCredentials):
        provider.query(MQL)
    assert len(google.state.queries) == 1
    assert google.state.issued == ["ya29.token-1"]
