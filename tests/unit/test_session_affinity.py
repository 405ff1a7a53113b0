"""Session affinity: who the canary served keeps reaching it, by a cookie the data plane sets.

The cookie of a release is derived from the Canary and the revision (no state to keep); the Istio
and Gateway API routers add a sticky route for it; the simulator's clients keep the cookies they
are given, so the stickiness is checked as users would see it.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.gatewayapi import parse_http_route
from localcluster.simulator.istio import parse_virtual_service
from localcluster.simulator.traffic import Clients, simulate_tick
from serin.decide import session_cookie
from serin.model import InvalidCanary, SessionAffinity, parse_canary
from serin.ports import Routes
from serin.routers.gatewayapi import desired_http_route
from serin.routers.gatewayapi import routes_of as http_route_split
from serin.routers.istio import desired_virtual_service
from serin.routers.istio import routes_of as virtual_service_split
from serin.status import CanaryStatus

AFFINITY = {"cookieName": "canary-session", "maxAge": 3600, "path": "/", "secure": True, "sameSite": "Lax"}


def canary(provider: str = "istio", **analysis: Any) -> Any:
    spec: dict[str, Any] = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"stepWeight": 20, "threshold": 2, "sessionAffinity": AFFINITY, **analysis},
    }
    if provider.startswith("gatewayapi"):
        spec["service"]["gatewayRefs"] = [{"name": "public"}]
    return parse_canary({"metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"}, "spec": spec})


def test_a_release_has_one_cookie_and_the_next_another() -> None:
    subject = canary()
    assert subject.analysis.session_affinity == SessionAffinity(
        "canary-session", 3600, attributes=("Path=/", "SameSite=Lax", "Secure")
    )
    first = session_cookie(subject, CanaryStatus(last_applied_spec="rev-a"))
    assert first == session_cookie(subject, CanaryStatus(last_applied_spec="rev-a"))
    assert first != session_cookie(subject, CanaryStatus(last_applied_spec="rev-b"))
    assert first is not None and first.startswith("canary-session=") and len(first.split("=")[1]) == 16
    assert session_cookie(subject, CanaryStatus()) is None
    # As Flagger: a maxAge of 0 is the default day, not a cookie that expires at once.
    unset = canary(sessionAffinity={"cookieName": "c", "maxAge": 0}).analysis.session_affinity
    assert unset.set_cookie("c=1") == "c=1; Max-Age=86400"
    assert (
        subject.analysis.session_affinity.set_cookie("c=1", max_age=-1)
        == "c=1; Max-Age=-1; Path=/; SameSite=Lax; Secure"
    )


@pytest.mark.parametrize(
    ("provider", "analysis", "error"),
    [
        pytest.param(
            "nginx",
            {},
            ("spec.analysis.sessionAffinity", "provider nginx cannot route by a cookie it sets"),
            id="nginx",
        ),
        pytest.param(
            "istio",
            {"stepWeight": None, "iterations": 5},
            (
                "spec.analysis.sessionAffinity",
                "keeps users on the canary a weight sent them to: only canary releases (stepWeight or stepWeights)",
            ),
            id="blue-green",
        ),
        pytest.param(
            "istio",
            {"sessionAffinity": {"cookieName": "a b"}},
            (
                "spec.analysis.sessionAffinity.cookieName",
                "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~; got 'a b')",
            ),
            id="cookie-name",
        ),
    ],
)
def test_session_affinity_is_refused_where_it_cannot_work(
    provider: str, analysis: dict[str, Any], error: tuple[str, str]
) -> None:
    manifest: dict[str, Any] = {
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": provider,
            "targetRef": {"kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"stepWeight": 20, "sessionAffinity": AFFINITY, **analysis},
        },
    }
    if provider == "nginx":
        manifest["spec"]["ingressRef"] = {"name": "podinfo"}
    manifest["spec"]["analysis"] = {k: v for k, v in manifest["spec"]["analysis"].items() if v is not None}
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(manifest)
    assert [(e.path, e.message) for e in raised.value.errors] == [error]


COOKIE = "canary-session=0123456789abcdef"
STICKY_MATCH = [{"headers": {"cookie": {"regex": ".*canary\\-session=0123456789abcdef.*"}}}]


def test_istio_sticky_route_while_the_canary_has_traffic_and_after() -> None:
    subject = canary()
    during = desired_virtual_service(subject, 80, 20, COOKIE)["spec"]["http"]
    assert during == [
        {
            "name": "sticky",
            "match": STICKY_MATCH,
            "route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 0},
                {"destination": {"host": "podinfo-canary"}, "weight": 100},
            ],
        },
        {
            "route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 80},
                {
                    "destination": {"host": "podinfo-canary"},
                    "weight": 20,
                    "headers": {
                        "response": {"add": {"Set-Cookie": f"{COOKIE}; Max-Age=3600; Path=/; SameSite=Lax; Secure"}}
                    },
                },
            ]
        },
    ]
    after = desired_virtual_service(subject, 100, 0, COOKIE)["spec"]["http"]
    assert after[0] == {
        "name": "sticky",
        "match": STICKY_MATCH,
        "headers": {"response": {"add": {"Set-Cookie": f"{COOKIE}; Max-Age=-1; Path=/; SameSite=Lax; Secure"}}},
        "route": [
            {"destination": {"host": "podinfo-primary"}, "weight": 100},
            {"destination": {"host": "podinfo-canary"}, "weight": 0},
        ],
    }
    # The split is the weighted route's, not the sticky one's.
    assert virtual_service_split({"spec": {"http": during}}, subject) == Routes(80, 20)
    assert virtual_service_split({"spec": {"http": after}}, subject) == Routes(100, 0)


def test_gateway_api_sticky_rule_has_one_backend_and_the_split_is_the_weighted_rules() -> None:
    subject = canary("gatewayapi:v1")
    during = desired_http_route(subject, 80, 20, COOKIE)
    sticky, weighted = during["spec"]["rules"]
    assert (sticky["name"], sticky["matches"]) == (
        "sticky",
        [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [
                    {
                        "name": "cookie",
                        "type": "RegularExpression",
                        "value": "^(?:.*canary\\-session=0123456789abcdef.*)$",
                    }
                ],
            }
        ],
    )
    assert [(ref["name"], ref["weight"]) for ref in sticky["backendRefs"]] == [("podinfo-canary", 100)]
    assert weighted["backendRefs"][1]["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "add": [{"name": "Set-Cookie", "value": f"{COOKIE}; Max-Age=3600; Path=/; SameSite=Lax; Secure"}]
            },
        }
    ]
    assert http_route_split(during, subject) == Routes(80, 20)
    after = desired_http_route(subject, 100, 0, COOKIE)
    sticky = after["spec"]["rules"][0]
    assert [(ref["name"], ref["weight"]) for ref in sticky["backendRefs"]] == [("podinfo-primary", 100)]
    assert sticky["filters"][-1]["responseHeaderModifier"]["add"][0]["value"].startswith(f"{COOKIE}; Max-Age=-1")
    assert http_route_split(after, subject) == Routes(100, 0)


def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [
        {"metadata": {"name": name, "namespace": "test"}, "spec": {"selector": {"app": app}}}
        for name, app in (("podinfo-primary", "podinfo-primary"), ("podinfo-canary", "podinfo"))
    ]
    deployments = [
        {
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"template": {"metadata": {"labels": {"app": name}}}},
            "status": {"readyReplicas": 1},
        }
        for name in ("podinfo-primary", "podinfo")
    ]
    return services, deployments


@pytest.mark.parametrize(
    ("provider", "build"),
    [
        ("istio", lambda c, p, w: {**desired_virtual_service(c, p, w, COOKIE), "kind": "VirtualService"}),
        ("gatewayapi:v1", lambda c, p, w: {**desired_http_route(c, p, w, COOKIE), "kind": "HTTPRoute"}),
    ],
)
def test_users_the_canary_served_stay_on_it_and_come_back_after(provider: str, build: Any) -> None:
    subject = canary(provider)
    services, deployments = cluster()
    clients, rng = Clients(), random.Random(3)
    during = simulate_tick([build(subject, 80, 20)], services, deployments, 3_000, rng, 0.0, clients=clients)
    later = simulate_tick([build(subject, 80, 20)], services, deployments, 1_000, rng, 0.0, clients=clients)
    # Without the cookie a fifth would reach the canary; every user it served stays.
    assert Counter(o.workload for o in later.outcomes)["podinfo"] / 1_000 > 0.9
    assert Counter(o.workload for o in during.outcomes)["podinfo"] / 3_000 > 0.5
    after = simulate_tick([build(subject, 100, 0)], services, deployments, 1_000, rng, 0.0, clients=clients)
    assert Counter(o.workload for o in after.outcomes) == {"podinfo-primary": 1_000}
    assert all(not jar for jars in clients.jars.values() for jar in jars)
    assert (parse_virtual_service if provider == "istio" else parse_http_route)(build(subject, 80, 20)).routes[0].sticky
