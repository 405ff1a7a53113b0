"""Manifests and small readers shared by the integration tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from localcluster.testing import ClusterHandle


@dataclass
class SerinServer:
    url: str
    ca_bundle: Path

    def tick(self, token: str | None, **params: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.url}/tick", params=params, headers=headers, verify=str(self.ca_bundle), timeout=60)


def podinfo(namespace: str, image: str = "ghcr.io/stefanprodan/podinfo:6.0.0", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": namespace, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}, "annotations": annotations},
                "spec": {"containers": [{"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]}]},
            },
        },
    }


def canary(namespace: str, analysis: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": analysis,
            **spec,
        },
    }


def canary_status(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = cluster.get_json("canary", "podinfo", "-n", namespace).get("status", {})
    return status


def events(cluster: ClusterHandle, namespace: str) -> list[str]:
    listed = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=Canary", "-o", "json"
        ).stdout
    )
    return [item["message"] for item in sorted(listed["items"], key=lambda e: e["metadata"]["creationTimestamp"])]
