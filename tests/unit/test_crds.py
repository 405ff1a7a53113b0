"""Static checks of the CustomResourceDefinitions in k8s/crds/ (no API server needed).

The API server rejects a CRD whose schema is not structural and prunes or rejects fields a schema
does not know, so these tests check the rules that matter before anyone runs `kubectl apply`:
structural schemas, the printer columns, the enums the engine relies on, and that manifests
written for Flagger (apiVersion changed to serin.dev/v1beta1) pass a strict validation.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from serin.metrics.providers import PROVIDER_MODULES
from serin.notify.alerts import NOTIFIER_MODULES

CRD_DIR = Path(__file__).resolve().parents[2] / "k8s" / "crds"
GROUP = "serin.dev"
VERSION = "v1beta1"

# From the team's reference notes (status and conditions; webhook gates).
PHASES = [
    "Initializing",
    "Initialized",
    "Waiting",
    "Progressing",
    "WaitingPromotion",
    "Promoting",
    "Finalising",
    "Succeeded",
    "Failed",
    "Terminating",
    "Terminated",
]
WEBHOOK_TYPES = [
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]

SCHEMA_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# Keywords the API server forbids in CRD schemas, plus `default` outside the status: defaults of
# the spec are the mutating webhook's job, but no webhook can write the status of a new object.
FORBIDDEN_KEYWORDS = {"$ref", "definitions", "dependencies", "patternProperties", "additionalItems", "id", "default"}
DEFAULTED_UNDER = ".status"


# --- loading -----------------------------------------------------------------------------------


@functools.cache
def load_crd(filename: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((CRD_DIR / filename).read_text()))
    assert len(documents) == 1, f"{filename}: expected one document, got {len(documents)}"
    crd: dict[str, Any] = documents[0]
    return crd


def root_schema(filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_crd(filename)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def schema_at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The sub-schema for a field path such as `.spec.analysis.webhooks[].type`."""
    node = schema
    for part in dotted.strip(".").split("."):
        name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = node["properties"][name]
        if is_list:
            node = node["items"]
    return node


CRD_FILES = [
    pytest.param("canaries.yaml", "Canary", "canaries", "canary", id="canaries"),
    pytest.param("metrictemplates.yaml", "MetricTemplate", "metrictemplates", "metrictemplate", id="metrictemplates"),
    pytest.param("alertproviders.yaml", "AlertProvider", "alertproviders", "alertprovider", id="alertproviders"),
]


# --- structural-schema checker -----------------------------------------------------------------


def structural_violations(schema: Any, path: str = "", *, root: bool = True) -> list[str]:
    """Every way `schema` breaks the structural-schema rules (empty when it is structural)."""
    where = path or "<root>"
    if not isinstance(schema, dict):
        return [f"{where}: schema must be a mapping"]
    problems: list[str] = []
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if preserve is not None and preserve is not True:
        problems.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
    if "type" in schema:
        if schema["type"] not in SCHEMA_TYPES:
            problems.append(f"{where}: unknown type {schema['type']!r}")
    elif not (preserve or int_or_string):
        problems.append(f"{where}: no type (and not int-or-string or preserve-unknown-fields)")
    forbidden = (
        FORBIDDEN_KEYWORDS - {"default"} if (path + ".").startswith(DEFAULTED_UNDER + ".") else FORBIDDEN_KEYWORDS
    )
    problems.extend(f"{where}: forbidden keyword {key!r}" for key in sorted(forbidden & schema.keys()))
    if schema.get("uniqueItems") is True:
        problems.append(f"{where}: uniqueItems is forbidden")
    if root and schema.get("nullable"):
        problems.append(f"{where}: nullable at the root")

    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    if properties and additional is not None:
        problems.append(f"{where}: additionalProperties together with properties")
    if additional is not None and not isinstance(additional, dict):
        problems.append(f"{where}: additionalProperties must be a schema")
    if (
        schema.get("type") == "object"
        and not properties
        and additional is None
        and not preserve
        and path != ".metadata"
    ):
        problems.append(f"{where}: object without properties would prune all its content")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{where}: array without items")
    if "items" in schema and not isinstance(schema["items"], dict):
        problems.append(f"{where}: items must be a single schema")
    for value in schema.get("enum", []):
        if schema.get("type") == "string" and not isinstance(value, str):
            problems.append(f"{where}: enum value {value!r} is not a string")
    for key in schema.get("required", []):
        if properties and key not in properties:
            problems.append(f"{where}: required field {key!r} has no schema")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        item_required = schema.get("items", {}).get("required", [])
        if not keys or any(key not in item_required for key in keys):
            problems.append(f"{where}: list-map keys must be required in the items")

    for name, sub in properties.items():
        problems.extend(structural_violations(sub, f"{path}.{name}", root=False))
    if isinstance(additional, dict):
        problems.extend(structural_violations(additional, f"{path}.*", root=False))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_violations(schema["items"], f"{path}[]", root=False))
    return problems


