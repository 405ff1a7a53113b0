"""``POST /replay`` refuses what it cannot use before any request to the API server is made from it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

AUTHORIZED = {"Authorization": "Bearer some-token"}
CANARY = "namespace=test&name=podinfo"


@pytest.mark.parametrize(
    ("query", "body", "status", "error"),
    [
        pytest.param(
            "namespace=test&from=1",
            b"",
            400,
            "replay needs the Canary: POST /replay?namespace=NS&name=NAME&from=TIME",
            id="no-name",
        ),
        pytest.param(
            "name=podinfo&from=1",
            b"",
            400,
            "name needs a namespace: POST /replay?namespace=NS&name=NAME",
            id="name-without-namespace",
        ),
        pytest.param(
            f"{CANARY}&from=2026-11-28T10:00:00",
            b"",
            400,
            "query parameter from must say its time zone (Z or +HH:MM), not '2026-11-28T10:00:00'",
            id="no-time-zone",
        ),
        pytest.param(
            f"{CANARY}&from=1e400",
            b"",
            400,
            "query parameter from must be a time (RFC 3339 such as 2026-11-28T10:00:00Z, or seconds since the "
            "epoch), not '1e400'",
            id="from-overflows",
        ),
        pytest.param(
            f"{CANARY}&from=2000&to=1000",
            b"",
            400,
            "from (1970-01-01T00:33:20Z) must be before to (1970-01-01T00:16:40Z) and in the past",
            id="to-before-from",
        ),
        pytest.param(
            f"{CANARY}&from=1000",
            b"[1, 2",
            400,
            "body is not JSON: Expecting ',' delimiter: line 1 column 6 (char 5)",
            id="body-not-json",
        ),
        pytest.param(
            f"{CANARY}&from=1000",
            b'"spec"',
            400,
            "the body must be a JSON object (a merge patch) or a list (a JSON Patch)",
            id="body-a-string",
        ),
        pytest.param(
            f"{CANARY}&from=1000",
            b"[" * 100_000,
            400,
            "body nests deeper than 100 levels; no Kubernetes object does",
            id="body-nested-too-deep",
        ),
    ],
)
def test_bad_requests_are_refused_before_any_api_request(
    app_client: FlaskClient, query: str, body: bytes, status: int, error: str
) -> None:
    response = app_client.post(f"/replay?{query}", headers=AUTHORIZED, data=body, content_type="application/json")
    assert (response.status_code, response.get_json()) == (status, {"error": error})
