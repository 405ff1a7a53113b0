"""The NGINX ingress router: a canary copy of the user's Ingress, steered by NGINX's canary annotations.

For a Canary with ``spec.ingressRef: {name: podinfo}`` and service ``podinfo`` it owns the Ingress
``podinfo-canary``: the user's Ingress with every backend on the apex Service ``podinfo`` pointed
at ``podinfo-canary`` instead, and the annotation ``nginx.ingress.kubernetes.io/canary: "true"``,
which makes the NGINX ingress controller send part of that host and path's traffic there:

* a canary release: ``canary-weight`` (the canary's percent);
* A/B testing: ``canary-by-header`` with ``canary-by-header-value`` (exact) or
  ``canary-by-header-pattern`` (regex), and ``canary-by-cookie`` (a request whose cookie of that
  name is ``always`` goes to the canary), while the canary has traffic; none of them otherwise.

The user's Ingress is never written: it keeps routing to the apex Service, that is to the primary.
Its labels and annotations (but NGINX's canary ones and kubectl's last-applied) are copied on the
canary Ingress each write, so a class or a rewrite the user set applies to both. ``finalize`` only
routes the canary Ingress to nothing; the garbage collector removes it with the Canary.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from serin.model import Canary, Strategy
from serin.ports import PermanentError, Routes
from serin.routers.common import Obj, RoutingObjects, validate_weights
from serin.workloads import generated_metadata

KIND = "Ingress"
API_VERSION = "networking.k8s.io/v1"
PREFIX = "nginx.ingress.kubernetes.io"
CANARY = f"{PREFIX}/canary"
CANARY_WEIGHT = f"{PREFIX}/canary-weight"
BY_HEADER = f"{PREFIX}/canary-by-header"
BY_HEADER_VALUE = f"{PREFIX}/canary-by-header-value"
BY_HEADER_PATTERN = f"{PREFIX}/canary-by-header-pattern"
BY_COOKIE = f"{PREFIX}/canary-by-cookie"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def canary_ingress_name(canary: Canary) -> str:
    assert canary.ingress_ref is not None  # admission requires it for this provider
    return f"{canary.ingress_ref.name}-canary"


def match_annotations(canary: Canary) -> dict[str, str]:
    """The A/B annotations for ``analysis.match`` (admission allowed one header and one cookie)."""
    annotations: dict[str, str] = {}
    for condition in canary.analysis.match:
        headers = condition.get("headers")
        for name, matcher in headers.items() if isinstance(headers, Mapping) else ():
            if not isinstance(matcher, Mapping):
                continue
            if str(name).lower() == "cookie":
                annotations[BY_COOKIE] = str(matcher["exact"])
            elif "exact" in matcher:
                annotations.update({BY_HEADER: str(name), BY_HEADER_VALUE: str(matcher["exact"])})
            elif "regex" in matcher:
                annotations.update({BY_HEADER: str(name), BY_HEADER_PATTERN: str(matcher["regex"])})
    return annotations


def _retarget(value: Any, apex: str, canary_service: str) -> int:
    """Point every Ingress backend on ``apex`` at ``canary_service``, in place; how many were."""
    if isinstance(value, list):
        return sum(_retarget(item, apex, canary_service) for item in value)
    if not isinstance(value, dict):
        return 0
    service = value.get("service")
    if isinstance(service, dict) and service.get("name") == apex:
        service["name"] = canary_service
        return 1
    return sum(_retarget(item, apex, canary_service) for item in value.values())


def desired_canary_ingress(
    canary: Canary, users_ingress: Mapping[str, Any], primary_weight: int, canary_weight: int
) -> Obj:
    """The canary Ingress copied from ``users_ingress`` with this split; PermanentError when the
    user's Ingress has no backend on the apex Service (nothing to make a canary of)."""
    validate_weights(primary_weight, canary_weight)
    apex = canary.service.name
    spec = copy.deepcopy(dict(users_ingress.get("spec") or {}))
    if not _retarget(spec, apex, canary.service.canary_name):
        raise PermanentError(
            f"Ingress {canary.namespace}/{users_ingress['metadata']['name']} has no backend on Service {apex}: "
            "nothing to route to the canary"
        )
    metadata = users_ingress.get("metadata") or {}
    kept = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if not key.startswith(CANARY) and key != LAST_APPLIED
    }
    annotations = {**kept, CANARY: "true", CANARY_WEIGHT: "0"}
    if canary.analysis.strategy is Strategy.AB_TESTING:
        if canary_weight > 0:
            annotations.update(match_annotations(canary))
    else:
        annotations[CANARY_WEIGHT] = str(canary_weight)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": generated_metadata(canary, canary_ingress_name(canary), metadata.get("labels"), annotations),
        "spec": spec,
    }


def routes_of(ingress: Mapping[str, Any], canary: Canary) -> Routes:
    """The split the canary Ingress's annotations make: everything matched while A/B annotations
    are on it, else its weight."""
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    if canary.analysis.strategy is Strategy.AB_TESTING and (BY_HEADER in annotations or BY_COOKIE in annotations):
        return Routes(0, 100)
    try:
        weight = int(annotations.get(CANARY_WEIGHT, "0"))
    except ValueError:
        weight = 0
    weight = min(max(weight, 0), 100)
    return Routes(100 - weight, weight)


class NginxRouter(RoutingObjects):
    """Writes the canary Ingress of Canaries through Serin's access layer."""

    shifts_traffic = True
    kinds: tuple[str, ...] = (KIND,)

    def reconcile(
        self, canary: Canary, split: tuple[int, int] = (100, 0), session: str | None = None, mirror: bool = False
    ) -> None:
        self.set_routes(canary, *split)

    def get_routes(self, canary: Canary) -> Routes | None:
        stored = self._store.get(KIND, canary.namespace, canary_ingress_name(canary))
        return None if stored is None else routes_of(stored, canary)

    def set_routes(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
    ) -> None:
        """The whole canary Ingress with this split, from the user's Ingress as it is now (no
        session affinity: admission refuses it for NGINX)."""
        assert canary.ingress_ref is not None
        users = self._store.get(KIND, canary.namespace, canary.ingress_ref.name)
        if users is None:
            raise PermanentError(f"Ingress {canary.namespace}/{canary.ingress_ref.name} (spec.ingressRef) not found")
        self._write(desired_canary_ingress(canary, users, primary_weight, canary_weight))

    def finalize(self, canary: Canary) -> None:
        """Nothing of the user's was written; the canary Ingress gets no traffic until it is gone."""
        stored = self._give_back(KIND, canary.namespace, canary_ingress_name(canary))
        assert canary.ingress_ref is not None
        users = self._store.get(KIND, canary.namespace, canary.ingress_ref.name)
        if stored is not None and users is not None:
            self._write(desired_canary_ingress(canary, users, 100, 0))
