"""Malformed and random AdmissionReviews never get a 5xx, never crash the handlers.

The app talks to the real local API server, so reviews that look valid enough to reach the cluster
lookups (canary lists, deployments, metric templates) exercise those paths too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import create_app
from localcluster.testing import ClusterHandle
from serin.config import Settings

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

KINDS = st.sampled_from(
    [
        {"group": "serin.dev", "version": "v1beta1", "kind": "Canary"},
        {"group": "apps", "version": "v1", "kind": "Deployment"},
        {"group": "", "version": "v1", "kind": "Pod"},
    ]
)


def plausible_object() -> st.SearchStrategy[Any]:
    """Canary- and Deployment-shaped dicts with random holes and wrong types."""
    spec = st.fixed_dictionaries(
        {},
        optional={
            "targetRef": st.fixed_dictionaries({}, optional={"kind": json_values, "name": st.text(max_size=10)}),
            "service": st.fixed_dictionaries({}, optional={"port": json_values, "name": json_values}),
            "analysis": st.fixed_dictionaries(
                {},
                optional={
                    "interval": json_values,
                    "stepWeight": json_values,
                    "stepWeights": json_values,
                    "iterations": json_values,
                    "match": json_values,
                    "metrics": st.lists(
                        json_values
                        | st.fixed_dictionaries(
                            {"name": st.text(max_size=10)},
                            optional={"templateRef": json_values, "thresholdRange": json_values, "query": json_values},
                        )
                    ),
                    "webhooks": json_values,
                },
            ),
            "replicas": json_values,
            "template": json_values,
            "selector": json_values,
        },
    )
    metadata = st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=10),
            "namespace": st.sampled_from(["fuzz", "default", ""]),
            "labels": json_values | st.just({"serin.dev/canary": "podinfo", "app.kubernetes.io/managed-by": "serin"}),
        },
    )
    return json_values | st.fixed_dictionaries({}, optional={"metadata": metadata, "spec": spec, "status": json_values})


reviews = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]) | json_values,
        "kind": st.just("AdmissionReview") | json_values,
        "request": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "uid": st.text(min_size=1, max_size=8) | json_values,
                "kind": KINDS | json_values,
                "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | json_values,
                "namespace": st.sampled_from(["fuzz", ""]) | json_values,
                "dryRun": st.just(True),
                "userInfo": json_values,
                "object": plausible_object(),
                "oldObject": plausible_object(),
            },
        ),
    },
)


@pytest.fixture(scope="module")
def fuzz_client(local_cluster: ClusterHandle, serin_crds: None, serin_kubeconfig: Path) -> FlaskClient:
    settings_ = Settings(metrics_server=local_cluster.urls["prometheus"], kubeconfig=str(serin_kubeconfig))
    app = create_app(settings_)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client()


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    if response.status_code == 200:
        assert body["kind"] == "AdmissionReview" and isinstance(body["response"]["allowed"], bool)
    else:
        assert isinstance(body["error"], str) and "Traceback" not in body["error"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(review=reviews, path=st.sampled_from(["/mutate", "/validate"]))
def test_random_reviews_never_get_a_5xx(fuzz_client: FlaskClient, review: Any, path: str) -> None:
    # Requests are dry runs, so whatever passes validation creates nothing in the cluster.
    if isinstance(review.get("request"), dict):
        review["request"]["dryRun"] = True
    check(fuzz_client.post(path, data=json.dumps(review), content_type="application/json"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_random_bytes_never_get_a_5xx(fuzz_client: FlaskClient, body: bytes, content_type: str) -> None:
    for path in ("/mutate", "/validate"):
        check(fuzz_client.post(path, data=body, content_type=content_type))
