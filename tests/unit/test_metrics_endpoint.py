"""``GET /metrics`` as kube-rbac-proxy guards a metrics endpoint: a bearer token the API server
vouches for (TokenReview), then RBAC's word on the non-resource URL ``/metrics`` (a
SubjectAccessReview for ``get``); 401 and 403 otherwise, before any Canary is listed. A setting
turns the check off."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from kubernetes import client

from handlers import create_app
from serin.config import Settings
from serin.kube.store import KubeUnavailable
from tests.conftest import LOOPBACK_ALLOWED

from .test_reconcile import canary
from .test_telemetry import Listing

# What a TokenReview without audiences is checked against: the API server's own (its issuer here).
API_SERVER_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
PROMETHEUS = "system:serviceaccount:monitoring:prometheus"
STRANGER = "system:serviceaccount:serin-tests:stranger"
# Each token's owner and the audiences it was issued for: a Pod's own token is the API server's.
TOKENS = {
    "prometheus-pod-token": (PROMETHEUS, (API_SERVER_AUDIENCE,)),
    "prometheus-serin-token": (PROMETHEUS, ("serin",)),
    "stranger-pod-token": (STRANGER, (API_SERVER_AUDIENCE,)),
}
# What the shipped ClusterRole serin-metrics-reader grants, bound to Prometheus's account.
GRANTS = {(PROMETHEUS, "get", "/metrics")}
GAUGE = b'serin_canary_status{name="web",namespace="shop"} 1.0'


class ApiServer(Listing):
    """Reviews tokens and access as the API server would for ``TOKENS`` and ``GRANTS``, lists
    the Canaries given, and keeps each review asked; fails while ``down``."""

    def __init__(self) -> None:
        super().__init__([canary("shop", "web")])
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def request(self, method: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        self.asked.append((body["kind"], body["spec"]))
        if self.down:
            raise KubeUnavailable(f"{what}: connection refused")
        spec = body["spec"]
        if body["kind"] == "TokenReview":
            user, issued_for = TOKENS.get(spec["token"], ("", ()))
            asked_for = spec.get("audiences") or [API_SERVER_AUDIENCE]
            audiences = [audience for audience in issued_for if audience in asked_for]
            if not audiences:
                return {**body, "status": {"authenticated": False, "error": "invalid bearer token"}}
            return {**body, "status": {"authenticated": True, "user": {"username": user}, "audiences": audiences}}
        attributes = spec["nonResourceAttributes"]
        allowed = (spec["user"], attributes["verb"], attributes["path"]) in GRANTS
        reason = "RBAC: allowed by ClusterRoleBinding serin-metrics-reader" if allowed else ""
        return {**body, "status": {"allowed": allowed, "reason": reason}}


def serving(api_server: ApiServer, **settings: Any) -> FlaskClient:
    """The app with ``settings``, asking ``api_server`` about callers and Canaries."""
    configuration = client.Configuration(host="https://127.0.0.1:9")
    app = create_app(
        Settings(admission_authentication="none", egress=LOOPBACK_ALLOWED, **settings),
        api=client.ApiClient(configuration),
    )
    engine = app.extensions["serin"]
    engine.store = api_server
    engine.gauges.store = api_server
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_review(token: str, *audiences: str) -> tuple[str, dict[str, Any]]:
    return ("TokenReview", {"token": token, **({"audiences": list(audiences)} if audiences else {})})


def access_review(user: str) -> tuple[str, dict[str, Any]]:
    attributes = {"path": "/metrics", "verb": "get"}
    return (
        "SubjectAccessReview",
        {"user": user, "uid": "", "groups": [], "extra": {}, "nonResourceAttributes": attributes},
    )


NO_TOKEN = (
    "missing bearer token: send 'Authorization: Bearer <token>' (for example from `kubectl create token ACCOUNT`)"
)
NOT_ACCEPTED = "the API server did not accept this token (for example from `kubectl create token ACCOUNT`)"


@pytest.mark.parametrize(
    ("settings", "headers", "status", "error", "asked"),
    [
        pytest.param({}, {}, 401, NO_TOKEN, [], id="no-token"),
        pytest.param({}, {"Authorization": "Basic dXNlcjpwYXNz"}, 401, NO_TOKEN, [], id="not-a-bearer-token"),
        pytest.param({}, bearer("forged"), 401, NOT_ACCEPTED, [token_review("forged")], id="a-token-nobody-issued"),
        pytest.param(
            {},
            bearer("prometheus-serin-token"),
            401,
            NOT_ACCEPTED,
            [token_review("prometheus-serin-token")],
            id="a-token-for-serins-audience-by-default",
        ),
        pytest.param(
            {},
            bearer("stranger-pod-token"),
            403,
            f"{STRANGER} may not get /metrics; the ClusterRole serin-metrics-reader grants it",
            [token_review("stranger-pod-token"), access_review(STRANGER)],
            id="without-the-role",
        ),
        pytest.param(
            {"metrics_token_audience": "serin"},
            bearer("prometheus-pod-token"),
            401,
            "the API server did not accept this token for audience serin "
            "(for example from `kubectl create token ACCOUNT --audience serin`)",
            [token_review("prometheus-pod-token", "serin")],
            id="a-pod-token-when-serins-audience-is-required",
        ),
    ],
)
def test_a_scrape_without_a_token_or_the_role_is_refused_before_any_canary_is_listed(
    settings: dict[str, Any],
    headers: dict[str, str],
    status: int,
    error: str,
    asked: list[tuple[str, dict[str, Any]]],
) -> None:
    api_server = ApiServer()
    response = serving(api_server, **settings).get("/metrics", headers=headers)
    assert (response.status_code, response.get_json()) == (status, {"error": error})
    assert response.headers.get("WWW-Authenticate") == ('Bearer realm="serin"' if status == 401 else None)
    assert api_server.asked == asked
    assert api_server.lists == 0


@pytest.mark.parametrize(
    ("settings", "headers", "asked"),
    [
        pytest.param(
            {},
            bearer("prometheus-pod-token"),
            [token_review("prometheus-pod-token"), access_review(PROMETHEUS)],
            id="a-pod-token-with-the-role",
        ),
        pytest.param(
            {"metrics_token_audience": "serin"},
            bearer("prometheus-serin-token"),
            [token_review("prometheus-serin-token", "serin"), access_review(PROMETHEUS)],
            id="a-token-for-the-audience-required",
        ),
        pytest.param({"metrics_authenticated": False}, {}, [], id="unauthenticated-by-choice"),
    ],
)
def test_a_scrape_the_api_server_vouches_for_gets_the_gauges(
    settings: dict[str, Any], headers: dict[str, str], asked: list[tuple[str, dict[str, Any]]]
) -> None:
    api_server = ApiServer()
    response = serving(api_server, **settings).get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert GAUGE in response.get_data()
    assert api_server.asked == asked
    assert api_server.lists == 1


def test_an_api_server_that_cannot_be_asked_is_a_503() -> None:
    api_server = ApiServer()
    api_server.down = True
    response = serving(api_server).get("/metrics", headers=bearer("prometheus-pod-token"))
    assert (response.status_code, response.get_json()) == (
        503,
        {"error": "cannot reach the Kubernetes API: token review: connection refused"},
    )
    assert api_server.lists == 0


@pytest.mark.parametrize(
    ("value", "authenticated"),
    [
        pytest.param(None, True, id="unset"),
        pytest.param("true", True, id="true"),
        pytest.param("false", False, id="false"),
        pytest.param(" False ", False, id="false-as-helm-may-quote-it"),
    ],
)
def test_the_check_is_on_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, authenticated: bool
) -> None:
    monkeypatch.setenv("SERIN_ADMISSION_AUTHENTICATION", "none")
    if value is None:
        monkeypatch.delenv("SERIN_METRICS_AUTH", raising=False)
    else:
        monkeypatch.setenv("SERIN_METRICS_AUTH", value)
    monkeypatch.delenv("SERIN_METRICS_TOKEN_AUDIENCE", raising=False)
    settings = Settings.from_env()
    assert (settings.metrics_authenticated, settings.metrics_token_audience) == (authenticated, "")


def test_a_setting_that_is_not_true_or_false_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIN_ADMISSION_AUTHENTICATION", "none")
    monkeypatch.setenv("SERIN_METRICS_AUTH", "off")
    with pytest.raises(ValueError) as refused:
        Settings.from_env()
    assert str(refused.value) == (
        "SERIN_METRICS_AUTH must be true (scrapers of /metrics need a token and get on the non-resource URL "
        "/metrics) or false (anyone who reaches the port may scrape), not 'off'"
    )


def test_the_audience_of_scrapers_tokens_can_be_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIN_ADMISSION_AUTHENTICATION", "none")
    monkeypatch.setenv("SERIN_METRICS_TOKEN_AUDIENCE", " serin ")
    assert Settings.from_env().metrics_token_audience == "serin"
