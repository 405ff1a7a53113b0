"""The pure parts of the Istio data-plane simulator: routing, weights, resolution, behaviour."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from localcluster.simulator.cli import is_loopback, main, parse_listen
from localcluster.simulator.cluster import (
    DEFAULT_LATENCY_MS,
    ERROR_RATE_ANNOTATION,
    LATENCY_ANNOTATION,
    Behaviour,
    build_index,
    parse_behaviour,
    resolve_host,
)
from localcluster.simulator.examples import synthesize_request
from localcluster.simulator.export import Metrics
from localcluster.simulator.istio import parse_match_rule, parse_virtual_service
from localcluster.simulator.routes import (
    Destination,
    StringMatch,
    SyntheticRequest,
    choose_destination,
    rule_matches,
    select_route,
)
from localcluster.simulator.traffic import draw_latency_ms, simulate_tick

FLAGGER_COOKIE_REGEX = "^(.*?;)?(canary=always)(;.*)?$"


def virtual_service(http: list[dict[str, Any]], name: str = "podinfo", namespace: str = "test") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [name], "http": http},
    }


def service(name: str, namespace: str, selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 9898}]}
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deployment(
    name: str,
    namespace: str,
    labels: dict[str, str],
    ready: int | None = 1,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"replicas": 1}
    if ready is not None:
        status["readyReplicas"] = ready
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {"labels": labels, "annotations": annotations or {}}}},
        "status": status,
    }


def flagger_cluster(
    canary_annotations: dict[str, str] | None = None,
    canary_ready: int | None = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Services and Deployments as Flagger lays them out for a canary named podinfo."""
    services = [
        service("podinfo", "test", {"app": "podinfo-primary"}),
        service("podinfo-primary", "test", {"app": "podinfo-primary"}),
        service("podinfo-canary", "test", {"app": "podinfo"}),
    ]
    deployments = [
        deployment("podinfo-primary", "test", {"app": "podinfo-primary"}, ready=2),
        deployment("podinfo", "test", {"app": "podinfo"}, ready=canary_ready, annotations=canary_annotations),
    ]
    return services, deployments


def weighted_route(primary: int, canary: int, host_suffix: str = "") -> dict[str, Any]:
    return {
        "name": "primary",
        "route": [
            {"destination": {"host": "podinfo-primary" + host_suffix}, "weight": primary},
            {"destination": {"host": "podinfo-canary" + host_suffix}, "weight": canary},
        ],
    }


def to_canary(match: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "canary", "match": match, "route": [{"destination": {"host": "podinfo-canary"}}]}


# ---------------------------------------------------------------------------
# Route matching


