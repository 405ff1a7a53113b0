"""The Istio router: a VirtualService and two DestinationRules that split traffic for one Canary.

For a Canary whose service is named ``podinfo`` it owns, in the Canary's namespace:

* DestinationRules ``podinfo-primary`` and ``podinfo-canary`` (host = their name, ``trafficPolicy``
  from ``spec.service.trafficPolicy``);
* VirtualService ``podinfo`` (hosts ``podinfo`` plus ``spec.service.hosts``, ``spec.service.gateways``)
  whose http routes send a weighted share to ``podinfo-primary`` and ``podinfo-canary``. For A/B
  testing a first route, matching ``spec.analysis.match``, carries the split and a second one sends
  everything else to the primary.

The desired objects are built by the pure functions at the top of this module; ``IstioRouter``
writes them whole with server-side apply (through ``serin.kube.store``, Serin's one access layer),
so every write sets absolute values and repeating one is harmless.

A VirtualService or DestinationRule of that name that the user made before the Canary is written
over too, as Flagger does, with its spec kept on it and no owner reference; ``finalize`` gives it
back. This module must not delete anything (ownerReferences to the Canary let the garbage collector
remove Serin's own objects), must not touch Services or Deployments, and must not decide weights:
it writes what it is told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from serin.model import Canary, Strategy
from serin.ports import Routes
from serin.routers.common import RoutingObjects, as_dict, as_list, cookie_match, merge_match, plain, validate_weights
from serin.workloads import generated_metadata

API_VERSION = "networking.istio.io/v1beta1"
# Istio's name for the sidecars of the mesh, as a gateway: the default when a Canary names none.
MESH_GATEWAY = "mesh"

Obj = dict[str, Any]


# ---------------------------------------------------------------------------
# Pure functions: names, desired objects, reading and changing weights


def primary_host(canary: Canary) -> str:
    return canary.service.primary_name


def canary_host(canary: Canary) -> str:
    return canary.service.canary_name


def _destination(canary: Canary, host: str, weight: int) -> Obj:
    destination: Obj = {"host": host}
    service = canary.service
    # As Flagger: with several ports on the Services (port discovery), traffic from a gateway or
    # through a delegate must name the one it is for; otherwise the Service's only port is meant.
    if service.port_discovery and ((service.gateways and service.gateways[0] != MESH_GATEWAY) or service.delegation):
        destination["port"] = {"number": service.port}
    return {"destination": destination, "weight": weight}


def _http_route(canary: Canary, match: Sequence[Mapping[str, Any]], primary_weight: int, canary_weight: int) -> Obj:
    service = canary.service
    route: Obj = {}
    if match:
        route["match"] = plain(match)
    optional = {
        "rewrite": service.rewrite,
        "timeout": service.timeout,
        "retries": service.retries,
        "corsPolicy": service.cors_policy,
        "headers": service.headers,
    }
    route.update({key: plain(value) for key, value in optional.items() if value is not None})
    route["route"] = [
        _destination(canary, primary_host(canary), primary_weight),
        _destination(canary, canary_host(canary), canary_weight),
    ]
    return route


def desired_virtual_service(
    canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
) -> Obj:
    """The VirtualService the Canary asks for, with the given split; ValueError for a bad split.

    With a ``session`` cookie (``analysis.sessionAffinity``), as Flagger: while the canary has
    traffic its responses set the cookie, and a first route named ``sticky`` sends whoever carries
    it to the canary; once it has none, that route sends them to the primary and takes the cookie
    back (``Max-Age=-1``).
    """
    validate_weights(primary_weight, canary_weight)
    service = canary.service
    spec: Obj = {"hosts": virtual_service_hosts(canary), "gateways": virtual_service_gateways(canary)}
    if is_tcp(canary):
        # Connections, not requests: a TCP route, matched by port only (as Flagger maps it).
        tcp_route: Obj = {}
        ports = [condition["port"] for condition in service.match if isinstance(condition.get("port"), int)]
        if ports:
            tcp_route["match"] = [{"port": port} for port in ports]
        tcp_route["route"] = [
            _destination(canary, primary_host(canary), primary_weight),
            _destination(canary, canary_host(canary), canary_weight),
        ]
        spec["tcp"] = [tcp_route]
    elif canary.analysis.strategy is Strategy.AB_TESTING:
        spec["http"] = [
            _http_route(canary, merge_match(canary.analysis.match, service.match), primary_weight, canary_weight),
            # Everyone outside the experiment stays on the primary, whatever the split above.
            _http_route(canary, service.match, 100, 0),
        ]
    elif session is not None and canary.analysis.session_affinity is not None:
        spec["http"] = _sticky_routes(canary, session, primary_weight, canary_weight)
    else:
        spec["http"] = [_http_route(canary, service.match, primary_weight, canary_weight)]
    if mirror:
        # As Flagger: the weighted (last) route copies requests to the canary, its responses dropped.
        weighted = spec["http"][-1]
        weighted["mirror"] = {"host": canary_host(canary)}
        if canary.analysis.mirror_weight:
            weighted["mirrorPercentage"] = {"value": canary.analysis.mirror_weight}
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": generated_metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": spec,
    }


STICKY_ROUTE = "sticky"


def _sticky_routes(canary: Canary, session: str, primary_weight: int, canary_weight: int) -> list[Obj]:
    affinity = canary.analysis.session_affinity
    assert affinity is not None
    service = canary.service
    weighted = _http_route(canary, service.match, primary_weight, canary_weight)
    sticky_match = merge_match([cookie_match(session)], service.match)
    if canary_weight > 0:
        weighted["route"][1]["headers"] = {"response": {"add": {"Set-Cookie": affinity.set_cookie(session)}}}
        sticky = _http_route(canary, sticky_match, 0, 100)
    else:
        sticky = _http_route(canary, sticky_match, primary_weight, canary_weight)
        headers = sticky.setdefault("headers", {})
        response = headers.setdefault("response", {})
        response.setdefault("add", {})["Set-Cookie"] = affinity.set_cookie(session, max_age=-1)
    return [{"name": STICKY_ROUTE, **sticky}, weighted]


def is_tcp(canary: Canary) -> bool:
    """``service.appProtocol: tcp``: the VirtualService routes TCP connections."""
    return (canary.service.app_protocol or "").lower() == "tcp"


def virtual_service_hosts(canary: Canary) -> list[str]:
    """``service.hosts`` and the apex Service's name (as Flagger: the apex last, unless listed or ``*``)."""
    service = canary.service
    if service.delegation:
        return []  # a delegate's hosts are its parent's
    hosts = list(dict.fromkeys(service.hosts))  # keeps order, drops repeats
    if service.name not in hosts and "*" not in hosts:
        hosts.append(service.name)
    return hosts


