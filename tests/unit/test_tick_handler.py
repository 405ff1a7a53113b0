"""``POST /tick`` refuses what it cannot use before any request to the API server is made from it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

AUTHORIZED = {"Authorization": "Bearer some-token"}


@pytest.mark.parametrize(
    ("query", "headers", "status", "error"),
    [
        pytest.param(
            "namespace=test/canaries?labelSelector=x&",
            AUTHORIZED,
            400,
            "query parameter namespace must be a namespace name (a DNS-1123 label), "
            "not 'test/canaries?labelSelector=x'",
            id="namespace-spliced-into-a-path",
        ),
        pytest.param(
            "namespace=Test",
            AUTHORIZED,
            400,
            "query parameter namespace must be a namespace name (a DNS-1123 label), not 'Test'",
            id="namespace-upper-case",
        ),
        pytest.param(
            "namespace=test&name=podinfo/status",
            AUTHORIZED,
            400,
            "query parameter name must be a Canary name (a DNS-1123 subdomain), not 'podinfo/status'",
            id="name-with-a-slash",
        ),
        pytest.param(
            "name=podinfo",
            AUTHORIZED,
            400,
            "name needs a namespace: POST /tick?namespace=NS&name=NAME",
            id="name-without-namespace",
        ),
        pytest.param(
            "force=maybe",
            AUTHORIZED,
            400,
            "query parameter force must be true or false, not 'maybe'",
            id="force-not-a-flag",
        ),
        pytest.param(
            "dry_run=2",
            AUTHORIZED,
            400,
            "query parameter dry_run must be true or false, not '2'",
            id="dry-run-not-a-flag",
        ),
        pytest.param(
            "window=nan",
            AUTHORIZED,
            400,
            "query parameter window must be seconds between 0 and 86400, not 'nan'",
            id="window-nan",
        ),
        pytest.param(
            "window=-1",
            AUTHORIZED,
            400,
            "query parameter window must be seconds between 0 and 86400, not '-1'",
            id="window-negative",
        ),
        pytest.param(
            "shard=1",
            AUTHORIZED,
            400,
            "query parameters shard and shards go together: POST /tick?shard=I&shards=N",
            id="shard-alone",
        ),
        pytest.param(
            "shard=2&shards=2",
            AUTHORIZED,
            400,
            "query parameters shard and shards must be integers with 0 <= shard < shards <= 1024, not '2' and '2'",
            id="shard-out-of-range",
        ),
        pytest.param(
            "shard=-1&shards=4",
            AUTHORIZED,
            400,
            "query parameters shard and shards must be integers with 0 <= shard < shards <= 1024, not '-1' and '4'",
            id="shard-negative",
        ),
        pytest.param(
            "namespace=test",
            {},
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(for example from `kubectl create token ACCOUNT --audience serin`)",
            id="no-token",
        ),
        pytest.param(
            "namespace=test",
            {"Authorization": "Basic dXNlcjpwYXNz"},
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(for example from `kubectl create token ACCOUNT --audience serin`)",
            id="not-a-bearer-token",
        ),
    ],
)
def test_bad_requests_are_refused_before_any_api_request(
    app_client: FlaskClient, query: str, headers: dict[str, str], status: int, error: str
) -> None:
    # The app's API server does not exist: reaching it would be a 503, not these answers.
    response = app_client.post(f"/tick?{query}", headers=headers)
    assert (response.status_code, response.get_json()) == (status, {"error": error})


def test_a_good_request_goes_on_to_the_api_server(app_client: FlaskClient) -> None:
    """The other side of the table above: the same app, asked properly, does reach for the API."""
    response = app_client.post(
        "/tick?namespace=test&name=podinfo&force=true&window=60&shard=1&shards=3", headers=AUTHORIZED
    )
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("cannot reach the Kubernetes API: ")


# What an install that serves team-a only says of team-b.
NOT_SERVED = (
    "namespace team-b is not served by this install of Serin, which serves team-a only (SERIN_WATCH_NAMESPACES)"
)


def test_a_namespace_the_install_does_not_serve_is_a_404_before_any_api_request(namespaced_client: FlaskClient) -> None:
    for query in ("namespace=team-b", "namespace=team-b&name=podinfo&dry_run=true"):
        response = namespaced_client.post(f"/tick?{query}", headers=AUTHORIZED)
        assert (response.status_code, response.get_json()) == (404, {"error": NOT_SERVED}), query


def test_a_namespaced_install_ticks_its_own_namespaces_and_the_whole_of_them(namespaced_client: FlaskClient) -> None:
    """Both go on to the API server (here there is none: 503)."""
    for query in ("namespace=team-a", ""):
        response = namespaced_client.post(f"/tick?{query}", headers=AUTHORIZED)
        assert response.status_code == 503, query
