"""Traefik's TraefikService, read as Traefik balances it: weighted round robin over its services,
or ``mirroring``: every request to its service, and ``percent`` of them copied to each mirror.

Every TraefikService is served (no IngressRoute pointing at it is needed here). A service without
a weight has Traefik's default, 1; a mirror without a percent copies nothing, as Traefik's default
is 0. Requests are reported under Traefik's name for the Kubernetes service,
``<namespace>-<service>-<port>@kubernetescrd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localcluster.simulator.routes import Destination, HttpRoute, RouteTable, as_mapping, as_sequence

KIND = "TraefikService"
GROUP = "traefik.io"
VERSION = "v1alpha1"
PLURAL = "traefikservices"


def _destination(entry: Mapping[str, Any], namespace: str, weight_key: str, default: int) -> Destination | None:
    name, port = entry.get("name"), entry.get("port")
    if not isinstance(name, str) or not isinstance(port, int):
        return None
    weight = entry.get(weight_key, default)
    weight = weight if isinstance(weight, int) and not isinstance(weight, bool) else default
    service_namespace = entry.get("namespace") if isinstance(entry.get("namespace"), str) else namespace
    return Destination(
        host=f"{name}.{service_namespace}", weight=weight, tag=f"{service_namespace}-{name}-{port}@kubernetescrd"
    )


def parse_traefik_service(obj: Mapping[str, Any]) -> RouteTable:
    metadata = as_mapping(obj.get("metadata"))
    namespace = str(metadata.get("namespace", ""))
    spec = as_mapping(obj.get("spec"))
    mirroring = as_mapping(spec.get("mirroring"))
    if mirroring:
        main = _destination(mirroring, namespace, "weight", 1)
        mirrors = [
            _destination(as_mapping(raw), namespace, "percent", 0) for raw in as_sequence(mirroring.get("mirrors"))
        ]
        route = HttpRoute(
            name="mirroring",
            matches=(),
            destinations=(main,) if main else (),
            mirror=next((mirror for mirror in mirrors if mirror is not None), None),
        )
    else:
        entries = as_sequence(as_mapping(spec.get("weighted")).get("services"))
        destinations = [_destination(as_mapping(raw), namespace, "weight", 1) for raw in entries]
        route = HttpRoute(name="weighted", matches=(), destinations=tuple(d for d in destinations if d))
    return RouteTable(kind=KIND, name=str(metadata.get("name", "")), namespace=namespace, routes=(route,))