@pytest.mark.parametrize(("filename", "kind", "plural", "singular"), CRD_FILES)
def test_schema_is_structural(filename: str, kind: str, plural: str, singular: str) -> None:
    schema = root_schema(filename)
    assert schema.get("type") == "object"
    assert structural_violations(schema) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        pytest.param({"type": "object", "properties": {"a": {}}}, ".a: no type", id="missing-type"),
        pytest.param(
            {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}}},
            None,
            id="valid",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "additionalProperties together with properties",
            id="properties-and-additional",
        ),
        pytest.param({"type": "object", "properties": {"a": {"type": "array"}}}, "array without items", id="no-items"),
        pytest.param(
            {"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": False}}},
            "must be true",
            id="preserve-false",
        ),
        pytest.param(
            {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
            "forbidden keyword 'default'",
            id="default",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "status": {"type": "object", "default": {}, "properties": {"a": {"type": "integer", "default": 0}}}
                },
            },
            None,
            id="default-of-the-status",
        ),
        pytest.param(
            {"type": "object", "properties": {"status": {"type": "object"}}},
            "would prune all its content",
            id="empty-object",
        ),
        pytest.param({"type": "object", "properties": {"a": {"type": "null"}}}, "unknown type", id="null-type"),
    ],
)
def test_structural_checker_catches_violations(broken: dict[str, Any], expected: str | None) -> None:
    problems = structural_violations(broken)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in problem for problem in problems), problems


# --- CRD metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "kind", "plural", "singular"), CRD_FILES)
def test_crd_names_and_version(filename: str, kind: str, plural: str, singular: str) -> None:
    crd = load_crd(filename)
    assert (CRD_DIR / filename).read_text().startswith("#"), "every manifest starts with a comment header"
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["listKind"]) == (
        kind,
        plural,
        singular,
        f"{kind}List",
    )
    [version] = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)


