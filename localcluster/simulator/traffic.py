"""Synthetic requests pushed through route tables to the workloads behind them.

Two kinds of client send them: users reaching the application through its routing objects (every
VirtualService, HTTPRoute, main Ingress, HTTPProxy, TraefikService and TrafficSplit gets ``rps`` requests a
second), and clients calling a Service directly, as a load tester would, when the Service asks
for it with the annotation ``simulator.serin.dev/rps`` (how a Canary with no mesh gets its canary analysed).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localcluster.simulator import contour, gatewayapi, istio, linkerd, nginx, traefik
from localcluster.simulator.cluster import CLUSTER_DOMAIN, ClusterIndex, Workload, build_index, resolve_host
from localcluster.simulator.examples import synthesizable_requests
from localcluster.simulator.routes import (
    PLAIN_REQUEST,
    Destination,
    HttpRoute,
    RouteTable,
    SyntheticRequest,
    as_mapping,
    choose_destination,
    select_route,
)

SOURCE_WORKLOAD = "simulator"
# A Service with this annotation is called directly by that many clients' requests a second.
DIRECT_RPS_ANNOTATION = "simulator.serin.dev/rps"
SERVICE_KIND = "Service"

# Routing object kind -> how its data plane reads it.
PARSERS: Mapping[str, Callable[[Mapping[str, Any]], RouteTable]] = {
    istio.KIND: istio.parse_virtual_service,
    gatewayapi.KIND: gatewayapi.parse_http_route,
    contour.KIND: contour.parse_http_proxy,
    traefik.KIND: traefik.parse_traefik_service,
    linkerd.KIND: linkerd.parse_traffic_split,
}


def route_tables(objects: Iterable[Mapping[str, Any]]) -> list[RouteTable]:
    """Every routing object whose kind a data plane here serves, parsed, in namespace/name order.
    Ingresses are read together: a canary Ingress changes how its main Ingress routes."""
    objects = list(objects)
    tables = [PARSERS[kind](obj) for obj in objects if isinstance(kind := obj.get("kind"), str) and kind in PARSERS]
    tables += nginx.parse_ingresses(obj for obj in objects if obj.get("kind") == nginx.KIND)
    # An object that routes nothing itself (a root proxy that only includes others) gets no clients.
    return sorted(
        (table for table in tables if table.routes), key=lambda table: (table.namespace, table.name, table.kind)
    )


def direct_clients(services: Iterable[Mapping[str, Any]]) -> list[tuple[RouteTable, float]]:
    """A one-route table for each Service that asks for direct clients, with its request rate."""
    found: list[tuple[RouteTable, float]] = []
    for obj in services:
        metadata = as_mapping(obj.get("metadata"))
        raw = as_mapping(metadata.get("annotations")).get(DIRECT_RPS_ANNOTATION)
        try:
            rps = float(raw) if isinstance(raw, str) else 0.0
        except ValueError:
            rps = 0.0
        name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
        if rps > 0 and name:
            route = HttpRoute(name="direct", matches=(), destinations=(Destination(host=name, weight=100),))
            found.append((RouteTable(kind=SERVICE_KIND, name=name, namespace=namespace, routes=(route,)), rps))
    return sorted(found, key=lambda entry: (entry[0].namespace, entry[0].name))


# Clients per routing object, each with its own cookies: enough that a share of them holds a
# sticky cookie while the rest are routed by weight.
CLIENTS_PER_TABLE = 50


class Clients:
    """The synthetic users of each routing object and the cookies the data plane gave them,
    kept from one tick to the next (session affinity routes a user by a cookie it was given)."""

    def __init__(self, per_table: int = CLIENTS_PER_TABLE) -> None:
        self.per_table = per_table
        self.jars: dict[tuple[str, str, str], list[dict[str, str]]] = {}

    def pick(self, table: RouteTable, rng: random.Random) -> dict[str, str]:
        jars = self.jars.setdefault((table.namespace, table.kind, table.name), [{} for _ in range(self.per_table)])
        return jars[rng.randrange(len(jars))]


def with_cookies(request: SyntheticRequest, jar: Mapping[str, str]) -> SyntheticRequest:
    """The request carrying the client's cookies too (after any the request already has)."""
    if not jar:
        return request
    cookies = [request.headers["cookie"]] if "cookie" in request.headers else []
    cookies += [f"{name}={value}" for name, value in sorted(jar.items())]
    return dataclasses.replace(request, headers={**request.headers, "cookie": "; ".join(cookies)})


def keep_cookie(jar: dict[str, str], set_cookie: str) -> None:
    """What a browser does with a Set-Cookie: keep ``name=value``, or drop it when Max-Age <= 0."""
    if not set_cookie:
        return
    first, *attributes = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    max_age = next((a.partition("=")[2] for a in attributes if a.lower().startswith("max-age=")), None)
    try:
        expired = max_age is not None and int(max_age) <= 0
    except ValueError:
        expired = False
    if expired:
        jar.pop(name, None)
    elif name:
        jar[name] = value


