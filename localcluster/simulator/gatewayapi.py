"""Gateway API's HTTPRoute, read as a conformant gateway applies it.

Unlike Istio, rules are not tried in order: among the matches a request satisfies, the most
specific wins (an Exact path, then the longest PathPrefix, then a method, then the most header
matches, then the most query parameter matches; rule order breaks the remaining ties). The table
built here lists one route per (rule, match) pair in that order, so the first that matches wins.

The gateway accepts every HTTPRoute whatever its ``parentRefs`` and ``hostnames`` (there is one
simulated gateway); filters are not applied. A PathPrefix is compared as a plain prefix, not
segment by segment. A backendRef without a weight has weight 1, as the API defines.
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
    set_cookie_header,
)

KIND = "HTTPRoute"
GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"

# Gateway API match types -> the simulator's string matches.
_PATH_TYPES: Mapping[str, MatchKind] = {"Exact": "exact", "PathPrefix": "prefix", "RegularExpression": "regex"}
_VALUE_TYPES: Mapping[str, MatchKind] = {"Exact": "exact", "RegularExpression": "regex"}
DEFAULT_PATH = StringMatch("prefix", "/")


def _named(value: object, *, lower_names: bool) -> tuple[tuple[tuple[str, StringMatch], ...], bool]:
    """(name, match) pairs of a headers or queryParams list, and whether every entry was understood."""
    pairs: list[tuple[str, StringMatch]] = []
    complete = True
    for raw in as_sequence(value):
        entry = as_mapping(raw)
        name, match_value = entry.get("name"), entry.get("value")
        kind = _VALUE_TYPES.get(str(entry.get("type", "Exact")))
        if not isinstance(name, str) or not isinstance(match_value, str) or kind is None:
            complete = False
            continue
        pairs.append((name.lower() if lower_names else name, StringMatch(kind, match_value)))
    return tuple(pairs), complete


def parse_match(entry: Mapping[str, Any]) -> MatchRule:
    unsupported: list[str] = []
    path = DEFAULT_PATH
    if "path" in entry:
        raw_path = as_mapping(entry.get("path"))
        kind = _PATH_TYPES.get(str(raw_path.get("type", "PathPrefix")))
        value = raw_path.get("value", "/")
        if kind is None or not isinstance(value, str):
            unsupported.append("path")
        else:
            path = StringMatch(kind, value)
    headers, headers_ok = _named(entry.get("headers"), lower_names=True)
    query, query_ok = _named(entry.get("queryParams"), lower_names=False)
    method = entry.get("method")
    if not headers_ok:
        unsupported.append("headers")
    if not query_ok:
        unsupported.append("queryParams")
    if method is not None and not isinstance(method, str):
        unsupported.append("method")
    return MatchRule(
        headers=headers,
        query_params=query,
        uri=path,
        method=StringMatch("exact", method) if isinstance(method, str) else None,
        unsupported=tuple(unsupported),
    )


def _precedence(rule: MatchRule) -> tuple[int, int, int, int, int]:
    """Sort key, most specific first (Gateway API's HTTPRouteRule precedence)."""
    path = rule.uri or DEFAULT_PATH
    return (
        0 if path.kind == "exact" else 1,
        -len(path.value) if path.kind == "prefix" else 0,
        0 if rule.method is not None else 1,
        -len(rule.headers),
        -len(rule.query_params),
    )


def _backends(value: object, namespace: str) -> tuple[Destination, ...]:
    destinations: list[Destination] = []
    for raw in as_sequence(value):
        ref = as_mapping(raw)
        name, kind = ref.get("name"), ref.get("kind", "Service")
        if not isinstance(name, str) or not name or kind != "Service" or ref.get("group", "") not in ("", "core"):
            continue
        weight = ref.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int):
            weight = 1
        ref_namespace = ref.get("namespace")
        host = f"{name}.{ref_namespace}" if isinstance(ref_namespace, str) and ref_namespace else name
        destinations.append(Destination(host=host, weight=max(weight, 0), set_cookie=_added_cookie(ref.get("filters"))))
    return tuple(destinations)


def _request_mirror(filters: object, namespace: str) -> Destination | None:
    """The backend a RequestMirror filter copies every request to, if any."""
    for raw in as_sequence(filters):
        ref = as_mapping(as_mapping(as_mapping(raw).get("requestMirror")).get("backendRef"))
        if isinstance(ref.get("name"), str) and ref["name"]:
            ref_namespace = ref.get("namespace")
            host = f"{ref['name']}.{ref_namespace}" if isinstance(ref_namespace, str) and ref_namespace else ref["name"]
            return Destination(host=host, weight=100)
    return None


def _added_cookie(filters: object) -> str:
    """The Set-Cookie a ResponseHeaderModifier filter adds (or sets), if any."""
    for raw in as_sequence(filters):
        modifier = as_mapping(as_mapping(raw).get("responseHeaderModifier"))
        cookie = set_cookie_header(modifier.get("add")) or set_cookie_header(modifier.get("set"))
        if cookie:
            return cookie
    return ""


def parse_http_route(obj: Mapping[str, Any]) -> RouteTable:
    """An HTTPRoute (a plain dict from the API) as a route table; malformed parts are dropped."""
    metadata = as_mapping(obj.get("metadata"))
    namespace = str(metadata.get("namespace", ""))
    candidates: list[tuple[tuple[int, int, int, int, int], int, int, HttpRoute]] = []
    for rule_index, raw_rule in enumerate(as_sequence(as_mapping(obj.get("spec")).get("rules"))):
        rule = as_mapping(raw_rule)
        destinations = _backends(rule.get("backendRefs"), namespace)
        matches = [parse_match(as_mapping(m)) for m in as_sequence(rule.get("matches"))] or [
            MatchRule(uri=DEFAULT_PATH)
        ]
        for match_index, match in enumerate(matches):
            name = str(rule["name"]) if isinstance(rule.get("name"), str) else f"rules[{rule_index}]"
            route = HttpRoute(
                name=name,
                matches=(match,),
                destinations=destinations,
                set_cookie=_added_cookie(rule.get("filters")),
                mirror=_request_mirror(rule.get("filters"), namespace),
            )
            candidates.append((_precedence(match), rule_index, match_index, route))
    candidates.sort(key=lambda candidate: candidate[:3])
    return RouteTable(
        kind=KIND,
        name=str(metadata.get("name", "")),
        namespace=namespace,
        routes=tuple(candidate[3] for candidate in candidates),
    )
