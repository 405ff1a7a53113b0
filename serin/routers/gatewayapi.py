"""The Gateway API router: one HTTPRoute that splits a Canary's traffic between its Services.

For a Canary whose service is named ``podinfo`` it owns the HTTPRoute ``podinfo`` in the Canary's
namespace (providers ``gatewayapi:v1`` and ``gatewayapi:v1beta1``, the API version it is written
in). The route attaches to the gateways of ``spec.service.gatewayRefs``, answers for
``spec.service.hosts``, and has one rule whose weighted ``backendRefs`` are ``podinfo-primary``
and ``podinfo-canary`` (both always present, a weight of 0 included, as Flagger writes them).

``spec.service.match`` becomes the rule's matches (every request under ``/`` without one);
``headers`` become header modifier filters, ``rewrite`` a URLRewrite filter and ``timeout`` the
rule's request timeout (v1 only). For A/B testing a first rule carries the split for requests
matching ``spec.analysis.match`` combined with the service's matches, and a second sends everyone
else to the primary. Cookies are matched through the ``Cookie`` header, with a regex.

The desired object is built by the pure functions at the top; ``GatewayAPIRouter`` writes it
whole with server-side apply. An HTTPRoute the user made is taken over with its spec recorded and
given back by ``finalize`` (see ``serin.routers.common``). Admission has refused whatever a route
cannot express (``serin.model.PROVIDERS``), so nothing of the Canary is silently dropped here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from serin.model import Canary, Strategy
from serin.ports import Routes
from serin.routers.common import (
    Obj,
    OneObjectRouter,
    as_dict,
    as_list,
    cookie_match,
    merge_match,
    plain,
    validate_weights,
)
from serin.workloads import generated_metadata

GROUP = "gateway.networking.k8s.io"
KIND = "HTTPRoute"
# Provider name -> the API version its HTTPRoutes are written in.
API_VERSIONS = {"gatewayapi:v1": f"{GROUP}/v1", "gatewayapi:v1beta1": f"{GROUP}/v1beta1"}
EVERY_PATH: Obj = {"path": {"type": "PathPrefix", "value": "/"}}

# Istio StringMatch kinds -> Gateway API match types (admission refused the others).
_PATH_TYPES = {"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}
_VALUE_TYPES = {"exact": "Exact", "regex": "RegularExpression"}


# ---------------------------------------------------------------------------
# Pure functions: names, desired objects, reading the weights back


def whole_value(regex: str) -> str:
    """A regex that must match the whole value, whatever the gateway's default.

    A Canary's ``regex`` is Istio's StringMatch, which Envoy matches against the whole value;
    Gateway API leaves anchoring to each implementation, and some (Traefik) match a substring,
    so ``(alice|bob)`` would also send ``malice`` to the canary."""
    return f"^(?:{regex})$"


def _string_match(matcher: Mapping[str, Any], types: Mapping[str, str]) -> tuple[str, str]:
    """(Gateway API type, value) of an Istio StringMatch."""
    for kind, gateway_type in types.items():
        value = matcher.get(kind)
        if isinstance(value, str):
            return gateway_type, whole_value(value) if gateway_type == "RegularExpression" else value
    raise ValueError(f"no match type of {sorted(types)} in {dict(matcher)}")


def _named_matches(named: Mapping[str, Any]) -> list[Obj]:
    matches = []
    for name, matcher in sorted(named.items()):
        match_type, value = _string_match(matcher, _VALUE_TYPES)
        matches.append({"name": name, "type": match_type, "value": value})
    return matches


def route_match(condition: Mapping[str, Any]) -> Obj:
    """One HTTPRouteMatch from an Istio-shaped match condition (uri, method, headers, queryParams)."""
    match: Obj = {}
    uri = condition.get("uri")
    if isinstance(uri, Mapping):
        path_type, value = _string_match(uri, _PATH_TYPES)
        match["path"] = {"type": path_type, "value": value}
    else:
        match.update(plain(EVERY_PATH))
    method = condition.get("method")
    if isinstance(method, Mapping):
        match["method"] = _string_match(method, {"exact": "Exact"})[1]
    for source, target in (("headers", "headers"), ("queryParams", "queryParams")):
        named = condition.get(source)
        if isinstance(named, Mapping) and named:
            match[target] = _named_matches(named)
    return match


def route_matches(conditions: Sequence[Mapping[str, Any]]) -> list[Obj]:
    return [route_match(condition) for condition in conditions] or [plain(EVERY_PATH)]


def _header_modifier(modifier: Mapping[str, Any]) -> Obj:
    """Istio's ``{set: {k: v}, add: {k: v}, remove: [k]}`` as an HTTPHeaderFilter."""
    header_filter: Obj = {}
    for operation in ("set", "add"):
        values = modifier.get(operation)
        if isinstance(values, Mapping) and values:
            header_filter[operation] = [{"name": str(k), "value": str(v)} for k, v in sorted(values.items())]
    removed = modifier.get("remove")
    if isinstance(removed, Sequence) and not isinstance(removed, str) and removed:
        header_filter["remove"] = [str(name) for name in removed]
    return header_filter


