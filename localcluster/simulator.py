"""Plays the Istio data plane for the local test cluster.

The local cluster runs a real kube-apiserver with fake nodes: pods run no
containers, so nothing serves requests and no Envoy sidecar reports telemetry.
This process stands in for the mesh data plane, and only for that.  On every
refresh it lists Istio VirtualServices, Services and Deployments, pushes a
synthetic request stream through each VirtualService's http routes the way
Envoy would (first matching route, then a destination by weight), and exports
the metrics Istio's destination-side sidecars would report:
``istio_requests_total`` and ``istio_request_duration_milliseconds``.

How each version behaves comes from its Deployment's pod template annotations:
``simulator.serin.dev/error-rate`` (share of 500 responses, 0..1) and
``simulator.serin.dev/latency-ms`` (mean latency).

It does not: send real HTTP, read DestinationRules (subsets are ignored; a
host's endpoints are every ready pod its Service selects), honour retries,
timeouts, fault injection, mirroring or redirects, or modify anything in the
cluster.  It only ever lists objects.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import random
import re
import signal
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

LOG = logging.getLogger("localcluster.simulator")

ERROR_RATE_ANNOTATION = "simulator.serin.dev/error-rate"
LATENCY_ANNOTATION = "simulator.serin.dev/latency-ms"
DEFAULT_ERROR_RATE = 0.0
DEFAULT_LATENCY_MS = 50.0

SOURCE_WORKLOAD = "simulator"
CLUSTER_DOMAIN = "cluster.local"

# Istio's default buckets for istio_request_duration_milliseconds.
ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

REQUEST_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "response_code",
    "request_protocol",
)

MatchKind = Literal["exact", "prefix", "regex"]
_MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "regex")

# Match conditions this simulator evaluates.  Anything else in a match entry
# (sourceLabels, gateways, port, authority, ...) cannot be judged for a
# synthetic request, so such an entry is treated as never matching rather than
# silently widened to "always".
_SUPPORTED_CONDITIONS = frozenset(
    {"headers", "queryParams", "uri", "method", "withoutHeaders", "ignoreUriCase", "name"}
)


# ---------------------------------------------------------------------------
# Parsed VirtualService


@dataclass(frozen=True)
class StringMatch:
    """One Istio StringMatch (exact, prefix or regex)."""

    kind: MatchKind
    value: str

    def matches(self, actual: str | None, *, ignore_case: bool = False) -> bool:
        if actual is None:
            return False
        expected = self.value
        if ignore_case:
            actual, expected = actual.lower(), expected.lower()
        if self.kind == "exact":
            return actual == expected
        if self.kind == "prefix":
            return actual.startswith(expected)
        try:
            # Envoy's safe_regex must match the whole value, not a substring.
            flags = re.IGNORECASE if ignore_case else 0
            return re.fullmatch(self.value, actual, flags) is not None
        except re.error:
            return False


@dataclass(frozen=True)
class MatchRule:
    """One entry of an http route's ``match`` list; all its conditions must hold."""

    headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    uri: StringMatch | None = None
    method: StringMatch | None = None
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    unsupported: tuple[str, ...] = ()
    """Condition keys present in the entry that the simulator cannot evaluate."""


@dataclass(frozen=True)
class Destination:
    host: str
    weight: int


@dataclass(frozen=True)
class HttpRoute:
    name: str
    matches: tuple[MatchRule, ...]
    """Empty means the route matches every request."""
    destinations: tuple[Destination, ...]


@dataclass(frozen=True)
class VirtualService:
    name: str
    namespace: str
    routes: tuple[HttpRoute, ...]


