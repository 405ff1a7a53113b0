"""Primary workloads (Deployment, DaemonSet, StatefulSet), config copies and Services built from the target."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from serin.model import parse_canary
from serin.objects import workload_state
from serin.workloads import (
    SCALE_TO_ZERO_NODE_SELECTOR,
    SOURCE_HASH_ANNOTATION,
    WORKLOAD_KINDS,
    WorkloadError,
    changed_claims,
    config_hash,
    held_at_zero,
    primary_config,
    primary_workload,
    scale_patch,
    services,
    template_hash,
    tracked_configs,
    unpromotable_claims,
)

CANARY = parse_canary(
    {
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {"stepWeight": 10},
        },
    }
)

TARGET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo", "serin.dev/canary": "podinfo"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "podinfo:6.0.0",
                        "envFrom": [{"configMapRef": {"name": "settings"}}],
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "t"}}}],
                    }
                ],
                "volumes": [{"name": "certs", "secret": {"secretName": "tls"}}],
            },
        },
    },
}


def test_template_hash_changes_with_template_not_replicas() -> None:
    scaled = copy.deepcopy(TARGET)
    scaled["spec"]["replicas"] = 0
    assert template_hash(scaled) == template_hash(TARGET)
    new_image = copy.deepcopy(TARGET)
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:6.1.0"
    assert template_hash(new_image) != template_hash(TARGET)


def test_tracked_configs_finds_every_reference() -> None:
    assert tracked_configs(TARGET) == {("configmap", "settings"), ("secret", "token"), ("secret", "tls")}


def test_primary_workload_selects_primary_pods_and_uses_config_copies() -> None:
    primary = primary_workload(CANARY, TARGET, {("configmap", "settings"), ("secret", "tls")})
    assert primary["metadata"]["name"] == "podinfo-primary"
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    template = primary["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "podinfo-primary"
    container = template["spec"]["containers"][0]
    assert container["envFrom"][0]["configMapRef"]["name"] == "settings-primary"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "token"
    assert template["spec"]["volumes"][0]["secret"]["secretName"] == "tls-primary"
    assert primary["metadata"]["annotations"][SOURCE_HASH_ANNOTATION] == template_hash(TARGET)
    assert "serin.dev/canary" not in primary["metadata"]["labels"]
    assert primary["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    # The user's Deployment is never modified in place.
    assert TARGET["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "tls"


def test_primary_workload_copies_what_flaggers_promotion_copies() -> None:
    """Template, strategy, minReadySeconds, progressDeadlineSeconds and revisionHistoryLimit come
    from the target; its replica count and pause do not (the primary scales on its own)."""
    target = copy.deepcopy(TARGET)
    target["spec"].update(
        {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "minReadySeconds": 15,
            "progressDeadlineSeconds": 300,
            "revisionHistoryLimit": 3,
            "paused": True,
        }
    )
    primary = primary_workload(CANARY, target, set(), replicas=4)
    spec = primary["spec"]
    assert sorted(spec) == [
        "minReadySeconds",
        "progressDeadlineSeconds",
        "replicas",
        "revisionHistoryLimit",
        "selector",
        "strategy",
        "template",
    ]
    assert (spec["strategy"], spec["minReadySeconds"], spec["progressDeadlineSeconds"]) == (
        target["spec"]["strategy"],
        15,
        300,
    )
    assert (spec["revisionHistoryLimit"], spec["replicas"]) == (3, 4)


def test_target_without_selector_label_is_explained() -> None:
    odd = copy.deepcopy(TARGET)
    odd["spec"]["selector"] = {"matchLabels": {"tier": "web"}}
    with pytest.raises(WorkloadError, match=r"app, name, app\.kubernetes\.io/name"):
        primary_workload(CANARY, odd, set())


def test_config_copy_and_hash() -> None:
    source = {
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "test"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y2VydA=="},
    }
    copied = primary_config(CANARY, source)
    assert copied["metadata"]["name"] == "tls-primary"
    assert copied["type"] == "kubernetes.io/tls"
    assert config_hash(copied) == config_hash(source)
    assert config_hash({"data": {"a": "1"}}) != config_hash({"data": {"a": "2"}})


def test_services_apex_and_primary_select_primary_canary_selects_target() -> None:
    built = {service["metadata"]["name"]: service for service in services(CANARY, TARGET)}
    assert set(built) == {"podinfo", "podinfo-primary", "podinfo-canary"}
    assert built["podinfo"]["spec"]["selector"] == {"app": "podinfo-primary"}
    assert built["podinfo-primary"]["spec"]["selector"] == {"app": "podinfo-primary"}
    assert built["podinfo-canary"]["spec"]["selector"] == {"app": "podinfo"}
    assert built["podinfo"]["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 9898, "protocol": "TCP"}


def test_generated_services_carry_flaggers_label_and_keep_gitops_tools_off() -> None:
    built = {service["metadata"]["name"]: service["metadata"] for service in services(CANARY, TARGET)}
    for name, metadata in built.items():
        assert metadata["labels"] == {
            "app": name,
            "app.kubernetes.io/managed-by": "serin",
            "serin.dev/managed-for": "podinfo",
        }
        assert metadata["annotations"] == {
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
        }


def with_ports(*containers: dict[str, Any]) -> dict[str, Any]:
    target = copy.deepcopy(TARGET)
    target["spec"]["template"]["spec"]["containers"] = list(containers)
    return target


@pytest.mark.parametrize(
    ("service", "containers", "expected"),
    [
        pytest.param(
            {"port": 80, "targetPort": 9898, "portDiscovery": True},
            [
                {
                    "name": "app",
                    "ports": [
                        {"containerPort": 9898},
                        {"name": "grpc", "containerPort": 9999},
                        {"containerPort": 8080},
                    ],
                },
                {"name": "istio-proxy", "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]},
                {"name": "metrics", "ports": [{"name": "prom", "containerPort": 9797}]},
            ],
            [("http", 80, 9898), ("grpc", 9999, 9999), ("prom", 9797, 9797), ("tcp-app-2", 8080, 8080)],
            id="every-other-port-but-the-proxy",
        ),
        pytest.param(
            {"port": 80, "targetPort": "http", "portDiscovery": True},
            [
                {
                    "name": "app",
                    "ports": [{"name": "http", "containerPort": 9898}, {"name": "admin", "containerPort": 9000}],
                }
            ],
            [("http", 80, "http"), ("admin", 9000, 9000)],
            id="named-target-port-excluded",
        ),
        pytest.param(
            {"port": 80, "targetPort": 9898},
            [{"name": "app", "ports": [{"containerPort": 9898}, {"name": "grpc", "containerPort": 9999}]}],
            [("http", 80, 9898)],
            id="without-discovery-one-port",
        ),
    ],
)
def test_port_discovery_puts_every_container_port_on_the_services(
    service: dict[str, Any], containers: list[dict[str, Any]], expected: list[tuple[str, int, int | str]]
) -> None:
    canary = parse_canary(
        {
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": service,
                "analysis": {"stepWeight": 10},
            },
        }
    )
    for generated in services(canary, with_ports(*containers)):
        ports = generated["spec"]["ports"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == expected
        assert {p["protocol"] for p in ports} == {"TCP"}


def kind_of(kind: str, **spec: Any) -> tuple[Any, dict[str, Any]]:
    """A Canary targeting ``kind`` podinfo, and that target with ``spec`` set."""
    canary = dataclasses.replace(CANARY, target_ref=dataclasses.replace(CANARY.target_ref, kind=kind))
    target = copy.deepcopy(TARGET)
    target["kind"] = kind
    del target["spec"]["replicas"]
    target["spec"].update(spec)
    return canary, target


HELD = {"nodeSelector": {"disk": "ssd", SCALE_TO_ZERO_NODE_SELECTOR: "true"}}


def test_a_daemonset_held_at_zero_is_the_same_revision() -> None:
    _, target = kind_of("DaemonSet")
    target["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    held = copy.deepcopy(target)
    held["spec"]["template"]["spec"].update(HELD)
    assert template_hash(held) == template_hash(target)
    assert (held_at_zero(held), held_at_zero(target)) == (True, False)


def test_the_primary_daemonset_runs_where_the_target_runs_when_not_held() -> None:
    canary, target = kind_of(
        "DaemonSet", updateStrategy={"type": "RollingUpdate"}, minReadySeconds=5, revisionHistoryLimit=2
    )
    target["spec"]["template"]["spec"].update(copy.deepcopy(HELD))
    primary = primary_workload(canary, target, set(), replicas=3)
    assert primary["kind"] == "DaemonSet"
    spec = primary["spec"]
    assert sorted(spec) == ["minReadySeconds", "revisionHistoryLimit", "selector", "template", "updateStrategy"]
    assert spec["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}


def test_the_primary_statefulset_takes_what_cannot_change_when_created() -> None:
    claims = [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]
    canary, target = kind_of(
        "StatefulSet",
        replicas=3,
        serviceName="podinfo-headless",
        podManagementPolicy="Parallel",
        volumeClaimTemplates=claims,
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete", "whenDeleted": "Retain"},
    )
    spec = primary_workload(canary, target, set(), replicas=3)["spec"]
    assert sorted(spec) == [
        "persistentVolumeClaimRetentionPolicy",
        "podManagementPolicy",
        "replicas",
        "selector",
        "serviceName",
        "template",
        "updateStrategy",
        "volumeClaimTemplates",
    ]
    assert (spec["serviceName"], spec["volumeClaimTemplates"], spec["replicas"]) == ("podinfo-headless", claims, 3)
    # What promotion may change on a StatefulSet that exists (the API server refuses the rest).
    assert WORKLOAD_KINDS["StatefulSet"].promoted_fields == (
        "template",
        "updateStrategy",
        "minReadySeconds",
        "persistentVolumeClaimRetentionPolicy",
        "ordinals",
        "revisionHistoryLimit",
    )


@pytest.mark.parametrize(
    ("kind", "spec", "replicas", "patch"),
    [
        pytest.param("Deployment", {"replicas": 2}, 0, {"spec": {"replicas": 0}}, id="deployment-down"),
        pytest.param("Deployment", {"replicas": 0}, 0, None, id="deployment-already"),
        pytest.param("StatefulSet", {"replicas": 0}, 3, {"spec": {"replicas": 3}}, id="statefulset-up"),
        pytest.param(
            "DaemonSet",
            {},
            0,
            {"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: "true"}}}}},
            id="daemonset-hold",
        ),
        pytest.param(
            "DaemonSet",
            {"template": {"spec": copy.deepcopy(HELD)}},
            2,
            {"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: None}}}}},
            id="daemonset-release",
        ),
        pytest.param("DaemonSet", {"template": {"spec": copy.deepcopy(HELD)}}, 0, None, id="daemonset-already-held"),
        pytest.param("DaemonSet", {}, 5, None, id="daemonset-already-running"),
    ],
)
def test_scaling_a_target(kind: str, spec: dict[str, Any], replicas: int, patch: dict[str, Any] | None) -> None:
    assert scale_patch({"kind": kind, "spec": spec}, replicas) == patch


@pytest.mark.parametrize(
    ("workload", "expected"),
    [
        pytest.param(
            {
                "kind": "DaemonSet",
                "metadata": {"name": "ds", "generation": 3},
                "spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: "true"}}}},
                "status": {"observedGeneration": 3, "desiredNumberScheduled": 0},
            },
            (0, 0, 0, 0, "scaled to zero"),
            id="daemonset-held",
        ),
        pytest.param(
            {
                "kind": "DaemonSet",
                "metadata": {"name": "ds", "generation": 4},
                "spec": {"template": {"spec": {}}},
                "status": {
                    "observedGeneration": 4,
                    "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 2,
                },
            },
            (3, 2, 2, 3, "waiting for rollout to finish: 2 out of 3 new pods have been updated"),
            id="daemonset-rolling",
        ),
        pytest.param(
            {
                "kind": "DaemonSet",
                "metadata": {"name": "ds", "generation": 4},
                "spec": {"template": {"spec": {}}},
                "status": {"observedGeneration": 4, "desiredNumberScheduled": 0},
            },
            (1, 0, 0, 0, "waiting for rollout to finish: 0 out of 1 new pods have been updated"),
            id="daemonset-on-no-node",
        ),
        pytest.param(
            {
                "kind": "StatefulSet",
                "metadata": {"name": "sts", "generation": 2},
                "spec": {"replicas": 3},
                "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
            },
            (3, 3, 3, 3, None),
            id="statefulset-ready",
        ),
        pytest.param(
            {
                "kind": "StatefulSet",
                "metadata": {"name": "sts", "generation": 2},
                "spec": {"replicas": 3},
                "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
            },
            (3, 3, 3, 3, "waiting for rollout to finish: observed statefulset generation less than desired generation"),
            id="statefulset-not-observed",
        ),
    ],
)
def test_readiness_of_daemonsets_and_statefulsets(
    workload: dict[str, Any], expected: tuple[int, int, int, int, str | None]
) -> None:
    state = workload_state(workload)
    assert state is not None
    replicas, updated, available, scheduled, why = expected
    assert (state.replicas, state.updated_replicas, state.available_replicas, state.status_replicas) == (
        replicas,
        updated,
        available,
        scheduled,
    )
    assert state.not_ready_because(100) == why


def statefulset(name: str, **claims: str) -> dict[str, Any]:
    """A StatefulSet whose claim templates ask for ``claims`` (name: storage)."""
    return {
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "volumeClaimTemplates": [
                {"metadata": {"name": claim}, "spec": {"resources": {"requests": {"storage": size}}}}
                for claim, size in claims.items()
            ]
        },
    }


@pytest.mark.parametrize(
    ("before", "after", "changes"),
    [
        pytest.param({"data": "1Gi"}, {"data": "1Gi"}, [], id="same"),
        pytest.param({"data": "1Gi"}, {"data": "5Gi"}, ["changed data"], id="resized"),
        pytest.param(
            {"data": "1Gi", "logs": "1Gi"}, {"data": "1Gi", "cache": "1Gi"}, ["added cache", "removed logs"], id="swap"
        ),
    ],
)
def test_changed_claims(before: dict[str, str], after: dict[str, str], changes: list[str]) -> None:
    assert changed_claims(statefulset("db", **before), statefulset("db", **after)) == changes


def test_a_target_with_other_claims_than_its_primary_cannot_be_promoted() -> None:
    target, primary = statefulset("db", data="5Gi"), statefulset("db-primary", data="1Gi")
    assert unpromotable_claims(target, primary) == (
        "the volumeClaimTemplates of StatefulSet db differ from db-primary's (changed data): a StatefulSet's claims "
        "cannot change, so db-primary cannot be given them; to change them, delete the Canary, recreate db with "
        "them, and create the Canary again"
    )
    assert unpromotable_claims(target, statefulset("db-primary", data="5Gi")) is None
    assert unpromotable_claims({**target, "kind": "Deployment"}, {**primary, "kind": "Deployment"}) is None