@dataclass(frozen=True)
class RequestOutcome:
    """One request that reached a workload, with what each data plane would label it with."""

    table_kind: str
    table: str
    table_namespace: str
    route: str
    workload: str
    workload_namespace: str
    pod_name: str
    # The data plane's name for the destination, if any (NGINX's canary upstream).
    destination_tag: str
    service: str
    service_namespace: str
    response_code: int
    latency_ms: float
    # A copy the data plane mirrored: the workload served it, nobody saw the response.
    mirrored: bool = False

    @property
    def destination_service(self) -> str:
        return f"{self.service}.{self.service_namespace}.svc.{CLUSTER_DOMAIN}"

    def metric_labels(self) -> dict[str, str]:
        """Labels of Istio's destination-side metrics."""
        return {
            "reporter": "destination",
            "source_workload": SOURCE_WORKLOAD,
            "source_workload_namespace": self.table_namespace,
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
    unroutable: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """Requests no workload saw, keyed by the routing object's (namespace, kind, name)."""
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


def _serve(
    table: RouteTable, route: HttpRoute, destination: Destination, index: ClusterIndex, rng: random.Random
) -> RequestOutcome | None:
    """One request served by ``destination``'s workloads; None when none is ready."""
    resolved = resolve_host(destination.host, table.namespace, index)
    ready = resolved.ready_workloads if resolved else ()
    if resolved is None or not ready:
        return None
    workload = _choose_workload(ready, rng)
    return RequestOutcome(
        table_kind=table.kind,
        table=table.name,
        table_namespace=table.namespace,
        route=route.name,
        workload=workload.name,
        workload_namespace=workload.namespace,
        pod_name=workload.pod_name,
        destination_tag=destination.tag,
        service=resolved.service.name,
        service_namespace=resolved.service.namespace,
        response_code=500 if rng.random() < workload.behaviour.error_rate else 200,
        latency_ms=draw_latency_ms(workload.behaviour.latency_ms, rng),
    )


def simulate_table(
    table: RouteTable,
    count: int,
    index: ClusterIndex,
    rng: random.Random,
    match_share: float,
    clients: Clients | None = None,
) -> TickResult:
    """Sends ``count`` synthetic requests through ``table``, each from one of its ``clients``."""
    clients = clients or Clients()
    matching_requests = synthesizable_requests(table)
    outcomes: list[RequestOutcome] = []
    unroutable = 0
    for _ in range(count):
        jar = clients.pick(table, rng)
        request = PLAIN_REQUEST
        if matching_requests and rng.random() < match_share:
            request = rng.choice(matching_requests)
        request = with_cookies(request, jar)
        route = select_route(table, request)
        destination = choose_destination(route.destinations, rng) if route else None
        outcome = _serve(table, route, destination, index, rng) if route and destination else None
        if route is None or destination is None or outcome is None:
            unroutable += 1
            continue
        keep_cookie(jar, destination.set_cookie or route.set_cookie)
        if route.mirror is not None and rng.random() * 100 < route.mirror.weight:
            copy = _serve(table, route, route.mirror, index, rng)
            outcomes.extend([dataclasses.replace(copy, mirrored=True)] if copy else [])
        outcomes.append(outcome)
    return TickResult(
        outcomes=tuple(outcomes),
        unroutable={(table.namespace, table.kind, table.name): unroutable} if unroutable else {},
    )


def simulate_tick(
    routing: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    requests_per_table: int,
    rng: random.Random,
    match_share: float,
    *,
    budget: int | None = None,
    seconds: float = 0.0,
    clients: Clients | None = None,
) -> TickResult:
    """One tick on plain API dicts: ``requests_per_table`` requests through every routing object,
    and ``seconds`` worth of each Service's direct clients.

    ``budget`` caps the total (tables are served in namespace/name order so the cap is deterministic);
    ``clients`` keeps the users' cookies from one tick to the next.
    """
    clients = clients or Clients()
    services = list(services)
    index = build_index(services, deployments)
    work = [(table, requests_per_table) for table in route_tables(routing)]
    work += [(table, int(rps * seconds + rng.random())) for table, rps in direct_clients(services)]
    outcomes: list[RequestOutcome] = []
    unroutable: dict[tuple[str, str, str], int] = {}
    remaining = budget
    for table, wanted in work:
        count = wanted if remaining is None else min(wanted, remaining)
        if count <= 0:
            continue
        result = simulate_table(table, count, index, rng, match_share, clients)
        outcomes.extend(result.outcomes)
        for key, value in result.unroutable.items():
            unroutable[key] = unroutable.get(key, 0) + value
        if remaining is not None:
            remaining -= count
    return TickResult(outcomes=tuple(outcomes), unroutable=unroutable, warnings=index.warnings)