@dataclass(frozen=True)
class SyntheticRequest:
    """What the route matcher looks at.  Header names are lower case, as Envoy sees them."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query_params: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"
    method: str = "GET"


PLAIN_REQUEST = SyntheticRequest()


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _parse_string_match(value: object) -> StringMatch | None:
    spec = _mapping(value)
    for kind in _MATCH_KINDS:
        raw = spec.get(kind)
        if isinstance(raw, str):
            return StringMatch(kind, raw)
    return None


def _parse_named_matches(value: object, *, lower_names: bool) -> tuple[tuple[tuple[str, StringMatch], ...], bool]:
    """Returns the parsed pairs and whether every entry was understood."""
    pairs: list[tuple[str, StringMatch]] = []
    complete = True
    for name, spec in _mapping(value).items():
        parsed = _parse_string_match(spec)
        if parsed is None:
            complete = False
            continue
        pairs.append((name.lower() if lower_names else name, parsed))
    return tuple(pairs), complete


def parse_match_rule(entry: Mapping[str, Any]) -> MatchRule:
    unsupported = sorted(key for key in entry if key not in _SUPPORTED_CONDITIONS)
    headers, headers_ok = _parse_named_matches(entry.get("headers"), lower_names=True)
    query, query_ok = _parse_named_matches(entry.get("queryParams"), lower_names=False)
    without, without_ok = _parse_named_matches(entry.get("withoutHeaders"), lower_names=True)
    uri = _parse_string_match(entry.get("uri")) if "uri" in entry else None
    method = _parse_string_match(entry.get("method")) if "method" in entry else None
    if not headers_ok:
        unsupported.append("headers")
    if not query_ok:
        unsupported.append("queryParams")
    if not without_ok:
        unsupported.append("withoutHeaders")
    if "uri" in entry and uri is None:
        unsupported.append("uri")
    if "method" in entry and method is None:
        unsupported.append("method")
    return MatchRule(
        headers=headers,
        query_params=query,
        uri=uri,
        method=method,
        without_headers=without,
        ignore_uri_case=entry.get("ignoreUriCase") is True,
        unsupported=tuple(unsupported),
    )


def _parse_destinations(value: object) -> tuple[Destination, ...]:
    entries = [_mapping(e) for e in _sequence(value)]
    hosts = [_mapping(e.get("destination")).get("host") for e in entries]
    destinations: list[Destination] = []
    for entry, host in zip(entries, hosts, strict=True):
        if not isinstance(host, str) or not host:
            continue
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int):
            # Istio: a lone destination without a weight takes all the traffic.
            weight = 100 if len(entries) == 1 else 0
        destinations.append(Destination(host=host, weight=max(weight, 0)))
    return tuple(destinations)


def parse_virtual_service(obj: Mapping[str, Any]) -> VirtualService:
    """Turns a VirtualService as returned by the API (a plain dict) into typed routes.

    Malformed parts are dropped rather than raised on: the simulator must keep
    serving whatever else the cluster contains.
    """
    metadata = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    routes: list[HttpRoute] = []
    for index, raw_route in enumerate(_sequence(spec.get("http"))):
        route = _mapping(raw_route)
        name = route.get("name")
        matches = tuple(parse_match_rule(_mapping(m)) for m in _sequence(route.get("match")))
        routes.append(
            HttpRoute(
                name=name if isinstance(name, str) else f"http[{index}]",
                matches=matches,
                destinations=_parse_destinations(route.get("route")),
            )
        )
    return VirtualService(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        routes=tuple(routes),
    )


# ---------------------------------------------------------------------------
# Matching


def rule_matches(rule: MatchRule, request: SyntheticRequest) -> bool:
    if rule.unsupported:
        return False
    for name, header_match in rule.headers:
        if not header_match.matches(request.headers.get(name)):
            return False
    for name, header_match in rule.without_headers:
        if header_match.matches(request.headers.get(name)):
            return False
    for name, query_match in rule.query_params:
        if not query_match.matches(request.query_params.get(name)):
            return False
    if rule.uri is not None and not rule.uri.matches(request.path, ignore_case=rule.ignore_uri_case):
        return False
    return rule.method is None or rule.method.matches(request.method)


def route_matches(route: HttpRoute, request: SyntheticRequest) -> bool:
    if not route.matches:
        return True
    return any(rule_matches(rule, request) for rule in route.matches)


def select_route(vs: VirtualService, request: SyntheticRequest) -> HttpRoute | None:
    """The first http route that matches, as Envoy evaluates them: in order."""
    for route in vs.routes:
        if route_matches(route, request):
            return route
    return None


# ---------------------------------------------------------------------------
# Synthesizing requests that satisfy a match rule


class _UnsupportedRegex(Exception):
    pass


_ESCAPE_EXAMPLES = {"d": "0", "D": "a", "w": "a", "W": "-", "s": " ", "S": "x", "n": "\n", "t": "\t", "r": "\r"}
_ZERO_WIDTH_ESCAPES = frozenset("bBAzZ")
_CLASS_CANDIDATES = string.ascii_letters + string.digits + "-_.=;:/ " + string.punctuation
_BOUNDED_REPEAT = re.compile(r"\{(\d+)(,\d*)?\}")


class _ShortestExample:
    """Builds the shortest string a (simple) regex accepts.

    Handles literals, escapes, character classes, groups, alternation and
    quantifiers, which covers the patterns people write in VirtualServices.
    Look-arounds and back references are refused; the caller verifies the
    result with ``re.fullmatch`` anyway.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def build(self) -> str:
        result = self._alternation()
        if self.pos != len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        return result

    def _peek(self) -> str:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else ""

    def _alternation(self) -> str:
        first = self._sequence()
        while self._peek() == "|":
            self.pos += 1
            self._sequence()
        return first

    def _sequence(self) -> str:
        parts: list[str] = []
        while self._peek() not in ("", "|", ")"):
            atom = self._atom()
            parts.append(atom * self._min_repeat())
        return "".join(parts)

    def _min_repeat(self) -> int:
        char = self._peek()
        if char in ("*", "?"):
            self.pos += 1
            count = 0
        elif char == "+":
            self.pos += 1
            count = 1
        elif char == "{" and (bounded := _BOUNDED_REPEAT.match(self.pattern, self.pos)):
            self.pos = bounded.end()
            count = int(bounded.group(1))
        else:
            return 1
        if self._peek() in ("?", "+"):
            self.pos += 1
        return count

    def _atom(self) -> str:
        char = self.pattern[self.pos]
        self.pos += 1
        if char in "^$":
            return ""
        if char == ".":
            return "x"
        if char == "\\":
            return self._escape()
        if char == "[":
            return self._char_class()
        if char == "(":
            return self._group()
        if char in "*+?{":
            raise _UnsupportedRegex(self.pattern)
        return char

    def _escape(self) -> str:
        if self.pos >= len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        char = self.pattern[self.pos]
        self.pos += 1
        if char in _ZERO_WIDTH_ESCAPES:
            return ""
        if char.isdigit():
            raise _UnsupportedRegex(self.pattern)
        return _ESCAPE_EXAMPLES.get(char, char)

    def _char_class(self) -> str:
        start = self.pos - 1
        end = self.pos
        if end < len(self.pattern) and self.pattern[end] == "^":
            end += 1
        if end < len(self.pattern) and self.pattern[end] == "]":
            end += 1
        while end < len(self.pattern) and self.pattern[end] != "]":
            end += 2 if self.pattern[end] == "\\" else 1
        if end >= len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        self.pos = end + 1
        try:
            char_class = re.compile(self.pattern[start : end + 1])
        except re.error as err:
            raise _UnsupportedRegex(self.pattern) from err
        for candidate in _CLASS_CANDIDATES:
            if char_class.fullmatch(candidate):
                return candidate
        raise _UnsupportedRegex(self.pattern)

    def _group(self) -> str:
        if self.pattern.startswith("?:", self.pos):
            self.pos += 2
        elif self.pattern.startswith("?P<", self.pos) or self.pattern.startswith("?<", self.pos):
            close = self.pattern.find(">", self.pos)
            if close < 0 or self.pattern[close - 1] in "=!":
                raise _UnsupportedRegex(self.pattern)
            self.pos = close + 1
        elif self._peek() == "?":
            raise _UnsupportedRegex(self.pattern)
        inner = self._alternation()
        if self._peek() != ")":
            raise _UnsupportedRegex(self.pattern)
        self.pos += 1
        return inner


