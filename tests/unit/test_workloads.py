"""Primary Deployment, config copies and Services built from the target."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serin.model import parse_canary
from serin.workloads import (
    SOURCE_HASH_ANNOTATION,
    WorkloadError,
    config_hash,
    primary_config,
    primary_deployment,
    services,
    template_hash,
    tracked_configs,
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


def test_primary_deployment_selects_primary_pods_and_uses_config_copies() -> None:
    primary = primary_deployment(CANARY, TARGET, {("configmap", "settings"), ("secret", "tls")})
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


def test_primary_deployment_copies_what_flaggers_promotion_copies() -> None:
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
    primary = primary_deployment(CANARY, target, set(), replicas=4)
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
        primary_deployment(CANARY, odd, set())


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
