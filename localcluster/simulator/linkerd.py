"""Linkerd's SMI TrafficSplit, read as Linkerd's proxies apply it: calls to the split's apex
Service go to its backends by weight (a weight may be a quantity, as Flagger writes ``"30"``).

Every TrafficSplit is served, as if every client were meshed. Linkerd's own metrics
(``response_total``, ``response_latency_ms``) are reported for every request, by ``export``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcluster.simulator.routes import Destination, HttpRoute, RouteTable, as_mapping, as_sequence

KIND = "TrafficSplit"
GROUP = "split.smi-spec.io"
VERSION = "v1alpha1"
PLURAL = "trafficsplits"


def _weight(value: object) -> int:
    if isinstance(value, bool):
        return 0
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def parse_traffic_split(obj: Mapping[str, Any]) -> RouteTable:
    metadata = as_mapping(obj.get("metadata"))
    destinations = []
    for raw in as_sequence(as_mapping(obj.get("spec")).get("backends")):
        backend = as_mapping(raw)
        if isinstance(backend.get("service"), str) and backend["service"]:
            destinations.append(Destination(host=backend["service"], weight=_weight(backend.get("weight"))))
    route = HttpRoute(name="split", matches=(), destinations=tuple(destinations))
    return RouteTable(
        kind=KIND, name=str(metadata.get("name", "")), namespace=str(metadata.get("namespace", "")), routes=(route,)
    )
