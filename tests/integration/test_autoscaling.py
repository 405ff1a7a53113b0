"""Autoscaled targets on the local control plane: the primary gets a copy of the target's
HorizontalPodAutoscaler, which the real HPA controller (kube-controller-manager) drives from the
local external metrics API; a KEDA ScaledObject is copied and paused the same way, checked against
KEDA's own CRD schema (KEDA's operator does not run here)."""

from __future__ import annotations

from typing import Any

import pytest

from localcluster.testing import ClusterHandle, eventually
from serin.autoscalers import PAUSED_REPLICAS_ANNOTATION
from tests.integration.helpers import (
    SerinServer,
    canary,
    deployment,
    drive,
    initialized,
    podinfo,
    set_image,
    tick,
    tick_until,
)

pytestmark = pytest.mark.integration

LOAD_METRIC = "serin_test_load"
HPA_REF = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}
SCALED_OBJECT_REF = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so"}


def hpa(namespace: str) -> dict[str, Any]:
    """Replicas = the external load metric, between 2 and 6."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo", "namespace": namespace, "labels": {"team": "checkout"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2,
            "maxReplicas": 6,
            # Follows the metric down at once (the controller's default waits five minutes).
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": LOAD_METRIC},
                        "target": {"type": "AverageValue", "averageValue": "1"},
                    },
                }
            ],
        },
    }


def set_load(cluster: ClusterHandle, namespace: str, value: int) -> None:
    """What the local external metrics API answers for the load metric in this namespace."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "external-metrics", "namespace": namespace},
            "data": {LOAD_METRIC: str(value)},
        }
    )


def replicas(cluster: ClusterHandle, namespace: str, name: str) -> int:
    return int(deployment(cluster, namespace, name)["spec"].get("replicas") or 0)


def owner_kinds(obj: dict[str, Any]) -> list[str]:
    return [reference["kind"] for reference in obj["metadata"].get("ownerReferences") or []]


@pytest.mark.compat
def test_the_primary_hpa_scales_the_primary_before_and_after_a_promotion(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    set_load(local_cluster, namespace, 2)
    local_cluster.apply(podinfo(namespace))
    local_cluster.apply(hpa(namespace))
    initialized(
        local_cluster,
        serin_server,
        token,
        namespace,
        autoscalerRef={**HPA_REF, "primaryScalerReplicas": {"maxReplicas": 8}},
    )

    copy = local_cluster.get_json("hpa", "podinfo-primary", "-n", namespace)
    assert copy["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary"}
    assert (copy["spec"]["minReplicas"], copy["spec"]["maxReplicas"]) == (2, 8)
    assert copy["spec"]["metrics"] == hpa(namespace)["spec"]["metrics"]
    assert copy["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert copy["metadata"]["labels"]["team"] == "checkout"
    assert owner_kinds(copy) == ["Canary"]

    # The HPA controller scales the primary from the metric, up to the primary's own maximum.
    set_load(local_cluster, namespace, 7)
    eventually(lambda: replicas(local_cluster, namespace, "podinfo-primary") == 7, timeout=60, what="primary at 7")
    # ... and leaves the idle target at zero: an HPA does not scale a workload at zero replicas.
    target_hpa = local_cluster.get_json("hpa", "podinfo", "-n", namespace)
    active = {c["type"]: c for c in target_hpa["status"].get("conditions") or []}.get("ScalingActive", {})
    assert (active.get("status"), active.get("reason")) == ("False", "ScalingDisabled"), target_hpa["status"]
    assert replicas(local_cluster, namespace, "podinfo") == 0

    # During the analysis the target's own HPA scales the canary (at most 6).
    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight", 0) > 0)
    eventually(lambda: replicas(local_cluster, namespace, "podinfo") == 6, timeout=60, what="canary at 6")

    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.1")
    # Promotion leaves the primary's replicas to its HPA, which keeps following the metric.
    assert replicas(local_cluster, namespace, "podinfo-primary") == 7
    set_load(local_cluster, namespace, 3)
    eventually(lambda: replicas(local_cluster, namespace, "podinfo-primary") == 3, timeout=90, what="primary at 3")
    assert replicas(local_cluster, namespace, "podinfo") == 0


def test_the_primary_hpa_follows_the_target_hpa_on_the_next_step(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    local_cluster.apply(podinfo(namespace))
    local_cluster.apply(hpa(namespace))
    initialized(local_cluster, serin_server, token, namespace, autoscalerRef=HPA_REF)
    changed = hpa(namespace)
    changed["spec"]["maxReplicas"] = 4
    changed["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    local_cluster.apply(changed)

    set_image(local_cluster, namespace, "6.0.1")
    tick(serin_server, token, namespace)
    copy = local_cluster.get_json("hpa", "podinfo-primary", "-n", namespace)
    assert copy["spec"]["maxReplicas"] == 4
    assert copy["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30


def test_a_missing_hpa_is_named_in_the_warning_and_the_tick_error(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    applied = local_cluster.apply(canary(namespace, {"interval": "10s", "iterations": 2}, autoscalerRef=HPA_REF))
    assert "HorizontalPodAutoscaler podinfo not found" in applied.stderr

    response = serin_server.tick(tokens["ticker"], namespace=namespace, name="podinfo", force="true")
    report = response.json()["canaries"][0]
    assert report["error"] == (
        f"HorizontalPodAutoscaler {namespace}/podinfo not found: spec.autoscalerRef names it, and the primary's "
        "podinfo-primary is copied from it"
    )


def scaled_object(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "podinfo-so", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": "podinfo"},
            "minReplicaCount": 1,
            "maxReplicaCount": 5,
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "requests",
                    "metadata": {
                        "serverAddress": "http://prometheus.monitoring:9090",
                        "query": f'sum(rate(http_requests_total{{namespace="{namespace}",app="podinfo-canary"}}[1m]))',
                        "threshold": "100",
                    },
                }
            ],
        },
    }


def paused(cluster: ClusterHandle, namespace: str) -> str | None:
    annotations = cluster.get_json("scaledobject", "podinfo-so", "-n", namespace)["metadata"].get("annotations") or {}
    return annotations.get(PAUSED_REPLICAS_ANNOTATION)


def test_a_scaled_object_is_copied_for_the_primary_and_paused_while_the_target_idles(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    local_cluster.apply(podinfo(namespace))
    local_cluster.apply(scaled_object(namespace))
    initialized(
        local_cluster,
        serin_server,
        token,
        namespace,
        autoscalerRef={**SCALED_OBJECT_REF, "primaryScalerReplicas": {"minReplicas": 2}},
    )

    copy = local_cluster.get_json("scaledobject", "podinfo-so-primary", "-n", namespace)
    assert copy["spec"]["scaleTargetRef"] == {"name": "podinfo-primary"}
    assert (copy["spec"]["minReplicaCount"], copy["spec"]["maxReplicaCount"]) == (2, 5)
    assert copy["spec"]["triggers"][0]["metadata"]["query"] == (
        f'sum(rate(http_requests_total{{namespace="{namespace}",app="podinfo-primary"}}[1m]))'
    )
    assert owner_kinds(copy) == ["Canary"]
    assert paused(local_cluster, namespace) == "0"

    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight", 0) > 0)
    assert paused(local_cluster, namespace) is None, "KEDA scales the canary during the analysis"

    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert paused(local_cluster, namespace) == "0"
    assert replicas(local_cluster, namespace, "podinfo") == 0
