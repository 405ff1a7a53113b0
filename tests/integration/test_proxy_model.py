"""The routing model checked against the real Traefik, shape by shape.

Every provider Serin ships is tested on the simulator's model of its data plane
(``localcluster/simulator``); only Traefik runs here for real. For each routing shape Serin writes
for its two providers (``traefik`` and ``gatewayapi:v1``), the objects are built by Serin's own
router functions, applied, and then the same requests are sent through the real Traefik and asked
of the simulator's reader of those objects. They must agree on where each kind of request goes,
on the Set-Cookie a response carries, and on the copies a mirror sends. A split the model gives
as a probability is compared with a binomial bound, so the test fails on a real difference and
not on sampling noise; what the model says always or never happens must happen exactly so.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from localcluster import dataplane
from localcluster.dataplane import DataPlane
from localcluster.realtraffic import User
from localcluster.simulator import gatewayapi as model_gatewayapi
from localcluster.simulator import traefik as model_traefik
from localcluster.simulator.cluster import split_host
from localcluster.simulator.routes import RouteTable, SyntheticRequest, select_route
from localcluster.testing import ClusterHandle, eventually, fresh_namespace
from serin.model import Canary, parse_canary
from serin.routers.gatewayapi import desired_http_route
from serin.routers.traefik import desired_traefik_service
from tests.integration.helpers import canary

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("proxy-model")]

# Requests per kind of request and shape: enough that a split of 70/30 is told from 60/40.
REQUESTS = 200
# How far an observed count may stray from the model's expectation, in standard deviations: a
# correct model fails one run in about 1.7 million per comparison.
Z = 5.0
VERSIONS = {"primary": "stable", "canary": "next"}


def within_binomial_bound(observed: int, trials: int, probability: float) -> bool:
    """Whether ``observed`` successes of ``trials`` fit ``probability``: exactly, when the model
    says always or never; else within Z standard deviations (and one request of rounding)."""
    if probability <= 0.0:
        return observed == 0
    if probability >= 1.0:
        return observed == trials
    deviation = Z * math.sqrt(trials * probability * (1 - probability))
    return abs(observed - trials * probability) <= deviation + 1


@dataclass(frozen=True)
class Shape:
    """One routing object Serin writes, and the kinds of request sent through it."""

    id: str
    provider: str
    analysis: dict[str, Any]
    primary_weight: int
    canary_weight: int
    session: bool = False
    mirror: bool = False
    # Name -> (headers, query) of a kind of request.
    requests: Mapping[str, tuple[dict[str, str], dict[str, str]]] = field(default_factory=lambda: {"plain": ({}, {})})


AB = {
    "interval": "10s",
    "iterations": 3,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"headers": {"x-user": {"regex": "(alice|bob)"}}},
        {"queryParams": {"canary": {"exact": "true"}}},
        # Flagger's documented cookie match, through the Cookie header.
        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
    ],
}
AB_REQUESTS = {
    "plain": ({}, {}),
    "insider": ({"x-canary": "insider"}, {}),
    "outsider": ({"x-canary": "outsider"}, {}),
    "regex-whole": ({"x-user": "alice"}, {}),
    "regex-inside": ({"x-user": "malice-aforethought"}, {}),
    "query": ({}, {"canary": "true"}),
    "query-other": ({}, {"canary": "false"}),
    "cookie": ({"Cookie": "theme=dark; canary=always"}, {}),
    "cookie-other": ({"Cookie": "canary=never"}, {}),
}
WEIGHTED = {"interval": "10s", "maxWeight": 50, "stepWeight": 10}
AFFINITY = {**WEIGHTED, "sessionAffinity": {"cookieName": "canary-session", "maxAge": 600}}
BLUE_GREEN = {"interval": "10s", "iterations": 3, "mirror": True}

SHAPES = (
    Shape("traefik-split", "traefik", WEIGHTED, 70, 30),
    Shape("traefik-primary", "traefik", WEIGHTED, 100, 0),
    Shape("traefik-canary", "traefik", WEIGHTED, 0, 100),
    Shape("traefik-mirror", "traefik", BLUE_GREEN, 100, 0, mirror=True),
    Shape("gateway-split", "gatewayapi:v1", WEIGHTED, 60, 40),
    Shape("gateway-primary", "gatewayapi:v1", WEIGHTED, 100, 0),
    Shape("gateway-ab", "gatewayapi:v1", AB, 0, 100, requests=AB_REQUESTS),
    Shape("gateway-sticky", "gatewayapi:v1", AFFINITY, 50, 50, session=True),
    Shape("gateway-sticky-ended", "gatewayapi:v1", AFFINITY, 100, 0, session=True),
)
SESSION_COOKIE = "canary-session=0123456789abcdef"


def shape_canary(namespace: str, shape: Shape, plane: DataPlane) -> Canary:
    manifest = canary(namespace, shape.analysis, provider=shape.provider)
    manifest["spec"]["service"] = {"name": shape.id, "port": 9898}
    if shape.provider.startswith("gatewayapi"):
        manifest["spec"]["service"].update(hosts=[host(shape)], gatewayRefs=[plane.gateway])
    return parse_canary(manifest)


def host(shape: Shape) -> str:
    return f"{shape.id}.model.example"


def routing_objects(namespace: str, shape: Shape, plane: DataPlane) -> list[dict[str, Any]]:
    """What Serin's router writes for the shape (and, for Traefik, the user's IngressRoute to it)."""
    parsed = shape_canary(namespace, shape, plane)
    if shape.provider == "traefik":
        service = desired_traefik_service(parsed, shape.primary_weight, shape.canary_weight, shape.mirror)
        ingress = {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "IngressRoute",
            "metadata": {"name": shape.id, "namespace": namespace},
            "spec": {
                "entryPoints": ["web"],
                "routes": [
                    {
                        "match": f"Host(`{host(shape)}`)",
                        "kind": "Rule",
                        "services": [{"name": shape.id, "kind": "TraefikService"}],
                    }
                ],
            },
        }
        return [{**service, "metadata": {**service["metadata"], "namespace": namespace}}, ingress]
    route = desired_http_route(
        parsed, shape.primary_weight, shape.canary_weight, SESSION_COOKIE if shape.session else None, shape.mirror
    )
    return [{**route, "metadata": {**route["metadata"], "namespace": namespace}}]


def model_table(obj: Mapping[str, Any]) -> RouteTable:
    if obj["kind"] == model_traefik.KIND:
        return model_traefik.parse_traefik_service(obj)
    return model_gatewayapi.parse_http_route(obj)


def workloads(namespace: str, shapes: tuple[Shape, ...]) -> list[dict[str, Any]]:
    """Two versions, ``stable`` (the primary's pods) and ``next`` (the canary's), and each shape's
    two Services selecting them."""
    objects: list[dict[str, Any]] = []
    for role, version in VERSIONS.items():
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"app-{role}", "namespace": namespace},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": role}},
                    "template": {
                        "metadata": {"labels": {"app": role}, "annotations": {"simulator.serin.dev/latency-ms": "1"}},
                        "spec": {"containers": [{"name": "app", "image": f"example/app:{version}"}]},
                    },
                },
            }
        )
    for shape in shapes:
        for role in VERSIONS:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"{shape.id}-{role}", "namespace": namespace},
                    "spec": {"selector": {"app": role}, "ports": [{"name": "http", "port": 9898}]},
                }
            )
    return objects


def model_version(destination_host: str, namespace: str) -> str:
    located = split_host(destination_host, namespace)
    assert located is not None, destination_host
    return VERSIONS[located[0].rsplit("-", 1)[1]]


def model_request(headers: Mapping[str, str], query: Mapping[str, str], cookie: str = "") -> SyntheticRequest:
    lowered = {name.lower(): value for name, value in headers.items()}
    if cookie:
        lowered["cookie"] = cookie
    return SyntheticRequest(headers=lowered, query_params=dict(query))


@dataclass
class Expectation:
    """What the model says a kind of request gets: a probability per version, and the Set-Cookie
    that answers from each version carry, and whether a mirror copies it (and to which version)."""

    versions: dict[str, float]
    set_cookie: dict[str, str]
    mirrored_to: str | None


def expected(table: RouteTable, request: SyntheticRequest, namespace: str) -> Expectation:
    route = select_route(table, request)
    assert route is not None, f"the model routes {request} nowhere in {table.name}"
    total = sum(destination.weight for destination in route.destinations)
    versions: dict[str, float] = {}
    cookies: dict[str, str] = {}
    for destination in route.destinations:
        if destination.weight > 0:
            version = model_version(destination.host, namespace)
            versions[version] = versions.get(version, 0.0) + destination.weight / total
            cookies[version] = destination.set_cookie or route.set_cookie
    mirrored = model_version(route.mirror.host, namespace) if route.mirror else None
    return Expectation(dict(versions), cookies, mirrored)


def served_by(plane: DataPlane, namespace: str) -> Counter[str]:
    counted: Counter[str] = Counter()
    for entry in plane.served():
        if entry["namespace"] == namespace:
            role = "primary" if entry["pod"].startswith("app-primary-") else "canary"
            counted[VERSIONS[role]] += entry["count"]
    return counted


# Per worker, not per module: the scheduler may run other modules' tests between these, and a
# module's fixture would be made again after each.
@pytest.fixture(scope="session")
def model_namespace(
    local_cluster: ClusterHandle, data_plane: DataPlane, request: pytest.FixtureRequest
) -> Iterator[str]:
    with fresh_namespace(local_cluster, request, dataplane.namespace_labels()) as name:
        local_cluster.apply(workloads(name, SHAPES))
        for role in VERSIONS:
            local_cluster.kubectl("rollout", "status", f"deployment/app-{role}", "-n", name, "--timeout=60s")
        yield name


def mirrored_copies(
    plane: DataPlane, namespace: str, before: Counter[str], version: str, answered: Counter[str]
) -> int:
    """The copies ``version`` served since ``before`` beyond the answers it gave; a mirror sends
    its copy beside the answer, so the last ones may still be on their way for a moment."""
    deadline = time.monotonic() + 10
    while True:
        copies = (served_by(plane, namespace) - before)[version] - answered[version]
        if copies >= REQUESTS or time.monotonic() > deadline:
            return copies
        time.sleep(0.2)


def answering(plane: DataPlane, shape: Shape) -> None:
    """Until Traefik serves the shape's host from both versions' pods it should reach."""
    user = User(plane.url, host(shape))
    eventually(lambda: user.get().status == 200, timeout=30, what=f"Traefik to serve {host(shape)}")
    user.close()


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.id for shape in SHAPES])
def test_traefik_routes_each_shape_as_the_model_does(
    local_cluster: ClusterHandle,
    data_plane: DataPlane,
    model_namespace: str,
    shape: Shape,
) -> None:
    namespace = model_namespace
    objects = routing_objects(namespace, shape, data_plane)
    local_cluster.apply(objects)
    table = model_table(objects[0])
    answering(data_plane, shape)
    # The model's endpoints are all ready at once; Traefik's may still be arriving.
    time.sleep(1)
    differences: list[str] = []
    for kind, (headers, query) in shape.requests.items():
        cookies = ("", SESSION_COOKIE) if shape.session else ("",)
        for cookie in cookies:
            label = f"{kind}{' with the session cookie' if cookie else ''}"
            expectation = expected(table, model_request(headers, query, cookie), namespace)
            # Each request from a new user: only the cookie of the kind, if any, is sent.
            user = User(
                data_plane.url, host(shape), {**headers, **({"Cookie": cookie} if cookie else {})}, keep_cookies=False
            )
            before = served_by(data_plane, namespace)
            path = "/?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "/"
            answers = [user.get(path) for _ in range(REQUESTS)]
            user.close()
            seen = Counter(answer.version for answer in answers)
            statuses = Counter(answer.status for answer in answers)
            if set(statuses) != {200}:
                differences.append(f"{label}: statuses {dict(statuses)}")
            for version in VERSIONS.values():
                probability = expectation.versions.get(version, 0.0)
                if not within_binomial_bound(seen[version], REQUESTS, probability):
                    differences.append(
                        f"{label}: {seen[version]}/{REQUESTS} to {version}, the model says {probability:.2f}"
                    )
            for version, cookie_set in expectation.set_cookie.items():
                given = {answer.set_cookie for answer in answers if answer.version == version}
                if given and given != {cookie_set}:
                    differences.append(f"{label}: answers from {version} set {given}, the model says {cookie_set!r}")
            if expectation.mirrored_to is not None:
                copies = mirrored_copies(data_plane, namespace, before, expectation.mirrored_to, seen)
                if copies != REQUESTS:
                    differences.append(f"{label}: {copies} copies mirrored to {expectation.mirrored_to} of {REQUESTS}")
    assert not differences, "\n".join(differences)


def test_traefik_as_a_gateway_answers_500_to_every_request_of_a_rule_that_mirrors(
    local_cluster: ClusterHandle,
    data_plane: DataPlane,
    model_namespace: str,
) -> None:
    """Where the model and Traefik part, on purpose: Traefik v3.7 does not implement Gateway API's
    RequestMirror filter, and answers every request of a rule that has one with a 500 (the route's
    status still says Accepted). The model stands for the gateways that do implement it, so a
    mirrored blue/green on Traefik is done with its own provider (a mirroring TraefikService)."""
    shape = Shape("gateway-mirror", "gatewayapi:v1", BLUE_GREEN, 100, 0, mirror=True)
    local_cluster.apply(routing_objects(model_namespace, shape, data_plane))
    user = User(data_plane.url, host(shape))
    eventually(lambda: user.get().status == 500, timeout=30, what=f"Traefik to serve {host(shape)}")
    answers = Counter(user.get().status for _ in range(20))
    user.close()
    assert answers == Counter({500: 20})
    table = model_table(routing_objects(model_namespace, shape, data_plane)[0])
    assert expected(table, model_request({}, {}), model_namespace) == Expectation(
        {"stable": 1.0}, {"stable": ""}, "next"
    )


def test_the_binomial_bound_tells_a_wrong_split_from_noise() -> None:
    """The bound holds a fair sample of the model's split and refuses the neighbouring split."""
    rng = random.Random(7)
    fair = sum(rng.random() < 0.3 for _ in range(REQUESTS))
    assert within_binomial_bound(fair, REQUESTS, 0.3)
    assert not within_binomial_bound(int(REQUESTS * 0.6), REQUESTS, 0.3)
    assert within_binomial_bound(0, REQUESTS, 0.0) and not within_binomial_bound(1, REQUESTS, 0.0)
    assert within_binomial_bound(REQUESTS, REQUESTS, 1.0) and not within_binomial_bound(REQUESTS - 1, REQUESTS, 1.0)
