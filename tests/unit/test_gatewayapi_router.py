"""The Gateway API router: the HTTPRoute it writes, read back, and as a gateway would route it.

The pure functions are checked against literal HTTPRoutes; the routing against the simulator's
Gateway API gateway; the class against a small fake of Serin's access layer. The real CRD's
schema accepting these objects is the integration tests' to prove.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.gatewayapi import parse_http_route
from localcluster.simulator.routes import SyntheticRequest, choose_destination, select_route
from serin.model import Canary, parse_canary
from serin.ports import Routes
from serin.routers import GatewayAPIRouter, router_for
from serin.routers.gatewayapi import desired_http_route, routes_of
from serin.workloads import ORIGINAL_SPEC_ANNOTATION
from tests.unit.fake_store import FakeStore

FLAGGER_COOKIE_REGEX = "^(.*?;)?(canary=always)(;.*)?$"
GATEWAY = {"name": "public", "namespace": "edge", "sectionName": "https"}
METADATA: dict[str, Any] = {
    "name": "podinfo",
    "namespace": "test",
    "labels": {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "podinfo"},
    "annotations": {
        "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
        "helm.toolkit.fluxcd.io/driftDetection": "disabled",
    },
    "ownerReferences": [
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "name": "podinfo",
            "uid": "u1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ],
}
EVERY_PATH = {"path": {"type": "PathPrefix", "value": "/"}}


def canary(service: dict[str, Any] | None = None, analysis: dict[str, Any] | None = None, **spec: Any) -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"},
            "spec": {
                "provider": "gatewayapi:v1",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "gatewayRefs": [GATEWAY], **(service or {})},
                "analysis": analysis or {"stepWeight": 10, "threshold": 2},
                **spec,
            },
        }
    )


def backend(name: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight}


def test_a_canary_release_is_one_weighted_rule_with_both_backends() -> None:
    assert desired_http_route(canary(service={"hosts": ["app.example.com", "app.example.com"]}), 100, 0) == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": METADATA,
        "spec": {
            "parentRefs": [GATEWAY],
            "hostnames": ["app.example.com"],
            "rules": [
                {
                    "matches": [EVERY_PATH],
                    "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
                }
            ],
        },
    }


def test_v1beta1_writes_the_same_route_in_its_version() -> None:
    route = desired_http_route(canary(provider="gatewayapi:v1beta1"), 70, 30)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
    assert route["spec"]["rules"] == desired_http_route(canary(), 70, 30)["spec"]["rules"]


def test_service_matches_filters_and_timeout_are_on_the_rule() -> None:
    service = {
        "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"}}, {"uri": {"regex": "/v[0-9]+/.*"}}],
        "headers": {
            "request": {"set": {"x-b": "2", "x-a": "1"}, "remove": ["x-debug"]},
            "response": {"add": {"x-served-by": "podinfo"}},
        },
        "rewrite": {"uri": "/", "type": "ReplacePrefixMatch", "authority": "internal.example.com"},
        "timeout": "15s",
    }
    (rule,) = desired_http_route(canary(service=service), 90, 10)["spec"]["rules"]
    assert rule == {
        "matches": [
            {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"},
            {"path": {"type": "RegularExpression", "value": "^(?:/v[0-9]+/.*)$"}},
        ],
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {
                    "set": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}],
                    "remove": ["x-debug"],
                },
            },
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "podinfo"}]},
            },
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "hostname": "internal.example.com",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
                },
            },
        ],
        "timeouts": {"request": "15s"},
        "backendRefs": [backend("podinfo-primary", 90), backend("podinfo-canary", 10)],
    }


AB_ANALYSIS = {
    "iterations": 5,
    "threshold": 2,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}},
        {"queryParams": {"canary": {"exact": "true"}}},
    ],
}


def test_ab_testing_routes_matched_requests_and_keeps_everyone_else_on_the_primary() -> None:
    rules = desired_http_route(canary(analysis=AB_ANALYSIS), 0, 100)["spec"]["rules"]
    assert rules == [
        {
            "matches": [
                {**EVERY_PATH, "headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}]},
                {
                    **EVERY_PATH,
                    "headers": [
                        {"name": "cookie", "type": "RegularExpression", "value": f"^(?:{FLAGGER_COOKIE_REGEX})$"}
                    ],
                },
                {**EVERY_PATH, "queryParams": [{"name": "canary", "type": "Exact", "value": "true"}]},
            ],
            "backendRefs": [backend("podinfo-primary", 0), backend("podinfo-canary", 100)],
        },
        {"matches": [EVERY_PATH], "backendRefs": [backend("podinfo-primary", 100)]},
    ]


def test_ab_matches_are_combined_with_the_services_so_both_must_hold() -> None:
    analysis = {**AB_ANALYSIS, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
    rules = desired_http_route(canary(service={"match": [{"uri": {"prefix": "/api"}}]}, analysis=analysis), 0, 100)
    assert [rule["matches"] for rule in rules["spec"]["rules"]] == [
        [
            {
                "path": {"type": "PathPrefix", "value": "/api"},
                "headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}],
            }
        ],
        [{"path": {"type": "PathPrefix", "value": "/api"}}],
    ]


@pytest.mark.parametrize(
    ("request_", "canary_share"),
    [
        pytest.param(SyntheticRequest(), 0.0, id="everyone-else"),
        pytest.param(SyntheticRequest(headers={"x-canary": "insider"}), 1.0, id="header"),
        pytest.param(SyntheticRequest(headers={"cookie": "session=1;canary=always"}), 1.0, id="cookie"),
        pytest.param(SyntheticRequest(query_params={"canary": "true"}), 1.0, id="query"),
    ],
)
def test_a_gateway_sends_the_experiments_requests_to_the_canary(
    request_: SyntheticRequest, canary_share: float
) -> None:
    table = parse_http_route(desired_http_route(canary(analysis=AB_ANALYSIS), 0, 100))
    route = select_route(table, request_)
    assert route is not None
    weights = {d.host: d.weight for d in route.destinations}
    assert weights.get("podinfo-canary", 0) / sum(weights.values()) == canary_share


def test_a_gateway_splits_a_canary_release_by_weight() -> None:
    table = parse_http_route(desired_http_route(canary(), 75, 25))
    route = select_route(table, SyntheticRequest())
    assert route is not None
    rng = random.Random(4)
    picks = Counter(choose_destination(route.destinations, rng).host for _ in range(4_000))  # type: ignore[union-attr]
    assert abs(picks["podinfo-canary"] / 4_000 - 0.25) <= 0.03


@pytest.mark.parametrize(
    ("backend_refs", "expected"),
    [
        pytest.param([backend("podinfo-primary", 60), backend("podinfo-canary", 40)], Routes(60, 40), id="written"),
        pytest.param(
            [{"name": "podinfo-primary", "port": 9898}, {"name": "podinfo-canary", "port": 9898}],
            Routes(50, 50),
            id="no-weights-are-one-each",
        ),
        pytest.param([backend("podinfo-primary", 3), backend("podinfo-canary", 1)], Routes(75, 25), id="shares"),
        pytest.param([backend("podinfo-primary", 100)], None, id="no-canary-backend"),
        pytest.param([backend("podinfo-primary", 0), backend("podinfo-canary", 0)], Routes(0, 0), id="nothing-served"),
    ],
)
def test_routes_are_read_as_the_gateway_reads_weights(
    backend_refs: list[dict[str, Any]], expected: Routes | None
) -> None:
    route = {"spec": {"rules": [{"matches": [EVERY_PATH], "backendRefs": backend_refs}]}}
    assert routes_of(route, canary()) == expected


def test_the_router_reads_then_writes_and_reads_back() -> None:
    store = FakeStore()
    router = router_for("gatewayapi:v1", store)
    assert isinstance(router, GatewayAPIRouter) and router.shifts_traffic
    assert router.get_routes(canary()) is None
    router.reconcile(canary(), (80, 20))
    assert store.calls == ["get HTTPRoute podinfo", "get HTTPRoute podinfo", "apply HTTPRoute podinfo"]
    assert router.get_routes(canary()) == Routes(80, 20)
    assert store.objects[("HTTPRoute", "podinfo")] == desired_http_route(canary(), 80, 20)


USERS_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "7"},
    "spec": {"parentRefs": [GATEWAY], "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]},
}


def test_a_users_route_is_taken_over_with_its_spec_recorded_and_given_back() -> None:
    store = FakeStore()
    store.objects[("HTTPRoute", "podinfo")] = copy.deepcopy(USERS_ROUTE)
    router = GatewayAPIRouter(store)
    router.set_routes(canary(), 90, 10)
    taken = store.objects[("HTTPRoute", "podinfo")]
    assert "ownerReferences" not in taken["metadata"]
    assert json.loads(taken["metadata"]["annotations"][ORIGINAL_SPEC_ANNOTATION]) == USERS_ROUTE["spec"]
    assert routes_of(taken, canary()) == Routes(90, 10)
    router.finalize(canary())
    given = store.objects[("HTTPRoute", "podinfo")]
    assert given["spec"] == USERS_ROUTE["spec"]
    assert ORIGINAL_SPEC_ANNOTATION not in given["metadata"].get("annotations", {})


def test_finalize_routes_serins_own_route_to_the_primary() -> None:
    store = FakeStore()
    router = GatewayAPIRouter(store)
    router.set_routes(canary(), 50, 50)
    router.finalize(canary())
    assert router.get_routes(canary()) == Routes(100, 0)


def test_service_mirror_filters_copy_every_request_to_their_backends() -> None:
    mirror = [{"backendRef": {"name": "shadow", "namespace": "qa", "port": 8080}}]
    (rule,) = desired_http_route(canary(service={"mirror": mirror}), 100, 0)["spec"]["rules"]
    assert rule["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"namespace": "qa", "name": "shadow", "port": 8080}}}
    ]


def test_a_regex_match_must_match_the_whole_value_even_on_a_gateway_that_searches_substrings() -> None:
    """Traefik matches a Gateway API regex anywhere in the value (Go's MatchString, like re.search);
    the Canary's regex means the whole value, as Envoy matches Istio's."""
    analysis = {**AB_ANALYSIS, "match": [{"headers": {"x-user": {"regex": "alice|bob"}}}]}
    (first, _) = desired_http_route(canary(analysis=analysis), 0, 100)["spec"]["rules"]
    written = first["matches"][0]["headers"][0]["value"]
    assert [bool(re.search(written, value)) for value in ("alice", "bob", "malice", "bobby", "")] == [
        True,
        True,
        False,
        False,
        False,
    ]
