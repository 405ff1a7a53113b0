"""The Traefik router: a TraefikService that splits a Canary's traffic by weighted round robin.

For a Canary whose service is named ``podinfo`` it owns the TraefikService ``podinfo``
(``traefik.io/v1alpha1``, the group Traefik v2.10+ and v3 serve; Flagger 1.36 still writes the
older ``traefik.containo.us``) whose ``weighted.services`` are ``podinfo-primary`` and
``podinfo-canary`` with their weights, both always present. The user's IngressRoute routes to it
by name (``kind: TraefikService``). Traefik has no match to route a part of the traffic by, so only
weighted canaries and blue/green are possible; admission refuses A/B testing for this provider
(Flagger would send all the traffic to the canary).

A mirrored blue/green (``analysis.mirror``, which Flagger 1.36 does not offer for Traefik) makes it a
``mirroring`` TraefikService while the canary is analysed: every request is answered by the primary
and copied to the canary (``percent: 100``), whose answers are dropped. Traefik counts the copies
under the canary's Service, so the builtin metrics judge the canary on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serin.model import Canary
from serin.ports import Routes
from serin.routers.common import Obj, OneObjectRouter, as_dict, as_list, shares, validate_weights
from serin.workloads import generated_metadata

KIND = "TraefikService"
API_VERSION = "traefik.io/v1alpha1"


def desired_traefik_service(canary: Canary, primary_weight: int, canary_weight: int, mirror: bool = False) -> Obj:
    """The TraefikService of the split; with ``mirror`` (all traffic on the primary), one that
    copies every request to the canary instead."""
    validate_weights(primary_weight, canary_weight)
    primary, canary_name = canary.service.primary_name, canary.service.canary_name
    service = canary.service

    def reference(name: str) -> Obj:
        return {"name": name, "namespace": canary.namespace, "port": service.port}

    if mirror and canary_weight == 0:
        spec: Obj = {"mirroring": {**reference(primary), "mirrors": [{**reference(canary_name), "percent": 100}]}}
    else:
        weights = ((primary, primary_weight), (canary_name, canary_weight))
        spec = {"weighted": {"services": [{**reference(name), "weight": weight} for name, weight in weights]}}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": generated_metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": spec,
    }


def routes_of(traefik_service: Mapping[str, Any], canary: Canary) -> Routes | None:
    """The split of ``weighted.services`` (an entry without a weight has Traefik's default, 1), or
    of ``mirroring``: everything to its service, mirrored if a mirror copies to the canary."""
    spec = as_dict(traefik_service.get("spec"))
    mirroring = as_dict(spec.get("mirroring"))
    if mirroring:
        if mirroring.get("name") != canary.service.primary_name:
            return None
        mirrored = any(
            entry.get("name") == canary.service.canary_name and entry.get("percent", 0) > 0
            for entry in map(as_dict, as_list(mirroring.get("mirrors")))
        )
        return Routes(100, 0, mirrored=mirrored)
    entries = as_list(as_dict(spec.get("weighted")).get("services"))
    weights: dict[Any, int] = {}
    for entry in map(as_dict, entries):
        weight = entry.get("weight", 1)
        weights[entry.get("name")] = weight if isinstance(weight, int) and not isinstance(weight, bool) else 1
    return shares(weights, canary.service.primary_name, canary.service.canary_name)


class TraefikRouter(OneObjectRouter):
    """Writes the TraefikService of Canaries through Serin's access layer."""

    kind = KIND

    def desired(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None, mirror: bool
    ) -> Obj:
        return desired_traefik_service(canary, primary_weight, canary_weight, mirror)

    def split_of(self, stored: Mapping[str, Any], canary: Canary) -> Routes | None:
        return routes_of(stored, canary)