def example_for(match: StringMatch) -> str | None:
    """A value that satisfies ``match``, or None when none can be produced."""
    if match.kind in ("exact", "prefix"):
        return match.value
    try:
        candidate = _ShortestExample(match.value).build()
    except (_UnsupportedRegex, IndexError):
        return None
    return candidate if match.matches(candidate) else None


def synthesize_request(rule: MatchRule) -> SyntheticRequest | None:
    """A request that carries exactly what ``rule`` asks for, or None if impossible.

    For Flagger's cookie rule ``cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}``
    this yields the cookie header ``canary=always``.
    """
    if rule.unsupported:
        return None
    headers: dict[str, str] = {}
    for name, header_match in rule.headers:
        value = example_for(header_match)
        if value is None:
            return None
        headers[name] = value
    query: dict[str, str] = {}
    for name, query_match in rule.query_params:
        value = example_for(query_match)
        if value is None:
            return None
        query[name] = value
    path = PLAIN_REQUEST.path
    if rule.uri is not None:
        uri = example_for(rule.uri)
        if uri is None:
            return None
        path = uri
    method = PLAIN_REQUEST.method
    if rule.method is not None:
        wanted = example_for(rule.method)
        if wanted is None:
            return None
        method = wanted
    request = SyntheticRequest(headers=headers, query_params=query, path=path, method=method)
    # Conflicting conditions (e.g. a header both required and excluded) cannot be satisfied.
    return request if rule_matches(rule, request) else None


