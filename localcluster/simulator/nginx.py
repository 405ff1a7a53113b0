"""The NGINX ingress controller, as it routes an Ingress that has a canary Ingress beside it.

An Ingress annotated ``nginx.ingress.kubernetes.io/canary: "true"`` is not a route of its own: it
splits the traffic of the main Ingress with the same host and path. NGINX decides per request, in
this order: ``canary-by-header`` (with ``canary-by-header-value`` the header must equal it, with
``canary-by-header-pattern`` match it, with neither be ``always``), then ``canary-by-cookie`` (the
cookie of that name is ``always``), then ``canary-weight`` percent of the rest.

One route table per main Ingress; its backend is the first path's. Requests are reported with the
main Ingress's name and, when the canary served them, the canary upstream's name
(``<namespace>-<service>-<port>``) in the ``canary`` label, as the controller's metrics do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from localcluster.simulator.routes import (
    Destination,
    HttpRoute,
    MatchRule,
    RouteTable,
    StringMatch,
    as_mapping,
    as_sequence,
)

KIND = "Ingress"
GROUP = "networking.k8s.io"
VERSION = "v1"
PLURAL = "ingresses"
PREFIX = "nginx.ingress.kubernetes.io"


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(as_mapping(obj.get("metadata")).get("annotations"))


def is_canary(obj: Mapping[str, Any]) -> bool:
    return str(_annotations(obj).get(f"{PREFIX}/canary", "")).lower() == "true"


def _paths(obj: Mapping[str, Any]) -> list[tuple[str, str, str, int]]:
    """(host, path, service, port number) of each backend of an Ingress, in order."""
    found = []
    for rule in as_sequence(as_mapping(obj.get("spec")).get("rules")):
        rule = as_mapping(rule)
        host = str(rule.get("host", ""))
        for path in as_sequence(as_mapping(rule.get("http")).get("paths")):
            path = as_mapping(path)
            service = as_mapping(as_mapping(path.get("backend")).get("service"))
            port = as_mapping(service.get("port")).get("number")
            if isinstance(service.get("name"), str) and isinstance(port, int):
                found.append((host, str(path.get("path", "/")), service["name"], port))
    return found


def _weight(annotations: Mapping[str, Any]) -> int:
    try:
        return min(max(int(str(annotations.get(f"{PREFIX}/canary-weight", "0"))), 0), 100)
    except ValueError:
        return 0


def _canary_routes(canary: Mapping[str, Any], main: Destination, namespace: str) -> list[HttpRoute]:
    annotations = _annotations(canary)
    paths = _paths(canary)
    if not paths:
        return []
    _, _, service, port = paths[0]
    to_canary = Destination(host=service, weight=100, tag=f"{namespace}-{service}-{port}")
    routes: list[HttpRoute] = []
    header = annotations.get(f"{PREFIX}/canary-by-header")
    if isinstance(header, str) and header:
        value = annotations.get(f"{PREFIX}/canary-by-header-value")
        pattern = annotations.get(f"{PREFIX}/canary-by-header-pattern")
        if isinstance(value, str) and value:
            wanted = StringMatch("exact", value)
        elif isinstance(pattern, str) and pattern:
            wanted = StringMatch("regex", pattern)
        else:
            wanted = StringMatch("exact", "always")
        rule = MatchRule(headers=((header.lower(), wanted),))
        routes.append(HttpRoute(name="canary-by-header", matches=(rule,), destinations=(to_canary,)))
    cookie = annotations.get(f"{PREFIX}/canary-by-cookie")
    if isinstance(cookie, str) and cookie:
        cookie_rule = MatchRule(
            headers=(("cookie", StringMatch("regex", rf"(.*;\s*)?{re.escape(cookie)}=always(;.*)?")),)
        )
        routes.append(HttpRoute(name="canary-by-cookie", matches=(cookie_rule,), destinations=(to_canary,)))
    weight = _weight(annotations)
    split = (Destination(main.host, 100 - weight), Destination(to_canary.host, weight, to_canary.tag))
    routes.append(HttpRoute(name="canary-weight", matches=(), destinations=split))
    return routes


def parse_ingresses(objects: Iterable[Mapping[str, Any]]) -> list[RouteTable]:
    """A route table for each main Ingress, its canary Ingress (same namespace, host, path) folded in."""
    ingresses = list(objects)
    canaries: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for obj in ingresses:
        if is_canary(obj):
            namespace = str(as_mapping(obj.get("metadata")).get("namespace", ""))
            for host, path, _, _ in _paths(obj):
                canaries.setdefault((namespace, host, path), obj)
    tables = []
    for obj in ingresses:
        if is_canary(obj):
            continue
        metadata = as_mapping(obj.get("metadata"))
        namespace, paths = str(metadata.get("namespace", "")), _paths(obj)
        if not paths:
            continue
        host, path, service, _ = paths[0]
        main = Destination(host=service, weight=100)
        canary = canaries.get((namespace, host, path))
        routes = _canary_routes(canary, main, namespace) if canary is not None else []
        routes = routes or [HttpRoute(name="main", matches=(), destinations=(main,))]
        tables.append(
            RouteTable(kind=KIND, name=str(metadata.get("name", "")), namespace=namespace, routes=tuple(routes))
        )
    return tables
