"""Traefik's TraefikService, read as Traefik balances it: weighted round robin over its services.

Every TraefikService is served (no IngressRoute pointing at it is needed here). A service without
a weight has Traefik's default, 1. Requests are reported under Traefik's name for the Kubernetes
service, ``<namespace>-<service>-<port>@kubernetescrd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcluster.simulator.routes import Destination, HttpRoute, RouteTable, as_mapping, as_sequence

KIND = "TraefikService"
GROUP = "traefik.io"
VERSION = "v1alpha1"
PLURAL = "traefikservices"


def parse_traefik_service(obj: Mapping[str, Any]) -> RouteTable:
    metadata = as_mapping(obj.get("metadata"))
    namespace = str(metadata.get("namespace", ""))
    destinations = []
    for raw in as_sequence(as_mapping(as_mapping(obj.get("spec")).get("weighted")).get("services")):
        entry = as_mapping(raw)
        name, port = entry.get("name"), entry.get("port")
        if not isinstance(name, str) or not isinstance(port, int):
            continue
        weight = entry.get("weight", 1)
        weight = weight if isinstance(weight, int) and not isinstance(weight, bool) else 1
        service_namespace = entry.get("namespace") if isinstance(entry.get("namespace"), str) else namespace
        destinations.append(
            Destination(
                host=f"{name}.{service_namespace}",
                weight=weight,
                tag=f"{service_namespace}-{name}-{port}@kubernetescrd",
            )
        )
    route = HttpRoute(name="weighted", matches=(), destinations=tuple(destinations))
    return RouteTable(kind=KIND, name=str(metadata.get("name", "")), namespace=namespace, routes=(route,))
