"""The Istio router: desired objects, reading and writing weights, and the write discipline.

The pure functions are checked table by table against literal Istio objects. The class is checked
against an in-memory stand-in for the custom objects API that enforces resourceVersion
preconditions the way the API server does; behaviour against a real API server belongs to the
integration tests.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import ApiClient, ApiException

import serin.routers.istio as istio
from localcluster.simulator import SyntheticRequest, parse_virtual_service, select_route
from serin.model import Canary, parse_canary
from serin.ports import RouterError, Routes
from serin.routers import IstioRouter, router_for
from serin.routers.istio import (
    adopted,
    desired_destination_rule,
    desired_virtual_service,
    merge_match,
    routes_of,
    validate_weights,
    with_weights,
)

FLAGGER_COOKIE_REGEX = "^(.*?;)?(canary=always)(;.*)?$"
COOKIE_MATCH: dict[str, Any] = {"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}
HEADER_MATCH: dict[str, Any] = {"headers": {"x-canary": {"exact": "insider"}}}
OWNER: dict[str, Any] = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "name": "podinfo",
    "uid": "u1",
    "controller": True,
    "blockOwnerDeletion": False,
}
MANAGED: dict[str, str] = {"app.kubernetes.io/managed-by": "serin"}


def canary(
    service: dict[str, Any] | None = None, analysis: dict[str, Any] | None = None, uid: str = "u1", **spec: Any
) -> Canary:
    """A podinfo Canary (weighted, stepWeight 10) with the given service and analysis fields."""
    manifest = {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": uid},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, **(service or {})},
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}],
                **(analysis or {}),
            },
            **spec,
        },
    }
    return parse_canary(manifest)


def ab_canary(*match: dict[str, Any], service: dict[str, Any] | None = None) -> Canary:
    return canary(service, {"stepWeight": None, "iterations": 10, "match": list(match)})


def dest(host: str, weight: int | None, port: int = 9898) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": host, "port": {"number": port}}}
    if weight is not None:
        entry["weight"] = weight
    return entry


def split(primary: int, canary_weight: int, service: str = "podinfo", port: int = 9898) -> list[dict[str, Any]]:
    return [dest(f"{service}-primary", primary, port), dest(f"{service}-canary", canary_weight, port)]


def vs_object(http: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": dict(MANAGED),
            "ownerReferences": [dict(OWNER)],
        },
        "spec": {"hosts": ["podinfo"], **spec, "http": http},
    }


# ---------------------------------------------------------------------------
# desired_virtual_service


@pytest.mark.parametrize(
    ("subject", "weights", "expected"),
    [
        pytest.param(canary(), (100, 0), vs_object([{"route": split(100, 0)}]), id="new canary: all on primary"),
        pytest.param(canary(), (70, 30), vs_object([{"route": split(70, 30)}]), id="weighted canary mid-analysis"),
        pytest.param(
            canary(analysis={"stepWeight": None, "iterations": 10}),
            (0, 100),
            vs_object([{"route": split(0, 100)}]),
            id="blue/green is one weighted route",
        ),
        pytest.param(
            canary({"gateways": ["istio-system/public", "mesh"], "hosts": ["app.example.com", "podinfo"]}),
            (100, 0),
            vs_object(
                [{"route": split(100, 0)}],
                hosts=["podinfo", "app.example.com"],
                gateways=["istio-system/public", "mesh"],
            ),
            id="gateways and hosts, apex host first and not repeated",
        ),
        pytest.param(
            canary(
                {
                    "match": [{"uri": {"prefix": "/api"}}],
                    "rewrite": {"uri": "/"},
                    "timeout": "5s",
                    "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error"},
                    "headers": {"request": {"add": {"x-served-by": "serin"}}},
                    "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "maxAge": "24h"},
                }
            ),
            (90, 10),
            vs_object(
                [
                    {
                        "match": [{"uri": {"prefix": "/api"}}],
                        "rewrite": {"uri": "/"},
                        "timeout": "5s",
                        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error"},
                        "headers": {"request": {"add": {"x-served-by": "serin"}}},
                        "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "maxAge": "24h"},
                        "route": split(90, 10),
                    }
                ]
            ),
            id="service match, rewrite, timeout, retries, headers and CORS are copied",
        ),
        pytest.param(
            ab_canary(HEADER_MATCH),
            (0, 100),
            vs_object([{"match": [HEADER_MATCH], "route": split(0, 100)}, {"route": split(100, 0)}]),
            id="A/B with a header match",
        ),
        pytest.param(
            ab_canary(COOKIE_MATCH, HEADER_MATCH),
            (100, 0),
            vs_object([{"match": [COOKIE_MATCH, HEADER_MATCH], "route": split(100, 0)}, {"route": split(100, 0)}]),
            id="A/B with a cookie regex or a header",
        ),
        pytest.param(
            ab_canary(COOKIE_MATCH, service={"match": [{"uri": {"prefix": "/api"}}], "timeout": "5s"}),
            (0, 100),
            vs_object(
                [
                    {
                        "match": [{"uri": {"prefix": "/api"}, **COOKIE_MATCH}],
                        "timeout": "5s",
                        "route": split(0, 100),
                    },
                    {"match": [{"uri": {"prefix": "/api"}}], "timeout": "5s", "route": split(100, 0)},
                ]
            ),
            id="A/B merged with the service match",
        ),
    ],
)
def test_desired_virtual_service(subject: Canary, weights: tuple[int, int], expected: dict[str, Any]) -> None:
    assert desired_virtual_service(subject, *weights) == expected


def test_service_name_names_the_objects_not_the_target() -> None:
    subject = canary({"name": "web", "port": 8080})
    vs = desired_virtual_service(subject, 100, 0)
    assert vs["metadata"]["name"] == "web"
    assert vs["spec"]["hosts"] == ["web"]
    assert vs["spec"]["http"] == [{"route": split(100, 0, service="web", port=8080)}]
    assert desired_destination_rule(subject, "web-canary")["spec"] == {"host": "web-canary"}


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        pytest.param(canary(), {"labels": MANAGED, "ownerReferences": [OWNER]}, id="stored canary"),
        pytest.param(canary(uid=""), {"labels": MANAGED}, id="no uid: no owner reference"),
        pytest.param(
            canary({"apex": {"labels": {"team": "a"}, "annotations": {"note": "x"}}}),
            {"labels": dict(MANAGED, team="a"), "annotations": {"note": "x"}, "ownerReferences": [OWNER]},
            id="apex metadata goes on the VirtualService",
        ),
    ],
)
def test_virtual_service_metadata(subject: Canary, expected: dict[str, Any]) -> None:
    assert desired_virtual_service(subject, 100, 0)["metadata"] == {"name": "podinfo", "namespace": "test", **expected}


def test_desired_objects_do_not_alias_the_canary() -> None:
    subject = ab_canary(COOKIE_MATCH, service={"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    vs = desired_virtual_service(subject, 100, 0)
    rule = desired_destination_rule(subject, "podinfo-primary")
    vs["spec"]["http"][0]["match"][0]["headers"]["cookie"]["regex"] = "changed"
    rule["spec"]["trafficPolicy"]["tls"]["mode"] = "DISABLE"
    assert subject.analysis.match[0]["headers"]["cookie"]["regex"] == FLAGGER_COOKIE_REGEX
    assert subject.service.traffic_policy == {"tls": {"mode": "ISTIO_MUTUAL"}}


# ---------------------------------------------------------------------------
# desired_destination_rule


@pytest.mark.parametrize(
    ("subject", "host", "spec"),
    [
        pytest.param(canary(), "podinfo-primary", {"host": "podinfo-primary"}, id="primary, no policy"),
        pytest.param(
            canary({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
            "podinfo-canary",
            {"host": "podinfo-canary", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
            id="canary with traffic policy",
        ),
    ],
)
def test_desired_destination_rule(subject: Canary, host: str, spec: dict[str, Any]) -> None:
    assert desired_destination_rule(subject, host) == {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": host, "namespace": "test", "labels": MANAGED, "ownerReferences": [OWNER]},
        "spec": spec,
    }


# ---------------------------------------------------------------------------
# merge_match


@pytest.mark.parametrize(
    ("analysis_match", "service_match", "expected"),
    [
        pytest.param([COOKIE_MATCH], [], [COOKIE_MATCH], id="no service match: analysis match as is"),
        pytest.param(
            [COOKIE_MATCH, HEADER_MATCH],
            [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/v2"}}],
            [
                {"uri": {"prefix": "/api"}, **COOKIE_MATCH},
                {"uri": {"prefix": "/v2"}, **COOKIE_MATCH},
                {"uri": {"prefix": "/api"}, **HEADER_MATCH},
                {"uri": {"prefix": "/v2"}, **HEADER_MATCH},
            ],
            id="cross product",
        ),
        pytest.param(
            [COOKIE_MATCH],
            [{"headers": {"x-region": {"exact": "eu"}, "cookie": {"exact": "old"}}}],
            [{"headers": {"x-region": {"exact": "eu"}, "cookie": {"regex": FLAGGER_COOKIE_REGEX}}}],
            id="header maps merge, the analysis wins a shared key",
        ),
    ],
)
def test_merge_match(
    analysis_match: list[dict[str, Any]], service_match: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    assert merge_match(analysis_match, service_match) == expected


# ---------------------------------------------------------------------------
# routes_of


@pytest.mark.parametrize(
    ("vs", "subject", "expected"),
    [
        pytest.param(vs_object([{"route": split(80, 20)}]), canary(), Routes(80, 20), id="weighted"),
        pytest.param(
            vs_object([{"route": [dest("podinfo-primary", 100), dest("podinfo-canary", None)]}]),
            canary(),
            Routes(100, 0),
            id="omitted zero weight (Flagger writes these)",
        ),
        pytest.param(
            vs_object([{"route": [dest("podinfo-canary", None)]}]),
            canary(),
            Routes(0, 100),
            id="lone destination without weight takes everything",
        ),
        pytest.param(
            vs_object([{"route": [dest("podinfo-primary", None), dest("podinfo-canary", None)]}]),
            canary(),
            Routes(0, 0),
            id="two destinations without weights",
        ),
        pytest.param(
            vs_object([{"route": [dest("podinfo-primary", 60), dest("podinfo-canary", "40")]}]),  # type: ignore[arg-type]
            canary(),
            Routes(60, 0),
            id="a weight that is not an integer counts as missing",
        ),
        pytest.param(
            vs_object([{"match": [HEADER_MATCH], "route": split(0, 100)}, {"route": split(100, 0)}]),
            ab_canary(HEADER_MATCH),
            Routes(0, 100),
            id="A/B: the match route",
        ),
        pytest.param(
            vs_object([{"route": [dest("podinfo-primary", None)]}, {"route": split(50, 50)}]),
            canary(),
            Routes(50, 50),
            id="first route that reaches the canary",
        ),
        pytest.param(
            vs_object([{"route": split(100, 0), "mirror": {"host": "podinfo-canary"}}]),
            canary(),
            Routes(100, 0, mirrored=True),
            id="mirrored",
        ),
        pytest.param(vs_object([{"route": [dest("podinfo-primary", None)]}]), canary(), None, id="no canary route"),
        pytest.param(vs_object([{"route": split(80, 20)}]), canary({"name": "web"}), None, id="other service"),
        pytest.param({"metadata": {"name": "podinfo"}}, canary(), None, id="no spec"),
        pytest.param(vs_object("garbage"), canary(), None, id="malformed http"),  # type: ignore[arg-type]
    ],
)
def test_routes_of(vs: dict[str, Any], subject: Canary, expected: Routes | None) -> None:
    assert routes_of(vs, subject) == expected


@pytest.mark.parametrize(
    ("subject", "weights"),
    [
        pytest.param(canary(), (90, 10), id="canary"),
        pytest.param(ab_canary(COOKIE_MATCH), (0, 100), id="A/B"),
        pytest.param(canary({"gateways": ["public"], "hosts": ["app.example.com"]}), (50, 50), id="gateways"),
    ],
)
def test_routes_of_reads_back_the_desired_split(subject: Canary, weights: tuple[int, int]) -> None:
    assert routes_of(desired_virtual_service(subject, *weights), subject) == Routes(*weights)


# ---------------------------------------------------------------------------
# with_weights


@pytest.mark.parametrize(
    ("vs", "subject", "weights", "expected_http"),
    [
        pytest.param(
            vs_object([{"route": split(100, 0)}]), canary(), (90, 10), [{"route": split(90, 10)}], id="canary"
        ),
        pytest.param(
            vs_object([{"route": [dest("podinfo-primary", 100), dest("podinfo-canary", None)]}]),
            canary(),
            (80, 20),
            [{"route": split(80, 20)}],
            id="fills an omitted weight",
        ),
        pytest.param(
            vs_object([{"match": [COOKIE_MATCH], "route": split(100, 0)}, {"route": split(100, 0)}]),
            ab_canary(COOKIE_MATCH),
            (0, 100),
            [{"match": [COOKIE_MATCH], "route": split(0, 100)}, {"route": split(100, 0)}],
            id="A/B: only the match route moves",
        ),
        pytest.param(
            vs_object([{"match": [COOKIE_MATCH], "route": split(0, 100)}, {"route": split(70, 30)}]),
            ab_canary(COOKIE_MATCH),
            (0, 100),
            [{"match": [COOKIE_MATCH], "route": split(0, 100)}, {"route": split(100, 0)}],
            id="A/B: the default route is put back to the primary",
        ),
        pytest.param(
            vs_object([{"route": [*split(100, 0), dest("legacy", 0)], "timeout": "5s"}]),
            canary(),
            (60, 40),
            [{"route": [*split(60, 40), dest("legacy", 0)], "timeout": "5s"}],
            id="other destinations and fields are left alone",
        ),
    ],
)
def test_with_weights(
    vs: dict[str, Any], subject: Canary, weights: tuple[int, int], expected_http: list[dict[str, Any]]
) -> None:
    before = copy.deepcopy(vs)
    changed = with_weights(vs, subject, *weights)
    assert changed["spec"]["http"] == expected_http
    assert changed["metadata"] == vs["metadata"]
    assert vs == before, "the stored object must not be modified in place"
    assert with_weights(changed, subject, *weights) == changed, "applying the same split twice changes nothing"


@pytest.mark.parametrize(
    "subject", [pytest.param(canary(), id="canary"), pytest.param(ab_canary(HEADER_MATCH), id="A/B")]
)
@pytest.mark.parametrize("weights", [(100, 0), (55, 45), (0, 100)], ids=["100-0", "55-45", "0-100"])
def test_with_weights_equals_desired(subject: Canary, weights: tuple[int, int]) -> None:
    assert with_weights(desired_virtual_service(subject, 100, 0), subject, *weights) == desired_virtual_service(
        subject, *weights
    )


@pytest.mark.parametrize(
    ("primary_weight", "canary_weight", "message"),
    [
        pytest.param(90, 20, "add up to 100", id="sum over 100"),
        pytest.param(50, 40, "add up to 100", id="sum under 100"),
        pytest.param(110, -10, "between 0 and 100", id="negative canary"),
        pytest.param(-1, 101, "between 0 and 100", id="negative primary"),
        pytest.param(99.5, 0.5, "integer", id="fractions"),
        pytest.param(True, 99, "integer", id="bool"),
    ],
)
def test_invalid_weights_are_refused(primary_weight: Any, canary_weight: Any, message: str) -> None:
    subject = canary()
    for call in (
        lambda: validate_weights(primary_weight, canary_weight),
        lambda: desired_virtual_service(subject, primary_weight, canary_weight),
        lambda: with_weights(vs_object([{"route": split(100, 0)}]), subject, primary_weight, canary_weight),
    ):
        with pytest.raises(ValueError, match=message):
            call()


# ---------------------------------------------------------------------------
# adopted


def test_adopted_keeps_foreign_metadata_and_the_resource_version() -> None:
    stored = vs_object([{"route": split(100, 0)}], gateways=["old"])
    stored["metadata"].update(
        resourceVersion="42",
        labels={"team": "a"},
        annotations={"kept": "yes"},
        ownerReferences=[{"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "u0", "controller": True}],
    )
    result = adopted(stored, desired_virtual_service(canary(), 100, 0))
    assert result["spec"] == desired_virtual_service(canary(), 100, 0)["spec"]
    assert result["metadata"]["resourceVersion"] == "42"
    assert result["metadata"]["labels"] == {"team": "a", **MANAGED}
    assert result["metadata"]["annotations"] == {"kept": "yes"}
    # Another controller already owns it: the API server allows one controller, so we join as owner.
    assert result["metadata"]["ownerReferences"][1] == {**OWNER, "controller": False}
    assert adopted(result, desired_virtual_service(canary(), 100, 0)) == result


# ---------------------------------------------------------------------------
# What the data plane makes of it (the simulator routes as Envoy does)


@pytest.mark.parametrize(
    ("headers", "expected_canary_weight"),
    [
        pytest.param({"cookie": "canary=always"}, 100, id="cookie opts in"),
        pytest.param({"cookie": "session=1;canary=always"}, 100, id="cookie among others opts in"),
        pytest.param({"x-canary": "insider"}, 100, id="header opts in"),
        pytest.param({"cookie": "canary=never"}, 0, id="other cookie stays on primary"),
        pytest.param({}, 0, id="plain request stays on primary"),
    ],
)
def test_ab_routes_as_envoy_would(headers: dict[str, str], expected_canary_weight: int) -> None:
    vs = parse_virtual_service(desired_virtual_service(ab_canary(COOKIE_MATCH, HEADER_MATCH), 0, 100))
    route = select_route(vs, SyntheticRequest(headers=headers))
    assert route is not None
    weights = {destination.host: destination.weight for destination in route.destinations}
    assert weights["podinfo-canary"] == expected_canary_weight


# ---------------------------------------------------------------------------
# The factory


def test_router_for() -> None:
    assert isinstance(router_for("istio", ApiClient()), IstioRouter)
    with pytest.raises(ValueError, match="known providers: istio"):
        router_for("linkerd", ApiClient())


# ---------------------------------------------------------------------------
# IstioRouter against an in-memory custom objects API


class FakeObjects:
    """Stores custom objects, bumps resourceVersion on writes and answers 404/409 like the API server."""

    def __init__(self, api: ApiClient) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.version = 0
        self.fail_next: list[ApiException] = []
        self.before_write: list[Any] = []

    def _key(self, namespace: str, plural: str, name: str) -> tuple[str, str, str]:
        return (plural, namespace, name)

    def _store(self, key: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> dict[str, Any]:
        assert (group, version) == ("networking.istio.io", "v1beta1")
        key = self._key(namespace, plural, name)
        if key not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[key])

    def _interfere(self) -> None:
        """Runs what other writers do between our read and our write."""
        while self.before_write:
            self.before_write.pop(0)()

    def _write(self, kind: str, key: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.writes.append((kind, key[0], key[2]))
        return self._store(key, body)

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self._interfere()
        key = self._key(namespace, plural, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._write("create", key, body)

    def replace_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self._interfere()
        key = self._key(namespace, plural, name)
        current = self.objects.get(key)
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        return self._write("replace", key, body)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeObjects:
    objects = FakeObjects(ApiClient())
    monkeypatch.setattr(istio, "CustomObjectsApi", lambda api: objects)
    return objects


def vs_in(fake: FakeObjects, name: str = "podinfo") -> dict[str, Any]:
    return fake.objects[("virtualservices", "test", name)]


def test_reconcile_creates_then_makes_no_write(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    subject = canary()
    assert router.get_routes(subject) is None
    router.reconcile(subject)
    assert sorted(fake.writes) == [
        ("create", "destinationrules", "podinfo-canary"),
        ("create", "destinationrules", "podinfo-primary"),
        ("create", "virtualservices", "podinfo"),
    ]
    assert router.get_routes(subject) == Routes(100, 0)
    fake.writes.clear()
    router.reconcile(subject)
    router.set_routes(subject, 100, 0)
    assert fake.writes == []


def test_reconcile_keeps_weights_and_updates_the_rest(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    router.reconcile(canary())
    router.set_routes(canary(), 70, 30)
    fake.writes.clear()
    changed = canary({"gateways": ["public"], "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    router.reconcile(changed)
    assert sorted(fake.writes) == [
        ("replace", "destinationrules", "podinfo-canary"),
        ("replace", "destinationrules", "podinfo-primary"),
        ("replace", "virtualservices", "podinfo"),
    ]
    assert vs_in(fake)["spec"] == desired_virtual_service(changed, 70, 30)["spec"]


def test_reconcile_repairs_weights_that_do_not_add_up(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    router.reconcile(canary())
    vs_in(fake)["spec"]["http"][0]["route"][1]["weight"] = 40
    router.reconcile(canary())
    assert router.get_routes(canary()) == Routes(100, 0)


def test_set_routes_retries_after_a_conflict(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    router.reconcile(canary())

    def someone_else_writes() -> None:
        vs_in(fake)["metadata"]["labels"]["touched"] = "yes"
        vs_in(fake)["metadata"]["resourceVersion"] = "999"

    fake.before_write.append(someone_else_writes)
    router.set_routes(canary(), 40, 60)
    assert router.get_routes(canary()) == Routes(40, 60)
    assert vs_in(fake)["metadata"]["labels"]["touched"] == "yes", "the other writer's change survives"


def test_set_routes_gives_up_after_repeated_conflicts(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    router.reconcile(canary())
    fake.fail_next.extend(ApiException(status=409, reason="Conflict") for _ in range(4))
    with pytest.raises(RouterError, match="still conflicting"):
        router.set_routes(canary(), 40, 60)


def test_reconcile_when_someone_creates_first(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    fake.before_write.append(
        lambda: fake._store(("destinationrules", "test", "podinfo-primary"), desired_destination_rule(canary(), "x"))
    )
    router.reconcile(canary())
    assert fake.objects[("destinationrules", "test", "podinfo-primary")]["spec"] == {"host": "podinfo-primary"}


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            ApiException(status=403, reason="Forbidden", body='{"kind": "Status", "message": "RBAC says no"}'),
            "updating VirtualService test/podinfo .*403 RBAC says no",
            id="forbidden with a Status body",
        ),
        pytest.param(ApiException(status=500, reason="Internal Server Error"), "500 Internal Server Error", id="500"),
    ],
)
def test_api_errors_become_router_errors(fake: FakeObjects, error: ApiException, message: str) -> None:
    router = IstioRouter(ApiClient())
    router.reconcile(canary())
    fake.fail_next.append(error)
    with pytest.raises(RouterError, match=message):
        router.set_routes(canary(), 50, 50)


def test_set_routes_needs_the_virtual_service(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    with pytest.raises(RouterError, match="does not exist"):
        router.set_routes(canary(), 50, 50)
    with pytest.raises(ValueError, match="add up to 100"):
        router.set_routes(canary(), 50, 60)


def test_finalize(fake: FakeObjects) -> None:
    router = IstioRouter(ApiClient())
    router.finalize(canary())  # nothing there yet: nothing to do
    assert fake.writes == []
    router.reconcile(canary())
    router.set_routes(canary(), 20, 80)
    router.finalize(canary())
    assert router.get_routes(canary()) == Routes(100, 0)
    assert ("destinationrules", "test", "podinfo-canary") in fake.objects, "finalize deletes nothing"
