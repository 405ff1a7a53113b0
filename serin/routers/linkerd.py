"""The Linkerd router: an SMI TrafficSplit, which Linkerd's proxies apply to calls to the apex Service.

For a Canary whose service is named ``podinfo`` it owns the TrafficSplit ``podinfo``
(``split.smi-spec.io/v1alpha1``, what Flagger 1.36 writes for the ``linkerd`` provider; Linkerd
serves it through its SMI extension) whose ``service`` is the apex Service ``podinfo`` and whose
backends are ``podinfo-canary`` and ``podinfo-primary`` with their weights, both always present.
A TrafficSplit has nothing to match requests by, so A/B testing is refused for this provider
(Flagger would send all the traffic to the canary).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serin.model import Canary
from serin.ports import Routes
from serin.routers.common import Obj, OneObjectRouter, as_dict, as_list, shares, validate_weights
from serin.workloads import generated_metadata

KIND = "TrafficSplit"
API_VERSION = "split.smi-spec.io/v1alpha1"


def desired_traffic_split(canary: Canary, primary_weight: int, canary_weight: int) -> Obj:
    validate_weights(primary_weight, canary_weight)
    primary, canary_name = canary.service.primary_name, canary.service.canary_name
    service = canary.service
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": generated_metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": {
            "service": service.name,
            # Flagger's order: the canary first.
            "backends": [
                {"service": canary_name, "weight": canary_weight},
                {"service": primary, "weight": primary_weight},
            ],
        },
    }


def _weight(value: Any) -> int:
    """A backend's weight: an integer, or a quantity as Flagger writes it (``"30"``)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def routes_of(split: Mapping[str, Any], canary: Canary) -> Routes | None:
    """Each backend's share of the total; None when neither backend is in the split."""
    weights = {
        backend.get("service"): _weight(backend.get("weight"))
        for backend in map(as_dict, as_list(as_dict(split.get("spec")).get("backends")))
    }
    return shares(weights, canary.service.primary_name, canary.service.canary_name)


class LinkerdRouter(OneObjectRouter):
    """Writes the TrafficSplit of Canaries through Serin's access layer."""

    kind = KIND

    def desired(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None, mirror: bool
    ) -> Obj:
        return desired_traffic_split(canary, primary_weight, canary_weight)

    def split_of(self, stored: Mapping[str, Any], canary: Canary) -> Routes | None:
        return routes_of(stored, canary)
