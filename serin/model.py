"""The Canary API as typed, immutable objects, parsed from the plain dicts the API server sends.

Both the admission webhooks and the tick parse Canaries here, so what the webhook admits the tick
understands. Parsing fills in Flagger's defaults and collects *every* problem with its field path
(``spec.analysis.stepWeight: must be between 1 and 100``) instead of stopping at the first.

This module is pure: no Kubernetes client, no HTTP, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

API_GROUP = "serin.dev"
API_VERSION = f"{API_GROUP}/v1beta1"

DEFAULT_INTERVAL = "1m"
# Flagger queries a metric without an interval over one minute, whatever the analysis interval:
# rate() over a window of a few scrapes is often empty.
DEFAULT_METRIC_INTERVAL = "1m"
DEFAULT_THRESHOLD = 1
DEFAULT_MAX_WEIGHT = 100
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_READY_THRESHOLD = 100
DEFAULT_HOOK_TIMEOUT = "10s"
# A tick waits for each hook it calls, so a hook's timeout is also how long it may hold a lane.
MAX_HOOK_TIMEOUT_SECONDS = 60.0
MIN_INTERVAL_SECONDS = 10.0

SUPPORTED_TARGET_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


@dataclass(frozen=True)
class ProviderTraits:
    """What a provider's routing can express, which decides the Canaries it accepts."""

    # It shifts a share of the traffic (canary releases, A/B routes); without it only blue/green,
    # where the analysis reaches the canary through its own Service, is possible.
    weights: bool
    # The string match kinds its routes can express, for each field of an Istio-shaped match.
    match_fields: Mapping[str, frozenset[str]]
    # spec.service fields it has no way to express.
    unused_service_fields: frozenset[str]
    # It attaches routes to gateways named in spec.service.gatewayRefs (and needs at least one).
    gateway_refs: bool = False
    route_timeout: bool = False
    # It routes through a canary copy of the user's Ingress named by spec.ingressRef (and needs one).
    ingress_ref: bool = False
    # Its A/B routes hold one header (exact or regex) and one cookie (by name), as NGINX's
    # canary-by-header and canary-by-cookie annotations do.
    one_header_and_cookie: bool = False
    # It can keep users on the canary with a cookie (analysis.sessionAffinity).
    session_affinity: bool = False
    # The strategies it can mirror requests to the canary in (analysis.mirror).
    mirror_strategies: frozenset[str] = frozenset()


_EXACT_OR_REGEX = frozenset({"exact", "regex"})
_ISTIO_STRING_MATCH = frozenset({"exact", "prefix", "regex"})
_GATEWAY_API_MATCHES: Mapping[str, frozenset[str]] = {
    "uri": _ISTIO_STRING_MATCH,
    "method": frozenset({"exact"}),
    "headers": _EXACT_OR_REGEX,
    "queryParams": _EXACT_OR_REGEX,
}
# The route fields of spec.service, for providers whose objects have none of them.
_NO_ROUTE_FIELDS = frozenset(
    {"gateways", "hosts", "delegation", "match", "rewrite", "retries", "headers", "corsPolicy", "trafficPolicy"}
    | {"timeout", "mirror"}
)
_GATEWAY_API_UNUSED = frozenset({"gateways", "delegation", "retries", "corsPolicy", "trafficPolicy"})
PROVIDERS: Mapping[str, ProviderTraits] = {
    "istio": ProviderTraits(
        weights=True,
        match_fields={
            "uri": _ISTIO_STRING_MATCH,
            "scheme": _ISTIO_STRING_MATCH,
            "method": _ISTIO_STRING_MATCH,
            "authority": _ISTIO_STRING_MATCH,
            "headers": _ISTIO_STRING_MATCH,
            "queryParams": _ISTIO_STRING_MATCH,
            "withoutHeaders": _ISTIO_STRING_MATCH,
            # Istio's other conditions, copied as given.
            "port": frozenset(),
            "sourceLabels": frozenset(),
            "gateways": frozenset(),
            "ignoreUriCase": frozenset(),
            "sourceNamespace": frozenset(),
            "statPrefix": frozenset(),
            "name": frozenset(),
        },
        unused_service_fields=frozenset({"mirror"}),
        session_affinity=True,
        mirror_strategies=frozenset({"canary", "blue-green"}),
    ),
    # Gateway API's HTTPRoute; v1beta1 for clusters whose Gateway API predates v1 (no timeouts).
    "gatewayapi:v1": ProviderTraits(
        weights=True,
        match_fields=_GATEWAY_API_MATCHES,
        unused_service_fields=_GATEWAY_API_UNUSED,
        gateway_refs=True,
        route_timeout=True,
        session_affinity=True,
        # A RequestMirror filter copies every request: no share for a weighted step.
        mirror_strategies=frozenset({"blue-green"}),
    ),
    "gatewayapi:v1beta1": ProviderTraits(
        weights=True,
        match_fields=_GATEWAY_API_MATCHES,
        unused_service_fields=_GATEWAY_API_UNUSED | {"timeout"},
        gateway_refs=True,
        session_affinity=True,
        mirror_strategies=frozenset({"blue-green"}),
    ),
    # NGINX ingress: a canary copy of spec.ingressRef, weighted or A/B by its canary annotations.
    "nginx": ProviderTraits(
        weights=True,
        match_fields={"headers": _EXACT_OR_REGEX},
        unused_service_fields=_NO_ROUTE_FIELDS,
        ingress_ref=True,
        one_header_and_cookie=True,
    ),
    # Contour: an HTTPProxy; A/B routes by header (exact or regex) and query parameter.
    "contour": ProviderTraits(
        weights=True,
        match_fields={"headers": _EXACT_OR_REGEX, "queryParams": _ISTIO_STRING_MATCH},
        unused_service_fields=frozenset(
            {"gateways", "hosts", "delegation", "match", "rewrite", "headers", "corsPolicy", "trafficPolicy", "mirror"}
        ),
    ),
    # Traefik: a weighted (or, for a mirrored blue/green, mirroring) TraefikService, nothing to match requests by.
    "traefik": ProviderTraits(
        weights=True,
        match_fields={},
        unused_service_fields=_NO_ROUTE_FIELDS,
        # A mirroring TraefikService copies every request: no share for a weighted step.
        mirror_strategies=frozenset({"blue-green"}),
    ),
    # Linkerd: an SMI TrafficSplit of the apex Service, nothing to match requests by.
    "linkerd": ProviderTraits(weights=True, match_fields={}, unused_service_fields=_NO_ROUTE_FIELDS),
    # No mesh: the Services only. Blue/green, the analysis reaching the canary through its Service.
    "kubernetes": ProviderTraits(weights=False, match_fields={}, unused_service_fields=_NO_ROUTE_FIELDS),
}
KNOWN_PROVIDERS = tuple(PROVIDERS)
# Flagger gives a Canary of the kubernetes provider without iterations this many.
DEFAULT_BLUE_GREEN_ITERATIONS = 10
BUILTIN_METRICS = ("request-success-rate", "request-duration")
# Keeps a Canary with spec.revertOnDeletion until the tick has given its target the traffic back.
FINALIZER = "serin.dev/revert-on-deletion"


# A person's request of the next tick, written on the Canary (``serin promote`` and the like) so that
# the API server authorizes and audits it; the tick acts on it and removes it.
REQUEST_ANNOTATION = "serin.dev/request"


class ManualRequest(enum.StrEnum):
    # Skip the remaining steps: promote now, through the confirm-promotion gate.
    PROMOTE = "promote"
    # Roll back now.
    ABORT = "abort"
    # Analyse a Failed release's revision again from the first step.
    RETRY = "retry"


class Strategy(enum.StrEnum):
    CANARY = "canary"
    AB_TESTING = "ab-testing"
    BLUE_GREEN = "blue-green"