def synthesizable_requests(vs: VirtualService) -> tuple[SyntheticRequest, ...]:
    """One request per match rule of ``vs`` that a synthetic client can satisfy."""
    found: list[SyntheticRequest] = []
    for route in vs.routes:
        for rule in route.matches:
            request = synthesize_request(rule)
            if request is not None:
                found.append(request)
    return tuple(found)


# ---------------------------------------------------------------------------
# Weighted destination choice


def choose_destination(destinations: Sequence[Destination], rng: random.Random) -> Destination | None:
    """Picks a destination in proportion to its weight; None when all weights are 0."""
    total = sum(d.weight for d in destinations)
    if total <= 0:
        return None
    point = rng.randrange(total)
    for destination in destinations:
        if point < destination.weight:
            return destination
        point -= destination.weight
    raise AssertionError("unreachable: point is below the total weight")


# ---------------------------------------------------------------------------
# Host -> Service -> Deployment


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = DEFAULT_ERROR_RATE
    latency_ms: float = DEFAULT_LATENCY_MS


@dataclass(frozen=True)
class Workload:
    """A Deployment as far as the data plane is concerned."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ready_replicas: int
    behaviour: Behaviour

    @property
    def ready(self) -> bool:
        return self.ready_replicas > 0


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    namespace: str
    selector: Mapping[str, str]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class ResolvedHost:
    service: ServiceInfo
    workloads: tuple[Workload, ...]
    """Every Deployment in the Service's namespace whose pod template the selector selects."""

    @property
    def ready_workloads(self) -> tuple[Workload, ...]:
        return tuple(w for w in self.workloads if w.ready)


@dataclass(frozen=True)
class ClusterIndex:
    services: Mapping[tuple[str, str], ServiceInfo]
    """Keyed by (namespace, name)."""
    workloads: Mapping[str, tuple[Workload, ...]]
    """Keyed by namespace."""
    warnings: tuple[str, ...] = ()


def parse_behaviour(annotations: Mapping[str, Any]) -> tuple[Behaviour, tuple[str, ...]]:
    """Reads the simulator annotations; invalid values fall back to the defaults with a warning."""
    problems: list[str] = []
    error_rate = DEFAULT_ERROR_RATE
    raw_rate = annotations.get(ERROR_RATE_ANNOTATION)
    if raw_rate is not None:
        parsed = _parse_float(raw_rate)
        if parsed is None or not 0.0 <= parsed <= 1.0:
            problems.append(f"{ERROR_RATE_ANNOTATION}={raw_rate!r} is not a number in 0..1; using {DEFAULT_ERROR_RATE}")
        else:
            error_rate = parsed
    latency = DEFAULT_LATENCY_MS
    raw_latency = annotations.get(LATENCY_ANNOTATION)
    if raw_latency is not None:
        parsed = _parse_float(raw_latency)
        if parsed is None or parsed < 0.0:
            problems.append(
                f"{LATENCY_ANNOTATION}={raw_latency!r} is not a non-negative number; using {DEFAULT_LATENCY_MS}"
            )
        else:
            latency = parsed
    return Behaviour(error_rate=error_rate, latency_ms=latency), tuple(problems)