def test_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())
    manifests = sorted(path.name for path in CRD_DIR.glob("*.yaml") if path.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifests


def test_canary_has_status_subresource_and_short_name() -> None:
    crd = load_crd("canaries.yaml")
    assert crd["spec"]["versions"][0]["subresources"]["status"] == {}
    assert "canary" in crd["spec"]["names"]["shortNames"]


# --- printer columns ---------------------------------------------------------------------------


def printer_columns(filename: str) -> dict[str, dict[str, Any]]:
    columns = load_crd(filename)["spec"]["versions"][0].get("additionalPrinterColumns", [])
    return {column["name"]: column for column in columns}


@pytest.mark.parametrize(
    ("filename", "name", "json_path", "column_type", "priority"),
    [
        pytest.param("canaries.yaml", "Status", ".status.phase", "string", 0, id="canary-status"),
        pytest.param("canaries.yaml", "Weight", ".status.canaryWeight", "integer", 0, id="canary-weight"),
        pytest.param("canaries.yaml", "FailedChecks", ".status.failedChecks", "integer", 0, id="canary-failedchecks"),
        pytest.param(
            "canaries.yaml", "LastTransitionTime", ".status.lastTransitionTime", "string", 0, id="canary-lasttransition"
        ),
        pytest.param("canaries.yaml", "Interval", ".spec.analysis.interval", "string", 1, id="canary-interval"),
        pytest.param("canaries.yaml", "StepWeight", ".spec.analysis.stepWeight", "integer", 1, id="canary-stepweight"),
        pytest.param(
            "canaries.yaml", "StepWeights", ".spec.analysis.stepWeights", "string", 1, id="canary-stepweights"
        ),
        pytest.param("canaries.yaml", "MaxWeight", ".spec.analysis.maxWeight", "integer", 1, id="canary-maxweight"),
        pytest.param("metrictemplates.yaml", "Provider", ".spec.provider.type", "string", 0, id="template-provider"),
        pytest.param("metrictemplates.yaml", "Age", ".metadata.creationTimestamp", "date", 0, id="template-age"),
        pytest.param("alertproviders.yaml", "Type", ".spec.type", "string", 0, id="alertprovider-type"),
        pytest.param("alertproviders.yaml", "Age", ".metadata.creationTimestamp", "date", 0, id="alertprovider-age"),
    ],
)
def test_printer_column(filename: str, name: str, json_path: str, column_type: str, priority: int) -> None:
    column = printer_columns(filename).get(name)
    assert column is not None, f"{filename} has no printer column {name}"
    assert column["jsonPath"] == json_path
    assert column["type"] == column_type
    assert column.get("priority", 0) == priority


@pytest.mark.parametrize(("filename", "kind", "plural", "singular"), CRD_FILES)
def test_printer_columns_point_at_schema_fields(filename: str, kind: str, plural: str, singular: str) -> None:
    schema = root_schema(filename)
    valid_types = {"integer", "number", "string", "boolean", "date"}
    for name, column in printer_columns(filename).items():
        assert column["type"] in valid_types, name
        if column["jsonPath"].startswith(".metadata."):
            continue
        field = schema_at(schema, column["jsonPath"])
        if column["type"] in {"integer", "boolean"}:
            assert field["type"] == column["type"], f"{name}: column {column['type']}, field {field['type']}"


# --- enums the engine relies on ----------------------------------------------------------------


def enum_at(filename: str, field_path: str) -> list[Any]:
    values: list[Any] = schema_at(root_schema(filename), field_path)["enum"]
    return values


@pytest.mark.parametrize("phase", [pytest.param(phase, id=phase) for phase in PHASES])
def test_status_phase_enum_has(phase: str) -> None:
    assert phase in enum_at("canaries.yaml", ".status.phase")


@pytest.mark.parametrize("hook_type", [pytest.param(hook_type, id=hook_type) for hook_type in WEBHOOK_TYPES])
def test_webhook_type_enum_has(hook_type: str) -> None:
    assert hook_type in enum_at("canaries.yaml", ".spec.analysis.webhooks[].type")


@pytest.mark.parametrize(
    ("filename", "field_path", "expected"),
    [
        pytest.param("canaries.yaml", ".status.phase", {"", *PHASES}, id="phases"),
        pytest.param("canaries.yaml", ".spec.analysis.webhooks[].type", {"", *WEBHOOK_TYPES}, id="webhook-types"),
        pytest.param("canaries.yaml", ".spec.analysis.alerts[].severity", {"", "info", "warn", "error"}, id="severity"),
        pytest.param(
            "canaries.yaml", ".spec.targetRef.kind", {"Deployment", "DaemonSet", "StatefulSet"}, id="target-kinds"
        ),
        pytest.param(
            "canaries.yaml",
            ".spec.autoscalerRef.kind",
            {"HorizontalPodAutoscaler", "ScaledObject"},
            id="autoscaler-kinds",
        ),
        pytest.param("canaries.yaml", ".status.conditions[].status", {"True", "False", "Unknown"}, id="condition"),
        pytest.param(
            "alertproviders.yaml",
            ".spec.type",
            {"slack", "msteams", "discord", "rocket", "gchat", "webhook"},
            id="alert-types",
        ),
    ],
)
def test_enum_is_exactly(filename: str, field_path: str, expected: set[str]) -> None:
    values = enum_at(filename, field_path)
    assert len(values) == len(set(values)), f"duplicates in {values}"
    assert set(values) == expected


def test_canary_spec_requires_target_service_and_analysis() -> None:
    assert set(schema_at(root_schema("canaries.yaml"), ".spec")["required"]) == {"targetRef", "service", "analysis"}


def test_status_keeps_what_a_stateless_tick_needs() -> None:
    status = schema_at(root_schema("canaries.yaml"), ".status")
    assert status["properties"]["lastAnalysisTime"]["format"] == "date-time"
    assert status["properties"]["observedGeneration"]["type"] == "integer"
    assert status["properties"]["serin"]["x-kubernetes-preserve-unknown-fields"] is True


DURATION_FIELDS = [".spec.analysis.interval", ".spec.analysis.metrics[].interval", ".spec.analysis.webhooks[].timeout"]


@pytest.mark.parametrize("field_path", DURATION_FIELDS)
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        pytest.param("1m", True, id="1m"),
        pytest.param("30s", True, id="30s"),
        pytest.param("1m30s", True, id="1m30s"),
        pytest.param("500ms", True, id="500ms"),
        pytest.param("1.5h", True, id="1.5h"),
        pytest.param("", False, id="empty"),
        pytest.param("60", False, id="no-unit"),
        pytest.param("1d", False, id="days"),
        pytest.param("m", False, id="no-number"),
        pytest.param("-1m", False, id="negative"),
        pytest.param("1m ", False, id="trailing-space"),
    ],
)
def test_duration_pattern(field_path: str, value: str, accepted: bool) -> None:
    pattern = schema_at(root_schema("canaries.yaml"), field_path)["pattern"]
    assert (re.search(pattern, value) is not None) is accepted


