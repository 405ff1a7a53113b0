"""The Contour, Traefik and Linkerd routers: their objects, read back, and routed as each proxy would."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.contour import parse_http_proxy
from localcluster.simulator.linkerd import parse_traffic_split
from localcluster.simulator.routes import SyntheticRequest, choose_destination, select_route
from localcluster.simulator.traefik import parse_traefik_service
from serin.model import Canary, parse_canary
from serin.ports import Routes
from serin.routers import ContourRouter, LinkerdRouter, TraefikRouter, router_for
from serin.routers.contour import desired_http_proxy
from serin.routers.contour import routes_of as proxy_routes
from serin.routers.linkerd import desired_traffic_split
from serin.routers.linkerd import routes_of as linkerd_routes
from serin.routers.traefik import desired_traefik_service
from serin.routers.traefik import routes_of as traefik_routes
from tests.unit.fake_store import FakeStore


def canary(provider: str, service: dict[str, Any] | None = None, analysis: dict[str, Any] | None = None) -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"},
            "spec": {
                "provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, **(service or {})},
                "analysis": analysis or {"stepWeight": 10, "threshold": 2},
            },
        }
    )


def contour_service(name: str, weight: int) -> dict[str, Any]:
    override = f"{name}.test.svc.cluster.local:9898"
    return {
        "name": name,
        "port": 9898,
        "weight": weight,
        "requestHeadersPolicy": {"set": [{"name": "l5d-dst-override", "value": override}]},
    }


def test_contour_weighted_route_with_timeout_and_retries() -> None:
    service = {"timeout": "15s", "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx, gateway-error"}}
    proxy = desired_http_proxy(canary("contour", service), 80, 20)
    assert (proxy["apiVersion"], proxy["kind"], proxy["metadata"]["name"]) == (
        "projectcontour.io/v1",
        "HTTPProxy",
        "podinfo",
    )
    assert proxy["spec"] == {
        "routes": [
            {
                "conditions": [{"prefix": "/"}],
                "timeoutPolicy": {"response": "15s", "idle": "5m"},
                "retryPolicy": {"count": 3, "perTryTimeout": "5s", "retryOn": ["5xx", "gateway-error"]},
                "services": [contour_service("podinfo-primary", 80), contour_service("podinfo-canary", 20)],
            }
        ]
    }
    assert proxy_routes(proxy, canary("contour")) == Routes(80, 20)


AB = {
    "iterations": 3,
    "threshold": 2,
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}, {"queryParams": {"canary": {"prefix": "t"}}}],
}


def test_contour_ab_routes_each_match_and_everyone_else_to_the_primary() -> None:
    proxy = desired_http_proxy(canary("contour", analysis=AB), 0, 100)
    routes = proxy["spec"]["routes"]
    assert [route["conditions"] for route in routes] == [
        [{"prefix": "/"}, {"header": {"name": "x-canary", "exact": "insider"}}],
        [{"prefix": "/"}, {"queryParameter": {"name": "canary", "prefix": "t"}}],
        [{"prefix": "/"}],
    ]
    assert [[(s["name"], s["weight"]) for s in route["services"]] for route in routes] == [
        [("podinfo-primary", 0), ("podinfo-canary", 100)],
        [("podinfo-primary", 0), ("podinfo-canary", 100)],
        [("podinfo-primary", 100), ("podinfo-canary", 0)],
    ]
    table = parse_http_proxy({**proxy, "metadata": {**proxy["metadata"]}})
    picked = {
        name: select_route(table, request)
        for name, request in (
            ("header", SyntheticRequest(headers={"x-canary": "insider"})),
            ("query", SyntheticRequest(query_params={"canary": "true"})),
            ("plain", SyntheticRequest()),
        )
    }
    assert {name: route.name if route else None for name, route in picked.items()} == {
        "header": "routes[0]",
        "query": "routes[1]",
        "plain": "routes[2]",
    }


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        pytest.param(
            [{"name": "podinfo-primary", "weight": 100}, {"name": "podinfo-canary"}], Routes(100, 0), id="omitted-is-0"
        ),
        pytest.param([{"name": "podinfo-primary"}], None, id="no-canary"),
    ],
)
def test_contour_routes_read_as_contour_reads_weights(services: list[dict[str, Any]], expected: Routes | None) -> None:
    assert proxy_routes({"spec": {"routes": [{"services": services}]}}, canary("contour")) == expected


def test_traefik_weighted_services_keep_both_entries() -> None:
    service = desired_traefik_service(canary("traefik"), 100, 0)
    assert (service["apiVersion"], service["kind"]) == ("traefik.io/v1alpha1", "TraefikService")
    assert service["spec"] == {
        "weighted": {
            "services": [
                {"name": "podinfo-primary", "namespace": "test", "port": 9898, "weight": 100},
                {"name": "podinfo-canary", "namespace": "test", "port": 9898, "weight": 0},
            ]
        }
    }
    assert traefik_routes(service, canary("traefik")) == Routes(100, 0)
    # Flagger's objects leave the canary out at 0 and the weight out of a lone primary.
    flaggers = {"spec": {"weighted": {"services": [{"name": "podinfo-primary", "port": 9898}]}}}
    assert traefik_routes(flaggers, canary("traefik")) == Routes(100, 0)


def test_a_mirrored_blue_green_answers_from_the_primary_and_copies_every_request_to_the_canary() -> None:
    service = desired_traefik_service(canary("traefik"), 100, 0, mirror=True)
    reference = {"namespace": "test", "port": 9898}
    assert service["spec"] == {
        "mirroring": {
            "name": "podinfo-primary",
            **reference,
            "mirrors": [{"name": "podinfo-canary", **reference, "percent": 100}],
        }
    }
    assert traefik_routes(service, canary("traefik")) == Routes(100, 0, mirrored=True)
    (route,) = parse_traefik_service(service).routes
    assert [(d.host, d.weight) for d in route.destinations] == [("podinfo-primary.test", 1)]
    assert route.mirror is not None and (route.mirror.host, route.mirror.weight) == ("podinfo-canary.test", 100)
    # Once promoted (or rolled back), the weighted split is written again.
    assert "weighted" in desired_traefik_service(canary("traefik"), 100, 0)["spec"]
    # A mirror Traefik is told nothing about copies nothing (its percent defaults to 0).
    silent = {
        "spec": {
            "mirroring": {
                "name": "podinfo-primary",
                "port": 9898,
                "mirrors": [{"name": "podinfo-canary", "port": 9898}],
            }
        }
    }
    assert traefik_routes(silent, canary("traefik")) == Routes(100, 0, mirrored=False)
    assert parse_traefik_service(silent).routes[0].mirror.weight == 0  # type: ignore[union-attr]


def test_traefik_balances_by_weight() -> None:
    table = parse_traefik_service(desired_traefik_service(canary("traefik"), 60, 40))
    (route,) = table.routes
    rng = random.Random(2)
    picks = Counter(choose_destination(route.destinations, rng).host for _ in range(4_000))  # type: ignore[union-attr]
    assert abs(picks["podinfo-canary.test"] / 4_000 - 0.4) <= 0.03
    assert [d.tag for d in route.destinations] == [
        "test-podinfo-primary-9898@kubernetescrd",
        "test-podinfo-canary-9898@kubernetescrd",
    ]


@pytest.mark.parametrize(
    ("provider", "router", "kind"),
    [
        ("contour", ContourRouter, "HTTPProxy"),
        ("traefik", TraefikRouter, "TraefikService"),
        ("linkerd", LinkerdRouter, "TrafficSplit"),
    ],
)
def test_routers_read_then_write_and_give_back(provider: str, router: type, kind: str) -> None:
    store = FakeStore()
    made = router_for(provider, store)
    assert isinstance(made, router)
    made.reconcile(canary(provider), (70, 30))
    assert store.calls == [f"get {kind} podinfo", f"apply {kind} podinfo"]
    assert made.get_routes(canary(provider)) == Routes(70, 30)
    made.finalize(canary(provider))
    assert made.get_routes(canary(provider)) == Routes(100, 0)


def test_linkerd_traffic_split_splits_the_apex_service() -> None:
    split = desired_traffic_split(canary("linkerd"), 70, 30)
    assert (split["apiVersion"], split["kind"], split["metadata"]["name"]) == (
        "split.smi-spec.io/v1alpha1",
        "TrafficSplit",
        "podinfo",
    )
    assert split["spec"] == {
        "service": "podinfo",
        "backends": [{"service": "podinfo-canary", "weight": 30}, {"service": "podinfo-primary", "weight": 70}],
    }
    assert linkerd_routes(split, canary("linkerd")) == Routes(70, 30)
    # Flagger writes the weights as quantities.
    flaggers = {
        "spec": {
            "backends": [{"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}]
        }
    }
    assert linkerd_routes(flaggers, canary("linkerd")) == Routes(100, 0)
    (route,) = parse_traffic_split(split).routes
    assert [(d.host, d.weight) for d in route.destinations] == [("podinfo-canary", 30), ("podinfo-primary", 70)]