class HookType(enum.StrEnum):
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidCanary(ValueError):
    """A Canary that cannot be used; ``errors`` lists every problem with its field path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(error) for error in self.errors))


# Kubernetes names: DNS-1123 labels and subdomains; Service names are DNS-1035 labels.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# A named port (IANA_SVC_NAME): up to 15 lowercase letters, digits and single dashes, one letter at least.
PORT_NAME = re.compile(r"(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")
# What a query may name between double braces (Flagger's), besides ``variables.<key>``.
QUERY_VARIABLES = ("name", "namespace", "target", "service", "ingress", "interval")
# Linear: no brace inside, so no position starts a scan to the end and back (a query of 45,000
# "{{" would otherwise take minutes).
PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
VARIABLES_PREFIX = "variables."
# What the CRDs' maxLength also says: far beyond any real query or address, short enough that
# nothing that reads one costs much.
MAX_QUERY_LENGTH = 16384
MAX_URL_LENGTH = 2048
# A header or cookie match: Envoy's RE2 programs are capped too (max_program_size).
MAX_REGEX_LENGTH = 1024
# Generated Services are named <service>, <service>-primary and <service>-canary, each a DNS label.
LONGEST_SERVICE_SUFFIX = "-primary"
# A template's query holds a variable's value as it is: a quote or a brace would let the Canary's
# author rewrite the template author's query (``x"} or vector(1) or up{a="``).
TEMPLATE_VARIABLE_VALUE = re.compile(r"[A-Za-z0-9_.:/-]{0,253}")
# Each metric is asked and each hook called at every step, which waits for them all.
MAX_METRICS = 20
MAX_WEBHOOKS = 20

# A MetricTemplate or AlertProvider serves only the Canaries of its own namespace, unless this
# annotation on it names theirs (comma-separated), or is "*" for every namespace.
SHARED_WITH = "serin.dev/allowed-namespaces"


def not_shared(kind: str, where: tuple[str, str], obj: Mapping[str, Any], user: str) -> str | None:
    """Why a Canary of namespace ``user`` may not use ``obj``, the MetricTemplate or AlertProvider
    ``where`` (namespace, name); None when it may."""
    namespace, name = where
    if namespace == user:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    listed = {entry.strip() for entry in str(annotations.get(SHARED_WITH, "")).split(",")}
    if "*" in listed or user in listed:
        return None
    return (
        f"{kind} {namespace}/{name} is not shared with namespace {user}: "
        f"its annotation {SHARED_WITH} must name {user} (or be *)"
    )


def selects_target(query: str) -> bool:
    """Whether the query names the workload by ``{{ target }}``: comparing runs it once for the
    canary and once for the primary, each named there in turn."""
    return "target" in {found.strip() for found in PLACEHOLDER.findall(query)}


def unknown_placeholders(query: str, variables: Sequence[str] = ()) -> list[str]:
    """The placeholders of ``query`` that nothing fills in (``variables``: its templateVariables)."""
    known = {*QUERY_VARIABLES, *(f"{VARIABLES_PREFIX}{key}" for key in variables)}
    return sorted({found.strip() for found in PLACEHOLDER.findall(query) if found.strip() not in known})


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1m30s``; ValueError if it is not one."""
    text = text.strip()
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 1m or 1m30s")
    return total


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class ObjectRef:
    name: str
    namespace: str | None = None


# The autoscalers a target may have, and the API group each lives in.
AUTOSCALER_GROUPS: Mapping[str, str] = {"HorizontalPodAutoscaler": "autoscaling", "ScaledObject": "keda.sh"}


@dataclass(frozen=True)
class AutoscalerRef:
    """The target's HorizontalPodAutoscaler or KEDA ScaledObject, copied for the primary."""

    kind: str
    name: str
    # KEDA only: the query of each named trigger on the primary's copy.
    primary_scaler_queries: Mapping[str, str] = field(default_factory=dict)
    # Bounds that replace the target's ones on the primary's copy.
    primary_min_replicas: int | None = None
    primary_max_replicas: int | None = None

    @property
    def primary_name(self) -> str:
        return f"{self.name}-primary"


@dataclass(frozen=True)
class ThresholdRange:
    min: float | None = None
    max: float | None = None


COMPARE_AGAINST = ("primary",)
COMPARE_TESTS = ("mann-whitney",)
# Which change of the canary's value is a failure: it grows (latency, errors), it shrinks (success
# rate, throughput), or either.
COMPARE_DIRECTIONS = ("increase", "decrease", "either")
# Kayenta's NetflixACAJudge defaults: a shift within a quarter of the primary's median is noise,
# and a failure must be shown at 98% confidence.
DEFAULT_COMPARE_TOLERANCE = 0.25
DEFAULT_COMPARE_CONFIDENCE = 0.98
# A confidence below this one would fail canaries on chance alone too often to mean anything.
MIN_COMPARE_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Compare:
    """Judge a metric by comparing the canary's samples with the primary's over the metric's
    interval (a Mann-Whitney U test and the Hodges-Lehmann shift with its confidence interval),
    instead of with a fixed range. The metric fails when the canary is worse than the primary by
    more than ``tolerance`` times the primary's median, with ``confidence``."""

    against: str = "primary"
    test: str = "mann-whitney"
    direction: str = "increase"
    tolerance: float = DEFAULT_COMPARE_TOLERANCE
    confidence: float = DEFAULT_COMPARE_CONFIDENCE


@dataclass(frozen=True)
class Metric:
    name: str
    interval: str
    threshold_range: ThresholdRange
    query: str | None = None
    template_ref: ObjectRef | None = None
    template_variables: Mapping[str, str] = field(default_factory=dict)
    # Judged against the primary instead of ``threshold_range`` (None: a threshold metric).
    compare: Compare | None = None

    @property
    def is_builtin(self) -> bool:
        return self.query is None and self.template_ref is None and self.name in BUILTIN_METRICS


@dataclass(frozen=True)
class Webhook:
    name: str
    type: HookType
    url: str
    timeout_seconds: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    retries: int = 0
    # Skip TLS certificate verification (a hook behind a self-signed certificate).
    disable_tls: bool = False
    # A gate that holds the release sends no alert (Flagger's muteAlert).
    mute_alert: bool = False


ALERT_SEVERITIES = ("info", "warn", "error")


@dataclass(frozen=True)
class AlertRef:
    """Where the Canary's alerts go: an AlertProvider, for alerts of ``severity`` and above
    (info: every alert; warn: halts and rollbacks; error: rollbacks only)."""

    name: str
    provider_ref: ObjectRef
    severity: str = "info"


@dataclass(frozen=True)
class SessionAffinity:
    """Users the canary served keep reaching it, by a cookie set on its responses (Flagger's)."""

    cookie_name: str
    max_age: int
    # Set-Cookie attributes besides Max-Age, as written (``Path=/``, ``Secure``, ...).
    attributes: tuple[str, ...] = ()

    def set_cookie(self, cookie: str, max_age: int | None = None) -> str:
        """The Set-Cookie value that gives ``cookie``, or with ``max_age`` -1 takes it away."""
        lifetime = self.max_age if max_age is None else max_age
        return "; ".join((cookie, f"Max-Age={lifetime}", *self.attributes))

    def cookie(self, uid: str, revision: str) -> str:
        """``name=value`` of the release of ``revision``: the same on every step of that release,
        another for the next one, with no state to keep (Flagger keeps a random one in the status)."""
        digest = hashlib.sha256(f"{uid}/{revision}".encode()).hexdigest()
        return f"{self.cookie_name}={digest[:16]}"


