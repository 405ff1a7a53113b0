"""The NGINX router: the canary Ingress it copies from the user's, and how NGINX routes with it.

Checked against literal Ingresses, against the simulator's NGINX (which follows the controller's
canary annotations), and against a small fake of Serin's access layer.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.export import Metrics
from localcluster.simulator.nginx import parse_ingresses
from localcluster.simulator.routes import SyntheticRequest, select_route
from localcluster.simulator.traffic import simulate_tick
from serin.model import Canary, parse_canary
from serin.ports import PermanentError, Routes
from serin.routers import NginxRouter, router_for
from serin.routers.nginx import desired_canary_ingress, routes_of
from tests.unit.fake_store import FakeStore

USERS_INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "podinfo",
        "namespace": "test",
        "labels": {"app": "podinfo"},
        "annotations": {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/canary-weight": "77",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
    },
    "spec": {
        "rules": [
            {
                "host": "app.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}},
                        },
                        {
                            "path": "/static",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "assets", "port": {"number": 80}}},
                        },
                    ]
                },
            }
        ]
    },
}
AB = {
    "iterations": 5,
    "threshold": 2,
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}, {"headers": {"cookie": {"exact": "canary"}}}],
}


def canary(analysis: dict[str, Any] | None = None) -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"},
            "spec": {
                "provider": "nginx",
                "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis or {"stepWeight": 10, "threshold": 2},
            },
        }
    )


def test_the_canary_ingress_is_the_users_pointed_at_the_canary_with_its_weight() -> None:
    ingress = desired_canary_ingress(canary(), USERS_INGRESS, 70, 30)
    assert ingress["metadata"]["name"] == "podinfo-canary"
    assert ingress["metadata"]["labels"] == {
        "app": "podinfo",
        "app.kubernetes.io/managed-by": "serin",
        "serin.dev/managed-for": "podinfo",
    }
    assert ingress["metadata"]["annotations"] == {
        "kubernetes.io/ingress.class": "nginx",
        "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
        "helm.toolkit.fluxcd.io/driftDetection": "disabled",
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "30",
    }
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [path["backend"]["service"]["name"] for path in paths] == ["podinfo-canary", "assets"]
    assert USERS_INGRESS["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "podinfo"


@pytest.mark.parametrize(
    ("analysis", "split", "expected"),
    [
        pytest.param(
            AB,
            (0, 100),
            {
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
                "nginx.ingress.kubernetes.io/canary-by-header-value": "insider",
                "nginx.ingress.kubernetes.io/canary-by-cookie": "canary",
            },
            id="ab-routes-the-header-and-the-cookie",
        ),
        pytest.param(AB, (100, 0), {"nginx.ingress.kubernetes.io/canary-weight": "0"}, id="ab-idle-routes-nothing"),
        pytest.param(
            {**AB, "match": [{"headers": {"user-agent": {"regex": ".*Firefox.*"}}}]},
            (0, 100),
            {
                "nginx.ingress.kubernetes.io/canary-weight": "0",
                "nginx.ingress.kubernetes.io/canary-by-header": "user-agent",
                "nginx.ingress.kubernetes.io/canary-by-header-pattern": ".*Firefox.*",
            },
            id="ab-header-pattern",
        ),
    ],
)
def test_ab_testing_annotations(analysis: dict[str, Any], split: tuple[int, int], expected: dict[str, str]) -> None:
    annotations = desired_canary_ingress(canary(analysis), USERS_INGRESS, *split)["metadata"]["annotations"]
    canary_keys = {k: v for k, v in annotations.items() if k.startswith("nginx.ingress.kubernetes.io/canary-")}
    assert canary_keys == expected
    assert routes_of({"metadata": {"annotations": annotations}}, canary(analysis)) == Routes(*split)


def test_an_ingress_without_the_apex_service_cannot_make_a_canary() -> None:
    other = copy.deepcopy(USERS_INGRESS)
    other["spec"]["rules"][0]["http"]["paths"] = other["spec"]["rules"][0]["http"]["paths"][1:]
    with pytest.raises(PermanentError, match="Ingress test/podinfo has no backend on Service podinfo"):
        desired_canary_ingress(canary(), other, 100, 0)


def test_the_router_reads_the_users_ingress_and_never_writes_it() -> None:
    store = FakeStore()
    router = router_for("nginx", store)
    assert isinstance(router, NginxRouter)
    with pytest.raises(PermanentError, match=r"Ingress test/podinfo \(spec.ingressRef\) not found"):
        router.set_routes(canary(), 100, 0)
    store.objects[("Ingress", "podinfo")] = copy.deepcopy(USERS_INGRESS)
    router.reconcile(canary(), (90, 10))
    assert router.get_routes(canary()) == Routes(90, 10)
    assert store.objects[("Ingress", "podinfo")] == USERS_INGRESS
    assert [call for call in store.calls if call.startswith("apply")] == ["apply Ingress podinfo-canary"]
    router.finalize(canary())
    assert router.get_routes(canary()) == Routes(100, 0)


def as_stored(ingress: dict[str, Any]) -> dict[str, Any]:
    return {**ingress, "kind": "Ingress"}


@pytest.mark.parametrize(
    ("request_", "route_name"),
    [
        pytest.param(SyntheticRequest(headers={"x-canary": "insider"}), "canary-by-header", id="header"),
        pytest.param(SyntheticRequest(headers={"x-canary": "outsider"}), "canary-weight", id="other-header-value"),
        pytest.param(SyntheticRequest(headers={"cookie": "a=1; canary=always"}), "canary-by-cookie", id="cookie"),
        pytest.param(SyntheticRequest(headers={"cookie": "canary=never"}), "canary-weight", id="cookie-not-always"),
        pytest.param(SyntheticRequest(), "canary-weight", id="everyone-else"),
    ],
)
def test_the_simulated_controller_follows_the_canary_annotations(request_: SyntheticRequest, route_name: str) -> None:
    canary_ingress = desired_canary_ingress(canary(AB), USERS_INGRESS, 0, 100)
    (table,) = parse_ingresses([as_stored(USERS_INGRESS), as_stored(canary_ingress)])
    route = select_route(table, request_)
    assert route is not None and route.name == route_name


def test_weighted_traffic_is_reported_as_the_controller_reports_it() -> None:
    canary_ingress = desired_canary_ingress(canary(), USERS_INGRESS, 75, 25)
    services = [
        {"metadata": {"name": name, "namespace": "test"}, "spec": {"selector": {"app": app}}}
        for name, app in (("podinfo", "podinfo-primary"), ("podinfo-canary", "podinfo"))
    ]
    deployments = [
        {
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"template": {"metadata": {"labels": {"app": name}}}},
            "status": {"readyReplicas": 1},
        }
        for name in ("podinfo-primary", "podinfo")
    ]
    result = simulate_tick(
        [as_stored(USERS_INGRESS), as_stored(canary_ingress)], services, deployments, 4_000, random.Random(7), 0.0
    )
    assert abs(Counter(o.workload for o in result.outcomes)["podinfo"] / 4_000 - 0.25) <= 0.03
    metrics = Metrics()
    metrics.record(result)
    labels = {"namespace": "test", "ingress": "podinfo", "status": "200"}
    canary_count = metrics.registry.get_sample_value(
        "nginx_ingress_controller_requests",
        {**labels, "service": "podinfo-canary", "canary": "test-podinfo-canary-9898"},
    )
    primary_count = metrics.registry.get_sample_value(
        "nginx_ingress_controller_requests", {**labels, "service": "podinfo", "canary": ""}
    )
    assert (canary_count or 0) + (primary_count or 0) == 4_000
    assert canary_count == Counter(o.workload for o in result.outcomes)["podinfo"]
