"""Whole releases driven by POST /tick over HTTPS: real API server, simulated mesh traffic, real Prometheus."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from localcluster.testing import ClusterHandle, eventually
from serin.telemetry import GAUGE_SECONDS
from tests.integration.helpers import (
    METRICS,
    WEIGHTED,
    SerinServer,
    canary,
    canary_status,
    deployment,
    drive,
    events,
    initialized,
    podinfo,
    routes,
    set_image,
    tick,
    tick_until,
)

pytestmark = pytest.mark.integration


def at_first_step(
    cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, analysis: dict[str, Any] = WEIGHTED
) -> None:
    """An initialized Canary whose new revision has reached the first weight step."""
    initialized(cluster, server, token, namespace, analysis=analysis)
    set_image(cluster, namespace, "6.0.1")
    eventually(
        lambda: tick(server, token, namespace)["canaries"][0]["weight"] == 20, timeout=30, what="the first weight step"
    )


def test_initialization_creates_primary_and_services(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    initialized(local_cluster, serin_server, tokens["ticker"], namespace)
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.0")
    assert primary["status"].get("readyReplicas") == 2
    assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
    apex = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert apex["spec"]["selector"] == {"app": "podinfo-primary"}
    assert local_cluster.get_json("service", "podinfo-canary", "-n", namespace)["spec"]["selector"] == {
        "app": "podinfo"
    }
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert "Initialization done! podinfo." + namespace in events(local_cluster, namespace)
    # What Flagger's users and GitOps tools expect on generated objects.
    hands_off = {
        "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
        "helm.toolkit.fluxcd.io/driftDetection": "disabled",
    }
    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        metadata = local_cluster.get_json("service", name, "-n", namespace)["metadata"]
        assert metadata["labels"]["app"] == name
        assert hands_off.items() <= metadata["annotations"].items()
    vs = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    assert vs["spec"]["gateways"] == ["mesh"]
    assert hands_off.items() <= vs["metadata"]["annotations"].items()
    condition = canary_status(local_cluster, namespace)["conditions"][0]
    assert (condition["reason"], condition["message"]) == ("Initialized", "Deployment initialization completed.")
    printed = local_cluster.kubectl("get", "canaries.serin.dev", "podinfo", "-n", namespace).stdout
    assert "Initialized" in printed and "WEIGHT" in printed


@pytest.mark.compat
def test_good_release_is_promoted(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    set_image(local_cluster, namespace, "6.0.1")

    status = drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.1")
    assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    history = events(local_cluster, namespace)
    assert f"New revision detected! Scaling up podinfo.{namespace}" in history
    assert f"Advance podinfo.{namespace} canary weight 20" in history
    assert f"Advance podinfo.{namespace} canary weight 40" in history
    assert f"Promotion completed! Scaling down podinfo.{namespace}" in history
    condition = status["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Promoted", "True", "Succeeded")


def test_release_with_errors_is_rolled_back(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    bad = podinfo(namespace, "ghcr.io/stefanprodan/podinfo:6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    bad["spec"]["replicas"] = 0
    local_cluster.apply(bad)

    status = drive(local_cluster, serin_server, token, namespace, "Failed")
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.0")
    assert primary["spec"]["replicas"] == 2
    assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert status["conditions"][0]["status"] == "False"
    history = events(local_cluster, namespace)
    assert any(m.startswith(f"Halt podinfo.{namespace} advancement success rate") for m in history), history
    assert f"Rolling back podinfo.{namespace} failed checks threshold reached 2" in history


def test_ab_release_on_a_cookie_is_promoted(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    analysis = {
        "interval": "10s",
        "threshold": 2,
        "iterations": 2,
        "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
        "metrics": METRICS,
    }
    initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
    set_image(local_cluster, namespace, "6.0.1")

    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
    # As in Flagger: the weight of an A/B test is 0 in the status; the match route carries it.
    assert canary_status(local_cluster, namespace)["canaryWeight"] == 0
    vs = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    assert vs["spec"]["http"][0]["match"] == analysis["match"]
    assert [r.get("weight") for r in vs["spec"]["http"][0]["route"]] == [0, 100]
    status = drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    history = events(local_cluster, namespace)
    assert f"Advance podinfo.{namespace} canary iteration 2/2" in history
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.1")


@pytest.mark.parametrize(
    "where",
    [
        # The Deployment webhook leaves a revision during analysis to the next tick (the canary is
        # scaled up already: there is nothing to do before the request is answered).
        pytest.param("namespace", id="as-installed"),
        pytest.param("namespace_without_webhooks", id="without-webhooks"),
    ],
)
def test_new_revision_during_analysis_restarts_it(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    request: pytest.FixtureRequest,
    where: str,
) -> None:
    token, namespace = tokens["ticker"], request.getfixturevalue(where)
    at_first_step(local_cluster, serin_server, token, namespace)
    first_revision = canary_status(local_cluster, namespace)["lastAppliedSpec"]

    set_image(local_cluster, namespace, "6.0.2")
    report = tick(serin_server, token, namespace)["canaries"][0]
    status = canary_status(local_cluster, namespace)
    assert (status["phase"], status["canaryWeight"]) == ("Progressing", 0), report
    assert status["lastAppliedSpec"] != first_revision
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert f"New revision detected! Restarting analysis for podinfo.{namespace}" in events(local_cluster, namespace)


def test_two_concurrent_ticks_advance_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    # No metrics: what is under test is the claim, and a step whose window Prometheus has not
    # scraped yet would halt instead of advancing.
    at_first_step(local_cluster, serin_server, token, namespace, {**WEIGHTED, "metrics": []})
    # Unforced ticks once the interval has passed: each may advance the Canary, together only once.
    time.sleep(10.5)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: serin_server.tick(token, namespace=namespace, name="podinfo"), range(2)))
    reports = [answer.json()["canaries"][0] for answer in answers]
    assert all(answer.status_code == 200 for answer in answers)
    assert sum(report["applied"] and report["weight"] == 40 for report in reports) == 1, reports
    assert canary_status(local_cluster, namespace)["canaryWeight"] == 40
    advances = [
        m for m in events(local_cluster, namespace) if m.startswith(f"Advance podinfo.{namespace} canary weight 40")
    ]
    assert len(advances) == 1


def test_dry_run_changes_nothing(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace_without_webhooks: str
) -> None:
    """Without the Deployment webhook (down when the image changed), the step the dry run plans
    detects the revision: it would scale the canary up, write the status and record Events."""
    token, namespace = tokens["ticker"], namespace_without_webhooks
    initialized(local_cluster, serin_server, token, namespace)
    set_image(local_cluster, namespace, "6.0.1")

    def versions() -> dict[str, str]:
        listed = local_cluster.get_json(
            "canaries,deployments,services,virtualservices,destinationrules", "-n", namespace
        )
        return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in listed["items"]}

    before = versions()
    body = tick(serin_server, token, namespace, dry_run="true")
    report = body["canaries"][0]
    assert body["dryRun"] is True
    assert report["phase"] == "Progressing" and "ScaleTarget(replicas=2)" in report["actions"]
    assert report["applied"] is False
    assert versions() == before


@pytest.mark.compat
def test_tick_requires_a_token_allowed_to_update_canaries(serin_server: SerinServer, tokens: dict[str, str]) -> None:
    anonymous = serin_server.tick(None)
    assert anonymous.status_code == 401
    assert "bearer token" in anonymous.json()["error"]
    assert serin_server.tick("not-a-token").status_code == 401
    stranger = serin_server.tick(tokens["stranger"])
    assert stranger.status_code == 403
    assert "system:serviceaccount:serin-tests:stranger may not tick canaries.serin.dev" in stranger.json()["error"]
    bad_flag = serin_server.tick(tokens["ticker"], force="perhaps")
    assert bad_flag.status_code == 400
    assert serin_server.tick(tokens["ticker"], name="podinfo").status_code == 400


def test_config_change_is_a_revision_promoted_with_its_copy(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    local_cluster.apply({**settings, "data": {"greeting": "hello"}})
    app = podinfo(namespace)
    app["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    local_cluster.apply(app)
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    local_cluster.apply(canary(namespace, WEIGHTED))
    drive(local_cluster, serin_server, token, namespace, "Initialized")
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "settings-primary"}}
    ]
    assert local_cluster.get_json("configmap", "settings-primary", "-n", namespace)["data"] == {"greeting": "hello"}
    assert canary_status(local_cluster, namespace)["trackedConfigs"].keys() == {"configmap/settings"}

    local_cluster.apply({**settings, "data": {"greeting": "hi"}})
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert local_cluster.get_json("configmap", "settings-primary", "-n", namespace)["data"] == {"greeting": "hi"}
    assert f"New revision detected! Scaling up podinfo.{namespace}" in events(local_cluster, namespace)


def test_serin_metrics_follow_the_canary(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    metrics_token: str,
    namespace: str,
) -> None:
    at_first_step(local_cluster, serin_server, tokens["ticker"], namespace)

    def exposed() -> str:
        scraped = serin_server.metrics(metrics_token)
        assert scraped.status_code == 200, scraped.text
        return scraped.text

    # Each server process lists the Canaries at most every GAUGE_SECONDS.
    current = f'serin_canary_weight{{namespace="{namespace}",workload="podinfo"}} 20.0'
    eventually(lambda: current in exposed(), timeout=GAUGE_SECONDS * 3, what="the gauges of the first step")
    metrics = exposed()
    assert f'serin_canary_weight{{namespace="{namespace}",workload="podinfo"}} 20.0' in metrics
    assert f'serin_canary_weight{{namespace="{namespace}",workload="podinfo-primary"}} 80.0' in metrics
    assert f'serin_canary_status{{name="podinfo",namespace="{namespace}"}} 0.0' in metrics
    assert f'serin_canary_total{{namespace="{namespace}"}} 1.0' in metrics
    assert "serin_tick_duration_seconds_count" in metrics
    # A deleted Canary's series go with it.
    local_cluster.kubectl("delete", "canaries.serin.dev", "podinfo", "-n", namespace)

    def gauges_left() -> list[str]:
        return [
            line
            for line in exposed().splitlines()
            if line.startswith(("serin_canary_weight", "serin_canary_status", "serin_canary_total"))
            and namespace in line
        ]

    eventually(lambda: not gauges_left(), timeout=GAUGE_SECONDS * 3, what="the deleted Canary's gauges to go")


@pytest.mark.compat
def test_the_shards_of_a_tick_take_every_canary_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    manifests = []
    for index in range(12):
        manifest = canary(namespace, WEIGHTED)
        manifest["metadata"]["name"] = f"app-{index}"
        manifest["spec"]["targetRef"]["name"] = f"app-{index}"
        manifests.append(manifest)
    local_cluster.apply(manifests)
    taken: list[list[str]] = []
    for index in range(3):
        response = serin_server.tick(tokens["ticker"], namespace=namespace, shard=str(index), shards="3")
        assert response.status_code == 200, response.text
        assert response.json()["shard"] == {"index": index, "of": 3}
        taken.append([report["name"] for report in response.json()["canaries"]])
    # Each Canary in exactly one shard: none missing, none twice.
    assert sorted(name for shard in taken for name in shard) == sorted(f"app-{index}" for index in range(12))