def route_filters(canary: Canary) -> list[Obj]:
    """``service.headers``, ``service.rewrite`` and ``service.mirror`` as filters, in Flagger's order."""
    service = canary.service
    filters: list[Obj] = []
    headers = service.headers or {}
    for direction, filter_type, key in (
        ("request", "RequestHeaderModifier", "requestHeaderModifier"),
        ("response", "ResponseHeaderModifier", "responseHeaderModifier"),
    ):
        modifier = headers.get(direction)
        if isinstance(modifier, Mapping) and (header_filter := _header_modifier(modifier)):
            filters.append({"type": filter_type, key: header_filter})
    rewrite = service.rewrite or {}
    url_rewrite: Obj = {}
    if isinstance(rewrite.get("authority"), str):
        url_rewrite["hostname"] = rewrite["authority"]
    if isinstance(rewrite.get("uri"), str):
        if rewrite.get("type") == "ReplacePrefixMatch":
            url_rewrite["path"] = {"type": "ReplacePrefixMatch", "replacePrefixMatch": rewrite["uri"]}
        else:
            url_rewrite["path"] = {"type": "ReplaceFullPath", "replaceFullPath": rewrite["uri"]}
    if url_rewrite:
        filters.append({"type": "URLRewrite", "urlRewrite": url_rewrite})
    filters += [{"type": "RequestMirror", "requestMirror": plain(mirror)} for mirror in service.mirror]
    return filters


def _backend(canary: Canary, name: str, weight: int) -> Obj:
    return {"group": "", "kind": "Service", "name": name, "port": canary.service.port, "weight": weight}


def _rule(canary: Canary, matches: list[Obj], backends: list[Obj]) -> Obj:
    rule: Obj = {"matches": matches}
    filters = route_filters(canary)
    if filters:
        rule["filters"] = filters
    if canary.service.timeout and canary.provider == "gatewayapi:v1":
        rule["timeouts"] = {"request": canary.service.timeout}
    rule["backendRefs"] = backends
    return rule


STICKY_RULE = "sticky"


def _set_cookie_filter(value: str) -> Obj:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": value}]},
    }


def _sticky_rules(canary: Canary, session: str, split: list[Obj]) -> list[Obj]:
    """With a ``session`` cookie, as Flagger: while the canary has traffic its responses set the
    cookie and a first rule sends whoever carries it to the canary; once it has none, that rule
    sends them to the primary and takes the cookie back (``Max-Age=-1``). The sticky rule has one
    backend, so the split is read from the weighted rule."""
    affinity = canary.analysis.session_affinity
    assert affinity is not None
    matches = route_matches(merge_match([cookie_match(session)], canary.service.match))
    canary_ref = split[1]
    if canary_ref["weight"] > 0:
        canary_ref["filters"] = [_set_cookie_filter(affinity.set_cookie(session))]
        sticky = _rule(canary, matches, [{**_backend(canary, canary.service.canary_name, 100)}])
    else:
        sticky = _rule(canary, matches, [_backend(canary, canary.service.primary_name, 100)])
        sticky["filters"] = [*sticky.get("filters", []), _set_cookie_filter(affinity.set_cookie(session, max_age=-1))]
    return [{"name": STICKY_RULE, **sticky}]