def virtual_service_gateways(canary: Canary) -> list[str]:
    """``service.gateways``, or the mesh when there are none (a delegate has none of its own)."""
    if canary.service.delegation:
        return []
    return list(canary.service.gateways) or [MESH_GATEWAY]


def desired_destination_rule(canary: Canary, host: str) -> Obj:
    """The DestinationRule named after ``host`` (the primary or the canary Service)."""
    spec: Obj = {"host": host}
    if canary.service.traffic_policy is not None:
        spec["trafficPolicy"] = plain(canary.service.traffic_policy)
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": generated_metadata(canary, host),
        "spec": spec,
    }


def _host_of(entry: Any) -> Any:
    return as_dict(as_dict(entry).get("destination")).get("host")


def _weighted_route_indexes(vs: Mapping[str, Any], canary: Canary, protocol: str) -> list[int]:
    """Indexes of the ``protocol`` (http or tcp) routes that send traffic to the canary host, in order."""
    routes = as_list(as_dict(vs.get("spec")).get(protocol))
    target = canary_host(canary)
    return [
        index
        for index, route in enumerate(routes)
        # The sticky route serves cookie holders only; the split is the weighted route's.
        if as_dict(route).get("name") != STICKY_ROUTE
        and any(_host_of(entry) == target for entry in as_list(as_dict(route).get("route")))
    ]


def routes_of(vs: Mapping[str, Any], canary: Canary) -> Routes | None:
    """The split of the first http (for TCP, tcp) route that reaches the canary; None if no route does.

    A destination without a weight gets 100 when it is the route's only one and 0 otherwise, as
    Istio reads it (objects written by Flagger omit zero weights).
    """
    protocol = "tcp" if is_tcp(canary) else "http"
    indexes = _weighted_route_indexes(vs, canary, protocol)
    if not indexes:
        return None
    route = as_dict(as_list(as_dict(vs.get("spec")).get(protocol))[indexes[0]])
    entries = as_list(route.get("route"))
    weights = {primary_host(canary): 0, canary_host(canary): 0}
    for entry in entries:
        host = _host_of(entry)
        if host in weights:
            weight = as_dict(entry).get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int):
                weight = 100 if len(entries) == 1 else 0
            weights[host] = weight
    mirrored = bool(as_dict(route.get("mirror")).get("host"))
    return Routes(weights[primary_host(canary)], weights[canary_host(canary)], mirrored=mirrored)


class IstioRouter(RoutingObjects):
    """Writes the Istio objects of Canaries through Serin's access layer."""

    shifts_traffic = True
    kinds: tuple[str, ...] = ("DestinationRule", "VirtualService")

    # -- Router protocol

    def reconcile(
        self, canary: Canary, split: tuple[int, int] = (100, 0), session: str | None = None, mirror: bool = False
    ) -> None:
        """The DestinationRules and the VirtualService as the Canary says, routing ``split``."""
        for host in (primary_host(canary), canary_host(canary)):
            self._write(desired_destination_rule(canary, host))
        self.set_routes(canary, *split, session, mirror)

    def get_routes(self, canary: Canary) -> Routes | None:
        stored = self._store.get("VirtualService", canary.namespace, canary.service.name)
        return None if stored is None else routes_of(stored, canary)

    def set_routes(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
    ) -> None:
        """The whole VirtualService with this split; it is created when missing."""
        self._write(desired_virtual_service(canary, primary_weight, canary_weight, session, mirror))

    def finalize(self, canary: Canary) -> None:
        """Give back what was the user's before the Canary; route all traffic of Serin's own
        VirtualService (which the garbage collector removes with the Canary) to the primary."""
        for host in (primary_host(canary), canary_host(canary)):
            self._give_back("DestinationRule", canary.namespace, host)
        stored = self._give_back("VirtualService", canary.namespace, canary.service.name)
        if stored is not None and routes_of(stored, canary) is not None:
            self.set_routes(canary, 100, 0)
