"""Parsing Canaries: Flagger's defaults, and every problem reported with its field path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serin.model import (
    SHARED_WITH,
    AlertRef,
    InvalidCanary,
    ObjectRef,
    Strategy,
    TargetRef,
    not_shared,
    parse_canary,
    parse_duration,
)

VALID: dict[str, Any] = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"stepWeight": 10, "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]},
    },
}


def with_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """VALID with dotted paths set (None deletes)."""
    manifest = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = manifest
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return manifest


def test_defaults_follow_flagger() -> None:
    canary = parse_canary(VALID)
    assert canary.analysis.interval_seconds == 60
    assert canary.analysis.threshold == 1
    assert canary.analysis.max_weight == 100
    assert canary.progress_deadline_seconds == 600
    assert canary.service.name == "podinfo"
    assert canary.service.target_port == 9898
    assert canary.provider == "istio"
    assert canary.analysis.strategy is Strategy.CANARY
    assert canary.analysis.metrics[0].interval == "1m"


@pytest.mark.parametrize(
    ("changes", "strategy"),
    [
        pytest.param(
            {"spec.analysis.stepWeight": None, "spec.analysis.stepWeights": [5, 10, 50]},
            Strategy.CANARY,
            id="step-weights",
        ),
        pytest.param(
            {"spec.analysis.stepWeight": None, "spec.analysis.iterations": 5}, Strategy.BLUE_GREEN, id="blue-green"
        ),
        pytest.param(
            {
                "spec.analysis.stepWeight": None,
                "spec.analysis.iterations": 5,
                "spec.analysis.match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
            },
            Strategy.AB_TESTING,
            id="ab-testing",
        ),
    ],
)
def test_strategy(changes: dict[str, Any], strategy: Strategy) -> None:
    assert parse_canary(with_changes(changes)).analysis.strategy is strategy


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"spec.analysis.stepWeight": 150},
            ["spec.analysis.stepWeight: must be between 1 and 100"],
            id="step-weight-range",
        ),
        pytest.param(
            {"spec.analysis.stepWeight": None, "spec.analysis.stepWeights": [10, 10, 5]},
            [
                "spec.analysis.stepWeights[1]: must be greater than the step before it",
                "spec.analysis.stepWeights[2]: must be greater than the step before it",
            ],
            id="step-weights-increasing",
        ),
        pytest.param(
            {"spec.analysis.stepWeights": [10, 20]}, ["spec.analysis: set exactly one strategy"], id="two-strategies"
        ),
        pytest.param({"spec.analysis.stepWeight": None}, ["found none"], id="no-strategy"),
        pytest.param(
            {"spec.analysis.interval": "5s"}, ["spec.analysis.interval: must be at least 10s"], id="interval-too-short"
        ),
        pytest.param(
            {"spec.analysis.interval": "soon"},
            ["spec.analysis.interval: 'soon' is not a duration"],
            id="interval-not-a-duration",
        ),
        pytest.param({"spec.analysis.threshold": 0}, ["spec.analysis.threshold: must be at least 1"], id="threshold"),
        pytest.param(
            {"spec.analysis.metrics": [{"name": "error-budget"}]},
            ["spec.analysis.metrics[0]: 'error-budget' is not a builtin metric"],
            id="unknown-metric",
        ),
        pytest.param(
            {"spec.analysis.metrics": [{"name": "x", "query": "up", "thresholdRange": {"min": 5, "max": 1}}]},
            ["spec.analysis.metrics[0].thresholdRange: min must not be greater than max"],
            id="range",
        ),
        pytest.param(
            {"spec.analysis.webhooks": [{"name": "h", "type": "sometimes", "url": "gate"}]},
            ["spec.analysis.webhooks[0].type: must be one of", "spec.analysis.webhooks[0].url: must be an"],
            id="webhook",
        ),
        pytest.param(
            {"spec.targetRef.kind": "ReplicaSet"},
            ["spec.targetRef.kind: must be one of Deployment, DaemonSet, StatefulSet (got 'ReplicaSet')"],
            id="target-kind",
        ),
        pytest.param(
            {"spec.targetRef": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"}},
            [
                "spec.targetRef.kind: a Service cannot be a target: name the workload behind it (Serin makes its "
                "Services itself)"
            ],
            id="service-target",
        ),
        pytest.param({"spec.provider": "linkerd-ish"}, ["spec.provider: must be one of istio"], id="provider"),
        pytest.param({"spec.service": None}, ["spec.service: is required"], id="service-required"),
        pytest.param({"spec.service.port": "http"}, ["spec.service.port: must be an integer"], id="port-type"),
        pytest.param(
            {"spec.analysis.match": [{"headers": {}}]},
            ["spec.analysis.match: A/B testing needs iterations"],
            id="match-without-iterations",
        ),
    ],
)
def test_every_problem_has_its_field_path(changes: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    reported = [str(error) for error in raised.value.errors]
    for part in expected:
        assert any(part in line for line in reported), f"{part!r} not in {reported}"


def test_all_problems_reported_at_once() -> None:
    manifest = with_changes({"spec.analysis.stepWeight": 0, "spec.analysis.threshold": -1, "spec.service.port": 0})
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(manifest)
    paths = {error.path for error in raised.value.errors}
    assert {"spec.analysis.stepWeight", "spec.analysis.threshold", "spec.service.port"} <= paths


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5m", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "m", "1x", "1m 30s", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_weight_steps() -> None:
    stepped = parse_canary(with_changes({"spec.analysis.stepWeight": 30, "spec.analysis.maxWeight": 50})).analysis
    assert [stepped.weight_after(w) for w in (0, 30)] == [30, 50]
    # Flagger: with stepWeights the maximum is the last step, so 80 is where promotion starts.
    listed = parse_canary(
        with_changes({"spec.analysis.stepWeight": None, "spec.analysis.stepWeights": [1, 20, 80]})
    ).analysis
    assert listed.max_weight == 80
    assert [listed.weight_after(w) for w in (0, 1, 20, 80)] == [1, 20, 80, 80]


def test_step_weights_ignore_max_weight_with_a_warning() -> None:
    canary = parse_canary(
        with_changes(
            {"spec.analysis.stepWeight": None, "spec.analysis.stepWeights": [5, 10, 60], "spec.analysis.maxWeight": 50}
        )
    )
    assert canary.analysis.max_weight == 60
    assert canary.warnings == ("spec.analysis.maxWeight: ignored: with stepWeights the last step (60) is the maximum",)


@pytest.mark.parametrize(
    ("changes", "strategy"),
    [
        pytest.param({"spec.analysis.iterations": 3}, Strategy.BLUE_GREEN, id="blue-green"),
        pytest.param(
            {"spec.analysis.iterations": 3, "spec.analysis.match": [{"headers": {"x-canary": {"exact": "on"}}}]},
            Strategy.AB_TESTING,
            id="ab-testing",
        ),
    ],
)
def test_iterations_take_precedence_over_step_weight_as_in_flagger(changes: dict[str, Any], strategy: Strategy) -> None:
    canary = parse_canary(with_changes(changes))
    assert canary.analysis.strategy is strategy
    assert (canary.analysis.step_weight, canary.analysis.iterations) == (None, 3)
    assert canary.warnings == (
        "spec.analysis.stepWeight: ignored: iterations take precedence (A/B testing or blue/green)",
    )


@pytest.mark.parametrize(
    ("changes", "path", "what"),
    [
        pytest.param(
            {"spec.analysis.sessionAffinity": {"cookieName": "c", "primaryCookieName": "p"}},
            "spec.analysis.sessionAffinity.primaryCookieName",
            "pinning users to the primary",
            id="session-affinity",
        ),
    ],
)
def test_fields_serin_does_not_act_on_yet_are_refused(changes: dict[str, Any], path: str, what: str) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    (error,) = raised.value.errors
    assert error.path == path
    assert error.message.startswith("not supported yet (") and what in error.message


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"spec.analysis.mirror": False}, id="mirror-false"),
        pytest.param({"spec.service.portDiscovery": False}, id="port-discovery-false"),
    ],
)
def test_unsupported_fields_that_ask_for_nothing_are_accepted(changes: dict[str, Any]) -> None:
    parse_canary(with_changes(changes))


def test_delegation_has_no_hosts_or_gateways() -> None:
    assert parse_canary(with_changes({"spec.service.delegation": True})).service.delegation
    with pytest.raises(InvalidCanary, match=r"spec\.service\.delegation: a delegate VirtualService has no hosts"):
        parse_canary(with_changes({"spec.service.delegation": True, "spec.service.hosts": ["app.example.com"]}))


AB_TEST = {"spec.analysis.stepWeight": None, "spec.analysis.iterations": 3}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"spec.service.name": "Web_Front"},
            "spec.service.name: must be a Service name (a DNS-1035 label) (got 'Web_Front')",
            id="service-name",
        ),
        pytest.param(
            {"spec.service.name": "a" * 60},
            "spec.service.name: " + repr("a" * 60) + " is too long for a Service name",
            id="service-name-too-long-with-primary",
        ),
        pytest.param(
            {"spec.targetRef.name": "9lives"},
            "spec.service.name: is needed: the target's name '9lives' cannot name a Service",
            id="target-name-cannot-name-a-service",
        ),
        pytest.param(
            {"spec.targetRef.name": "Pod/Info"},
            "spec.targetRef.name: must be a Deployment name (a DNS-1123 subdomain) (got 'Pod/Info')",
            id="target-name",
        ),
        pytest.param({"spec.service.targetPort": 70000}, "spec.service.targetPort: must be between 1", id="port-70000"),
        pytest.param(
            {"spec.service.targetPort": "HTTP_PORT"},
            "spec.service.targetPort: must be a port number or a container port's name",
            id="port-name-invalid",
        ),
        pytest.param(
            {"spec.service.targetPort": "a-very-long-port-name"},
            "spec.service.targetPort: must be a port number or a container port's name",
            id="port-name-too-long",
        ),
        pytest.param(
            {
                "spec.analysis.stepWeight": None,
                "spec.analysis.iterations": 3,
                "spec.analysis.match": [{"headers": {"cookie": {"regex": "^(canary=always"}}}],
            },
            "spec.analysis.match[0].headers.cookie.regex: is not a regular expression: missing ), unterminated",
            id="regex",
        ),
        pytest.param(
            {"spec.service.match": [{"uri": {"regex": "*api"}}]},
            "spec.service.match[0].uri.regex: is not a regular expression: nothing to repeat",
            id="service-match-regex",
        ),
        pytest.param(
            {**AB_TEST, "spec.analysis.match": [{"headers": {"x-user": {"regex": "(" * 500 + "a" + ")" * 500}}}]},
            "spec.analysis.match[0].headers.x-user.regex: is not a regular expression: its groups nest too deep",
            id="regex-nested-too-deep",
        ),
        pytest.param(
            {**AB_TEST, "spec.analysis.match": [{"headers": {"x-user": {"regex": "a" * 1025}}}]},
            "spec.analysis.match[0].headers.x-user.regex: is 1025 characters long; a match takes at most 1024",
            id="regex-too-long",
        ),
        pytest.param(
            {"spec.analysis.metrics": [{"name": "errors", "query": "{{" * 45000}]},
            "spec.analysis.metrics[0].query: is 90000 characters long; a query takes at most 16384",
            id="query-too-long",
        ),
        pytest.param(
            {"spec.metricsServer": "http://prometheus/" + "a" * 2048},
            "spec.metricsServer: is 2066 characters long; an address takes at most 2048",
            id="metrics-server-too-long",
        ),
        pytest.param(
            {"spec.metricsServer": "prometheus:9090"},
            "spec.metricsServer: must be an absolute http or https URL (got 'prometheus:9090')",
            id="metrics-server",
        ),
        pytest.param(
            {"spec.analysis.metrics": [{"name": "errors", "query": "sum(up{ns='{{ nmespace }}'})"}]},
            "spec.analysis.metrics[0].query: unknown placeholder(s) nmespace (known: name, namespace, target, "
            "service, ingress, interval)",
            id="unknown-placeholder",
        ),
        pytest.param(
            {"spec.analysis.metrics": [{"name": "errors", "templateRef": {"name": "x", "namespace": "Ops/Team"}}]},
            "spec.analysis.metrics[0].templateRef.namespace: must be a namespace name (got 'Ops/Team')",
            id="template-namespace",
        ),
        pytest.param(
            {"spec.group": "Checkout_Team"},
            "spec.group: must be a group name (a DNS-1123 label) (got 'Checkout_Team')",
            id="group-name",
        ),
    ],
)
def test_what_the_api_server_would_refuse_later_is_refused_now(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    reported = [str(error) for error in raised.value.errors]
    assert any(line.startswith(expected) for line in reported), reported


def test_a_placeholder_of_the_templates_variables_is_known() -> None:
    metric = {"name": "errors", "query": "sum(x{zone='{{ variables.zone }}'})", "templateVariables": {"zone": "eu"}}
    assert parse_canary(with_changes({"spec.analysis.metrics": [metric]})).analysis.metrics[0].query


GATEWAY = {"spec.provider": "gatewayapi:v1", "spec.service.gatewayRefs": [{"name": "gw", "namespace": "edge"}]}
AB = {"spec.analysis.stepWeight": None, "spec.analysis.iterations": 5}

NGINX = {
    "spec.provider": "nginx",
    "spec.ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
}
NGINX_CASES = [
    pytest.param(
        {"spec.provider": "nginx"},
        [("spec.ingressRef", "provider nginx needs the Ingress to make the canary's from")],
        id="nginx-needs-an-ingress",
    ),
    pytest.param(
        {"spec.ingressRef": {"name": "web"}},
        [("spec.ingressRef", "only the nginx provider uses it (provider is istio)")],
        id="ingress-ref-only-for-nginx",
    ),
    pytest.param(
        {**NGINX, "spec.ingressRef": {"kind": "Route", "name": "web"}},
        [("spec.ingressRef.kind", "must be Ingress (got 'Route')")],
        id="ingress-ref-is-an-ingress",
    ),
    pytest.param(
        {**NGINX, "spec.ingressRef": {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "name": "web"}},
        [("spec.ingressRef.apiVersion", "must be networking.k8s.io/v1 (got 'extensions/v1beta1')")],
        id="ingress-ref-is-networking-v1",
    ),
    pytest.param(
        {
            **NGINX,
            **AB,
            "spec.analysis.match": [
                {"headers": {"x-canary": {"exact": "insider"}, "x-user": {"regex": "a.*"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                {"queryParams": {"canary": {"exact": "true"}}},
            ],
        },
        [
            ("spec.analysis.match[0].headers.x-user", "provider nginx routes by one header only (already x-canary)"),
            (
                "spec.analysis.match[1].headers.cookie",
                "provider nginx matches a cookie by its name only: {exact: <name>}",
            ),
            ("spec.analysis.match[2].queryParams", "provider nginx cannot match on it"),
        ],
        id="nginx-one-header-and-a-cookie-name",
    ),
]


@pytest.mark.parametrize(("changes", "errors"), NGINX_CASES)
def test_what_nginx_cannot_express_is_refused_with_its_path(
    changes: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    assert [(error.path, error.message) for error in raised.value.errors] == errors


def test_an_nginx_canary_names_its_ingress() -> None:
    canary = parse_canary(with_changes(NGINX))
    assert (canary.provider, canary.ingress_ref) == ("nginx", TargetRef("networking.k8s.io/v1", "Ingress", "web"))


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        pytest.param(
            {
                "spec.provider": "contour",
                **AB,
                "spec.analysis.match": [{"headers": {"x": {"prefix": "a"}}, "uri": {"exact": "/"}}],
            },
            [
                ("spec.analysis.match[0].headers.x.prefix", "provider contour matches headers by exact or regex only"),
                ("spec.analysis.match[0].uri", "provider contour cannot match on it"),
            ],
            id="contour-header-matches",
        ),
        pytest.param(
            {"spec.provider": "traefik", **AB, "spec.analysis.match": [{"headers": {"x": {"exact": "a"}}}]},
            [("spec.analysis.match[0].headers", "provider traefik cannot match on it")],
            id="traefik-has-no-matches",
        ),
    ],
)
def test_contour_and_traefik_refuse_what_they_cannot_match(
    changes: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    assert [(error.path, error.message) for error in raised.value.errors] == errors


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        pytest.param(
            {"spec.analysis.mirrorWeight": 10},
            [("spec.analysis.mirrorWeight", "is the share of requests mirrored: it needs mirror: true")],
            id="weight-without-mirror",
        ),
        pytest.param(
            {**GATEWAY, "spec.analysis.mirror": True},
            [("spec.analysis.mirror", "provider gatewayapi:v1 cannot mirror requests in canary (blue-green only)")],
            id="gateway-api-mirrors-blue-green-only",
        ),
        pytest.param(
            {"spec.provider": "traefik", "spec.analysis.mirror": True},
            [("spec.analysis.mirror", "provider traefik cannot mirror requests in canary (blue-green only)")],
            id="traefik-mirrors-blue-green-only",
        ),
        pytest.param(
            {**AB, "spec.analysis.match": [{"headers": {"x": {"exact": "1"}}}], "spec.analysis.mirror": True},
            [
                (
                    "spec.analysis.mirror",
                    "provider istio cannot mirror requests in ab-testing (blue-green and canary only)",
                )
            ],
            id="not-with-ab-testing",
        ),
        pytest.param(
            {**AB, "spec.analysis.mirror": True, "spec.analysis.mirrorWeight": 50},
            [("spec.analysis.mirrorWeight", "a share of requests is mirrored in canary releases only")],
            id="no-share-in-blue-green",
        ),
    ],
)
def test_mirroring_is_refused_where_it_cannot_work(changes: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    assert [(error.path, error.message) for error in raised.value.errors] == errors


def test_mirroring_is_read() -> None:
    canary = parse_canary(with_changes({"spec.analysis.mirror": True, "spec.analysis.mirrorWeight": 25}))
    assert (canary.analysis.mirror, canary.analysis.mirror_weight) == (True, 25)


def test_a_tcp_service_refuses_what_only_http_has() -> None:
    changes = {
        "spec.service.appProtocol": "tcp",
        "spec.service.timeout": "5s",
        "spec.service.match": [{"port": 9898, "uri": {"prefix": "/"}}],
        **AB,
        "spec.analysis.match": [{"headers": {"x": {"exact": "1"}}}],
    }
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    assert [(error.path, error.message) for error in raised.value.errors] == [
        ("spec.service.timeout", "appProtocol tcp routes connections, not HTTP requests; remove it"),
        (
            "spec.service.match[0].uri",
            "appProtocol tcp routes connections, not HTTP requests: only port can be matched",
        ),
        ("spec.analysis.match", "appProtocol tcp routes connections, not HTTP requests: A/B testing is not possible"),
    ]


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        pytest.param(
            {"spec.provider": "gatewayapi"},
            [
                (
                    "spec.provider",
                    "must be one of istio, gatewayapi:v1, gatewayapi:v1beta1, nginx, contour, traefik, linkerd, "
                    "kubernetes (got 'gatewayapi')",
                )
            ],
            id="bare-gatewayapi-is-not-a-version",
        ),
        pytest.param(
            {"spec.provider": "gatewayapi:v1"},
            [("spec.service.gatewayRefs", "provider gatewayapi:v1 needs at least one gateway to attach routes to")],
            id="gateway-api-needs-a-gateway",
        ),
        pytest.param(
            {"spec.service.gatewayRefs": [{"name": "gw"}]},
            [("spec.service.gatewayRefs", "only the gatewayapi providers use it (provider is istio)")],
            id="gateway-refs-only-for-gateway-api",
        ),
        pytest.param(
            {**GATEWAY, "spec.service.gatewayRefs": [{"namespace": "edge", "port": 0}]},
            [
                ("spec.service.gatewayRefs[0].name", "is required"),
                ("spec.service.gatewayRefs[0].port", "must be between 1 and 65535"),
            ],
            id="a-parent-ref-needs-a-name",
        ),
        pytest.param(
            {**GATEWAY, "spec.service.retries": {"attempts": 3}, "spec.service.gateways": ["mesh"]},
            [
                ("spec.service.gateways", "provider gatewayapi:v1 has no way to express it; remove it"),
                ("spec.service.retries", "provider gatewayapi:v1 has no way to express it; remove it"),
            ],
            id="istio-only-service-fields",
        ),
        pytest.param(
            {
                **GATEWAY,
                "spec.service.mirror": [{"backendRef": {"name": "shadow"}}, {"backendRef": {"name": "x", "port": 0}}],
            },
            [
                ("spec.service.mirror[0].backendRef.port", "is required for a Service"),
                ("spec.service.mirror[1].backendRef.port", "must be between 1 and 65535"),
            ],
            id="a-mirror-names-a-service-port",
        ),
        pytest.param(
            {"spec.service.mirror": [{"backendRef": {"name": "shadow", "port": 80}}]},
            [("spec.service.mirror", "provider istio has no way to express it; remove it")],
            id="service-mirror-is-gateway-apis",
        ),
        pytest.param(
            {**GATEWAY, "spec.provider": "gatewayapi:v1beta1", "spec.service.timeout": "15s"},
            [("spec.service.timeout", "provider gatewayapi:v1beta1 has no way to express it; remove it")],
            id="v1beta1-routes-have-no-timeout",
        ),
        pytest.param(
            {
                **GATEWAY,
                **AB,
                "spec.analysis.match": [
                    {"headers": {"x-canary": {"prefix": "in"}, "x-user": {"exact": "a"}}},
                    {"withoutHeaders": {"x": {"exact": "1"}}},
                ],
                "spec.service.match": [{"method": {"regex": "GET|HEAD"}}],
            },
            [
                ("spec.service.match[0].method.regex", "provider gatewayapi:v1 matches method by exact only"),
                (
                    "spec.analysis.match[0].headers.x-canary.prefix",
                    "provider gatewayapi:v1 matches headers by exact or regex only",
                ),
                ("spec.analysis.match[1].withoutHeaders", "provider gatewayapi:v1 cannot match on it"),
            ],
            id="matches-gateway-api-cannot-express",
        ),
        pytest.param(
            {"spec.provider": "kubernetes", "spec.analysis.maxWeight": 50},
            [
                (
                    "spec.analysis.stepWeight",
                    "provider kubernetes has no mesh to shift traffic with: only blue/green (iterations) is possible",
                ),
                (
                    "spec.analysis.maxWeight",
                    "provider kubernetes has no mesh to shift traffic with: only blue/green (iterations) is possible",
                ),
            ],
            id="no-mesh-no-weights",
        ),
        pytest.param(
            {
                "spec.provider": "kubernetes",
                **AB,
                "spec.analysis.match": [{"headers": {"x": {"exact": "1"}}}],
                "spec.service.hosts": ["a.example.com"],
            },
            [
                ("spec.service.hosts", "provider kubernetes has no way to express it; remove it"),
                (
                    "spec.analysis.match",
                    "provider kubernetes has no mesh to shift traffic with: only blue/green (iterations) is possible",
                ),
            ],
            id="no-mesh-no-ab",
        ),
    ],
)
def test_what_a_provider_cannot_express_is_refused_with_its_path(
    changes: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes(changes))
    assert [(error.path, error.message) for error in raised.value.errors] == errors


def test_gateway_api_canary_keeps_its_parent_refs() -> None:
    canary = parse_canary(
        with_changes({**GATEWAY, "spec.service.gatewayRefs": [{"name": "gw", "sectionName": "https", "port": 443}]})
    )
    assert (canary.provider, canary.service.gateway_refs) == (
        "gatewayapi:v1",
        ({"sectionName": "https", "name": "gw", "port": 443},),
    )


def test_a_kubernetes_canary_without_iterations_gets_flaggers_ten_and_a_warning() -> None:
    canary = parse_canary(with_changes({"spec.provider": "kubernetes", "spec.analysis.stepWeight": None}))
    assert (canary.analysis.strategy, canary.analysis.iterations) == (Strategy.BLUE_GREEN, 10)
    assert canary.warnings == (
        "spec.analysis.iterations: provider kubernetes does blue/green only: 10 iterations, as Flagger sets",
    )


def test_alerts_are_read_with_flaggers_default_severity() -> None:
    canary = parse_canary(
        with_changes(
            {
                "spec.analysis.alerts": [
                    {"name": "on-call", "severity": "error", "providerRef": {"name": "pager", "namespace": "ops"}},
                    {"name": "team", "providerRef": {"name": "slack"}},
                ],
                "spec.analysis.webhooks": [
                    {"name": "gate", "type": "confirm-promotion", "url": "http://gate/", "muteAlert": True}
                ],
            }
        )
    )
    assert canary.analysis.alerts == (
        AlertRef("on-call", ObjectRef("pager", "ops"), "error"),
        AlertRef("team", ObjectRef("slack"), "info"),
    )
    assert canary.analysis.webhooks[0].mute_alert


def test_a_wrong_alert_says_where() -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes({"spec.analysis.alerts": [{"name": "a", "severity": "loud", "providerRef": {}}]}))
    assert [str(error) for error in raised.value.errors] == [
        "spec.analysis.alerts[0].severity: must be one of info, warn, error (got 'loud')",
        "spec.analysis.alerts[0].providerRef.name: is required",
    ]


@pytest.mark.parametrize(
    ("timeout", "seconds", "warnings"),
    [
        pytest.param("30s", 30.0, (), id="within"),
        pytest.param("60s", 60.0, (), id="at-the-cap"),
        pytest.param(
            "1h",
            60.0,
            ("spec.analysis.webhooks[0].timeout: 1h is more than a hook may take (60s): it is given 60s",),
            id="over",
        ),
    ],
)
def test_a_hook_is_given_at_most_a_minute(timeout: str, seconds: float, warnings: tuple[str, ...]) -> None:
    """A tick waits for a hook; a tenant's hook cannot hold it, and its lane, for an hour."""
    canary = parse_canary(
        with_changes({"spec.analysis.webhooks": [{"name": "load", "url": "http://load/", "timeout": timeout}]})
    )
    assert canary.analysis.webhooks[0].timeout_seconds == seconds
    assert canary.warnings == warnings