# --- Flagger manifests validate -----------------------------------------------------------------


def validation_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """A strict subset of the API server's validation: types, enums, bounds, required, unknown fields."""
    where = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [f"{where}: must be an integer or a string"]
    expected = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if expected is not None and not checks[expected](value):
        return [f"{where}: must be of type {expected}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: above {schema['maximum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{where}: shorter than {schema['minLength']}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{where}: does not match {schema['pattern']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{where}: more than {schema['maxItems']} items")
    if expected == "array":
        for index, item in enumerate(value):
            errors.extend(validation_errors(item, schema["items"], f"{path}[{index}]"))
    if expected == "object" and path != ".metadata":
        errors.extend(
            f"{where}: missing required field {key!r}" for key in schema.get("required", []) if key not in value
        )
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors.extend(validation_errors(item, properties[key], f"{path}.{key}"))
            elif isinstance(schema.get("additionalProperties"), dict):
                errors.extend(validation_errors(item, schema["additionalProperties"], f"{path}.{key}"))
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f'{where}: unknown field "{key}"')
    return errors


# Manifests in the shape of Flagger's documentation, apiVersion switched to serin.dev/v1beta1.
ISTIO_CANARY = """
apiVersion: serin.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}
  progressDeadlineSeconds: 60
  service:
    port: 9898
    targetPort: 9898
    portDiscovery: true
    gateways: [public-gateway.istio-system.svc.cluster.local]
    hosts: [app.example.com]
    trafficPolicy:
      tls: {mode: DISABLE}
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "gateway-error,connect-failure,refused-stream"}
    headers:
      request:
        add: {x-some-header: value}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 1m
      - name: request-duration
        thresholdRange: {max: 500}
        interval: 30s
      - name: not-found-percentage
        templateRef: {name: not-found-percentage, namespace: istio-system}
        templateVariables: {route: /api}
        thresholdRange: {max: 5}
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata: {type: bash, cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"}
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
    alerts:
      - name: on-call
        severity: error
        providerRef: {name: on-call, namespace: flagger}
"""

