"""Alerts over a whole promotion and a rollback: one AlertProvider of each type, all pointed at a
receiver of the test's own on 127.0.0.1, reached by the Serin server as a chat service would be.
Every tick is sent twice at once, so an alert sent twice would show."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from localcluster.testing import ClusterHandle, eventually
from tests.integration.helpers import (
    WEIGHTED,
    HookServer,
    SerinServer,
    canary,
    canary_status,
    podinfo,
    set_image,
)

pytestmark = pytest.mark.integration

TYPES = ("slack", "msteams", "discord", "rocket", "gchat", "webhook")


def message_of(kind: str, payload: dict[str, Any]) -> str:
    """The alert's message, where each chat service's payload carries it."""
    if kind in ("slack", "discord", "rocket"):
        return str(payload["attachments"][0]["text"])
    if kind == "msteams":
        return str(payload["sections"][0]["activityTitle"])
    if kind == "gchat":
        text = payload["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"]
        return str(text).removeprefix('<font color="#848484"><strong>').removesuffix("</strong></font>")
    return str(payload["message"])


def providers(namespace: str, receiver: HookServer) -> list[dict[str, Any]]:
    made = [
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": kind, "namespace": namespace},
            "spec": {"type": kind, "channel": "releases", "username": "serin", "address": receiver.url(kind)},
        }
        for kind in TYPES
    ]
    # The address of this one is in its Secret, as a webhook URL carrying a token would be.
    made.append(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "on-call", "namespace": namespace},
            "spec": {"type": "webhook", "secretRef": {"name": "on-call"}},
        }
    )
    made.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "on-call", "namespace": namespace},
            "stringData": {"address": receiver.url("on-call")},
        }
    )
    return made


def twice(server: SerinServer, token: str, namespace: str) -> None:
    """Two forced ticks at once: only the one whose status write wins sends anything."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: server.tick(token, namespace=namespace, name="podinfo", force="true"), range(2))
        )
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]


def until(cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, phase: str) -> None:
    for _ in range(30):
        twice(server, token, namespace)
        if canary_status(cluster, namespace).get("phase") == phase:
            return
        time.sleep(2.5)
    raise AssertionError(f"never {phase}: {canary_status(cluster, namespace)}")


def test_every_alert_type_gets_each_alert_once_over_a_promotion_and_a_rollback(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    with HookServer() as receiver:
        local_cluster.apply(providers(namespace, receiver))
        local_cluster.apply(podinfo(namespace))
        local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
        alerts = [{"name": kind, "providerRef": {"name": kind}} for kind in TYPES]
        alerts.append({"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}})
        local_cluster.apply(canary(namespace, {**WEIGHTED, "alerts": alerts}))
        until(local_cluster, serin_server, token, namespace, "Initialized")
        set_image(local_cluster, namespace, "6.0.1")
        until(local_cluster, serin_server, token, namespace, "Succeeded")
        bad = podinfo(namespace, "ghcr.io/stefanprodan/podinfo:6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
        bad["spec"]["replicas"] = 0
        local_cluster.apply(bad)
        until(local_cluster, serin_server, token, namespace, "Failed")

    received: dict[str, list[str]] = {}
    for path, payload in receiver.received:
        kind = path.removesuffix("/slack")
        received.setdefault(kind, []).append(message_of("webhook" if kind == "on-call" else kind, payload))
    expected = [
        "New Deployment detected, initialization completed.",
        "New revision detected, progressing canary analysis.",
        "Canary analysis completed successfully, promotion finished.",
        "New revision detected, progressing canary analysis.",
        "Failed checks threshold reached 2",
    ]
    assert received == {**{kind: expected for kind in TYPES}, "on-call": ["Failed checks threshold reached 2"]}

    # The whole payload of one, as Slack's incoming webhooks take it.
    slack = [payload for path, payload in receiver.received if path == "slack"]
    assert slack[2] == {
        "channel": "releases",
        "username": "serin",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": "good",
                "author_name": f"podinfo.{namespace}",
                "text": "Canary analysis completed successfully, promotion finished.",
                "mrkdwn_in": ["text"],
                "fields": [],
            }
        ],
    }
    webhook = [payload for path, payload in receiver.received if path == "webhook"]
    assert webhook[1]["fields"] == [
        {"title": "Target", "value": f"Deployment/podinfo.{namespace}"},
        {"title": "Failed checks threshold", "value": "2"},
        {"title": "Progress deadline", "value": "120s"},
        {"title": "Traffic routing", "value": "Weight step: 20 max: 40"},
    ]


def test_an_alert_on_its_way_is_not_sent_again_by_a_racing_tick(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """The first tick records the initialization with its alert, then sends it to a slow receiver;
    a tick meanwhile must leave the step to it rather than send the recorded alert a second time."""
    token = tokens["ticker"]
    with HookServer() as receiver:
        local_cluster.apply(providers(namespace, receiver)[:1])
        local_cluster.apply(podinfo(namespace))
        local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
        alerts = [{"name": "slack", "providerRef": {"name": "slack"}}]
        local_cluster.apply(canary(namespace, {**WEIGHTED, "alerts": alerts}))
        receiver.gate.clear()

        def until_sent() -> int:
            for _ in range(30):
                answer = serin_server.tick(token, namespace=namespace, name="podinfo", force="true")
                if answer.status_code != 200 or receiver.received:
                    return answer.status_code
                time.sleep(0.5)
            raise AssertionError(f"never initialized: {canary_status(local_cluster, namespace)}")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(until_sent)
            eventually(lambda: receiver.received, what="the initialization alert to be on its way")
            second = serin_server.tick(token, namespace=namespace, name="podinfo", force="true")
            receiver.gate.set()
            assert first.result() == second.status_code == 200
        (racing,) = second.json()["canaries"]
        assert racing["summary"].startswith("another tick is taking a step of this canary"), racing
        assert [message_of("slack", payload) for _, payload in receiver.received] == [
            "New Deployment detected, initialization completed."
        ]
        assert canary_status(local_cluster, namespace).get("phase") == "Initialized"
