"""Pure builders of the primary's autoscaler: a copy of the target's HorizontalPodAutoscaler or
KEDA ScaledObject, named ``<name>-primary``, that scales the primary instead.

As Flagger does: the copy keeps the target's metrics (or triggers), bounds and behaviour, takes
``primaryScalerReplicas`` over the target's bounds, and a ScaledObject's trigger queries are
pointed at the primary (``primaryScalerQueries`` by trigger name, or the target's name rewritten
to ``<target>-primary`` in each query). The target's own autoscaler scales the canary: a
HorizontalPodAutoscaler leaves a Deployment at zero replicas alone by itself (the HPA controller
disables scaling at zero), while a ScaledObject would activate it, so KEDA is told to hold the
target at zero between analyses with its ``paused-replicas`` annotation.

No I/O here: functions take and return plain dicts as the API server speaks them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from serin.model import AutoscalerRef, Canary
from serin.workloads import TARGET_LABEL, managed_metadata

API_VERSIONS: Mapping[str, str] = {"HorizontalPodAutoscaler": "autoscaling/v2", "ScaledObject": "keda.sh/v1alpha1"}
# KEDA holds a paused ScaledObject's target at this many replicas (KEDA 2.8 and later).
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
# Where each kind keeps its replica bounds.
_BOUNDS: Mapping[str, tuple[str, str]] = {
    "HorizontalPodAutoscaler": ("minReplicas", "maxReplicas"),
    "ScaledObject": ("minReplicaCount", "maxReplicaCount"),
}


def _ref(canary: Canary) -> AutoscalerRef:
    if canary.autoscaler_ref is None:
        raise ValueError(f"canary {canary.key} has no autoscalerRef")
    return canary.autoscaler_ref


def primary_query(canary: Canary, query: str) -> str:
    """A target's trigger query as the primary's: ``<target>`` and ``<target>-canary`` become
    ``<target>-primary`` (a name already ``-primary`` is left as it is)."""
    target = re.escape(canary.target_ref.name)
    return re.sub(rf"\b{target}(?:-canary)?(?!-primary)(?![-\w])", canary.primary_name, query)


def _primary_triggers(canary: Canary, triggers: Any) -> Any:
    queries = _ref(canary).primary_scaler_queries
    if not isinstance(triggers, list):
        return triggers
    for trigger in triggers:
        metadata = trigger.get("metadata") if isinstance(trigger, dict) else None
        if not isinstance(metadata, dict):
            continue
        if queries:
            if trigger.get("name") in queries:
                metadata["query"] = queries[trigger["name"]]
        elif isinstance(metadata.get("query"), str):
            metadata["query"] = primary_query(canary, metadata["query"])
    return triggers


def primary_scaler(canary: Canary, scaler: Mapping[str, Any]) -> dict[str, Any]:
    """The ``<name>-primary`` copy of the target's autoscaler ``scaler``, scaling the primary."""
    ref = _ref(canary)
    spec: dict[str, Any] = copy.deepcopy(dict(scaler.get("spec") or {}))
    spec["scaleTargetRef"] = {**(spec.get("scaleTargetRef") or {}), "name": canary.primary_name}
    low_key, high_key = _BOUNDS[ref.kind]
    if ref.primary_min_replicas is not None:
        spec[low_key] = ref.primary_min_replicas
    if ref.primary_max_replicas is not None:
        spec[high_key] = ref.primary_max_replicas
    if ref.kind == "ScaledObject":
        spec["triggers"] = _primary_triggers(canary, spec.get("triggers"))
    labels = dict((scaler.get("metadata") or {}).get("labels") or {})
    labels.pop(TARGET_LABEL, None)
    return {
        "apiVersion": API_VERSIONS[ref.kind],
        "kind": ref.kind,
        "metadata": managed_metadata(canary, ref.primary_name, labels),
        "spec": spec,
    }


def pause_patch(canary: Canary, scaler: Mapping[str, Any], paused: bool) -> dict[str, Any] | None:
    """The merge patch that holds (or frees) the target's ScaledObject at zero replicas; None when
    it already is as asked, or for an HPA (which needs no pause, see the module's docstring).

    The patch labels the ScaledObject as the target's (``serin.dev/canary``), as the target itself
    is: the shipped admission policy lets Serin's account change only objects so marked."""
    if _ref(canary).kind != "ScaledObject":
        return None
    metadata = scaler.get("metadata") or {}
    annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
    if (annotations.get(PAUSED_REPLICAS_ANNOTATION) == "0") == paused and labels.get(TARGET_LABEL) == canary.name:
        return None
    return {
        "metadata": {
            "labels": {TARGET_LABEL: canary.name},
            "annotations": {PAUSED_REPLICAS_ANNOTATION: "0" if paused else None},
        }
    }
