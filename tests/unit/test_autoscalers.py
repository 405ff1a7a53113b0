"""The primary's autoscaler: ``spec.autoscalerRef`` parsed, the target's HPA or ScaledObject copied
for the primary as Flagger copies it, and a ScaledObject held at zero while the target idles."""

from __future__ import annotations

from typing import Any

import pytest

from serin.autoscalers import PAUSED_REPLICAS_ANNOTATION, pause_patch, primary_query, primary_scaler
from serin.model import AutoscalerRef, InvalidCanary, parse_canary
from serin.workloads import TARGET_LABEL
from tests.unit.test_model import with_changes

HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}
SCALED_OBJECT = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so"}


def canary_with(ref: dict[str, Any], uid: str = "uid-1") -> Any:
    manifest = with_changes({"spec.autoscalerRef": ref, "metadata.uid": uid})
    return parse_canary(manifest)


def test_an_hpa_reference_is_read_with_its_primary_bounds() -> None:
    canary = canary_with({**HPA, "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 6}})
    assert canary.autoscaler_ref == AutoscalerRef(
        kind="HorizontalPodAutoscaler", name="podinfo", primary_min_replicas=2, primary_max_replicas=6
    )
    assert canary.autoscaler_ref.primary_name == "podinfo-primary"


def test_no_autoscaler_reference_is_none() -> None:
    assert parse_canary(with_changes({})).autoscaler_ref is None


@pytest.mark.parametrize(
    ("ref", "errors"),
    [
        pytest.param(
            {"kind": "VerticalPodAutoscaler", "name": "p"},
            [
                "spec.autoscalerRef.kind: must be one of HorizontalPodAutoscaler, ScaledObject "
                "(got 'VerticalPodAutoscaler')"
            ],
            id="kind",
        ),
        pytest.param({"kind": "HorizontalPodAutoscaler"}, ["spec.autoscalerRef.name: is required"], id="no-name"),
        pytest.param(
            {"apiVersion": "keda.sh/v1alpha1", "kind": "HorizontalPodAutoscaler", "name": "p"},
            [
                "spec.autoscalerRef.apiVersion: a HorizontalPodAutoscaler is in the API group autoscaling "
                "(got 'keda.sh/v1alpha1')"
            ],
            id="group",
        ),
        pytest.param(
            {**HPA, "primaryScalerQueries": {"t": "sum(x)"}},
            [
                "spec.autoscalerRef.primaryScalerQueries: only a ScaledObject has trigger queries; an HPA's metrics "
                "are copied as they are"
            ],
            id="queries-on-an-hpa",
        ),
        pytest.param(
            {**HPA, "primaryScalerReplicas": {"minReplicas": 5, "maxReplicas": 2}},
            ["spec.autoscalerRef.primaryScalerReplicas: minReplicas 5 is more than maxReplicas 2"],
            id="bounds",
        ),
        pytest.param(
            {**HPA, "primaryScalerReplicas": {"minReplicas": 0}},
            ["spec.autoscalerRef.primaryScalerReplicas.minReplicas: must be at least 1"],
            id="min-zero",
        ),
        pytest.param(
            {"kind": "ScaledObject", "name": "Bad_Name"},
            ["spec.autoscalerRef.name: must be a DNS-1123 subdomain (got 'Bad_Name')"],
            id="name",
        ),
    ],
)
def test_a_wrong_autoscaler_reference_is_refused_with_its_path(ref: dict[str, Any], errors: list[str]) -> None:
    with pytest.raises(InvalidCanary) as raised:
        parse_canary(with_changes({"spec.autoscalerRef": ref}))
    assert [str(error) for error in raised.value.errors] == errors


TARGET_HPA: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "podinfo", "namespace": "test", "labels": {"team": "a"}, "annotations": {"note": "x"}},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "minReplicas": 2,
        "maxReplicas": 4,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
    },
    "status": {"currentReplicas": 2},
}


def managed(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "test",
        "labels": {"team": "a", "app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "podinfo"},
        "ownerReferences": [
            {
                "apiVersion": "serin.dev/v1beta1",
                "kind": "Canary",
                "name": "podinfo",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def test_the_primary_hpa_is_the_target_hpa_scaling_the_primary() -> None:
    assert primary_scaler(canary_with(HPA), TARGET_HPA) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": managed("podinfo-primary"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": TARGET_HPA["spec"]["metrics"],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
        },
    }


def test_primary_scaler_replicas_replace_the_target_bounds() -> None:
    canary = canary_with({**HPA, "primaryScalerReplicas": {"minReplicas": 3, "maxReplicas": 9}})
    spec = primary_scaler(canary, TARGET_HPA)["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 9)
    assert TARGET_HPA["spec"]["minReplicas"] == 2  # the target's object is left as it was


TARGET_SCALED_OBJECT: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "podinfo-so", "namespace": "test", "annotations": {PAUSED_REPLICAS_ANNOTATION: "0"}},
    "spec": {
        "scaleTargetRef": {"name": "podinfo"},
        "minReplicaCount": 1,
        "maxReplicaCount": 5,
        "pollingInterval": 10,
        "triggers": [
            {
                "name": "requests",
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus:9090",
                    "query": 'sum(rate(http_requests_total{deployment="podinfo-canary"}[1m]))',
                    "threshold": "10",
                },
            },
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}},
        ],
    },
}


