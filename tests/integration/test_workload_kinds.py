"""DaemonSet and StatefulSet targets, released as Deployments are: a ``<name>-primary`` of the same
kind serves, the target is held at zero between releases (a DaemonSet by a node selector no node
matches, a StatefulSet by its replicas), and a release is promoted or rolled back on the mesh's
metrics (simulated traffic, real Prometheus)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcluster.testing import ClusterHandle, eventually
from serin.workloads import SCALE_TO_ZERO_NODE_SELECTOR
from tests.integration.helpers import WEIGHTED, SerinServer, canary, drive, events, podinfo, routes

pytestmark = pytest.mark.integration

GOOD = "ghcr.io/stefanprodan/podinfo:6.0.1"
BAD = "ghcr.io/stefanprodan/podinfo:6.0.2"


def workload(
    kind: str, namespace: str, image: str = "ghcr.io/stefanprodan/podinfo:6.0.0", **annotations: str
) -> dict[str, Any]:
    """podinfo as a DaemonSet or a StatefulSet."""
    manifest = podinfo(namespace, image, **annotations)
    manifest["kind"] = kind
    if kind == "DaemonSet":
        del manifest["spec"]["replicas"]
    else:
        manifest["spec"]["serviceName"] = "podinfo-headless"
        manifest["spec"]["podManagementPolicy"] = "Parallel"
    return manifest


def get(cluster: ClusterHandle, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get_json(kind.lower(), name, "-n", namespace)


def image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def at_zero(obj: dict[str, Any]) -> bool:
    if obj["kind"] == "DaemonSet":
        return SCALE_TO_ZERO_NODE_SELECTOR in (obj["spec"]["template"]["spec"].get("nodeSelector") or {})
    return bool(obj["spec"]["replicas"] == 0)


def initialized(cluster: ClusterHandle, server: SerinServer, token: str, kind: str, namespace: str) -> None:
    cluster.apply(workload(kind, namespace))
    cluster.kubectl("rollout", "status", f"{kind.lower()}/podinfo", "-n", namespace, "--timeout=60s")
    manifest = canary(namespace, WEIGHTED)
    manifest["spec"]["targetRef"]["kind"] = kind
    cluster.apply(manifest)
    drive(cluster, server, token, namespace, "Initialized")


@pytest.mark.parametrize("kind", ["DaemonSet", "StatefulSet"])
def test_a_release_is_promoted_into_a_primary_of_the_same_kind(
    kind: str, local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, kind, namespace)
    primary = get(local_cluster, kind, namespace, "podinfo-primary")
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert [ref["kind"] for ref in primary["metadata"]["ownerReferences"]] == ["Canary"]
    target = get(local_cluster, kind, namespace, "podinfo")
    assert at_zero(target)
    if kind == "DaemonSet":
        # On every node, as the target ran before the Canary; the target on none.
        assert primary["status"]["numberReady"] == primary["status"]["desiredNumberScheduled"] > 0
        assert SCALE_TO_ZERO_NODE_SELECTOR not in (primary["spec"]["template"]["spec"].get("nodeSelector") or {})
    else:
        assert primary["spec"]["serviceName"] == "podinfo-headless"
        assert primary["spec"]["replicas"] == 2 and primary["status"]["readyReplicas"] == 2

    release = workload(kind, namespace, GOOD)
    local_cluster.apply(release)
    # The user's manifest has no scale-to-zero selector: applying it is a release, not a scale-up.
    status = drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    assert image(get(local_cluster, kind, namespace, "podinfo-primary")) == GOOD
    assert at_zero(get(local_cluster, kind, namespace, "podinfo"))
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    history = events(local_cluster, namespace)
    assert f"Advance podinfo.{namespace} canary weight 40" in history
    assert f"Promotion completed! Scaling down podinfo.{namespace}" in history


@pytest.mark.parametrize("kind", ["DaemonSet", "StatefulSet"])
def test_a_failing_release_is_rolled_back_and_the_primary_keeps_serving(
    kind: str, local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, kind, namespace)
    local_cluster.apply(workload(kind, namespace, BAD, **{"simulator.serin.dev/error-rate": "0.5"}))

    drive(local_cluster, serin_server, token, namespace, "Failed")
    primary = get(local_cluster, kind, namespace, "podinfo-primary")
    assert image(primary) == "ghcr.io/stefanprodan/podinfo:6.0.0"
    assert at_zero(get(local_cluster, kind, namespace, "podinfo"))
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert f"Rolling back podinfo.{namespace} failed checks threshold reached 2" in events(local_cluster, namespace)


def test_changing_a_statefulset_target_volume_claims_is_refused_with_what_to_do(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    target = workload("StatefulSet", namespace)
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    target["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": claim_spec}]
    local_cluster.apply(target)
    manifest = canary(namespace, WEIGHTED)
    manifest["spec"]["targetRef"]["kind"] = "StatefulSet"
    local_cluster.apply(manifest)
    # Once the Canary is stored, admission labels the target and makes its primary, claims included.

    def bootstrapped() -> bool:
        labelled = "serin.dev/canary" in get(local_cluster, "StatefulSet", namespace, "podinfo")["metadata"]["labels"]
        found = local_cluster.kubectl("get", "statefulset", "podinfo-primary", "-n", namespace, "--ignore-not-found")
        return labelled and bool(found.stdout.strip())

    eventually(bootstrapped, timeout=10, what="the target labelled and its primary made")
    primary = get(local_cluster, "StatefulSet", namespace, "podinfo-primary")
    assert [c["metadata"]["name"] for c in primary["spec"]["volumeClaimTemplates"]] == ["data"]

    claim_spec["resources"] = {"requests": {"storage": "5Gi"}}
    refused = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(target), check=False)
    assert refused.returncode != 0
    assert (
        "StatefulSet podinfo is the target of canary podinfo: its volumeClaimTemplates cannot change (changed data), "
        "and podinfo-primary could not be given them either; to change them, delete the Canary, recreate podinfo "
        "with them, and create the Canary again"
    ) in refused.stderr