def desired_http_route(
    canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
) -> Obj:
    """The HTTPRoute the Canary asks for, with the given split; ValueError for a bad split."""
    validate_weights(primary_weight, canary_weight)
    service = canary.service
    split = [
        _backend(canary, canary.service.primary_name, primary_weight),
        _backend(canary, canary.service.canary_name, canary_weight),
    ]
    if canary.analysis.strategy is Strategy.AB_TESTING:
        rules = [
            _rule(canary, route_matches(merge_match(canary.analysis.match, service.match)), split),
            # Everyone outside the experiment stays on the primary, whatever the split above.
            _rule(canary, route_matches(service.match), [_backend(canary, canary.service.primary_name, 100)]),
        ]
    else:
        rules = [_rule(canary, route_matches(service.match), split)]
        if mirror:
            to_canary = {"group": "", "kind": "Service", "name": canary.service.canary_name, "port": service.port}
            mirror_filter = {"type": "RequestMirror", "requestMirror": {"backendRef": to_canary}}
            rules[0]["filters"] = [*rules[0].get("filters", []), mirror_filter]
        if session is not None and canary.analysis.session_affinity is not None:
            rules = [*_sticky_rules(canary, session, split), *rules]
    spec: Obj = {"parentRefs": [plain(ref) for ref in service.gateway_refs]}
    if service.hosts:
        spec["hostnames"] = list(dict.fromkeys(service.hosts))
    spec["rules"] = rules
    return {
        "apiVersion": API_VERSIONS[canary.provider],
        "kind": KIND,
        "metadata": generated_metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": spec,
    }


def routes_of(route: Mapping[str, Any], canary: Canary) -> Routes | None:
    """The split of the first rule that reaches both the primary and the canary; None if none does.

    Weights are read as the gateway reads them: a backendRef without a weight has 1, and the
    split is each backend's share of the rule's total.
    """
    wanted = (canary.service.primary_name, canary.service.canary_name)
    for rule in as_list(as_dict(route.get("spec")).get("rules")):
        weights: dict[str, int] = {}
        for ref in as_list(as_dict(rule).get("backendRefs")):
            ref = as_dict(ref)
            weight = ref.get("weight", 1)
            weights[str(ref.get("name"))] = weight if isinstance(weight, int) and not isinstance(weight, bool) else 1
        if all(name in weights for name in wanted):
            total = sum(weights.values())
            mirrored = any(
                as_dict(as_dict(as_dict(rule_filter).get("requestMirror")).get("backendRef")).get("name") == wanted[1]
                for rule_filter in as_list(as_dict(rule).get("filters"))
            )
            if total <= 0:
                return Routes(0, 0, mirrored=mirrored)
            canary_share = round(100 * weights[wanted[1]] / total)
            primary_share = round(100 * weights[wanted[0]] / total)
            return Routes(primary_share, canary_share, mirrored=mirrored)
    return None


class GatewayAPIRouter(OneObjectRouter):
    """Writes the HTTPRoute of Canaries through Serin's access layer."""

    kind = KIND

    def api_version(self, canary: Canary) -> str:
        return API_VERSIONS[canary.provider]

    def desired(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None, mirror: bool
    ) -> Obj:
        return desired_http_route(canary, primary_weight, canary_weight, session, mirror)

    def split_of(self, stored: Mapping[str, Any], canary: Canary) -> Routes | None:
        return routes_of(stored, canary)