@dataclass(frozen=True)
class Analysis:
    interval_seconds: float
    interval: str
    threshold: int
    max_weight: int
    step_weight: int | None
    step_weights: tuple[int, ...]
    step_weight_promotion: int | None
    iterations: int | None
    match: tuple[Mapping[str, Any], ...]
    primary_ready_threshold: int
    canary_ready_threshold: int
    metrics: tuple[Metric, ...]
    webhooks: tuple[Webhook, ...]
    session_affinity: SessionAffinity | None = None
    # Requests are copied to the canary (its responses dropped): one mirrored step before the
    # weights of a canary release, or during the iterations of blue/green.
    mirror: bool = False
    # The percent of requests copied (all of them when unset).
    mirror_weight: int | None = None
    alerts: tuple[AlertRef, ...] = ()

    @property
    def strategy(self) -> Strategy:
        if self.iterations and self.match:
            return Strategy.AB_TESTING
        if self.iterations:
            return Strategy.BLUE_GREEN
        return Strategy.CANARY

    def hooks(self, hook_type: HookType) -> tuple[Webhook, ...]:
        return tuple(hook for hook in self.webhooks if hook.type is hook_type)

    def weight_after(self, weight: int) -> int:
        """The canary weight of the next step, never past the maximum.

        With ``stepWeights`` the maximum is the last step (Flagger: ``min(100, last step)``), so
        ``[1, 5, 10]`` promotes from 10. With ``stepWeight`` it is ``maxWeight``, and the last step
        stops there (Flagger overshoots it: 20, 40, 60 for a maximum of 50).
        """
        if self.step_weights:
            upcoming = [step for step in self.step_weights if step > weight]
            return min(upcoming[0], self.max_weight) if upcoming else self.max_weight
        return min(weight + (self.step_weight or self.max_weight), self.max_weight)


@dataclass(frozen=True)
class Metadata:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    port_name: str
    target_port: int | str
    app_protocol: str | None
    gateways: tuple[str, ...]
    hosts: tuple[str, ...]
    # An Istio delegate VirtualService: no hosts and no gateways of its own.
    delegation: bool
    # Mesh-specific structures are kept as given: routers copy them into their objects.
    match: tuple[Mapping[str, Any], ...]
    rewrite: Mapping[str, Any] | None
    retries: Mapping[str, Any] | None
    headers: Mapping[str, Any] | None
    cors_policy: Mapping[str, Any] | None
    traffic_policy: Mapping[str, Any] | None
    timeout: str | None
    # Gateway API ParentReferences the route attaches to (group, kind, namespace, name, sectionName, port).
    gateway_refs: tuple[Mapping[str, Any], ...]
    # Every other container port of the target on the generated Services too.
    port_discovery: bool
    # Backends every request is also mirrored to (Gateway API RequestMirror filters), as given.
    mirror: tuple[Mapping[str, Any], ...]
    apex: Metadata
    primary: Metadata
    canary: Metadata

    @property
    def primary_name(self) -> str:
        """The Service that selects the primary's pods (routes send the primary's share to it)."""
        return f"{self.name}-primary"

    @property
    def canary_name(self) -> str:
        """The Service that selects the canary's pods."""
        return f"{self.name}-canary"


@dataclass(frozen=True)
class Canary:
    name: str
    namespace: str
    uid: str
    generation: int
    resource_version: str
    target_ref: TargetRef
    autoscaler_ref: AutoscalerRef | None
    provider: str
    metrics_server: str | None
    # The user's Ingress that the nginx provider copies for the canary.
    ingress_ref: TargetRef | None
    progress_deadline_seconds: int
    skip_analysis: bool
    suspend: bool
    revert_on_deletion: bool
    service: Service
    analysis: Analysis
    creation_timestamp: str = ""
    # What a person asked of the next tick (the request annotation), if anything.
    request: ManualRequest | None = None
    # Accepted but worth knowing (a Flagger field Serin ignores, a precedence that applied).
    warnings: tuple[str, ...] = ()
    # The release group it moves with (``spec.group``; see ``serin.groups``), "" for none.
    group: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def primary_name(self) -> str:
        return f"{self.target_ref.name}-primary"


# Fields of Flagger's API that Serin does not act on yet. They are refused, not ignored: a Canary
# must never look as if it asked for something (an autoscaled primary, mirrored traffic, alerts)
# that nobody does. Each entry: the field path and what it is for.
UNSUPPORTED_FIELDS: Mapping[str, str] = {
    "spec.routeRef": "the APISIX provider",
    "spec.upstreamRef": "the Gloo provider",
    "spec.service.trafficDistribution": "traffic distribution on the generated Services",
    "spec.service.headless": "headless primary and canary Services",
    "spec.service.backendTimeout": "the Gateway API provider",
    "spec.service.meshName": "the App Mesh provider",
    "spec.service.backends": "the App Mesh provider",
    "spec.service.unmanagedMetadata": "leaving labels and annotations of generated objects alone",
    "spec.analysis.sessionAffinity.primaryCookieName": "pinning users to the primary (not in Flagger 1.36)",
}


def _is_set(value: Any) -> bool:
    """Whether a field asks for something: false, empty and null ask for nothing."""
    return value not in (None, False, "", {}, [])


_INDEX = re.compile(r"\[\d+\]")