def _parse_float(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _string_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def parse_service(obj: Mapping[str, Any]) -> ServiceInfo:
    metadata = _mapping(obj.get("metadata"))
    return ServiceInfo(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        selector=_string_map(_mapping(obj.get("spec")).get("selector")),
    )


def parse_deployment(obj: Mapping[str, Any]) -> tuple[Workload, tuple[str, ...]]:
    metadata = _mapping(obj.get("metadata"))
    template_metadata = _mapping(_mapping(_mapping(obj.get("spec")).get("template")).get("metadata"))
    ready = _mapping(obj.get("status")).get("readyReplicas")
    behaviour, problems = parse_behaviour(_mapping(template_metadata.get("annotations")))
    workload = Workload(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        labels=_string_map(template_metadata.get("labels")),
        ready_replicas=ready if isinstance(ready, int) and not isinstance(ready, bool) else 0,
        behaviour=behaviour,
    )
    located = tuple(f"deployment {workload.namespace}/{workload.name}: {p}" for p in problems)
    return workload, located


def build_index(services: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]]) -> ClusterIndex:
    service_map: dict[tuple[str, str], ServiceInfo] = {}
    for obj in services:
        service = parse_service(obj)
        service_map[(service.namespace, service.name)] = service
    by_namespace: dict[str, list[Workload]] = {}
    warnings: list[str] = []
    for obj in deployments:
        workload, problems = parse_deployment(obj)
        by_namespace.setdefault(workload.namespace, []).append(workload)
        warnings.extend(problems)
    return ClusterIndex(
        services=service_map,
        workloads={ns: tuple(sorted(ws, key=lambda w: w.name)) for ns, ws in by_namespace.items()},
        warnings=tuple(warnings),
    )


def split_host(host: str, vs_namespace: str) -> tuple[str, str] | None:
    """(service name, namespace) for an in-cluster host, as Istio resolves short names.

    ``svc`` resolves in the VirtualService's namespace; ``svc.ns``,
    ``svc.ns.svc`` and ``svc.ns.svc.<cluster domain>`` name the namespace.
    Anything else (external hosts, wildcards) is not a cluster Service.
    """
    parts = host.strip().rstrip(".").lower().split(".")
    if not parts[0] or "*" in host:
        return None
    if len(parts) == 1:
        return parts[0], vs_namespace
    if len(parts) == 2 or parts[2] == "svc":
        return parts[0], parts[1]
    return None


def resolve_host(host: str, vs_namespace: str, index: ClusterIndex) -> ResolvedHost | None:
    key = split_host(host, vs_namespace)
    if key is None:
        return None
    name, namespace = key
    service = index.services.get((namespace, name))
    if service is None:
        return None
    if not service.selector:
        # A selector-less Service has hand-made endpoints, none of which is a Deployment here.
        return ResolvedHost(service=service, workloads=())
    selected = tuple(
        w for w in index.workloads.get(namespace, ()) if all(w.labels.get(k) == v for k, v in service.selector.items())
    )
    return ResolvedHost(service=service, workloads=selected)


# ---------------------------------------------------------------------------
# Simulation


@dataclass(frozen=True)
class RequestOutcome:
    """One request that reached a workload, with the labels Istio would report."""

    virtual_service: str
    virtual_service_namespace: str
    route: str
    workload: str
    workload_namespace: str
    service: str
    service_namespace: str
    response_code: int
    latency_ms: float

    @property
    def destination_service(self) -> str:
        return f"{self.service}.{self.service_namespace}.svc.{CLUSTER_DOMAIN}"

    def metric_labels(self) -> dict[str, str]:
        return {
            "reporter": "destination",
            "source_workload": SOURCE_WORKLOAD,
            "source_workload_namespace": self.virtual_service_namespace,
            "destination_workload": self.workload,
            "destination_workload_namespace": self.workload_namespace,
            "destination_service": self.destination_service,
            "destination_service_name": self.service,
            "destination_service_namespace": self.service_namespace,
            "response_code": str(self.response_code),
            "request_protocol": "http",
        }