def test_the_primary_scaled_object_queries_the_primary() -> None:
    canary = canary_with({**SCALED_OBJECT, "primaryScalerReplicas": {"maxReplicas": 8}})
    assert primary_scaler(canary, TARGET_SCALED_OBJECT) == {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            **managed("podinfo-so-primary"),
            "labels": {
                "app.kubernetes.io/managed-by": "serin",
                "serin.dev/managed-for": "podinfo",
            },
        },
        "spec": {
            "scaleTargetRef": {"name": "podinfo-primary"},
            "minReplicaCount": 1,
            "maxReplicaCount": 8,
            "pollingInterval": 10,
            "triggers": [
                {
                    "name": "requests",
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus:9090",
                        "query": 'sum(rate(http_requests_total{deployment="podinfo-primary"}[1m]))',
                        "threshold": "10",
                    },
                },
                {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}},
            ],
        },
    }


def test_primary_scaler_queries_replace_the_named_trigger_query() -> None:
    canary = canary_with({**SCALED_OBJECT, "primaryScalerQueries": {"requests": "sum(up)"}})
    triggers = primary_scaler(canary, TARGET_SCALED_OBJECT)["spec"]["triggers"]
    assert [trigger["metadata"].get("query") for trigger in triggers] == ["sum(up)", None]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('x{deployment="podinfo"}', 'x{deployment="podinfo-primary"}'),
        ('x{deployment="podinfo-canary"}', 'x{deployment="podinfo-primary"}'),
        ('x{deployment="podinfo-primary"}', 'x{deployment="podinfo-primary"}'),
        ('x{pod=~"podinfo-[0-9a-z]+-[0-9a-z]+"}', 'x{pod=~"podinfo-[0-9a-z]+-[0-9a-z]+"}'),
        ('x{deployment="mypodinfo"}', 'x{deployment="mypodinfo"}'),
        ('x{app="podinfo"} + y{app="podinfo-canary"}', 'x{app="podinfo-primary"} + y{app="podinfo-primary"}'),
    ],
)
def test_a_trigger_query_is_pointed_at_the_primary(query: str, expected: str) -> None:
    assert primary_query(canary_with(SCALED_OBJECT), query) == expected


MARKED = {TARGET_LABEL: "podinfo"}


def marked_patch(paused_replicas: str | None) -> dict[str, Any]:
    return {"metadata": {"labels": MARKED, "annotations": {PAUSED_REPLICAS_ANNOTATION: paused_replicas}}}


@pytest.mark.parametrize(
    ("kind_ref", "labels", "annotations", "paused", "patch"),
    [
        pytest.param(SCALED_OBJECT, {}, {}, True, marked_patch("0"), id="pause"),
        pytest.param(SCALED_OBJECT, MARKED, {PAUSED_REPLICAS_ANNOTATION: "0"}, True, None, id="already-paused"),
        # Paused before it was marked as the target's (or the mark was taken off): marked again.
        pytest.param(SCALED_OBJECT, {}, {PAUSED_REPLICAS_ANNOTATION: "0"}, True, marked_patch("0"), id="unmarked"),
        pytest.param(SCALED_OBJECT, MARKED, {PAUSED_REPLICAS_ANNOTATION: "0"}, False, marked_patch(None), id="resume"),
        pytest.param(
            SCALED_OBJECT, MARKED, {PAUSED_REPLICAS_ANNOTATION: "3"}, True, marked_patch("0"), id="paused-elsewhere"
        ),
        pytest.param(SCALED_OBJECT, MARKED, {}, False, None, id="already-running"),
        pytest.param(HPA, {}, {}, True, None, id="an-hpa-needs-no-pause"),
    ],
)
def test_a_scaled_object_is_held_at_zero_while_the_target_idles(
    kind_ref: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    paused: bool,
    patch: dict[str, Any] | None,
) -> None:
    scaler = {"metadata": {"name": "x", "labels": labels, "annotations": annotations}}
    assert pause_patch(canary_with(kind_ref), scaler, paused) == patch