AB_CANARY = """
apiVersion: serin.dev/v1beta1
kind: Canary
metadata: {name: abtest, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: abtest}
  service:
    port: 80
    targetPort: http
    gateways: [mesh]
  analysis:
    interval: 1m
    threshold: 10
    iterations: 10
    match:
      - headers:
          x-canary: {regex: ".*insider.*"}
      - headers:
          cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}
    webhooks:
      - name: gate
        type: confirm-promotion
        url: http://flagger-loadtester.test/gate/approve
      - name: ask
        type: confirm-traffic-increase
        url: http://flagger-loadtester.test/gate/check
"""

BLUE_GREEN_CANARY = """
apiVersion: serin.dev/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: DaemonSet, name: podinfo}
  skipAnalysis: false
  revertOnDeletion: true
  service:
    port: 80
    targetPort: 9898
    portName: http
    apex: {annotations: {test: test}, labels: {test: test}}
  analysis:
    interval: 30s
    threshold: 2
    iterations: 10
    mirror: true
    mirrorWeight: 100
    stepWeights: [1, 5, 20, 50]
    stepWeightPromotion: 100
    primaryReadyThreshold: 100
    canaryReadyThreshold: 100
    sessionAffinity: {cookieName: serin-cookie, maxAge: 21600}
"""

GATEWAY_API_CANARY = """
apiVersion: serin.dev/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: gatewayapi:v1
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service:
    port: 9898
    hosts: [www.example.com]
    gatewayRefs:
      - {name: gateway, namespace: istio-ingress}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
"""

METRIC_TEMPLATE = """
apiVersion: serin.dev/v1beta1
kind: MetricTemplate
metadata: {name: not-found-percentage, namespace: istio-system}
spec:
  provider:
    type: prometheus
    address: http://prometheus.istio-system:9090
    secretRef: {name: prom-basic-auth}
    insecureSkipVerify: true
  query: |
    100 - sum(rate(istio_requests_total{reporter="destination", response_code!="404"}[{{ interval }}]))
"""

ALERT_PROVIDER = """
apiVersion: serin.dev/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: flagger}
spec:
  type: slack
  channel: on-call-alerts
  username: flagger
  secretRef: {name: on-call-url}
"""


@pytest.mark.parametrize(
    ("filename", "manifest"),
    [
        pytest.param("canaries.yaml", ISTIO_CANARY, id="istio-canary"),
        pytest.param("canaries.yaml", AB_CANARY, id="ab-testing"),
        pytest.param("canaries.yaml", BLUE_GREEN_CANARY, id="blue-green"),
        pytest.param("canaries.yaml", GATEWAY_API_CANARY, id="gateway-api"),
        pytest.param("metrictemplates.yaml", METRIC_TEMPLATE, id="metric-template"),
        pytest.param("alertproviders.yaml", ALERT_PROVIDER, id="alert-provider"),
    ],
)
def test_flagger_style_manifest_validates(filename: str, manifest: str) -> None:
    assert validation_errors(yaml.safe_load(manifest), root_schema(filename)) == []


DELETE = object()  # marker: remove the field instead of setting it