@dataclass(frozen=True)
class TickResult:
    outcomes: tuple[RequestOutcome, ...] = ()
    unroutable: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Requests no workload saw, keyed by (namespace, virtual service)."""
    warnings: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return len(self.outcomes) + sum(self.unroutable.values())

    def counts(self) -> Counter[tuple[str, int]]:
        """Requests per (destination workload, response code)."""
        return Counter((o.workload, o.response_code) for o in self.outcomes)


def draw_latency_ms(mean_ms: float, rng: random.Random) -> float:
    """A latency around ``mean_ms``: gamma-distributed (right-skewed like real latencies), at least 1 ms."""
    if mean_ms <= 1.0:
        return 1.0
    shape = 9.0  # coefficient of variation 1/3
    return max(1.0, rng.gammavariate(shape, mean_ms / shape))


def _choose_workload(ready: Sequence[Workload], rng: random.Random) -> Workload:
    # Endpoints are pods, so a Service selecting several Deployments spreads by ready replicas.
    if len(ready) == 1:
        return ready[0]
    return rng.choices(list(ready), weights=[w.ready_replicas for w in ready])[0]


def simulate_virtual_service(
    vs: VirtualService,
    count: int,
    index: ClusterIndex,
    rng: random.Random,
    match_share: float,
) -> TickResult:
    """Sends ``count`` synthetic requests through ``vs``."""
    matching_requests = synthesizable_requests(vs)
    outcomes: list[RequestOutcome] = []
    unroutable = 0
    for _ in range(count):
        request = PLAIN_REQUEST
        if matching_requests and rng.random() < match_share:
            request = rng.choice(matching_requests)
        route = select_route(vs, request)
        destination = choose_destination(route.destinations, rng) if route else None
        resolved = resolve_host(destination.host, vs.namespace, index) if destination else None
        ready = resolved.ready_workloads if resolved else ()
        if route is None or resolved is None or not ready:
            unroutable += 1
            continue
        workload = _choose_workload(ready, rng)
        failed = rng.random() < workload.behaviour.error_rate
        outcomes.append(
            RequestOutcome(
                virtual_service=vs.name,
                virtual_service_namespace=vs.namespace,
                route=route.name,
                workload=workload.name,
                workload_namespace=workload.namespace,
                service=resolved.service.name,
                service_namespace=resolved.service.namespace,
                response_code=500 if failed else 200,
                latency_ms=draw_latency_ms(workload.behaviour.latency_ms, rng),
            )
        )
    return TickResult(
        outcomes=tuple(outcomes),
        unroutable={(vs.namespace, vs.name): unroutable} if unroutable else {},
    )


def simulate_tick(
    virtual_services: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    requests_per_vs: int,
    rng: random.Random,
    match_share: float,
    *,
    budget: int | None = None,
) -> TickResult:
    """One tick on plain API dicts: ``requests_per_vs`` requests through every VirtualService.

    ``budget`` caps the total over all VirtualServices (they are served in
    namespace/name order so the cap is deterministic).
    """
    index = build_index(services, deployments)
    parsed = sorted((parse_virtual_service(v) for v in virtual_services), key=lambda v: (v.namespace, v.name))
    outcomes: list[RequestOutcome] = []
    unroutable: dict[tuple[str, str], int] = {}
    remaining = budget
    for vs in parsed:
        count = requests_per_vs if remaining is None else min(requests_per_vs, remaining)
        if count <= 0:
            break
        result = simulate_virtual_service(vs, count, index, rng, match_share)
        outcomes.extend(result.outcomes)
        for key, value in result.unroutable.items():
            unroutable[key] = unroutable.get(key, 0) + value
        if remaining is not None:
            remaining -= count
    return TickResult(outcomes=tuple(outcomes), unroutable=unroutable, warnings=index.warnings)


# ---------------------------------------------------------------------------
# Metrics


class Metrics:
    """The destination-side Istio metrics, in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = PromCounter(
            "istio_requests", "Requests seen by the destination sidecar.", REQUEST_LABELS, registry=self.registry
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration seen by the destination sidecar.",
            REQUEST_LABELS,
            buckets=ISTIO_DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.unroutable = PromCounter(
            "simulator_unroutable_requests",
            "Synthetic requests that reached no ready workload (no route, no Service, or no ready replicas).",
            ("namespace", "virtual_service"),
            registry=self.registry,
        )

    def record(self, result: TickResult) -> None:
        grouped: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for outcome in result.outcomes:
            grouped.setdefault(tuple(outcome.metric_labels().items()), []).append(outcome.latency_ms)
        for labels, latencies in grouped.items():
            label_map = dict(labels)
            self.requests.labels(**label_map).inc(len(latencies))
            histogram = self.duration.labels(**label_map)
            for latency in latencies:
                histogram.observe(latency)
        for (namespace, name), count in result.unroutable.items():
            self.unroutable.labels(namespace=namespace, virtual_service=name).inc(count)


# ---------------------------------------------------------------------------
# I/O: the Kubernetes API and the run loop

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1beta1"
API_TIMEOUT_SECONDS = 10.0


def _items(response: object, api_client: Any) -> list[Mapping[str, Any]]:
    """Plain dict items from a list call, however the client returned the body."""
    raw = getattr(response, "data", None)
    if isinstance(raw, bytes | str):
        body: object = json.loads(raw)
    elif isinstance(response, Mapping):
        body = response
    else:
        body = api_client.sanitize_for_serialization(response)
    return [item for item in _sequence(_mapping(body).get("items")) if isinstance(item, Mapping)]


class ClusterReader:
    """Lists the three kinds the data plane needs, one list call per kind and namespace."""

    def __init__(self, kubeconfig: str, namespaces: Sequence[str]) -> None:
        from kubernetes import client, config

        self._client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(self._client)
        self._apps = client.AppsV1Api(self._client)
        self._custom = client.CustomObjectsApi(self._client)
        self._namespaces = list(namespaces)

    def _list(self, cluster_wide: Any, namespaced: Any, *args: str) -> list[Mapping[str, Any]]:
        options: dict[str, Any] = {"_preload_content": False, "_request_timeout": API_TIMEOUT_SECONDS}
        if not self._namespaces:
            return _items(cluster_wide(*args, **options), self._client)
        items: list[Mapping[str, Any]] = []
        # Namespaced list calls take the namespace after the group and version, if any.
        for namespace in self._namespaces:
            items.extend(_items(namespaced(*args[:2], namespace, *args[2:], **options), self._client))
        return items

    def virtual_services(self) -> list[Mapping[str, Any]]:
        return self._list(
            self._custom.list_cluster_custom_object,
            self._custom.list_namespaced_custom_object,
            ISTIO_GROUP,
            ISTIO_VERSION,
            "virtualservices",
        )

    def services(self) -> list[Mapping[str, Any]]:
        return self._list(self._core.list_service_for_all_namespaces, self._core.list_namespaced_service)

    def deployments(self) -> list[Mapping[str, Any]]:
        return self._list(self._apps.list_deployment_for_all_namespaces, self._apps.list_namespaced_deployment)

    def close(self) -> None:
        self._client.close()


def describe_error(err: BaseException) -> str:
    """One line, because the same failure repeats every refresh until it is fixed."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    if isinstance(status, int) and status:
        return f"{type(err).__name__}: HTTP {status} {reason or ''}".rstrip()
    if isinstance(reason, BaseException):
        # urllib3 wraps the useful part (e.g. connection refused) in a MaxRetryError.
        return describe_error(reason)
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[-1] if text else ''}"
    return line if len(line) <= 200 else line[:197] + "..."


@dataclass
class RunOptions:
    rps: float = 20.0
    refresh: float = 1.0
    match_share: float = 0.3
    max_duration: float = 3600.0
    max_requests: int = 10_000_000
    seed: int | None = None


def run(reader: ClusterReader, metrics: Metrics, options: RunOptions, stop: threading.Event) -> int:
    """Fetch, simulate and record until stopped, out of time, or (for traffic) out of budget."""
    rng = random.Random(options.seed)
    started = last = time.monotonic()
    carry = 0.0
    sent = 0
    snapshot: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]] | None = None
    last_error: str | None = None
    logged_warnings: set[str] = set()
    while not stop.is_set():
        now = time.monotonic()
        if now - started >= options.max_duration:
            LOG.info("max duration of %.0fs reached; exiting", options.max_duration)
            break
        try:
            snapshot = (reader.virtual_services(), reader.services(), reader.deployments())
            if last_error is not None:
                LOG.info("API reachable again")
                last_error = None
        except Exception as err:
            message = describe_error(err)
            if message != last_error:
                LOG.warning("listing from the API failed (%s); retrying every %.1fs", message, options.refresh)
                last_error = message
        # Like Envoy when istiod is away, keep serving the last configuration that was read.
        # Before any configuration arrived there is no traffic to catch up on.
        carry = carry + options.rps * (now - last) if snapshot is not None else 0.0
        last = now
        requests_per_vs = int(carry)
        carry -= requests_per_vs
        if snapshot is not None and requests_per_vs > 0 and sent < options.max_requests:
            try:
                result = simulate_tick(
                    *snapshot, requests_per_vs, rng, options.match_share, budget=options.max_requests - sent
                )
            except Exception:  # one odd object must not end the simulation
                LOG.exception("simulation tick failed")
            else:
                metrics.record(result)
                sent += result.total
                for warning in result.warnings:
                    if warning not in logged_warnings:
                        logged_warnings.add(warning)
                        LOG.warning("%s", warning)
                if sent >= options.max_requests:
                    LOG.info("max requests (%d) sent; serving metrics until stopped", options.max_requests)
        stop.wait(max(0.0, options.refresh - (time.monotonic() - now)))
    return 0


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.removeprefix("[").removesuffix("]")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.simulator",
        description="Play the Istio data plane for the local cluster and export Istio metrics.",
    )
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the local cluster")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT for /metrics (port 0 picks a free one)")
    parser.add_argument("--allow-non-loopback", action="store_true", help="allow --listen on a non-loopback address")
    parser.add_argument("--namespace", action="append", default=[], help="only this namespace (repeatable)")
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second per VirtualService")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between API lists and ticks")
    parser.add_argument("--match-share", type=float, default=0.3, help="share of requests carrying match headers")
    parser.add_argument("--max-duration", type=float, default=3600.0, help="exit after this many seconds")
    parser.add_argument("--max-requests", type=int, default=10_000_000, help="stop sending after this many requests")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for reproducible runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as err:
        parser.error(f"--listen: {err}")
    if not is_loopback(host) and not args.allow_non_loopback:
        parser.error(f"--listen host {host!r} is not loopback; pass --allow-non-loopback to expose it")
    if args.rps < 0 or args.refresh <= 0 or not 0.0 <= args.match_share <= 1.0:
        parser.error("--rps must be >= 0, --refresh > 0 and --match-share within 0..1")
    if args.max_duration < 0 or args.max_requests < 0:
        parser.error("--max-duration and --max-requests must be >= 0")

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="simulator: %(levelname)s %(message)s")
    # The loop retries on every refresh and says so once; urllib3's per-attempt warnings would repeat it.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received signal %d; exiting", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    metrics = Metrics()
    try:
        reader = ClusterReader(args.kubeconfig, args.namespace)
    except Exception as err:
        print(f"simulator: cannot load kubeconfig {args.kubeconfig!r}: {describe_error(err)}", file=sys.stderr)
        return 2
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    bound_port = server.server_port
    shown_host = f"[{host}]" if ":" in host else host
    print(f"simulator listening on http://{shown_host}:{bound_port}/metrics", flush=True)
    options = RunOptions(
        rps=args.rps,
        refresh=args.refresh,
        match_share=args.match_share,
        max_duration=args.max_duration,
        max_requests=args.max_requests,
        seed=args.seed,
    )
    try:
        return run(reader, metrics, options, stop)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        reader.close()


if __name__ == "__main__":
    sys.exit(main())
