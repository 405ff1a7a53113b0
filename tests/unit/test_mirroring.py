"""Mirroring: requests copied to the canary, its responses dropped, its errors still measured."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from localcluster.simulator.traffic import simulate_tick
from serin.model import parse_canary
from serin.ports import Routes
from serin.routers.gatewayapi import desired_http_route
from serin.routers.gatewayapi import routes_of as http_route_split
from serin.routers.istio import desired_virtual_service
from serin.routers.istio import routes_of as virtual_service_split


def canary(provider: str = "istio", **analysis: Any) -> Any:
    spec: dict[str, Any] = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"mirror": True, **analysis},
    }
    if provider.startswith("gatewayapi"):
        spec["service"]["gatewayRefs"] = [{"name": "public"}]
    return parse_canary({"metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"}, "spec": spec})


def test_istio_mirrors_on_the_weighted_route_with_its_percentage() -> None:
    subject = canary(stepWeight=10, mirrorWeight=40)
    (route,) = desired_virtual_service(subject, 100, 0, mirror=True)["spec"]["http"]
    assert (route["mirror"], route["mirrorPercentage"]) == ({"host": "podinfo-canary"}, {"value": 40})
    assert virtual_service_split({"spec": {"http": [route]}}, subject) == Routes(100, 0, mirrored=True)
    (plain,) = desired_virtual_service(subject, 90, 10)["spec"]["http"]
    assert "mirror" not in plain and "mirrorPercentage" not in plain


def test_gateway_api_mirrors_with_a_request_mirror_filter() -> None:
    subject = canary("gatewayapi:v1", iterations=3)
    route = desired_http_route(subject, 100, 0, mirror=True)
    (rule,) = route["spec"]["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}},
        }
    ]
    assert http_route_split(route, subject) == Routes(100, 0, mirrored=True)
    assert http_route_split(desired_http_route(subject, 0, 100), subject) == Routes(0, 100, mirrored=False)


def test_users_get_the_primarys_answers_while_the_canarys_errors_are_measured() -> None:
    services = [
        {"metadata": {"name": name, "namespace": "test"}, "spec": {"selector": {"app": app}}}
        for name, app in (("podinfo-primary", "podinfo-primary"), ("podinfo-canary", "podinfo"))
    ]
    deployments = [
        {
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"template": {"metadata": {"labels": {"app": name}, "annotations": annotations}}},
            "status": {"readyReplicas": 1},
        }
        for name, annotations in (("podinfo-primary", {}), ("podinfo", {"simulator.serin.dev/error-rate": "1"}))
    ]
    vs = {
        **desired_virtual_service(canary(stepWeight=10, mirrorWeight=40), 100, 0, mirror=True),
        "kind": "VirtualService",
    }
    result = simulate_tick([vs], services, deployments, 2_000, random.Random(8), 0.0)
    seen = Counter((o.workload, o.response_code) for o in result.outcomes if not o.mirrored)
    copies = Counter((o.workload, o.response_code) for o in result.outcomes if o.mirrored)
    assert seen == {("podinfo-primary", 200): 2_000}
    assert set(copies) == {("podinfo", 500)}
    assert abs(copies[("podinfo", 500)] / 2_000 - 0.4) <= 0.04