class _Reader:
    """Walks a dict, remembering where it is, collecting errors instead of raising them.

    It also records the path of every field it reads (indexes as ``[]``), so a test can prove that
    every field of the CRD's schema is either read here or refused.
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[str] = []
        self.fields: set[str] = set()

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def seen(self, path: str) -> None:
        self.fields.add(_INDEX.sub("[]", path))

    def unsupported(self, parent: Mapping[str, Any], key: str, path: str) -> None:
        """Refuse ``parent[key]`` when it asks for something Serin does not do yet."""
        field_path = f"{path}.{key}"
        self.seen(field_path)
        if _is_set(parent.get(key)):
            what = UNSUPPORTED_FIELDS[_INDEX.sub("[]", field_path)]
            self.error(field_path, f"not supported yet ({what}); remove it")

    def mapping(self, value: Any, path: str, required: bool = False) -> Mapping[str, Any]:
        self.seen(path)
        if value is None:
            if required:
                self.error(path, "is required")
            return {}
        if not isinstance(value, Mapping):
            self.error(path, "must be an object")
            return {}
        return value

    def sequence(self, value: Any, path: str) -> Sequence[Any]:
        self.seen(path)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return ()
        return value

    def string(self, value: Any, path: str, required: bool = False, default: str | None = None) -> str | None:
        self.seen(path)
        if value is None or value == "":
            if required:
                self.error(path, "is required")
            return default
        if not isinstance(value, str):
            self.error(path, "must be a string")
            return default
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        result = []
        for index, item in enumerate(self.sequence(value, path)):
            text = self.string(item, f"{path}[{index}]", required=True)
            if text:
                result.append(text)
        return tuple(result)

    def integer(
        self, value: Any, path: str, default: int | None = None, low: int | None = None, high: int | None = None
    ) -> int | None:
        self.seen(path)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, "must be an integer")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.error(path, f"must be {bounds}")
            return default
        return value

    def number(self, value: Any, path: str) -> float | None:
        self.seen(path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, "must be a number")
            return None
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        self.seen(path)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.error(path, "must be true or false")
            return False
        return value

    def duration(self, value: Any, path: str, default: str) -> tuple[str, float]:
        text = self.string(value, path, default=default) or default
        try:
            return text, parse_duration(text)
        except ValueError as error:
            self.error(path, str(error))
            return default, parse_duration(default)

    def name(self, value: Any, path: str, pattern: re.Pattern[str], what: str, required: bool = False) -> str | None:
        """A string that must be a Kubernetes name of a kind (``what`` says which, for the message)."""
        text = self.string(value, path, required=required)
        if text is not None and not pattern.fullmatch(text):
            self.error(path, f"must be {what} (got {text[:64]!r})")
            return None
        return text

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, item in self.mapping(value, path).items():
            if not isinstance(item, str):
                self.error(f"{path}.{key}", "must be a string")
            else:
                result[str(key)] = item
        return result


def _parse_target_ref(reader: _Reader, value: Any, path: str, kinds: Sequence[str]) -> TargetRef:
    raw = reader.mapping(value, path, required=True)
    kind = reader.string(raw.get("kind"), f"{path}.kind", required=True) or ""
    if kind == "Service":
        # Flagger's Service targets switch Services only, with no workload to analyse or promote.
        reader.error(
            f"{path}.kind",
            "a Service cannot be a target: name the workload behind it (Serin makes its Services itself)",
        )
    elif kind and kind not in kinds:
        reader.error(f"{path}.kind", f"must be one of {', '.join(kinds)} (got {kind!r})")
    # The primary is named after the target: <name>-primary must be a workload name too.
    name = reader.name(
        raw.get("name"),
        f"{path}.name",
        DNS_SUBDOMAIN,
        f"a {kind or 'Deployment'} name (a DNS-1123 subdomain)",
        required=True,
    )
    if name and len(name) > 253 - len("-primary"):
        reader.error(f"{path}.name", "is too long: <name>-primary must fit in 253 characters")
    return TargetRef(
        api_version=reader.string(raw.get("apiVersion"), f"{path}.apiVersion", default="apps/v1") or "apps/v1",
        kind=kind,
        name=name or "",
    )


def _parse_autoscaler_ref(reader: _Reader, value: Any, path: str) -> AutoscalerRef | None:
    for key in ("apiVersion", "kind", "name", "primaryScalerQueries", "primaryScalerReplicas"):
        reader.seen(f"{path}.{key}")
    for key in ("minReplicas", "maxReplicas"):
        reader.seen(f"{path}.primaryScalerReplicas.{key}")
    if value is None:
        return None
    raw = reader.mapping(value, path)
    kind = reader.string(raw.get("kind"), f"{path}.kind", required=True) or ""
    if kind and kind not in AUTOSCALER_GROUPS:
        reader.error(f"{path}.kind", f"must be one of {', '.join(AUTOSCALER_GROUPS)} (got {kind!r})")
    api_version = reader.string(raw.get("apiVersion"), f"{path}.apiVersion")
    group = AUTOSCALER_GROUPS.get(kind)
    if api_version and group and api_version.partition("/")[0] != group:
        reader.error(f"{path}.apiVersion", f"a {kind} is in the API group {group} (got {api_version!r})")
    name = reader.name(raw.get("name"), f"{path}.name", DNS_SUBDOMAIN, "a DNS-1123 subdomain", required=True)
    if name and len(name) > 253 - len("-primary"):
        reader.error(f"{path}.name", "is too long: <name>-primary must fit in 253 characters")
    queries = reader.string_map(raw.get("primaryScalerQueries"), f"{path}.primaryScalerQueries")
    if queries and kind == "HorizontalPodAutoscaler":
        reader.error(
            f"{path}.primaryScalerQueries",
            "only a ScaledObject has trigger queries; an HPA's metrics are copied as they are",
        )
    bounds = reader.mapping(raw.get("primaryScalerReplicas"), f"{path}.primaryScalerReplicas")
    low = reader.integer(bounds.get("minReplicas"), f"{path}.primaryScalerReplicas.minReplicas", low=1)
    high = reader.integer(bounds.get("maxReplicas"), f"{path}.primaryScalerReplicas.maxReplicas", low=1)
    if low is not None and high is not None and low > high:
        reader.error(f"{path}.primaryScalerReplicas", f"minReplicas {low} is more than maxReplicas {high}")
    return AutoscalerRef(
        kind=kind, name=name or "", primary_scaler_queries=queries, primary_min_replicas=low, primary_max_replicas=high
    )


INGRESS_API_VERSION = "networking.k8s.io/v1"


def _parse_ingress_ref(reader: _Reader, value: Any, path: str) -> TargetRef:
    """The user's Ingress: ``networking.k8s.io/v1`` is the only Ingress API clusters still serve."""
    raw = reader.mapping(value, path, required=True)
    kind = reader.string(raw.get("kind"), f"{path}.kind", default="Ingress") or "Ingress"
    if kind != "Ingress":
        reader.error(f"{path}.kind", f"must be Ingress (got {kind!r})")
    api_version = reader.string(raw.get("apiVersion"), f"{path}.apiVersion", default=INGRESS_API_VERSION)
    if api_version != INGRESS_API_VERSION:
        reader.error(f"{path}.apiVersion", f"must be {INGRESS_API_VERSION} (got {api_version!r})")
    name = reader.name(raw.get("name"), f"{path}.name", DNS_SUBDOMAIN, "an Ingress name", required=True)
    return TargetRef(api_version=INGRESS_API_VERSION, kind=kind, name=name or "")


def _parse_metric(reader: _Reader, raw: Mapping[str, Any], path: str) -> Metric:
    name = reader.string(raw.get("name"), f"{path}.name", required=True) or ""
    interval, _ = reader.duration(raw.get("interval"), f"{path}.interval", DEFAULT_METRIC_INTERVAL)
    bounds = reader.mapping(raw.get("thresholdRange"), f"{path}.thresholdRange")
    threshold_range = ThresholdRange(
        min=reader.number(bounds.get("min"), f"{path}.thresholdRange.min"),
        max=reader.number(bounds.get("max"), f"{path}.thresholdRange.max"),
    )
    # Flagger's deprecated `threshold` means a minimum for success rate, a maximum otherwise.
    legacy = reader.number(raw.get("threshold"), f"{path}.threshold")
    if legacy is not None and threshold_range == ThresholdRange():
        threshold_range = ThresholdRange(min=legacy) if name == "request-success-rate" else ThresholdRange(max=legacy)
    if (
        threshold_range.min is not None
        and threshold_range.max is not None
        and threshold_range.min > threshold_range.max
    ):
        reader.error(f"{path}.thresholdRange", "min must not be greater than max")
    query = reader.string(raw.get("query"), f"{path}.query")
    if query is not None and len(query) > MAX_QUERY_LENGTH:
        reader.error(f"{path}.query", f"is {len(query)} characters long; a query takes at most {MAX_QUERY_LENGTH}")
        query = None
    template_ref = None
    if raw.get("templateRef") is not None:
        ref = reader.mapping(raw.get("templateRef"), f"{path}.templateRef")
        template_ref = ObjectRef(
            name=reader.name(
                ref.get("name"), f"{path}.templateRef.name", DNS_SUBDOMAIN, "a MetricTemplate name", required=True
            )
            or "",
            namespace=reader.name(ref.get("namespace"), f"{path}.templateRef.namespace", DNS_LABEL, "a namespace name"),
        )
    else:
        reader.seen(f"{path}.templateRef.name")
        reader.seen(f"{path}.templateRef.namespace")
    if query and template_ref:
        reader.error(path, "set either query or templateRef, not both")
    elif not query and not template_ref and name and name not in BUILTIN_METRICS:
        reader.error(
            path, f"{name!r} is not a builtin metric ({', '.join(BUILTIN_METRICS)}): give it a query or a templateRef"
        )
    variables = reader.string_map(raw.get("templateVariables"), f"{path}.templateVariables")
    for key, value in variables.items():
        if not TEMPLATE_VARIABLE_VALUE.fullmatch(value):
            reader.error(
                f"{path}.templateVariables.{key}",
                "may hold only letters, digits and _.:/- (at most 253), since a template's query holds it as it is",
            )
    if query:
        unknown = unknown_placeholders(query, list(variables))
        if unknown:
            known = ", ".join([*QUERY_VARIABLES, *(f"{VARIABLES_PREFIX}{key}" for key in variables)])
            reader.error(f"{path}.query", f"unknown placeholder(s) {', '.join(unknown)} (known: {known})")
    compare = _parse_compare(reader, raw.get("compare"), f"{path}.compare", name)
    if compare is not None and (threshold_range != ThresholdRange()):
        reader.error(
            f"{path}.compare",
            "judges the canary against the primary: set either compare or thresholdRange (threshold), not both",
        )
    if compare is not None and query and not selects_target(query):
        reader.error(
            f"{path}.query",
            "must select the workload with {{ target }}: compare runs it once for the canary and once for the primary",
        )
    return Metric(
        name=name,
        interval=interval,
        threshold_range=threshold_range,
        query=query,
        template_ref=template_ref,
        template_variables=variables,
        compare=compare,
    )


