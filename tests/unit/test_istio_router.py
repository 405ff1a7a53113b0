"""The Istio router: desired objects, reading and writing weights, and the write discipline.

The pure functions are checked table by table against literal Istio objects. The class is checked
against a small fake of Serin's own access layer (get and server-side apply); behaviour against a
real API server belongs to the integration tests.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from localcluster.simulator.istio import parse_virtual_service
from localcluster.simulator.routes import SyntheticRequest, select_route
from serin import model
from serin.kube.store import KubeUnavailable
from serin.model import Canary, parse_canary
from serin.ports import Routes
from serin.routers import KNOWN_PROVIDERS, IstioRouter, router_for
from serin.routers.common import merge_match, validate_weights
from serin.routers.istio import desired_destination_rule, desired_virtual_service, routes_of
from serin.workloads import MANAGED_FOR_LABEL, WorkloadError
from tests.unit.fake_store import FakeStore

FLAGGER_COOKIE_REGEX = "^(.*?;)?(canary=always)(;.*)?$"
COOKIE_MATCH: dict[str, Any] = {"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}
HEADER_MATCH: dict[str, Any] = {"headers": {"x-canary": {"exact": "insider"}}}
OWNER: dict[str, Any] = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "name": "podinfo",
    "uid": "u1",
    "controller": True,
    "blockOwnerDeletion": True,
}
MANAGED: dict[str, str] = {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "podinfo"}
HANDS_OFF: dict[str, str] = {
    "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
    "helm.toolkit.fluxcd.io/driftDetection": "disabled",
}


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


def dest(host: str, weight: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": host}}
    if weight is not None:
        entry["weight"] = weight
    return entry


def split(primary: int, canary_weight: int, service: str = "podinfo") -> list[dict[str, Any]]:
    return [dest(f"{service}-primary", primary), dest(f"{service}-canary", canary_weight)]


def vs_object(http: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": dict(MANAGED),
            "annotations": dict(HANDS_OFF),
            "ownerReferences": [dict(OWNER)],
        },
        "spec": {"hosts": ["podinfo"], "gateways": ["mesh"], **spec, "http": http},
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
                hosts=["app.example.com", "podinfo"],
                gateways=["istio-system/public", "mesh"],
            ),
            id="gateways and hosts, the apex host not repeated",
        ),
        pytest.param(
            canary({"gateways": ["public"], "hosts": ["app.example.com"]}),
            (100, 0),
            vs_object([{"route": split(100, 0)}], hosts=["app.example.com", "podinfo"], gateways=["public"]),
            id="the apex host is added last, as Flagger does",
        ),
        pytest.param(
            canary({"hosts": ["*"]}),
            (100, 0),
            vs_object([{"route": split(100, 0)}], hosts=["*"]),
            id="a wildcard host covers the apex",
        ),
        pytest.param(
            canary({"delegation": True}),
            (100, 0),
            vs_object([{"route": split(100, 0)}], hosts=[], gateways=[]),
            id="a delegate has no hosts or gateways",
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
    assert vs["spec"]["hosts"] == ["web"] and vs["spec"]["gateways"] == ["mesh"]
    assert vs["spec"]["http"] == [{"route": split(100, 0, service="web")}]
    assert desired_destination_rule(subject, "web-canary")["spec"] == {"host": "web-canary"}


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        pytest.param(
            canary(), {"labels": MANAGED, "annotations": HANDS_OFF, "ownerReferences": [OWNER]}, id="stored canary"
        ),
        pytest.param(canary(uid=""), {"labels": MANAGED, "annotations": HANDS_OFF}, id="no uid: no owner reference"),
        pytest.param(
            canary({"apex": {"labels": {"team": "a"}, "annotations": {"note": "x"}}}),
            {
                "labels": dict(MANAGED, team="a"),
                "annotations": dict(HANDS_OFF, note="x"),
                "ownerReferences": [OWNER],
            },
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
        "metadata": {
            "name": host,
            "namespace": "test",
            "labels": MANAGED,
            "annotations": HANDS_OFF,
            "ownerReferences": [OWNER],
        },
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
    ):
        with pytest.raises(ValueError, match=message):
            call()


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
    # Every provider admission accepts has a router, and no router is unreachable.
    assert set(KNOWN_PROVIDERS) == set(model.KNOWN_PROVIDERS)
    assert isinstance(router_for("istio", FakeStore()), IstioRouter)
    with pytest.raises(ValueError, match="known providers: istio"):
        router_for("osm", FakeStore())


def test_reconcile_reads_then_writes_every_object_whole() -> None:
    store = FakeStore()
    IstioRouter(store).reconcile(canary(), (80, 20))
    assert store.calls == [
        "get DestinationRule podinfo-primary",
        "apply DestinationRule podinfo-primary",
        "get DestinationRule podinfo-canary",
        "apply DestinationRule podinfo-canary",
        "get VirtualService podinfo",
        "apply VirtualService podinfo",
    ]
    assert store.objects[("VirtualService", "podinfo")] == desired_virtual_service(canary(), 80, 20)


def test_routes_are_read_back_and_set_absolutely() -> None:
    store = FakeStore()
    router = IstioRouter(store)
    assert router.get_routes(canary()) is None
    router.set_routes(canary(), 70, 30)
    router.set_routes(canary(), 70, 30)
    assert router.get_routes(canary()) == Routes(70, 30)
    assert store.objects[("VirtualService", "podinfo")] == desired_virtual_service(canary(), 70, 30)


def test_an_object_already_as_desired_is_not_written_again() -> None:
    store = FakeStore()
    router = IstioRouter(store)
    router.reconcile(canary(), (90, 10))
    store.calls.clear()
    router.reconcile(canary(), (90, 10))
    assert store.calls == [
        "get DestinationRule podinfo-primary",
        "get DestinationRule podinfo-canary",
        "get VirtualService podinfo",
    ]


def test_a_changed_split_a_dropped_field_or_drift_is_written() -> None:
    store = FakeStore()
    router = IstioRouter(store)
    router.set_routes(canary(), 90, 10, mirror=True)
    changes: list[tuple[str, Any]] = [
        ("a new split", lambda: router.set_routes(canary(), 80, 20, mirror=True)),
        # Subset checks would miss it: the mirror left over in the route must go.
        ("mirroring stopped", lambda: router.set_routes(canary(), 80, 20)),
        ("someone edited the spec", lambda: drift_and_reconcile(store, router)),
        ("a label Serin sets was removed", lambda: unlabel_and_reconcile(store, router)),
    ]
    for what, change in changes:
        store.calls.clear()
        change()
        assert store.calls[-1] == "apply VirtualService podinfo", what
    assert store.objects[("VirtualService", "podinfo")] == desired_virtual_service(canary(), 80, 20)


def drift_and_reconcile(store: FakeStore, router: IstioRouter) -> None:
    store.objects[("VirtualService", "podinfo")]["spec"]["hosts"] = ["elsewhere"]
    router.set_routes(canary(), 80, 20)


def unlabel_and_reconcile(store: FakeStore, router: IstioRouter) -> None:
    del store.objects[("VirtualService", "podinfo")]["metadata"]["labels"][MANAGED_FOR_LABEL]
    router.set_routes(canary(), 80, 20)


def test_finalize_routes_everything_to_the_primary_only_if_there_is_a_route() -> None:
    store = FakeStore()
    router = IstioRouter(store)
    router.finalize(canary())
    assert store.calls == [
        "get DestinationRule podinfo-primary",
        "get DestinationRule podinfo-canary",
        "get VirtualService podinfo",
    ]
    router.set_routes(canary(), 50, 50)
    router.finalize(canary())
    assert router.get_routes(canary()) == Routes(100, 0)


USERS_VIRTUAL_SERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1beta1",
    "kind": "VirtualService",
    "metadata": {"name": "podinfo", "namespace": "test", "labels": {"team": "web"}},
    "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo-v1"}}], "timeout": "3s"}]},
}


def test_a_users_virtual_service_is_taken_over_with_its_spec_recorded_and_no_owner() -> None:
    """Written over, as Flagger does, but with its spec kept on it and no owner reference: the
    garbage collector must never delete it with the Canary."""
    store = FakeStore()
    store.objects[("VirtualService", "podinfo")] = copy.deepcopy(USERS_VIRTUAL_SERVICE)
    router = IstioRouter(store)
    router.set_routes(canary(), 90, 10)
    written = store.objects[("VirtualService", "podinfo")]
    desired = desired_virtual_service(canary(), 90, 10)
    assert written == {
        **desired,
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": MANAGED,
            "annotations": {
                **HANDS_OFF,
                "serin.dev/original-spec": json.dumps(USERS_VIRTUAL_SERVICE["spec"], sort_keys=True),
            },
        },
    }
    # Taken over once: the next write keeps what was recorded then, not what Serin wrote since.
    router.set_routes(canary(), 80, 20)
    assert store.objects[("VirtualService", "podinfo")]["metadata"] == written["metadata"]


def test_finalize_gives_a_taken_over_virtual_service_its_spec_back() -> None:
    store = FakeStore()
    store.objects[("VirtualService", "podinfo")] = copy.deepcopy(USERS_VIRTUAL_SERVICE)
    router = IstioRouter(store)
    router.reconcile(canary(), (60, 40))
    router.finalize(canary())
    # The server-side apply body: the user's spec, and none of Serin's labels or annotations,
    # which the API server drops because Serin no longer applies them.
    assert store.objects[("VirtualService", "podinfo")] == {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": USERS_VIRTUAL_SERVICE["spec"],
    }


def test_a_recorded_spec_that_is_not_json_is_an_error_that_says_where() -> None:
    store = FakeStore()
    taken = copy.deepcopy(USERS_VIRTUAL_SERVICE)
    taken["metadata"]["annotations"] = {"serin.dev/original-spec": "{not json"}
    store.objects[("VirtualService", "podinfo")] = taken
    with pytest.raises(WorkloadError, match=r"VirtualService test/podinfo: annotation serin\.dev/original-spec"):
        IstioRouter(store).finalize(canary())


def test_access_errors_keep_their_kind() -> None:
    store = FakeStore()
    store.down = True
    with pytest.raises(KubeUnavailable, match="connection refused"):
        IstioRouter(store).set_routes(canary(), 100, 0)


def test_a_tcp_service_gets_a_tcp_route_matched_by_port() -> None:
    tcp = canary(service={"appProtocol": "TCP", "match": [{"port": 9898}]})
    vs = desired_virtual_service(tcp, 70, 30)
    assert vs["spec"] == {
        "hosts": ["podinfo"],
        "gateways": ["mesh"],
        "tcp": [
            {
                "match": [{"port": 9898}],
                "route": [
                    {"destination": {"host": "podinfo-primary"}, "weight": 70},
                    {"destination": {"host": "podinfo-canary"}, "weight": 30},
                ],
            }
        ],
    }
    assert routes_of(vs, tcp) == Routes(70, 30)
    # An HTTP route of the same VirtualService is not what a TCP Canary reads.
    assert routes_of({"spec": {"http": vs["spec"]["tcp"]}}, tcp) is None
    (route,) = parse_virtual_service({**vs, "kind": "VirtualService"}).routes
    assert [(d.host, d.weight) for d in route.destinations] == [("podinfo-primary", 70), ("podinfo-canary", 30)]


@pytest.mark.parametrize(
    ("service", "port_named"),
    [
        pytest.param({"portDiscovery": True, "gateways": ["public-gateway"]}, True, id="discovery-behind-a-gateway"),
        pytest.param({"portDiscovery": True, "delegation": True}, True, id="discovery-in-a-delegate"),
        pytest.param({"portDiscovery": True}, False, id="discovery-in-the-mesh"),
        pytest.param({"portDiscovery": True, "gateways": ["mesh", "public-gateway"]}, False, id="mesh-first"),
        pytest.param({"gateways": ["public-gateway"]}, False, id="one-port-behind-a-gateway"),
    ],
)
def test_destinations_name_the_port_only_where_flagger_does(service: dict[str, Any], port_named: bool) -> None:
    vs = desired_virtual_service(canary(service), 100, 0)
    destinations = [entry["destination"] for entry in vs["spec"]["http"][0]["route"]]
    assert [("port" in destination) for destination in destinations] == [port_named, port_named]
    if port_named:
        assert {destination["port"]["number"] for destination in destinations} == {9898}