@pytest.mark.parametrize(
    ("http", "request_", "expected"),
    [
        pytest.param(
            [to_canary([{"headers": {"x-canary": {"exact": "insider"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"x-canary": "insider"}),
            "canary",
            id="header-exact-hit",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-canary": {"exact": "insider"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"x-canary": "insider2"}),
            "primary",
            id="header-exact-miss",
        ),
        pytest.param(
            [to_canary([{"headers": {"X-Canary": {"exact": "insider"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"x-canary": "insider"}),
            "canary",
            id="header-name-case-insensitive",
        ),
        pytest.param(
            [to_canary([{"headers": {"user-agent": {"prefix": "Mozilla/"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"user-agent": "Mozilla/5.0 (X11)"}),
            "canary",
            id="header-prefix-hit",
        ),
        pytest.param(
            [to_canary([{"headers": {"user-agent": {"prefix": "Mozilla/"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"user-agent": "curl/8.0"}),
            "primary",
            id="header-prefix-miss",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-user": {"regex": "^(alice|bob)$"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"x-user": "bob"}),
            "canary",
            id="header-regex-hit",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-user": {"regex": "bob"}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"x-user": "bobby"}),
            "primary",
            id="header-regex-is-a-full-match",
        ),
        pytest.param(
            [to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"cookie": "canary=always"}),
            "canary",
            id="flagger-cookie-alone",
        ),
        pytest.param(
            [to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"cookie": "session=abc;canary=always;theme=dark"}),
            "canary",
            id="flagger-cookie-among-others",
        ),
        pytest.param(
            [to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"cookie": "session=abc; canary=always"}),
            "primary",
            id="flagger-cookie-regex-has-no-room-for-a-space",
        ),
        pytest.param(
            [to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]), weighted_route(100, 0)],
            SyntheticRequest(headers={"cookie": "canary=never"}),
            "primary",
            id="flagger-cookie-other-value",
        ),
        pytest.param(
            [to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]), weighted_route(100, 0)],
            SyntheticRequest(),
            "primary",
            id="flagger-cookie-absent",
        ),
        pytest.param(
            [to_canary([{"queryParams": {"version": {"exact": "v2"}}}]), weighted_route(100, 0)],
            SyntheticRequest(query_params={"version": "v2"}),
            "canary",
            id="query-exact-hit",
        ),
        pytest.param(
            [to_canary([{"queryParams": {"version": {"regex": "v[0-9]+"}}}]), weighted_route(100, 0)],
            SyntheticRequest(query_params={"version": "vX"}),
            "primary",
            id="query-regex-miss",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-a": {"exact": "1"}}, "queryParams": {"b": {"exact": "2"}}}])],
            SyntheticRequest(headers={"x-a": "1"}),
            None,
            id="conditions-in-one-entry-all-must-hold",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-a": {"exact": "1"}}}, {"queryParams": {"b": {"exact": "2"}}}])],
            SyntheticRequest(query_params={"b": "2"}),
            "canary",
            id="any-entry-of-the-match-list",
        ),
        pytest.param(
            [to_canary([{"sourceLabels": {"app": "frontend"}}]), weighted_route(100, 0)],
            SyntheticRequest(),
            "primary",
            id="unsupported-condition-never-matches",
        ),
        pytest.param(
            [to_canary([{"headers": {"x-canary": {"exact": "insider"}}}])],
            SyntheticRequest(),
            None,
            id="no-route-matches",
        ),
        pytest.param(
            [weighted_route(100, 0), to_canary([{"headers": {"x-canary": {"exact": "insider"}}}])],
            SyntheticRequest(headers={"x-canary": "insider"}),
            "primary",
            id="first-route-wins",
        ),
    ],
)
def test_select_route(http: list[dict[str, Any]], request_: SyntheticRequest, expected: str | None) -> None:
    route = select_route(parse_virtual_service(virtual_service(http)), request_)
    assert (route.name if route else None) == expected


# ---------------------------------------------------------------------------
# Weights


def test_weight_split_90_10_within_two_percent() -> None:
    destinations = [Destination("podinfo-primary", 90), Destination("podinfo-canary", 10)]
    rng = random.Random(1234)
    draws = 10_000
    counts = Counter(d.host for d in (choose_destination(destinations, rng) for _ in range(draws)) if d)
    assert sum(counts.values()) == draws
    assert abs(counts["podinfo-canary"] / draws - 0.10) <= 0.02
    assert abs(counts["podinfo-primary"] / draws - 0.90) <= 0.02


@pytest.mark.parametrize(
    ("route", "expected_hosts"),
    [
        pytest.param([{"destination": {"host": "only"}}], {"only"}, id="lone-destination-without-weight-gets-100"),
        pytest.param(
            [{"destination": {"host": "a"}, "weight": 0}, {"destination": {"host": "b"}, "weight": 100}],
            {"b"},
            id="zero-weight-never-chosen",
        ),
        pytest.param(
            [{"destination": {"host": "a"}, "weight": 0}, {"destination": {"host": "b"}, "weight": 0}],
            {None},
            id="all-zero-is-no-destination",
        ),
        pytest.param([], {None}, id="no-destinations"),
    ],
)
def test_choose_destination_edges(route: list[dict[str, Any]], expected_hosts: set[str | None]) -> None:
    vs = parse_virtual_service(virtual_service([{"route": route}]))
    rng = random.Random(7)
    chosen = {d.host if d else None for d in (choose_destination(vs.routes[0].destinations, rng) for _ in range(200))}
    assert chosen == expected_hosts


# ---------------------------------------------------------------------------
# Synthesized requests


@pytest.mark.parametrize(
    "match",
    [
        pytest.param({"headers": {"x-canary": {"exact": "insider"}}}, id="header-exact"),
        pytest.param({"headers": {"user-agent": {"prefix": "Mozilla/"}}}, id="header-prefix"),
        pytest.param({"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}, id="flagger-cookie"),
        pytest.param({"headers": {"x-user": {"regex": "^(alice|bob)$"}}}, id="header-regex-alternation"),
        pytest.param({"headers": {"x-id": {"regex": r"[a-f0-9]{8}-\d+"}}}, id="header-regex-class-and-repeat"),
        pytest.param({"headers": {"x-name": {"regex": "(?:[^;]+)?name=(?P<v>\\w+)"}}}, id="header-regex-groups"),
        pytest.param({"queryParams": {"version": {"regex": "v[0-9]+"}}}, id="query-regex"),
        pytest.param({"queryParams": {"version": {"exact": "v2"}}}, id="query-exact"),
        pytest.param({"uri": {"prefix": "/api"}, "method": {"exact": "POST"}}, id="uri-and-method"),
        pytest.param(
            {"headers": {"x-a": {"exact": "1"}}, "queryParams": {"b": {"regex": ".+"}}},
            id="header-and-query",
        ),
    ],
)
def test_synthesized_request_matches_its_rule(match: dict[str, Any]) -> None:
    rule = parse_match_rule(match)
    request = synthesize_request(rule)
    assert request is not None
    assert rule_matches(rule, request)
    assert not rule_matches(rule, SyntheticRequest()), "the plain request must not match, or the test proves nothing"


def test_flagger_cookie_rule_yields_canary_always() -> None:
    request = synthesize_request(parse_match_rule({"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}))
    assert request is not None
    assert dict(request.headers) == {"cookie": "canary=always"}


@pytest.mark.parametrize(
    "match",
    [
        pytest.param({"headers": {"x-a": {"regex": "(?!x).+"}}}, id="look-ahead"),
        pytest.param({"headers": {"x-a": {"regex": r"(a)\1"}}}, id="back-reference"),
        pytest.param({"headers": {"x-a": {"regex": "[unclosed"}}}, id="invalid-regex"),
        pytest.param({"headers": {"x-a": {"exact": "1"}}, "withoutHeaders": {"x-a": {"exact": "1"}}}, id="conflict"),
        pytest.param({"sourceLabels": {"app": "web"}}, id="unsupported-condition"),
    ],
)
def test_unsatisfiable_rules_are_skipped(match: dict[str, Any]) -> None:
    assert synthesize_request(parse_match_rule(match)) is None


@pytest.mark.parametrize(
    ("match", "value", "expected"),
    [
        pytest.param(StringMatch("exact", "a"), "a", True, id="exact"),
        pytest.param(StringMatch("prefix", "ab"), "abc", True, id="prefix"),
        pytest.param(StringMatch("regex", "a.c"), "abc", True, id="regex"),
        pytest.param(StringMatch("regex", "a.c"), "xabc", False, id="regex-anchored"),
        pytest.param(StringMatch("exact", "a"), None, False, id="absent"),
    ],
)
def test_string_match(match: StringMatch, value: str | None, expected: bool) -> None:
    assert match.matches(value) is expected


# ---------------------------------------------------------------------------
# Host -> Service -> Deployment


@pytest.mark.parametrize(
    ("host", "vs_namespace", "expected"),
    [
        pytest.param("podinfo-canary", "test", ("test", "podinfo-canary", ("podinfo",)), id="short-name"),
        pytest.param(
            "podinfo-canary.test.svc.cluster.local", "other", ("test", "podinfo-canary", ("podinfo",)), id="fqdn"
        ),
        pytest.param("podinfo-canary.test.svc", "other", ("test", "podinfo-canary", ("podinfo",)), id="ns-svc"),
        pytest.param("backend.other", "test", ("other", "backend", ("backend-v1", "backend-v2")), id="other-namespace"),
        pytest.param("backend", "test", None, id="short-name-is-the-vs-namespace"),
        pytest.param("headless", "test", ("test", "headless", ()), id="service-without-selector"),
        pytest.param("example.com", "test", None, id="external-host"),
        pytest.param("missing", "test", None, id="unknown-service"),
    ],
)
def test_resolve_host(host: str, vs_namespace: str, expected: tuple[str, str, tuple[str, ...]] | None) -> None:
    services, deployments = flagger_cluster()
    services += [
        service("backend", "other", {"app": "backend"}),
        service("headless", "test", None),
    ]
    deployments += [
        deployment("backend-v1", "other", {"app": "backend", "version": "v1"}),
        deployment("backend-v2", "other", {"app": "backend", "version": "v2"}),
        deployment("unrelated", "other", {"app": "frontend"}),
    ]
    resolved = resolve_host(host, vs_namespace, build_index(services, deployments))
    if expected is None:
        assert resolved is None
        return
    assert resolved is not None
    found = (resolved.service.namespace, resolved.service.name, tuple(w.name for w in resolved.workloads))
    assert found == expected


def test_resolved_workload_carries_readiness_and_behaviour() -> None:
    services, deployments = flagger_cluster(
        canary_annotations={ERROR_RATE_ANNOTATION: "0.25", LATENCY_ANNOTATION: "120"}, canary_ready=None
    )
    resolved = resolve_host("podinfo-canary", "test", build_index(services, deployments))
    assert resolved is not None
    (canary,) = resolved.workloads
    assert (canary.name, canary.namespace, canary.ready) == ("podinfo", "test", False)
    assert canary.behaviour == Behaviour(error_rate=0.25, latency_ms=120.0)
    assert resolved.ready_workloads == ()


# ---------------------------------------------------------------------------
# Annotations


@pytest.mark.parametrize(
    ("annotations", "expected", "problems"),
    [
        pytest.param({}, Behaviour(0.0, 50.0), 0, id="defaults"),
        pytest.param({ERROR_RATE_ANNOTATION: "0.1", LATENCY_ANNOTATION: "200"}, Behaviour(0.1, 200.0), 0, id="valid"),
        pytest.param({ERROR_RATE_ANNOTATION: " 1 "}, Behaviour(1.0, 50.0), 0, id="whitespace-and-bounds"),
        pytest.param({ERROR_RATE_ANNOTATION: "abc"}, Behaviour(0.0, 50.0), 1, id="error-rate-not-a-number"),
        pytest.param({ERROR_RATE_ANNOTATION: "1.5"}, Behaviour(0.0, 50.0), 1, id="error-rate-above-one"),
        pytest.param({ERROR_RATE_ANNOTATION: "-0.1"}, Behaviour(0.0, 50.0), 1, id="error-rate-negative"),
        pytest.param({ERROR_RATE_ANNOTATION: "nan"}, Behaviour(0.0, 50.0), 1, id="error-rate-nan"),
        pytest.param({LATENCY_ANNOTATION: "fast"}, Behaviour(0.0, 50.0), 1, id="latency-not-a-number"),
        pytest.param({LATENCY_ANNOTATION: "-5"}, Behaviour(0.0, 50.0), 1, id="latency-negative"),
        pytest.param(
            {ERROR_RATE_ANNOTATION: "x", LATENCY_ANNOTATION: "inf"}, Behaviour(0.0, 50.0), 2, id="both-invalid"
        ),
    ],
)
def test_parse_behaviour(annotations: dict[str, str], expected: Behaviour, problems: int) -> None:
    behaviour, found = parse_behaviour(annotations)
    assert behaviour == expected
    assert len(found) == problems


def test_invalid_annotation_is_reported_with_the_deployment() -> None:
    services, deployments = flagger_cluster(canary_annotations={ERROR_RATE_ANNOTATION: "lots"})
    index = build_index(services, deployments)
    assert len(index.warnings) == 1
    assert "test/podinfo" in index.warnings[0]
    assert ERROR_RATE_ANNOTATION in index.warnings[0]


@pytest.mark.parametrize("mean", [pytest.param(0.0, id="zero"), pytest.param(50.0, id="default"), 400.0])
def test_latency_draws_centre_on_the_mean_and_stay_above_one_ms(mean: float) -> None:
    rng = random.Random(3)
    draws = [draw_latency_ms(mean, rng) for _ in range(5_000)]
    assert min(draws) >= 1.0
    assert abs(sum(draws) / len(draws) - max(mean, 1.0)) <= 0.05 * max(mean, 1.0)
    if mean > 1:
        assert max(draws) > mean * 1.1, "latencies should vary"


# ---------------------------------------------------------------------------
# Whole ticks


def flagger_vs(canary_weight: int, host_suffix: str = "") -> dict[str, Any]:
    return virtual_service(
        [
            to_canary([{"headers": {"cookie": {"regex": FLAGGER_COOKIE_REGEX}}}]),
            weighted_route(100 - canary_weight, canary_weight, host_suffix),
        ]
    )


@pytest.mark.parametrize(
    ("match_share", "canary_weight", "host_suffix", "canary_share"),
    [
        pytest.param(0.0, 10, "", 0.10, id="weights-only"),
        pytest.param(0.0, 50, ".test.svc.cluster.local", 0.50, id="fqdn-hosts"),
        pytest.param(0.3, 10, "", 0.3 + 0.7 * 0.10, id="cookie-share-goes-to-canary"),
        pytest.param(1.0, 0, "", 1.0, id="all-carry-the-cookie"),
        pytest.param(0.0, 0, "", 0.0, id="canary-idle"),
    ],
)
def test_tick_follows_weights_and_error_rate(
    match_share: float, canary_weight: int, host_suffix: str, canary_share: float
) -> None:
    services, deployments = flagger_cluster(canary_annotations={ERROR_RATE_ANNOTATION: "0.2"})
    requests = 10_000
    result = simulate_tick(
        [flagger_vs(canary_weight, host_suffix)], services, deployments, requests, random.Random(42), match_share
    )
    counts = result.counts()
    canary_total = counts[("podinfo", 200)] + counts[("podinfo", 500)]
    primary_total = counts[("podinfo-primary", 200)] + counts[("podinfo-primary", 500)]
    assert result.total == requests
    assert canary_total + primary_total == requests
    assert result.unroutable == {}
    assert abs(canary_total / requests - canary_share) <= 0.02
    assert counts[("podinfo-primary", 500)] == 0
    if canary_total:
        assert abs(counts[("podinfo", 500)] / canary_total - 0.2) <= 0.04
    assert {o.destination_service for o in result.outcomes} <= {
        "podinfo-primary.test.svc.cluster.local",
        "podinfo-canary.test.svc.cluster.local",
    }


def test_unready_canary_requests_are_unroutable() -> None:
    services, deployments = flagger_cluster(canary_ready=0)
    result = simulate_tick([flagger_vs(50)], services, deployments, 2_000, random.Random(5), match_share=0.0)
    counts = result.counts()
    unroutable = result.unroutable[("test", "VirtualService", "podinfo")]
    assert counts[("podinfo", 200)] == 0
    assert counts[("podinfo-primary", 200)] + unroutable == 2_000
    assert abs(unroutable / 2_000 - 0.5) <= 0.05


def test_requests_no_route_takes_are_unroutable() -> None:
    services, deployments = flagger_cluster()
    vs = virtual_service([to_canary([{"headers": {"x-canary": {"exact": "insider"}}}])])
    result = simulate_tick([vs], services, deployments, 1_000, random.Random(9), match_share=0.25)
    assert result.unroutable[("test", "VirtualService", "podinfo")] + len(result.outcomes) == 1_000
    assert 150 <= len(result.outcomes) <= 350
    assert {o.workload for o in result.outcomes} == {"podinfo"}


def test_budget_caps_the_tick_across_virtual_services() -> None:
    services, deployments = flagger_cluster()
    vss = [flagger_vs(10), virtual_service([weighted_route(100, 0)], name="second")]
    result = simulate_tick(vss, services, deployments, 100, random.Random(1), match_share=0.0, budget=150)
    assert result.total == 150
    assert Counter(o.table for o in result.outcomes) == {"podinfo": 100, "second": 50}


def test_same_seed_same_tick() -> None:
    services, deployments = flagger_cluster(canary_annotations={ERROR_RATE_ANNOTATION: "0.5"})
    first = simulate_tick([flagger_vs(30)], services, deployments, 500, random.Random(11), 0.3)
    second = simulate_tick([flagger_vs(30)], services, deployments, 500, random.Random(11), 0.3)
    assert first == second


def test_malformed_objects_do_not_raise() -> None:
    garbage: list[dict[str, Any]] = [
        {"kind": "VirtualService"},
        {"kind": "VirtualService", "metadata": {"name": "x", "namespace": "test"}, "spec": {"http": "nope"}},
        {
            "kind": "VirtualService",
            "metadata": {"name": "y", "namespace": "test"},
            "spec": {"http": [{"route": [{"destination": None}]}]},
        },
        {
            "kind": "VirtualService",
            "metadata": {"name": "z", "namespace": "test"},
            "spec": {"http": [{"match": [{"headers": {"a": 1}}]}]},
        },
        {"kind": "HTTPRoute", "metadata": {"name": "h", "namespace": "test"}, "spec": {"rules": [{"matches": 3}]}},
        {"kind": "HTTPRoute", "spec": {"rules": [{"backendRefs": [{"name": None, "weight": "x"}, 7]}]}},
    ]
    result = simulate_tick(garbage, [{}], [{"status": "odd"}], 10, random.Random(0), 0.5)
    assert result.outcomes == ()
    # The objects with at least one route get clients, and none of their requests lands.
    assert result.unroutable == {
        ("", "HTTPRoute", ""): 10,
        ("test", "HTTPRoute", "h"): 10,
        ("test", "VirtualService", "y"): 10,
        ("test", "VirtualService", "z"): 10,
    }


# ---------------------------------------------------------------------------
# Metrics and CLI edges


def test_metrics_record_istio_labels() -> None:
    services, deployments = flagger_cluster(
        canary_annotations={ERROR_RATE_ANNOTATION: "1", LATENCY_ANNOTATION: str(DEFAULT_LATENCY_MS)}
    )
    result = simulate_tick([flagger_vs(100)], services, deployments, 300, random.Random(2), 0.0)
    metrics = Metrics()
    metrics.record(result)
    labels = {
        "reporter": "destination",
        "source_workload": "simulator",
        "source_workload_namespace": "test",
        "destination_workload": "podinfo",
        "destination_workload_namespace": "test",
        "destination_service": "podinfo-canary.test.svc.cluster.local",
        "destination_service_name": "podinfo-canary",
        "destination_service_namespace": "test",
        "response_code": "500",
        "request_protocol": "http",
    }
    assert metrics.registry.get_sample_value("istio_requests_total", labels) == 300
    assert metrics.registry.get_sample_value("istio_request_duration_milliseconds_count", labels) == 300
    assert metrics.registry.get_sample_value("istio_request_duration_milliseconds_bucket", {**labels, "le": "1.0"}) == 0
    assert metrics.registry.get_sample_value("istio_requests_total", {**labels, "response_code": "200"}) is None


def test_metrics_record_unroutable() -> None:
    services, deployments = flagger_cluster(canary_ready=0)
    result = simulate_tick([flagger_vs(100)], services, deployments, 25, random.Random(2), 0.0)
    metrics = Metrics()
    metrics.record(result)
    value = metrics.registry.get_sample_value(
        "simulator_unroutable_requests_total", {"namespace": "test", "kind": "VirtualService", "name": "podinfo"}
    )
    assert value == 25


@pytest.mark.parametrize(
    ("listen", "expected", "loopback"),
    [
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), True, id="ipv4-loopback"),
        pytest.param("[::1]:9090", ("::1", 9090), True, id="ipv6-loopback"),
        pytest.param("localhost:8080", ("localhost", 8080), True, id="localhost"),
        pytest.param("0.0.0.0:9090", ("0.0.0.0", 9090), False, id="any-address"),
        pytest.param("10.1.2.3:9090", ("10.1.2.3", 9090), False, id="private-address"),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int], loopback: bool) -> None:
    assert parse_listen(listen) == expected
    assert is_loopback(expected[0]) is loopback


def test_main_refuses_non_loopback_without_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--kubeconfig", "/nonexistent", "--listen", "0.0.0.0:0"])
    assert exit_info.value.code == 2
    assert "--allow-non-loopback" in capsys.readouterr().err