def _parse_compare(reader: _Reader, value: Any, path: str, metric_name: str) -> Compare | None:
    if value is None:
        reader.seen(path)
        for key in ("against", "test", "direction", "tolerance", "confidence"):
            reader.seen(f"{path}.{key}")
        return None
    raw = reader.mapping(value, path)
    # A lower success rate is the failure of the builtin that measures it; a higher value of the rest.
    default_direction = "decrease" if metric_name == "request-success-rate" else "increase"
    choices = (("against", COMPARE_AGAINST, "primary"), ("test", COMPARE_TESTS, "mann-whitney"))
    chosen: dict[str, str] = {}
    for key, allowed, default in (*choices, ("direction", COMPARE_DIRECTIONS, default_direction)):
        text = reader.string(raw.get(key), f"{path}.{key}", default=default) or default
        if text not in allowed:
            reader.error(f"{path}.{key}", f"must be one of {', '.join(allowed)} (got {text!r})")
            text = default
        chosen[key] = text
    tolerance = reader.number(raw.get("tolerance"), f"{path}.tolerance")
    if tolerance is not None and not 0 <= tolerance <= 10:
        reader.error(f"{path}.tolerance", f"must be a share of the primary's median, 0 to 10 (got {tolerance:g})")
        tolerance = None
    confidence = reader.number(raw.get("confidence"), f"{path}.confidence")
    if confidence is not None and not MIN_COMPARE_CONFIDENCE <= confidence < 1:
        reader.error(f"{path}.confidence", f"must be {MIN_COMPARE_CONFIDENCE:g} or more, below 1 (got {confidence:g})")
        confidence = None
    return Compare(
        against=chosen["against"],
        test=chosen["test"],
        direction=chosen["direction"],
        tolerance=DEFAULT_COMPARE_TOLERANCE if tolerance is None else tolerance,
        confidence=DEFAULT_COMPARE_CONFIDENCE if confidence is None else confidence,
    )


def _parse_url(reader: _Reader, value: Any, path: str) -> str | None:
    url = reader.string(value, path)
    if url and len(url) > MAX_URL_LENGTH:
        reader.error(path, f"is {len(url)} characters long; an address takes at most {MAX_URL_LENGTH}")
        return None
    if url and not re.match(r"^https?://[^/\s?#]+(/\S*)?$", url):
        reader.error(path, f"must be an absolute http or https URL (got {url[:100]!r})")
        return None
    return url


def _parse_webhook(reader: _Reader, raw: Mapping[str, Any], path: str) -> Webhook:
    name = reader.string(raw.get("name"), f"{path}.name", required=True) or ""
    type_name = reader.string(raw.get("type"), f"{path}.type", default=HookType.ROLLOUT.value) or "rollout"
    try:
        hook_type = HookType(type_name)
    except ValueError:
        reader.error(f"{path}.type", f"must be one of {', '.join(t.value for t in HookType)} (got {type_name!r})")
        hook_type = HookType.ROLLOUT
    url = _parse_url(reader, raw.get("url"), f"{path}.url") or ""
    if not url and not raw.get("url"):
        reader.error(f"{path}.url", "is required")
    given, timeout = reader.duration(raw.get("timeout"), f"{path}.timeout", DEFAULT_HOOK_TIMEOUT)
    if timeout > MAX_HOOK_TIMEOUT_SECONDS:
        reader.warn(
            f"{path}.timeout",
            f"{given} is more than a hook may take ({MAX_HOOK_TIMEOUT_SECONDS:g}s): "
            f"it is given {MAX_HOOK_TIMEOUT_SECONDS:g}s",
        )
        timeout = MAX_HOOK_TIMEOUT_SECONDS
    return Webhook(
        name=name,
        type=hook_type,
        url=url,
        timeout_seconds=timeout,
        metadata=reader.string_map(raw.get("metadata"), f"{path}.metadata"),
        retries=reader.integer(raw.get("retries"), f"{path}.retries", default=0, low=0) or 0,
        disable_tls=reader.boolean(raw.get("disableTLS"), f"{path}.disableTLS"),
        mute_alert=reader.boolean(raw.get("muteAlert"), f"{path}.muteAlert"),
    )


def _parse_strategy(
    reader: _Reader, raw: Mapping[str, Any], path: str
) -> tuple[int | None, tuple[int, ...], int | None, int]:
    """stepWeight, stepWeights, iterations and the maximum weight, with Flagger's precedence."""
    step_weight = reader.integer(raw.get("stepWeight"), f"{path}.stepWeight", low=1, high=100)
    step_weights: list[int] = []
    for index, item in enumerate(reader.sequence(raw.get("stepWeights"), f"{path}.stepWeights")):
        weight = reader.integer(item, f"{path}.stepWeights[{index}]", low=1, high=100)
        if weight is not None:
            if step_weights and weight <= step_weights[-1]:
                reader.error(f"{path}.stepWeights[{index}]", "must be greater than the step before it")
            step_weights.append(weight)
    iterations = reader.integer(raw.get("iterations"), f"{path}.iterations", low=1)
    max_weight = reader.integer(raw.get("maxWeight"), f"{path}.maxWeight", DEFAULT_MAX_WEIGHT, 1, 100)
    max_weight = max_weight or DEFAULT_MAX_WEIGHT

    # Judge by which fields are present, so a bad value is reported once, not twice.
    weighted = [name for name in ("stepWeight", "stepWeights") if raw.get(name) not in (None, [])]
    if raw.get("iterations") is not None:
        # Flagger's precedence: iterations make it A/B testing or blue/green, whatever else is set.
        for name in weighted:
            reader.warn(f"{path}.{name}", "ignored: iterations take precedence (A/B testing or blue/green)")
        return None, (), iterations, max_weight
    if len(weighted) != 1:
        reader.error(
            path,
            "set exactly one strategy: stepWeight or stepWeights for a canary release, iterations for "
            f"blue/green, iterations with match for A/B testing (found {', '.join(weighted) or 'none'})",
        )
    if step_weights:
        if raw.get("maxWeight") is not None and raw.get("maxWeight") != step_weights[-1]:
            reader.warn(
                f"{path}.maxWeight", f"ignored: with stepWeights the last step ({step_weights[-1]}) is the maximum"
            )
        max_weight = step_weights[-1]
    return step_weight, tuple(step_weights), None, max_weight


def _parse_analysis(reader: _Reader, value: Any) -> Analysis:
    path = "spec.analysis"
    raw = reader.mapping(value, path, required=True)
    interval, interval_seconds = reader.duration(raw.get("interval"), f"{path}.interval", DEFAULT_INTERVAL)
    if interval_seconds < MIN_INTERVAL_SECONDS:
        reader.error(f"{path}.interval", f"must be at least {MIN_INTERVAL_SECONDS:.0f}s (got {interval})")
    step_weight, step_weights, iterations, max_weight = _parse_strategy(reader, raw, path)
    match = _parse_match(reader, raw.get("match"), f"{path}.match")
    if match and raw.get("iterations") is None:
        reader.error(f"{path}.match", "A/B testing needs iterations")
    alerts = tuple(
        _parse_alert(reader, reader.mapping(item, f"{path}.alerts[{index}]"), f"{path}.alerts[{index}]")
        for index, item in enumerate(reader.sequence(raw.get("alerts"), f"{path}.alerts"))
    )
    mirror = reader.boolean(raw.get("mirror"), f"{path}.mirror")
    mirror_weight = reader.integer(raw.get("mirrorWeight"), f"{path}.mirrorWeight", low=1, high=100)
    if mirror_weight is not None and not mirror:
        reader.error(f"{path}.mirrorWeight", "is the share of requests mirrored: it needs mirror: true")
    session_affinity = _parse_session_affinity(reader, raw.get("sessionAffinity"), f"{path}.sessionAffinity")

    metrics = tuple(
        _parse_metric(reader, reader.mapping(item, f"{path}.metrics[{index}]"), f"{path}.metrics[{index}]")
        for index, item in enumerate(reader.sequence(raw.get("metrics"), f"{path}.metrics"))
    )
    webhooks = tuple(
        _parse_webhook(reader, reader.mapping(item, f"{path}.webhooks[{index}]"), f"{path}.webhooks[{index}]")
        for index, item in enumerate(reader.sequence(raw.get("webhooks"), f"{path}.webhooks"))
    )
    for field_name, items, most in (("metrics", metrics, MAX_METRICS), ("webhooks", webhooks, MAX_WEBHOOKS)):
        if len(items) > most:
            reader.error(f"{path}.{field_name}", f"at most {most} {field_name} (got {len(items)})")
    if iterations and not match:
        for index, metric in enumerate(metrics):
            if metric.compare is not None:
                reader.error(
                    f"{path}.metrics[{index}].compare",
                    "cannot judge blue/green: its last checks run with all traffic on the canary, when the primary "
                    "has no samples to compare with; use thresholdRange",
                )
    return Analysis(
        interval_seconds=interval_seconds,
        interval=interval,
        threshold=reader.integer(raw.get("threshold"), f"{path}.threshold", DEFAULT_THRESHOLD, low=1)
        or DEFAULT_THRESHOLD,
        max_weight=max_weight,
        step_weight=step_weight,
        step_weights=step_weights,
        step_weight_promotion=reader.integer(
            raw.get("stepWeightPromotion"), f"{path}.stepWeightPromotion", low=1, high=100
        ),
        iterations=iterations,
        match=match,
        primary_ready_threshold=_ready_threshold(reader, raw, path, "primaryReadyThreshold"),
        canary_ready_threshold=_ready_threshold(reader, raw, path, "canaryReadyThreshold"),
        metrics=metrics,
        webhooks=webhooks,
        session_affinity=session_affinity,
        mirror=mirror,
        mirror_weight=mirror_weight,
        alerts=alerts,
    )


