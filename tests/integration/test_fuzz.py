"""Malformed and random input never gets a 5xx: AdmissionReviews of any shape, bytes, /tick query
strings, and /replay queries with random patches.

The app talks to the real local API server, so reviews that look valid enough to reach the cluster
lookups (canary lists, deployments, metric templates) exercise those paths too, and /tick calls are
authenticated for real. ``SERIN_FUZZ_EXAMPLES`` sets the cases per test (`make fuzz` runs over ten
thousand in all; `make test` a few hundred).
"""

from __future__ import annotations

import json
import os
import urllib.parse
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

EXAMPLES = max(1, int(os.environ.get("SERIN_FUZZ_EXAMPLES", "150")))

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
    # Flask's test client carries no TLS: reviews are answered as with SERIN_ADMISSION_AUTHENTICATION=none.
    settings_ = Settings(
        metrics_server=local_cluster.urls["prometheus"],
        kubeconfig=str(serin_kubeconfig),
        admission_authentication="none",
    )
    app = create_app(settings_)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client()


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    if response.status_code == 200 and "canaries" in body:
        assert isinstance(body["canaries"], list)
    elif response.status_code == 200 and "steps" in body:
        assert isinstance(body["steps"], list)
    elif response.status_code == 200:
        assert body["kind"] == "AdmissionReview" and isinstance(body["response"]["allowed"], bool)
    else:
        assert isinstance(body["error"], str) and "Traceback" not in body["error"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(review=reviews, path=st.sampled_from(["/mutate", "/validate"]))
def test_random_reviews_never_get_a_5xx(fuzz_client: FlaskClient, review: Any, path: str) -> None:
    # Requests are dry runs, so whatever passes validation creates nothing in the cluster.
    if isinstance(review.get("request"), dict):
        review["request"]["dryRun"] = True
    check(fuzz_client.post(path, data=json.dumps(review), content_type="application/json"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_random_bytes_never_get_a_5xx(fuzz_client: FlaskClient, body: bytes, content_type: str) -> None:
    for path in ("/mutate", "/validate", "/tick", "/replay"):
        check(fuzz_client.post(path, data=body, content_type=content_type))


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_nesting_a_hundred_thousand_deep_is_refused_before_decoding(fuzz_client: FlaskClient, opening: str) -> None:
    response = fuzz_client.post("/validate", data=opening * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "body nests deeper than 100 levels; no Kubernetes object does"}


query_values = st.text(max_size=30) | st.sampled_from(
    ["true", "false", "1", "", "0.5", "-3", "1e309", "nan", "default", "kube-system", "test/canaries?x=&", "A" * 300]
)
query_strings = st.lists(
    st.tuples(st.sampled_from(["namespace", "name", "force", "window", "dry_run", "labelSelector", "x"]), query_values),
    max_size=6,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=query_strings)
def test_random_tick_query_strings_never_get_a_5xx(
    fuzz_client: FlaskClient, tokens: dict[str, str], query: list[tuple[str, str]]
) -> None:
    # dry_run first: repeated parameters count by their first value, so nothing is ever changed.
    encoded = urllib.parse.urlencode([("dry_run", "true"), *query])
    response = fuzz_client.post(f"/tick?{encoded}", headers={"Authorization": f"Bearer {tokens['ticker']}"})
    check(response)
    if response.status_code == 200:
        assert isinstance(response.get_json()["canaries"], list)


replay_queries = st.lists(
    st.tuples(st.sampled_from(["namespace", "name", "from", "to", "x"]), query_values | st.sampled_from(["podinfo"])),
    max_size=6,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=replay_queries, patch=json_values)
def test_random_replays_never_get_a_5xx(
    fuzz_client: FlaskClient, tokens: dict[str, str], query: list[tuple[str, str]], patch: Any
) -> None:
    encoded = urllib.parse.urlencode(query)
    response = fuzz_client.post(
        f"/replay?{encoded}", headers={"Authorization": f"Bearer {tokens['ticker']}"}, json=patch
    )
    check(response)
