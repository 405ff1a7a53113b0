"""Contour's HTTPProxy, read as Contour programs Envoy: each route's conditions ANDed, the routes
tried in order, then a service by weight.

A service without a weight gets none of the traffic when another has one, and all services share
equally when none has. Requests are reported under Envoy's cluster name for the service,
``<namespace>_<service>_<port>``, as Contour names its clusters in Envoy's stats. Every HTTPProxy
is served (no root proxy including it is needed here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcluster.simulator.routes import (
    Destination,
    HttpRoute,
    MatchKind,
    MatchRule,
    RouteTable,
    StringMatch,
    as_mapping,
    as_sequence,
)

KIND = "HTTPProxy"
GROUP = "projectcontour.io"
VERSION = "v1"
PLURAL = "httpproxies"
_KINDS: tuple[tuple[str, MatchKind], ...] = (("exact", "exact"), ("prefix", "prefix"), ("regex", "regex"))


def _string_match(condition: Mapping[str, Any]) -> StringMatch | None:
    for key, kind in _KINDS:
        if isinstance(condition.get(key), str):
            return StringMatch(kind, condition[key])
    return None


def parse_conditions(conditions: object) -> MatchRule:
    headers: list[tuple[str, StringMatch]] = []
    params: list[tuple[str, StringMatch]] = []
    uri: StringMatch | None = None
    unsupported: list[str] = []
    for raw in as_sequence(conditions):
        condition = as_mapping(raw)
        if isinstance(condition.get("prefix"), str):
            uri = StringMatch("prefix", condition["prefix"])
        for key, found in (("header", headers), ("queryParameter", params)):
            if key in condition:
                named = as_mapping(condition.get(key))
                match = _string_match(named)
                if isinstance(named.get("name"), str) and match is not None:
                    found.append((named["name"].lower() if key == "header" else named["name"], match))
                else:
                    unsupported.append(key)
    return MatchRule(headers=tuple(headers), query_params=tuple(params), uri=uri, unsupported=tuple(unsupported))


def parse_http_proxy(obj: Mapping[str, Any]) -> RouteTable:
    metadata = as_mapping(obj.get("metadata"))
    namespace = str(metadata.get("namespace", ""))
    routes = []
    for index, raw in enumerate(as_sequence(as_mapping(obj.get("spec")).get("routes"))):
        route = as_mapping(raw)
        services = [as_mapping(entry) for entry in as_sequence(route.get("services"))]
        weighted = any(isinstance(entry.get("weight"), int) for entry in services)
        destinations = []
        for entry in services:
            name, port = entry.get("name"), entry.get("port")
            if not isinstance(name, str) or not isinstance(port, int):
                continue
            weight = entry.get("weight", 0 if weighted else 1)
            weight = weight if isinstance(weight, int) and not isinstance(weight, bool) else 0
            destinations.append(Destination(host=name, weight=weight, tag=f"{namespace}_{name}_{port}"))
        routes.append(
            HttpRoute(
                name=f"routes[{index}]",
                matches=(parse_conditions(route.get("conditions")),),
                destinations=tuple(destinations),
            )
        )
    return RouteTable(kind=KIND, name=str(metadata.get("name", "")), namespace=namespace, routes=tuple(routes))