def _parse_alert(reader: _Reader, raw: Mapping[str, Any], path: str) -> AlertRef:
    name = reader.string(raw.get("name"), f"{path}.name", required=True) or ""
    severity = reader.string(raw.get("severity"), f"{path}.severity", default="info") or "info"
    if severity not in ALERT_SEVERITIES:
        reader.error(f"{path}.severity", f"must be one of {', '.join(ALERT_SEVERITIES)} (got {severity!r})")
    ref = reader.mapping(raw.get("providerRef"), f"{path}.providerRef", required=True)
    provider = ObjectRef(
        name=reader.name(
            ref.get("name"), f"{path}.providerRef.name", DNS_SUBDOMAIN, "an AlertProvider name", required=True
        )
        or "",
        namespace=reader.name(ref.get("namespace"), f"{path}.providerRef.namespace", DNS_LABEL, "a namespace name"),
    )
    return AlertRef(name=name, provider_ref=provider, severity=severity)


# A cookie name is an HTTP token (RFC 6265).
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
DEFAULT_SESSION_MAX_AGE = 86400
COOKIE_ATTRIBUTE_VALUE = re.compile(r"[^;\s\x00-\x1f\x7f]+")


def _parse_session_affinity(reader: _Reader, value: Any, path: str) -> SessionAffinity | None:
    if value is None:
        reader.seen(path)
        return None
    raw = reader.mapping(value, path)
    name = reader.string(raw.get("cookieName"), f"{path}.cookieName", required=True)
    if name is not None and not COOKIE_NAME.fullmatch(name):
        reader.error(f"{path}.cookieName", f"must be a cookie name (letters, digits and !#$%&'*+-.^_`|~; got {name!r})")
    reader.unsupported(raw, "primaryCookieName", path)
    max_age = reader.integer(raw.get("maxAge"), f"{path}.maxAge", DEFAULT_SESSION_MAX_AGE, low=0)
    attributes = []
    for key, attribute in (("domain", "Domain"), ("path", "Path")):
        text = reader.string(raw.get(key), f"{path}.{key}")
        if text is not None and not COOKIE_ATTRIBUTE_VALUE.fullmatch(text):
            reader.error(f"{path}.{key}", f"must not contain ';', spaces or control characters (got {text!r})")
        elif text is not None:
            attributes.append(f"{attribute}={text}")
    same_site = reader.string(raw.get("sameSite"), f"{path}.sameSite")
    if same_site is not None and same_site not in ("Strict", "Lax", "None"):
        reader.error(f"{path}.sameSite", f"must be one of Strict, Lax, None (got {same_site!r})")
    elif same_site is not None:
        attributes.append(f"SameSite={same_site}")
    for key, attribute in (("secure", "Secure"), ("httpOnly", "HttpOnly"), ("partitioned", "Partitioned")):
        if reader.boolean(raw.get(key), f"{path}.{key}"):
            attributes.append(attribute)
    return SessionAffinity(
        # 0 is unset in Flagger's API, as it would make a cookie nobody keeps.
        name or "",
        max_age or DEFAULT_SESSION_MAX_AGE,
        attributes=tuple(attributes),
    )