def problems_of(changes: dict[str, Any]) -> list[str]:
    try:
        parse_canary(with_changes(changes))
    except InvalidCanary as invalid:
        return [str(error) for error in invalid.errors]
    return []


@pytest.mark.parametrize(
    ("value", "problems"),
    [
        pytest.param("podinfo-v2.shop:8080/api_x", [], id="plain"),
        pytest.param("", [], id="empty"),
        pytest.param(
            'x"} or vector(1) or up{a="',
            [
                "spec.analysis.metrics[0].templateVariables.app: may hold only letters, digits and _.:/- "
                "(at most 253), since a template's query holds it as it is"
            ],
            id="escapes-the-query",
        ),
        pytest.param(
            "a" * 254,
            [
                "spec.analysis.metrics[0].templateVariables.app: may hold only letters, digits and _.:/- "
                "(at most 253), since a template's query holds it as it is"
            ],
            id="too-long",
        ),
    ],
)
def test_template_variables_are_plain_words(value: str, problems: list[str]) -> None:
    metric = {"name": "errors", "templateRef": {"name": "t"}, "templateVariables": {"app": value}}
    assert problems_of({"spec.analysis.metrics": [metric]}) == problems


@pytest.mark.parametrize(
    ("field", "item", "problem"),
    [
        pytest.param(
            "metrics",
            {"name": "m", "query": "up", "thresholdRange": {"max": 1}},
            "spec.analysis.metrics: at most 20 metrics (got 21)",
            id="metrics",
        ),
        pytest.param(
            "webhooks",
            {"name": "h", "url": "http://gate/"},
            "spec.analysis.webhooks: at most 20 webhooks (got 21)",
            id="webhooks",
        ),
    ],
)
def test_a_canary_asks_at_most_twenty_metrics_and_hooks(field: str, item: dict[str, Any], problem: str) -> None:
    """Each is asked at every step, and a step waits for them all."""
    items = [{**item, "name": f"{item['name']}{index}"} for index in range(21)]
    assert problems_of({f"spec.analysis.{field}": items}) == [problem]
    assert problems_of({f"spec.analysis.{field}": items[:20]}) == []


@pytest.mark.parametrize(
    ("namespace", "annotation", "problem"),
    [
        pytest.param("test", None, None, id="same-namespace"),
        pytest.param(
            "shared",
            None,
            "MetricTemplate shared/errors is not shared with namespace test: its annotation "
            "serin.dev/allowed-namespaces must name test (or be *)",
            id="not-shared",
        ),
        pytest.param("shared", "team-a, test", None, id="named"),
        pytest.param("shared", "*", None, id="everyone"),
        pytest.param(
            "shared",
            "team-a,tes",
            "MetricTemplate shared/errors is not shared with namespace test: its annotation "
            "serin.dev/allowed-namespaces must name test (or be *)",
            id="others-only",
        ),
    ],
)
def test_another_namespaces_object_is_used_only_when_shared(
    namespace: str, annotation: str | None, problem: str | None
) -> None:
    annotations = {} if annotation is None else {SHARED_WITH: annotation}
    template = {"metadata": {"name": "errors", "namespace": namespace, "annotations": annotations}}
    assert not_shared("MetricTemplate", (namespace, "errors"), template, "test") == problem
