"""The Contour router: one HTTPProxy that splits a Canary's traffic between its Services.

For a Canary whose service is named ``podinfo`` it owns the HTTPProxy ``podinfo`` (a non-root
proxy, as Flagger writes it: the user's root HTTPProxy includes it for its virtual host). Its route
sends weighted shares to ``podinfo-primary`` and ``podinfo-canary``, with ``service.timeout`` as
the response timeout and ``service.retries`` as the retry policy. Each service carries the header
``l5d-dst-override`` naming it, so a Linkerd mesh behind Contour routes it the same way.

For A/B testing each condition of ``spec.analysis.match`` is a route of its own (Contour ANDs the
conditions of one route; separate routes are ORed), carrying the split, and a last route sends
everyone else to the primary. Header matches are exact or regex, query parameters exact, prefix
or regex; admission refused the rest.

The desired object is built by the pure functions at the top; ``ContourRouter`` writes it whole
with server-side apply and gives back an HTTPProxy the user made (see ``serin.routers.common``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serin.model import Canary, Strategy
from serin.ports import Routes
from serin.routers.common import Obj, OneObjectRouter, as_dict, as_list, plain, validate_weights
from serin.workloads import generated_metadata

KIND = "HTTPProxy"
API_VERSION = "projectcontour.io/v1"
EVERY_PATH: Obj = {"prefix": "/"}
# Contour's idle timeout beside a response timeout, as Flagger sets it.
IDLE_TIMEOUT = "5m"


def _service(canary: Canary, name: str, weight: int) -> Obj:
    authority = f"{name}.{canary.namespace}.svc.cluster.local:{canary.service.port}"
    return {
        "name": name,
        "port": canary.service.port,
        "weight": weight,
        "requestHeadersPolicy": {"set": [{"name": "l5d-dst-override", "value": authority}]},
    }


def conditions(match: Mapping[str, Any]) -> list[Obj]:
    """Contour match conditions of one Istio-shaped match (headers and queryParams)."""
    found: list[Obj] = [plain(EVERY_PATH)]
    headers = match.get("headers")
    for name, matcher in sorted(headers.items()) if isinstance(headers, Mapping) else ():
        found.append({"header": {"name": name, **plain(matcher)}})
    params = match.get("queryParams")
    for name, matcher in sorted(params.items()) if isinstance(params, Mapping) else ():
        found.append({"queryParameter": {"name": name, **plain(matcher)}})
    return found


def _route(canary: Canary, route_conditions: list[Obj], services: list[Obj]) -> Obj:
    route: Obj = {"conditions": route_conditions}
    service = canary.service
    if service.timeout:
        route["timeoutPolicy"] = {"response": service.timeout, "idle": IDLE_TIMEOUT}
    retries = service.retries or {}
    if retries:
        policy: Obj = {}
        if isinstance(retries.get("attempts"), int):
            policy["count"] = retries["attempts"]
        if isinstance(retries.get("perTryTimeout"), str):
            policy["perTryTimeout"] = retries["perTryTimeout"]
        if isinstance(retries.get("retryOn"), str):
            policy["retryOn"] = [part.strip() for part in retries["retryOn"].split(",") if part.strip()]
        route["retryPolicy"] = policy
    route["services"] = services
    return route


def desired_http_proxy(canary: Canary, primary_weight: int, canary_weight: int) -> Obj:
    """The HTTPProxy the Canary asks for, with the given split; ValueError for a bad split."""
    validate_weights(primary_weight, canary_weight)
    split = [
        _service(canary, canary.service.primary_name, primary_weight),
        _service(canary, canary.service.canary_name, canary_weight),
    ]
    if canary.analysis.strategy is Strategy.AB_TESTING:
        routes = [_route(canary, conditions(match), split) for match in canary.analysis.match]
        everyone_else = [
            _service(canary, canary.service.primary_name, 100),
            _service(canary, canary.service.canary_name, 0),
        ]
        routes.append(_route(canary, [plain(EVERY_PATH)], everyone_else))
    else:
        routes = [_route(canary, [plain(EVERY_PATH)], split)]
    service = canary.service
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": generated_metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": {"routes": routes},
    }


def routes_of(proxy: Mapping[str, Any], canary: Canary) -> Routes | None:
    """The split of the first route with both services (a service without a weight has 0, as
    Contour reads it when another has one); None if no route has both."""
    wanted = (canary.service.primary_name, canary.service.canary_name)
    for route in map(as_dict, as_list(as_dict(proxy.get("spec")).get("routes"))):
        weights = {}
        for entry in map(as_dict, as_list(route.get("services"))):
            weight = entry.get("weight", 0)
            weights[entry.get("name")] = weight if isinstance(weight, int) and not isinstance(weight, bool) else 0
        if all(name in weights for name in wanted):
            return Routes(weights[wanted[0]], weights[wanted[1]])
    return None


class ContourRouter(OneObjectRouter):
    """Writes the HTTPProxy of Canaries through Serin's access layer."""

    kind = KIND

    def desired(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None, mirror: bool
    ) -> Obj:
        return desired_http_proxy(canary, primary_weight, canary_weight)

    def split_of(self, stored: Mapping[str, Any], canary: Canary) -> Routes | None:
        return routes_of(stored, canary)
