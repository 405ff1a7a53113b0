"""The simulator's Gateway API gateway, its direct clients and the application's own metrics."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.cluster import ERROR_RATE_ANNOTATION
from localcluster.simulator.examples import synthesizable_requests
from localcluster.simulator.export import Metrics
from localcluster.simulator.gatewayapi import parse_http_route
from localcluster.simulator.routes import SyntheticRequest, select_route
from localcluster.simulator.traffic import DIRECT_RPS_ANNOTATION, simulate_tick

FLAGGER_COOKIE_REGEX = "^(.*?;)?(canary=always)(;.*)?$"


def backend(name: str, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": 9898}
    if weight is not None:
        ref["weight"] = weight
    return ref


def http_route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": rules},
    }


def weighted(primary: int, canary: int, matches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [backend("podinfo-primary", primary), backend("podinfo-canary", canary)]}
    if matches is not None:
        rule["matches"] = matches
    return rule


PREFIX_ROOT = {"path": {"type": "PathPrefix", "value": "/"}}
# Flagger's A/B HTTPRoute: the experiment's matches first, then everyone else on the primary.
AB_ROUTE = http_route(
    [
        weighted(
            0,
            100,
            [
                {**PREFIX_ROOT, "headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}]},
                {
                    **PREFIX_ROOT,
                    "headers": [{"name": "cookie", "type": "RegularExpression", "value": FLAGGER_COOKIE_REGEX}],
                },
                {**PREFIX_ROOT, "queryParams": [{"name": "canary", "type": "Exact", "value": "true"}]},
            ],
        ),
        {"backendRefs": [backend("podinfo-primary", 100)], "matches": [PREFIX_ROOT]},
    ]
)


@pytest.mark.parametrize(
    ("route", "request_", "expected_hosts"),
    [
        pytest.param(AB_ROUTE, SyntheticRequest(), ("podinfo-primary",), id="plain-request-falls-back"),
        pytest.param(
            AB_ROUTE,
            SyntheticRequest(headers={"x-canary": "insider"}),
            ("podinfo-primary", "podinfo-canary"),
            id="header-match",
        ),
        pytest.param(
            AB_ROUTE,
            SyntheticRequest(headers={"cookie": "a=b;canary=always"}),
            ("podinfo-primary", "podinfo-canary"),
            id="cookie-regex",
        ),
        pytest.param(
            AB_ROUTE,
            SyntheticRequest(query_params={"canary": "true"}),
            ("podinfo-primary", "podinfo-canary"),
            id="query-param",
        ),
        pytest.param(
            # Declared last, but more specific: an Exact path wins over a PathPrefix.
            http_route(
                [
                    weighted(100, 0, [PREFIX_ROOT]),
                    weighted(0, 100, [{"path": {"type": "Exact", "value": "/api"}}]),
                ]
            ),
            SyntheticRequest(path="/api"),
            ("podinfo-primary", "podinfo-canary"),
            id="exact-path-beats-order",
        ),
        pytest.param(
            http_route(
                [weighted(100, 0, [PREFIX_ROOT]), weighted(0, 100, [{"path": {"type": "PathPrefix", "value": "/api"}}])]
            ),
            SyntheticRequest(path="/api/v1"),
            ("podinfo-primary", "podinfo-canary"),
            id="longest-prefix-wins",
        ),
        pytest.param(
            http_route([weighted(100, 0, [{"path": {"type": "PathPrefix", "value": "/api"}}])]),
            SyntheticRequest(path="/other"),
            None,
            id="no-match",
        ),
    ],
)
def test_http_route_precedence(
    route: dict[str, Any], request_: SyntheticRequest, expected_hosts: tuple[str, ...] | None
) -> None:
    chosen = select_route(parse_http_route(route), request_)
    assert (tuple(d.host for d in chosen.destinations) if chosen else None) == expected_hosts


def test_http_route_weights_default_to_one_and_other_namespaces_are_named() -> None:
    table = parse_http_route(
        http_route([{"backendRefs": [backend("a", None), {**backend("b", 3), "namespace": "other"}, backend("c", 0)]}])
    )
    assert [(d.host, d.weight) for d in table.routes[0].destinations] == [("a", 1), ("b.other", 3), ("c", 0)]
    assert table.kind == "HTTPRoute"


def test_ab_route_synthesizes_a_request_for_each_match() -> None:
    requests = synthesizable_requests(parse_http_route(AB_ROUTE))
    assert sorted(((r.headers, r.query_params) for r in requests), key=str) == sorted(
        [
            ({"x-canary": "insider"}, {}),
            ({"cookie": "canary=always"}, {}),
            ({}, {"canary": "true"}),
            ({}, {}),
        ],
        key=str,
    )


def cluster(canary_annotations: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def service(name: str, selector: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": "test"}
        if annotations:
            metadata["annotations"] = annotations
        return {"metadata": metadata, "spec": {"selector": {"app": selector}}}

    def deployment(name: str, annotations: dict[str, str]) -> dict[str, Any]:
        template = {"metadata": {"labels": {"app": name}, "annotations": annotations}}
        return {
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"template": template},
            "status": {"readyReplicas": 1},
        }

    services = [service("podinfo-primary", "podinfo-primary"), service("podinfo-canary", "podinfo", canary_annotations)]
    deployments = [deployment("podinfo-primary", {}), deployment("podinfo", {ERROR_RATE_ANNOTATION: "1"})]
    return services, deployments


def test_http_route_splits_by_weight() -> None:
    services, deployments = cluster()
    result = simulate_tick([http_route([weighted(70, 30)])], services, deployments, 4_000, random.Random(3), 0.0)
    counts = Counter(o.workload for o in result.outcomes)
    assert counts["podinfo-primary"] + counts["podinfo"] == 4_000
    assert abs(counts["podinfo"] / 4_000 - 0.3) <= 0.03
    assert {o.table_kind for o in result.outcomes} == {"HTTPRoute"}


def test_a_service_asking_for_direct_clients_gets_them_at_its_rate() -> None:
    services, deployments = cluster(canary_annotations={DIRECT_RPS_ANNOTATION: "20"})
    result = simulate_tick([], services, deployments, 50, random.Random(1), 0.0, seconds=5.0)
    assert Counter((o.table_kind, o.table, o.workload, o.response_code) for o in result.outcomes) == {
        ("Service", "podinfo-canary", "podinfo", 500): 100
    }


def test_the_application_reports_its_own_duration_by_pod() -> None:
    services, deployments = cluster(canary_annotations={DIRECT_RPS_ANNOTATION: "10"})
    result = simulate_tick(
        [http_route([weighted(100, 0)])], services, deployments, 30, random.Random(1), 0.0, seconds=2.0
    )
    metrics = Metrics()
    metrics.record(result)
    pods = {(o.workload, o.pod_name) for o in result.outcomes}
    assert len(pods) == 2
    for workload, pod in pods:
        assert pod.startswith(f"{workload}-") and pod.count("-") == workload.count("-") + 2
        status = "500" if workload == "podinfo" else "200"
        labels = {"kubernetes_namespace": "test", "kubernetes_pod_name": pod, "status": status}
        expected = 20 if workload == "podinfo" else 30
        assert metrics.registry.get_sample_value("http_request_duration_seconds_count", labels) == expected