def set_path(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    *parents, last = dotted.strip(".").split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return changed


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        pytest.param(".spec.analysis.stepWeigth", 10, 'unknown field "stepWeigth"', id="typo"),
        pytest.param(".spec.analysis.maxWeight", 110, "above 100", id="weight-over-100"),
        pytest.param(".spec.analysis.threshold", -1, "below 0", id="negative-threshold"),
        pytest.param(".spec.analysis.interval", "1 minute", "does not match", id="bad-interval"),
        pytest.param(".spec.analysis.webhooks.0.type", "pre-promotion", "not in", id="bad-webhook-type"),
        pytest.param(".spec.analysis.webhooks.0.url", DELETE, "missing required field 'url'", id="webhook-no-url"),
        pytest.param(".spec.targetRef.kind", "ReplicaSet", "not in", id="bad-target-kind"),
        pytest.param(".spec.service.port", DELETE, "missing required field 'port'", id="no-port"),
        pytest.param(".spec.service.port", "http", "must be of type integer", id="string-port"),
        pytest.param(".spec.service.targetPort", 1.5, "integer or a string", id="float-target-port"),
        pytest.param(".spec.service", DELETE, "missing required field 'service'", id="no-service"),
        pytest.param(".spec.skipAnalysis", "yes", "must be of type boolean", id="string-bool"),
        pytest.param(".spec.analysis.webhooks", [{"name": "h", "url": "http://h/"}] * 21, "more than 20", id="hooks"),
        pytest.param(
            ".spec.analysis.metrics.0.templateVariables", {"app": 'x"} or up{a="'}, "does not match", id="variable"
        ),
    ],
)
def test_invalid_canary_is_rejected(dotted: str, value: Any, expected: str) -> None:
    broken = set_path(yaml.safe_load(ISTIO_CANARY), dotted, value)
    errors = validation_errors(broken, root_schema("canaries.yaml"))
    assert any(expected in error for error in errors), errors


# --- every field of the Canary schema is read by the model, or refused ---------------------------


def schema_fields(schema: dict[str, Any], path: str) -> list[str]:
    """Every field path under ``schema`` (lists as ``[]``); maps and free-form objects are leaves."""
    if schema.get("type") == "array":
        return [path, *schema_fields(schema["items"], f"{path}[]")]
    properties = schema.get("properties")
    if schema.get("type") != "object" or not properties:
        return [path]
    fields = [path]
    for name, child in properties.items():
        fields.extend(schema_fields(child, f"{path}.{name}"))
    return fields


def sample(schema: dict[str, Any]) -> Any:
    """A value of every field the schema describes, so the parser meets each one."""
    kind = schema.get("type")
    if "enum" in schema:
        return next(value for value in schema["enum"] if value != "")
    if kind == "array":
        return [sample(schema["items"])]
    if kind == "object":
        if "properties" in schema:
            return {name: sample(child) for name, child in schema["properties"].items()}
        if "additionalProperties" in schema:
            return {"key": sample(schema["additionalProperties"])}
        return {"key": "value"}
    values: dict[Any, Any] = {"integer": max(1, schema.get("minimum", 1)), "number": 1.5, "boolean": True}
    return values.get(kind, "1m")


def test_every_canary_field_is_read_by_the_model_or_refused() -> None:
    from serin.model import UNSUPPORTED_FIELDS, read_canary

    spec_schema = root_schema("canaries.yaml")["properties"]["spec"]
    every = set(schema_fields(spec_schema, "spec"))
    reading = read_canary({"metadata": {"name": "everything", "namespace": "test"}, "spec": sample(spec_schema)})

    stale = set(UNSUPPORTED_FIELDS) - every
    assert not stale, f"refused fields the schema does not have: {sorted(stale)}"
    under_refused = {
        f for f in every if any(f.startswith((f"{refused}.", f"{refused}[]")) for refused in UNSUPPORTED_FIELDS)
    }
    unread = every - under_refused - reading.fields
    assert not unread, f"schema fields the model never reads (read them or list them as unsupported): {sorted(unread)}"
    refused = {error.path.replace("[0]", "[]") for error in reading.errors if "not supported yet" in error.message}
    assert refused == set(UNSUPPORTED_FIELDS)


def test_every_metrics_provider_type_the_crd_accepts_has_a_module() -> None:
    assert set(enum_at("metrictemplates.yaml", ".spec.provider.type")) == set(PROVIDER_MODULES)


def test_every_alert_provider_type_the_crd_accepts_has_a_module() -> None:
    assert set(enum_at("alertproviders.yaml", ".spec.type")) == set(NOTIFIER_MODULES)
