"""``POST /replay`` refuses query parameters it cannot use before any request to the API server is
made from them, and reads its body only for a caller the API server vouched for."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

import handlers.replay

AUTHORIZED = {"Authorization": "Bearer some-token"}
CANARY = "namespace=test&name=podinfo"
# What an install that serves team-a only says of team-b.
NOT_SERVED = (
    "namespace team-b is not served by this install of Serin, which serves team-a only (SERIN_WATCH_NAMESPACES)"
)


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
    ],
)
def test_bad_requests_are_refused_before_any_api_request(
    app_client: FlaskClient, query: str, body: bytes, status: int, error: str
) -> None:
    response = app_client.post(f"/replay?{query}", headers=AUTHORIZED, data=body, content_type="application/json")
    assert (response.status_code, response.get_json()) == (status, {"error": error})


def test_a_replay_in_a_namespace_the_install_does_not_serve_is_a_404_before_any_api_request(
    namespaced_client: FlaskClient,
) -> None:
    response = namespaced_client.post("/replay?namespace=team-b&name=podinfo&from=1", headers=AUTHORIZED)
    assert (response.status_code, response.get_json()) == (
        404,
        {"error": NOT_SERVED},
    )


@pytest.mark.parametrize(
    ("query", "body", "status", "error"),
    [
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
            b"[" * 60_000,
            400,
            "body nests deeper than 100 levels; no Kubernetes object does",
            id="body-nested-too-deep",
        ),
    ],
)
def test_a_bad_body_of_a_known_caller_is_refused(
    app_client: FlaskClient, monkeypatch: pytest.MonkeyPatch, query: str, body: bytes, status: int, error: str
) -> None:
    monkeypatch.setattr(handlers.replay, "refused", lambda engine, verb, namespace: None)
    response = app_client.post(f"/replay?{query}", headers=AUTHORIZED, data=body, content_type="application/json")
    assert (response.status_code, response.get_json()) == (status, {"error": error})


def test_the_body_of_an_unknown_caller_is_never_read(app_client: FlaskClient) -> None:
    """No token: 401 at once, whatever the body holds (a scan of it could be what costs)."""
    response = app_client.post(f"/replay?{CANARY}&from=1000", data=b"[" * 60_000, content_type="application/json")
    assert response.status_code == 401
    assert response.get_json()["error"].startswith("missing bearer token")


def test_a_body_over_the_patch_limit_is_refused_unread(app_client: FlaskClient) -> None:
    response = app_client.post(
        f"/replay?{CANARY}&from=1000", headers=AUTHORIZED, data=b" " * (65 * 1024), content_type="application/json"
    )
    assert (response.status_code, response.get_json()) == (
        413,
        {"error": "body is larger than 65536 bytes; POST /replay needs at most a patch of the Canary"},
    )


STORED = {
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {
        "metricsServer": "http://prometheus:9090",
        "analysis": {
            "threshold": 5,
            "stepWeight": 10,
            "metrics": [{"name": "errors", "query": "sum(x)", "thresholdRange": {"max": 1}}],
        },
    },
}


@pytest.mark.parametrize(
    ("patch", "beyond"),
    [
        pytest.param({"spec": {"analysis": {"threshold": 2, "stepWeight": 20}}}, None, id="step-and-threshold"),
        pytest.param(
            {"spec": {"analysis": {"metrics": [{"name": "errors", "query": "sum(x)", "thresholdRange": {"max": 5}}]}}},
            None,
            id="a-metrics-range",
        ),
        pytest.param({"spec": {"metricsServer": "http://169.254.169.254/"}}, "spec.metricsServer", id="metrics-server"),
        pytest.param(
            {"spec": {"analysis": {"metrics": [{"name": "errors", "query": "up"}]}}},
            "spec.analysis.metrics[0].query",
            id="a-query",
        ),
        pytest.param(
            {"spec": {"analysis": {"metrics": [{"name": "x", "templateRef": {"name": "t", "namespace": "other"}}]}}},
            "spec.analysis.metrics[0].name",
            id="a-template",
        ),
        pytest.param({"metadata": {"namespace": "payments"}}, "metadata.namespace", id="the-namespace"),
        pytest.param({"spec": {"analysis": {"metrics": []}}}, "spec.analysis.metrics", id="fewer-metrics"),
    ],
)
def test_a_replay_by_a_reader_changes_only_how_the_analysis_judges(patch: dict[str, Any], beyond: str | None) -> None:
    patched = handlers.replay._merge(STORED, patch)
    assert handlers.replay.first_change_beyond_judging(STORED, patched) == beyond