def _parse_match(reader: _Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    """Istio HTTP match conditions, kept as given, with every regular expression checked."""
    conditions = []
    for index, item in enumerate(reader.sequence(value, path)):
        condition = reader.mapping(item, f"{path}[{index}]")
        for where, matcher in _string_matchers(condition, f"{path}[{index}]"):
            regex = matcher.get("regex") if isinstance(matcher, Mapping) else None
            if regex is None:
                continue
            if not isinstance(regex, str):
                reader.error(f"{where}.regex", "must be a string")
                continue
            if len(regex) > MAX_REGEX_LENGTH:
                too_long = f"is {len(regex)} characters long; a match takes at most {MAX_REGEX_LENGTH}"
                reader.error(f"{where}.regex", too_long)
                continue
            try:
                re.compile(regex)
            except (re.error, RecursionError) as error:
                # RecursionError: groups nested hundreds deep, which no header or cookie match needs.
                problem = error if isinstance(error, re.error) else "its groups nest too deep"
                reader.error(f"{where}.regex", f"is not a regular expression: {problem}")
        conditions.append(condition)
    return tuple(conditions)


def _string_matchers(condition: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    """(path, StringMatch) of every Istio string match in one condition."""
    found: list[tuple[str, Any]] = []
    for field_name in ("uri", "scheme", "method", "authority"):
        if field_name in condition:
            found.append((f"{path}.{field_name}", condition[field_name]))
    for field_name in ("headers", "queryParams", "withoutHeaders"):
        named = condition.get(field_name)
        if isinstance(named, Mapping):
            found.extend((f"{path}.{field_name}.{key}", matcher) for key, matcher in named.items())
    return found


def _ready_threshold(reader: _Reader, raw: Mapping[str, Any], path: str, key: str) -> int:
    value = reader.integer(raw.get(key), f"{path}.{key}", DEFAULT_READY_THRESHOLD, 0, 100)
    return DEFAULT_READY_THRESHOLD if value is None else value


def _parse_metadata(reader: _Reader, value: Any, path: str) -> Metadata:
    raw = reader.mapping(value, path)
    return Metadata(
        labels=reader.string_map(raw.get("labels"), f"{path}.labels"),
        annotations=reader.string_map(raw.get("annotations"), f"{path}.annotations"),
    )


def _optional_mapping(reader: _Reader, value: Any, path: str) -> Mapping[str, Any] | None:
    reader.seen(path)
    return reader.mapping(value, path) if value is not None else None


_PARENT_REF_STRINGS = ("group", "kind", "namespace", "sectionName")


def _parse_gateway_refs(reader: _Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    """Gateway API ParentReferences: a name, and optionally where and which listener."""
    refs: list[Mapping[str, Any]] = []
    for index, item in enumerate(reader.sequence(value, path)):
        where = f"{path}[{index}]"
        raw = reader.mapping(item, where)
        ref: dict[str, Any] = {}
        for key in _PARENT_REF_STRINGS:
            text = reader.string(raw.get(key), f"{where}.{key}")
            if text is not None:
                ref[key] = text
        name = reader.name(raw.get("name"), f"{where}.name", DNS_SUBDOMAIN, "an object name", required=True)
        port = reader.integer(raw.get("port"), f"{where}.port", low=1, high=65535)
        if name:
            ref["name"] = name
        if port is not None:
            ref["port"] = port
        refs.append(ref)
    return tuple(refs)


def _parse_mirror_filters(reader: _Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    """Gateway API HTTPRequestMirrorFilters: each names the backend (a Service) that gets a copy."""
    filters: list[Mapping[str, Any]] = []
    for index, item in enumerate(reader.sequence(value, path)):
        where = f"{path}[{index}]"
        raw = reader.mapping(item, where)
        backend = reader.mapping(raw.get("backendRef"), f"{where}.backendRef", required=True)
        ref: dict[str, Any] = {}
        for key in _PARENT_REF_STRINGS[:3]:  # group, kind, namespace
            text = reader.string(backend.get(key), f"{where}.backendRef.{key}")
            if text is not None:
                ref[key] = text
        name = reader.name(
            backend.get("name"), f"{where}.backendRef.name", DNS_SUBDOMAIN, "a Service name", required=True
        )
        port = reader.integer(backend.get("port"), f"{where}.backendRef.port", low=1, high=65535)
        if name:
            ref["name"] = name
        if port is not None:
            ref["port"] = port
        elif backend.get("port") is None and ref.get("kind", "Service") == "Service" and backend:
            reader.error(f"{where}.backendRef.port", "is required for a Service")
        filters.append({"backendRef": ref})
    return tuple(filters)


def _as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _check_provider(
    reader: _Reader, provider: str, spec: Mapping[str, Any], service: Service, ingress_ref: TargetRef | None
) -> None:
    """Refuse what the provider's routing cannot express, naming the field: Flagger ignores such
    fields, which leaves an A/B test matching everyone or a route without its rewrite."""
    traits = PROVIDERS.get(provider)
    if traits is None:
        return
    raw_service = _as_mapping(spec.get("service"))
    raw_analysis = _as_mapping(spec.get("analysis"))
    for key in sorted(traits.unused_service_fields):
        if _is_set(raw_service.get(key)):
            reader.error(f"spec.service.{key}", f"provider {provider} has no way to express it; remove it")
    if traits.gateway_refs and not service.gateway_refs:
        reader.error("spec.service.gatewayRefs", f"provider {provider} needs at least one gateway to attach routes to")
    if not traits.gateway_refs and service.gateway_refs:
        reader.error("spec.service.gatewayRefs", f"only the gatewayapi providers use it (provider is {provider})")
    if traits.ingress_ref and ingress_ref is None:
        reader.error("spec.ingressRef", f"provider {provider} needs the Ingress to make the canary's from")
    if not traits.ingress_ref and ingress_ref is not None:
        reader.error("spec.ingressRef", f"only the nginx provider uses it (provider is {provider})")
    if provider == "istio" and (service.app_protocol or "").lower() == "tcp":
        _check_tcp(reader, raw_service, raw_analysis)
    if traits.one_header_and_cookie:
        _check_one_header_and_cookie(reader, provider, raw_analysis.get("match"))
    if raw_analysis.get("mirror") is True:
        strategy = (
            "ab-testing"
            if _is_set(raw_analysis.get("iterations")) and _is_set(raw_analysis.get("match"))
            else "blue-green"
            if _is_set(raw_analysis.get("iterations"))
            else "canary"
        )
        if strategy not in traits.mirror_strategies:
            where = "" if not traits.mirror_strategies else f" ({' and '.join(sorted(traits.mirror_strategies))} only)"
            reader.error("spec.analysis.mirror", f"provider {provider} cannot mirror requests in {strategy}{where}")
        if raw_analysis.get("mirrorWeight") is not None and strategy != "canary":
            reader.error("spec.analysis.mirrorWeight", "a share of requests is mirrored in canary releases only")
    if _is_set(raw_analysis.get("sessionAffinity")):
        if not traits.session_affinity:
            reader.error("spec.analysis.sessionAffinity", f"provider {provider} cannot route by a cookie it sets")
        elif any(_is_set(raw_analysis.get(key)) for key in ("iterations", "match")):
            reader.error(
                "spec.analysis.sessionAffinity",
                "keeps users on the canary a weight sent them to: only canary releases (stepWeight or stepWeights)",
            )
        elif provider == "istio" and (service.app_protocol or "").lower() == "tcp":
            reader.error("spec.analysis.sessionAffinity", "appProtocol tcp routes connections, which carry no cookie")
    if not traits.weights:
        for key in ("stepWeight", "stepWeights", "maxWeight", "stepWeightPromotion", "match"):
            if _is_set(raw_analysis.get(key)):
                reader.error(
                    f"spec.analysis.{key}",
                    f"provider {provider} has no mesh to shift traffic with: only blue/green (iterations) is possible",
                )
        return
    for where, conditions in (
        ("spec.service.match", service.match),
        ("spec.analysis.match", raw_analysis.get("match")),
    ):
        for index, condition in enumerate(conditions if isinstance(conditions, Sequence) else ()):
            if isinstance(condition, Mapping):
                _check_match(reader, provider, traits, condition, f"{where}[{index}]")


# What a TCP route has: destinations and a port to match connections by.
_HTTP_ONLY_SERVICE_FIELDS = ("rewrite", "retries", "headers", "corsPolicy", "timeout")


def _check_tcp(reader: _Reader, raw_service: Mapping[str, Any], raw_analysis: Mapping[str, Any]) -> None:
    """``appProtocol: tcp`` routes connections: nothing of an HTTP request can be matched or changed."""
    why = "appProtocol tcp routes connections, not HTTP requests"
    for key in _HTTP_ONLY_SERVICE_FIELDS:
        if _is_set(raw_service.get(key)):
            reader.error(f"spec.service.{key}", f"{why}; remove it")
    for index, condition in enumerate(raw_service.get("match") or ()):
        for key in condition if isinstance(condition, Mapping) else ():
            if key != "port":
                reader.error(f"spec.service.match[{index}].{key}", f"{why}: only port can be matched")
    if _is_set(raw_analysis.get("match")):
        reader.error("spec.analysis.match", f"{why}: A/B testing is not possible")


def _check_one_header_and_cookie(reader: _Reader, provider: str, match: Any) -> None:
    """NGINX's canary annotations hold one header (exact or regex) and one cookie name (a request
    with that cookie set to ``always`` goes to the canary): the matches must fit in them."""
    headers: set[str] = set()
    for index, condition in enumerate(match if isinstance(match, Sequence) else ()):
        named = condition.get("headers") if isinstance(condition, Mapping) else None
        for name, matcher in named.items() if isinstance(named, Mapping) else ():
            where = f"spec.analysis.match[{index}].headers.{name}"
            if str(name).lower() == "cookie":
                if not (isinstance(matcher, Mapping) and set(matcher) == {"exact"}):
                    reader.error(where, f"provider {provider} matches a cookie by its name only: {{exact: <name>}}")
                continue
            headers.add(str(name).lower())
            if len(headers) > 1:
                reader.error(where, f"provider {provider} routes by one header only (already {sorted(headers)[0]})")


def _check_match(
    reader: _Reader, provider: str, traits: ProviderTraits, condition: Mapping[str, Any], path: str
) -> None:
    for key, value in condition.items():
        kinds = traits.match_fields.get(key)
        if kinds is None:
            reader.error(f"{path}.{key}", f"provider {provider} cannot match on it")
            continue
        if not kinds:
            continue  # copied as given
        named = (
            value.items()
            if key in ("headers", "queryParams", "withoutHeaders") and isinstance(value, Mapping)
            else [(None, value)]
        )
        for name, matcher in named:
            where = f"{path}.{key}" if name is None else f"{path}.{key}.{name}"
            for kind in matcher if isinstance(matcher, Mapping) else ():
                if kind not in kinds:
                    reader.error(
                        f"{where}.{kind}", f"provider {provider} matches {key} by {' or '.join(sorted(kinds))} only"
                    )


def _parse_service(reader: _Reader, value: Any, target_name: str) -> Service:
    path = "spec.service"
    raw = reader.mapping(value, path, required=True)
    port = reader.integer(raw.get("port"), f"{path}.port", low=1, high=65535)
    if port is None and value is not None and raw.get("port") is None:
        reader.error(f"{path}.port", "is required")
    target_port: int | str = port or 0
    raw_target_port = raw.get("targetPort")
    reader.seen(f"{path}.targetPort")
    if isinstance(raw_target_port, bool) or not isinstance(raw_target_port, int | str | None):
        reader.error(f"{path}.targetPort", "must be a port number or a port name")
    elif isinstance(raw_target_port, int) and not 1 <= raw_target_port <= 65535:
        reader.error(f"{path}.targetPort", "must be between 1 and 65535")
    elif isinstance(raw_target_port, str) and raw_target_port and not PORT_NAME.fullmatch(raw_target_port):
        reader.error(
            f"{path}.targetPort",
            f"must be a port number or a container port's name (up to 15 lowercase letters, digits and dashes; "
            f"got {raw_target_port[:64]!r})",
        )
    elif raw_target_port is not None and raw_target_port != "":
        target_port = raw_target_port
    for key in (
        "trafficDistribution",
        "headless",
        "backendTimeout",
        "meshName",
        "backends",
        "unmanagedMetadata",
    ):
        reader.unsupported(raw, key, path)
    gateways = reader.strings(raw.get("gateways"), f"{path}.gateways")
    hosts = reader.strings(raw.get("hosts"), f"{path}.hosts")
    delegation = reader.boolean(raw.get("delegation"), f"{path}.delegation")
    if delegation and (gateways or hosts):
        reader.error(f"{path}.delegation", "a delegate VirtualService has no hosts or gateways of its own")
    name = reader.name(raw.get("name"), f"{path}.name", DNS_1035_LABEL, "a Service name (a DNS-1035 label)")
    service_name = name or target_name
    if len(service_name) + len(LONGEST_SERVICE_SUFFIX) > 63 and (name or target_name):
        where = f"{path}.name" if name else "spec.targetRef.name"
        reader.error(
            where, f"{service_name!r} is too long for a Service name: <name>-primary must fit in 63 characters"
        )
    elif not name and target_name and not DNS_1035_LABEL.fullmatch(target_name):
        reader.error(
            f"{path}.name", f"is needed: the target's name {target_name!r} cannot name a Service (a DNS-1035 label)"
        )
    return Service(
        name=service_name,
        port=port or 0,
        port_name=reader.name(raw.get("portName"), f"{path}.portName", DNS_LABEL, "a port name (a DNS-1123 label)")
        or "http",
        target_port=target_port,
        app_protocol=reader.string(raw.get("appProtocol"), f"{path}.appProtocol"),
        gateways=gateways,
        hosts=hosts,
        delegation=delegation,
        match=_parse_match(reader, raw.get("match"), f"{path}.match"),
        rewrite=_optional_mapping(reader, raw.get("rewrite"), f"{path}.rewrite"),
        retries=_optional_mapping(reader, raw.get("retries"), f"{path}.retries"),
        headers=_optional_mapping(reader, raw.get("headers"), f"{path}.headers"),
        cors_policy=_optional_mapping(reader, raw.get("corsPolicy"), f"{path}.corsPolicy"),
        traffic_policy=_optional_mapping(reader, raw.get("trafficPolicy"), f"{path}.trafficPolicy"),
        timeout=reader.string(raw.get("timeout"), f"{path}.timeout"),
        gateway_refs=_parse_gateway_refs(reader, raw.get("gatewayRefs"), f"{path}.gatewayRefs"),
        port_discovery=reader.boolean(raw.get("portDiscovery"), f"{path}.portDiscovery"),
        mirror=_parse_mirror_filters(reader, raw.get("mirror"), f"{path}.mirror"),
        apex=_parse_metadata(reader, raw.get("apex"), f"{path}.apex"),
        primary=_parse_metadata(reader, raw.get("primary"), f"{path}.primary"),
        canary=_parse_metadata(reader, raw.get("canary"), f"{path}.canary"),
    )


@dataclass(frozen=True)
class Reading:
    """What parsing found: the Canary when it is usable, every problem, every warning, every field read."""

    canary: Canary | None
    errors: tuple[FieldError, ...]
    warnings: tuple[str, ...]
    fields: frozenset[str]


def read_canary(obj: Mapping[str, Any], default_provider: str = "istio") -> Reading:
    """Parse and validate a Canary, collecting instead of raising (see ``parse_canary``)."""
    reader = _Reader()
    metadata = reader.mapping(obj.get("metadata"), "metadata", required=True)
    spec = reader.mapping(obj.get("spec"), "spec", required=True)
    target_ref = _parse_target_ref(reader, spec.get("targetRef"), "spec.targetRef", SUPPORTED_TARGET_KINDS)
    autoscaler_ref = _parse_autoscaler_ref(reader, spec.get("autoscalerRef"), "spec.autoscalerRef")
    for key in ("routeRef", "upstreamRef"):
        reader.unsupported(spec, key, "spec")
    ingress_ref = None
    if spec.get("ingressRef") is not None:
        ingress_ref = _parse_ingress_ref(reader, spec.get("ingressRef"), "spec.ingressRef")
    else:
        reader.seen("spec.ingressRef")
    provider = reader.string(spec.get("provider"), "spec.provider", default=default_provider) or default_provider
    if provider not in KNOWN_PROVIDERS:
        reader.error("spec.provider", f"must be one of {', '.join(KNOWN_PROVIDERS)} (got {provider!r})")
    service = _parse_service(reader, spec.get("service"), target_ref.name)
    raw_analysis = spec.get("analysis")
    if (
        provider in PROVIDERS
        and not PROVIDERS[provider].weights
        and isinstance(raw_analysis, Mapping)
        and not any(_is_set(raw_analysis.get(key)) for key in ("iterations", "stepWeight", "stepWeights"))
    ):
        reader.warn(
            "spec.analysis.iterations",
            f"provider {provider} does blue/green only: {DEFAULT_BLUE_GREEN_ITERATIONS} iterations, as Flagger sets",
        )
        raw_analysis = {**raw_analysis, "iterations": DEFAULT_BLUE_GREEN_ITERATIONS}
    analysis = _parse_analysis(reader, raw_analysis)
    _check_provider(reader, provider, spec, service, ingress_ref)
    canary = Canary(
        name=reader.string(metadata.get("name"), "metadata.name", required=True) or "",
        namespace=reader.string(metadata.get("namespace"), "metadata.namespace", default="default") or "default",
        uid=str(metadata.get("uid") or ""),
        generation=int(metadata.get("generation") or 0),
        resource_version=str(metadata.get("resourceVersion") or ""),
        creation_timestamp=str(metadata.get("creationTimestamp") or ""),
        target_ref=target_ref,
        autoscaler_ref=autoscaler_ref,
        provider=provider,
        ingress_ref=ingress_ref,
        metrics_server=_parse_url(reader, spec.get("metricsServer"), "spec.metricsServer"),
        progress_deadline_seconds=reader.integer(
            spec.get("progressDeadlineSeconds"),
            "spec.progressDeadlineSeconds",
            DEFAULT_PROGRESS_DEADLINE_SECONDS,
            low=1,
        )
        or DEFAULT_PROGRESS_DEADLINE_SECONDS,
        skip_analysis=reader.boolean(spec.get("skipAnalysis"), "spec.skipAnalysis"),
        suspend=reader.boolean(spec.get("suspend"), "spec.suspend"),
        revert_on_deletion=reader.boolean(spec.get("revertOnDeletion"), "spec.revertOnDeletion"),
        service=service,
        analysis=analysis,
        request=_parse_request(reader, metadata.get("annotations")),
        warnings=tuple(reader.warnings),
        group=reader.name(spec.get("group"), "spec.group", DNS_LABEL, "a group name (a DNS-1123 label)") or "",
    )
    return Reading(
        canary=None if reader.errors else canary,
        errors=tuple(reader.errors),
        warnings=tuple(reader.warnings),
        fields=frozenset(reader.fields),
    )


def _parse_request(reader: _Reader, annotations: Any) -> ManualRequest | None:
    raw = annotations.get(REQUEST_ANNOTATION) if isinstance(annotations, Mapping) else None
    if raw is None:
        return None
    try:
        return ManualRequest(raw)
    except ValueError:
        known = ", ".join(request.value for request in ManualRequest)
        reader.error(f"metadata.annotations[{REQUEST_ANNOTATION}]", f"must be one of {known} (got {str(raw)[:100]!r})")
        return None


def parse_canary(obj: Mapping[str, Any], default_provider: str = "istio") -> Canary:
    """Parse and validate a Canary; raise InvalidCanary listing every problem."""
    reading = read_canary(obj, default_provider)
    if reading.canary is None:
        raise InvalidCanary(reading.errors)
    return reading.canary
