"""A release group of three Canaries (frontend, api, worker) on the real API server, with the
webhooks on as installed: different strategies and routers, one release.

Every tick takes the whole namespace, as the CronJob does; after each, every member's stored
status is read, so the tests see each state the group passed through.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from localcluster.testing import ClusterHandle
from serin.decide import MIN_FORCED_STEP_SECONDS
from tests.integration.helpers import (
    ANALYSING_PHASES,
    METRICS,
    SerinServer,
    canary,
    events,
    podinfo,
    wait_for_canary_traffic,
)

pytestmark = pytest.mark.integration

MEMBERS = ("frontend", "api", "worker")
ANALYSES: dict[str, dict[str, Any]] = {
    # A weighted canary on the mesh.
    "frontend": {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20, "metrics": METRICS},
    # A/B testing on the mesh: one cookie's users reach the canary.
    "api": {
        "interval": "10s",
        "threshold": 2,
        "iterations": 2,
        "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
        "metrics": METRICS,
    },
    # Blue/green without a mesh: the canary is analysed through its own Service.
    "worker": {"interval": "10s", "threshold": 2, "iterations": 2, "metrics": METRICS},
}
PROVIDERS = {"frontend": "istio", "api": "istio", "worker": "kubernetes"}


def app(namespace: str, name: str, image: str = "ghcr.io/stefanprodan/podinfo:6.0.0", **annotations: str) -> Any:
    manifest = copy.deepcopy(podinfo(namespace, image, **annotations))
    manifest["metadata"]["name"] = name
    manifest["metadata"]["labels"] = {"app": name}
    manifest["spec"]["selector"] = {"matchLabels": {"app": name}}
    manifest["spec"]["template"]["metadata"]["labels"] = {"app": name}
    return manifest


def member(namespace: str, name: str, group: str = "checkout") -> dict[str, Any]:
    manifest = canary(namespace, ANALYSES[name], provider=PROVIDERS[name], group=group)
    manifest["metadata"]["name"] = name
    manifest["spec"]["targetRef"]["name"] = name
    if name == "worker":
        manifest["spec"]["service"] = {"port": 9898, "canary": {"annotations": {"simulator.serin.dev/rps": "40"}}}
    return manifest


def statuses(cluster: ClusterHandle, namespace: str) -> dict[str, dict[str, Any]]:
    listed = cluster.get_json("canaries.serin.dev", "-n", namespace)
    return {item["metadata"]["name"]: item.get("status", {}) for item in listed["items"]}


def where(status: dict[str, Any]) -> str:
    return f"{status.get('phase')} w{status.get('canaryWeight', 0)} i{status.get('iterations', 0)}"


def tick_group(
    cluster: ClusterHandle,
    server: SerinServer,
    token: str,
    namespace: str,
    done: Callable[[dict[str, dict[str, Any]]], bool],
    max_ticks: int = 40,
) -> list[dict[str, str]]:
    """Forced ticks of the namespace until ``done`` holds for the members' statuses; every state
    seen, in order. After a step that gives a canary traffic, the next waits until Prometheus holds
    some of it, and a step that waits for its metric window is made again when the window opens."""
    seen: list[dict[str, str]] = []
    for _ in range(max_ticks):
        ticked_at = time.time()
        response = server.tick(token, namespace=namespace, force="true")
        assert response.status_code == 200, response.text
        reports = response.json()["canaries"]
        assert [report["error"] for report in reports] == [None] * len(reports), reports
        now = statuses(cluster, namespace)
        seen.append({name: where(now[name]) for name in sorted(now)})
        if done(now):
            return seen
        for name, status in now.items():
            if status.get("phase") in ANALYSING_PHASES and (status.get("canaryWeight") or status.get("iterations")):
                wait_for_canary_traffic(cluster, namespace, since=ticked_at, target=name)
        windows = [
            report["nextStepInSeconds"] or 0.0 for report in reports if "for the metric window" in report["summary"]
        ]
        time.sleep(max([MIN_FORCED_STEP_SECONDS, *windows]))
    raise AssertionError("the group never got there:\n" + "\n".join(map(str, seen)))


def initialized_group(cluster: ClusterHandle, server: SerinServer, token: str, namespace: str) -> None:
    cluster.apply([app(namespace, name) for name in MEMBERS])
    for name in MEMBERS:
        cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=60s")
    cluster.apply([member(namespace, name) for name in MEMBERS])
    tick_group(
        cluster, server, token, namespace, lambda now: all(s.get("phase") == "Initialized" for s in now.values())
    )


def primary_image(cluster: ClusterHandle, namespace: str, name: str) -> str:
    primary = cluster.get_json("deployment", f"{name}-primary", "-n", namespace)
    image: str = primary["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.rsplit(":", 1)[1]


def phase_of(state: str) -> str:
    return state.split()[0]


def test_a_bad_release_of_one_member_rolls_back_all_three(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized_group(local_cluster, serin_server, token, namespace)
    local_cluster.apply(
        [
            app(namespace, "frontend", "ghcr.io/stefanprodan/podinfo:6.0.1"),
            app(namespace, "api", "ghcr.io/stefanprodan/podinfo:6.0.1", **{"simulator.serin.dev/error-rate": "0.5"}),
            app(namespace, "worker", "ghcr.io/stefanprodan/podinfo:6.0.1"),
        ]
    )
    seen = tick_group(
        local_cluster,
        serin_server,
        token,
        namespace,
        lambda now: all(s.get("phase") == "Failed" for s in now.values()),
    )
    # Nobody was promoted on the way, and the primaries run what they ran.
    assert not [state for state in seen if any(phase_of(s) in ("Promoting", "Finalising") for s in state.values())]
    assert [primary_image(local_cluster, namespace, name) for name in MEMBERS] == ["6.0.0"] * 3
    history = events(local_cluster, namespace)
    for name in ("frontend", "worker"):
        assert f"Rolling back {name}.{namespace}: api of group checkout failed" in history, history
    assert any(message.startswith(f"Halt api.{namespace} advancement success rate") for message in history)
    final = statuses(local_cluster, namespace)
    assert {name: final[name]["group"]["name"] for name in MEMBERS} == dict.fromkeys(MEMBERS, "checkout")
    assert len({final[name]["group"]["release"] for name in MEMBERS}) == 1


def test_a_good_release_of_two_members_is_promoted_together(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized_group(local_cluster, serin_server, token, namespace)
    local_cluster.apply([app(namespace, name, "ghcr.io/stefanprodan/podinfo:6.0.1") for name in ("frontend", "api")])
    seen = tick_group(
        local_cluster,
        serin_server,
        token,
        namespace,
        lambda now: now["frontend"].get("phase") == now["api"].get("phase") == "Succeeded",
    )
    # Never one on its way to promotion while the other was still under analysis.
    for state in seen:
        moving = {phase_of(state[name]) for name in ("frontend", "api")}
        assert not (moving & {"Promoting", "Finalising", "Succeeded"} and moving & {"Progressing"}), seen
    promoting = [index for index, state in enumerate(seen) if phase_of(state["frontend"]) == "Promoting"]
    assert promoting and phase_of(seen[promoting[0]]["api"]) == "Promoting", seen
    assert [primary_image(local_cluster, namespace, name) for name in MEMBERS] == ["6.0.1", "6.0.1", "6.0.0"]
    assert {phase_of(state["worker"]) for state in seen} == {"Initialized"}
    history = events(local_cluster, namespace)
    waited = [f"Canary analysis of {name}.{namespace} passed: waiting for group checkout" for name in MEMBERS]
    assert any(message in history for message in waited), history


def test_a_group_is_kept_in_one_shard(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    grouped = [member(namespace, name) for name in MEMBERS]
    alone = []
    for index in range(9):
        manifest = member(namespace, "frontend", group="")
        del manifest["spec"]["group"]
        manifest["metadata"]["name"] = manifest["spec"]["targetRef"]["name"] = f"alone-{index}"
        alone.append(manifest)
    local_cluster.apply(grouped + alone)
    taken: list[list[str]] = []
    for index in range(3):
        response = serin_server.tick(tokens["ticker"], namespace=namespace, shard=str(index), shards="3")
        assert response.status_code == 200, response.text
        taken.append(sorted(report["name"] for report in response.json()["canaries"]))
    holding = [shard for shard in taken if set(MEMBERS) & set(shard)]
    assert len(holding) == 1 and set(MEMBERS) <= set(holding[0]), taken
    assert sorted(name for shard in taken for name in shard) == sorted([*MEMBERS, *(f"alone-{i}" for i in range(9))])
