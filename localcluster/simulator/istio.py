"""Istio's VirtualService, read as Envoy applies it: http routes in order, first match wins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcluster.simulator.routes import (
    _MATCH_KINDS,
    Destination,
    HttpRoute,
    MatchRule,
    RouteTable,
    StringMatch,
    as_mapping,
    as_sequence,
    set_cookie_header,
)

KIND = "VirtualService"
GROUP = "networking.istio.io"
VERSION = "v1beta1"
PLURAL = "virtualservices"

# Match conditions this simulator evaluates.  Anything else in a match entry
# (sourceLabels, gateways, port, authority, ...) cannot be judged for a
# synthetic request, so such an entry is treated as never matching rather than
# silently widened to "always".
_SUPPORTED_CONDITIONS = frozenset(
    {"headers", "queryParams", "uri", "method", "withoutHeaders", "ignoreUriCase", "name"}
)


def _parse_string_match(value: object) -> StringMatch | None:
    spec = as_mapping(value)
    for kind in _MATCH_KINDS:
        raw = spec.get(kind)
        if isinstance(raw, str):
            return StringMatch(kind, raw)
    return None


def _parse_named_matches(value: object, *, lower_names: bool) -> tuple[tuple[tuple[str, StringMatch], ...], bool]:
    """Returns the parsed pairs and whether every entry was understood."""
    pairs: list[tuple[str, StringMatch]] = []
    complete = True
    for name, spec in as_mapping(value).items():
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
    entries = [as_mapping(e) for e in as_sequence(value)]
    hosts = [as_mapping(e.get("destination")).get("host") for e in entries]
    destinations: list[Destination] = []
    for entry, host in zip(entries, hosts, strict=True):
        if not isinstance(host, str) or not host:
            continue
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int):
            # Istio: a lone destination without a weight takes all the traffic.
            weight = 100 if len(entries) == 1 else 0
        cookie = set_cookie_header(as_mapping(as_mapping(entry.get("headers")).get("response")).get("add"))
        destinations.append(Destination(host=host, weight=max(weight, 0), set_cookie=cookie))
    return tuple(destinations)


def _mirror(route: Mapping[str, Any]) -> Destination | None:
    """The route's ``mirror`` destination, weighted by ``mirrorPercentage`` (all requests without)."""
    host = as_mapping(route.get("mirror")).get("host")
    if not isinstance(host, str) or not host:
        return None
    percent = as_mapping(route.get("mirrorPercentage")).get("value", 100)
    return Destination(host=host, weight=round(percent) if isinstance(percent, int | float) else 100)


def parse_virtual_service(obj: Mapping[str, Any]) -> RouteTable:
    """Turns a VirtualService as returned by the API (a plain dict) into typed routes.

    Malformed parts are dropped rather than raised on: the simulator must keep
    serving whatever else the cluster contains.
    """
    metadata = as_mapping(obj.get("metadata"))
    spec = as_mapping(obj.get("spec"))
    routes: list[HttpRoute] = []
    for index, raw_route in enumerate(as_sequence(spec.get("http"))):
        route = as_mapping(raw_route)
        name = route.get("name")
        matches = tuple(parse_match_rule(as_mapping(m)) for m in as_sequence(route.get("match")))
        routes.append(
            HttpRoute(
                name=name if isinstance(name, str) else f"http[{index}]",
                matches=matches,
                destinations=_parse_destinations(route.get("route")),
                set_cookie=set_cookie_header(as_mapping(as_mapping(route.get("headers")).get("response")).get("add")),
                mirror=_mirror(route),
            )
        )
    # TCP routes carry connections; every connection here is to the service's port, so a port
    # match always holds.
    for index, raw_route in enumerate(as_sequence(spec.get("tcp"))):
        route = as_mapping(raw_route)
        routes.append(HttpRoute(name=f"tcp[{index}]", matches=(), destinations=_parse_destinations(route.get("route"))))
    return RouteTable(
        kind=KIND,
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        routes=tuple(routes),
    )
