"""Decisions at parity with Flagger, on the local control plane: real API server, Prometheus, simulated
mesh, and webhook gates of the test's own. Each test is one behaviour in which Serin used to differ
from Flagger v1.36.1 (promoting a failing release, keeping traffic on an unanalysed canary, or rolling
back a healthy one)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localcluster.processes import free_port
from localcluster.testing import ClusterHandle, eventually
from serin.decide import UNAVAILABLE_LIMIT
from tests.integration.helpers import (
    METRICS,
    HookServer,
    SerinServer,
    analysis_started,
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


def image_of(cluster: ClusterHandle, namespace: str, name: str) -> str:
    container = deployment(cluster, namespace, name)["spec"]["template"]["spec"]["containers"][0]
    return str(container["image"])


def test_step_weights_stop_at_the_last_step(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Flagger promotes from the last of the stepWeights; it never ramps on to 100."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis={"interval": "10s", "stepWeights": [1, 5, 10]})
    set_image(local_cluster, namespace, "6.0.1")
    # The weights from before the first tick: as installed, that tick may find the canary ready
    # and take the first step at once.
    weights = [routes(local_cluster, namespace)[1][1]]
    for _ in range(10):
        report = tick(serin_server, token, namespace)["canaries"][0]
        weight = routes(local_cluster, namespace)[1][1]
        if weights[-1] != weight:
            weights.append(weight)
        if report["phase"] == "Promoting":
            break
        time.sleep(0.5)
    assert (report["phase"], weights) == ("Promoting", [0, 1, 5, 10])
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.1")


def test_waiting_promotion_keeps_analysing_and_rolls_back(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A release waiting for promotion approval is still analysed: failing checks roll it back unapproved."""
    token = tokens["ticker"]
    with HookServer() as gates:
        gates.statuses["promote"] = 403
        analysis = {
            "interval": "10s",
            "threshold": 2,
            "stepWeight": 50,
            "webhooks": [
                {"name": "load", "type": "rollout", "url": gates.url("load")},
                {"name": "approval", "type": "confirm-promotion", "url": gates.url("promote")},
            ],
        }
        initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
        set_image(local_cluster, namespace, "6.0.1")
        drive(local_cluster, serin_server, token, namespace, "WaitingPromotion")

        gates.statuses["load"] = 403
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("failedChecks") == 1)
        status = drive(local_cluster, serin_server, token, namespace, "Failed")

    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.0")
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert status["conditions"][0]["status"] == "False"
    history = events(local_cluster, namespace)
    assert f"Halt podinfo.{namespace} advancement waiting for promotion approval approval" in history
    assert f"Halt podinfo.{namespace} advancement external check load failed status 403" in history
    assert f"Rolling back podinfo.{namespace} failed checks threshold reached 2" in history
    assert not any(message.startswith("Copying") for message in history), history
    # As in Flagger, the gates of the analysis are told the Canary is Progressing.
    assert {payload["phase"] for path, payload in gates.received if path == "load"} == {"Progressing"}


def test_ab_testing_routes_matched_traffic_again_after_a_readiness_blip(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    analysis = {
        "interval": "10s",
        "threshold": 2,
        "iterations": 4,
        "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
        "metrics": METRICS,
    }
    initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 2)
    assert routes(local_cluster, namespace, route=0) == [("podinfo-primary", 0), ("podinfo-canary", 100)]

    # The canary's pods go away (a crash, a node lost, a hasty `kubectl scale`).
    local_cluster.kubectl("scale", "deployment/podinfo", "--replicas=0", "-n", namespace)
    eventually(
        lambda: deployment(local_cluster, namespace, "podinfo")["status"].get("availableReplicas", 0) == 0,
        what="the canary to have no pod available",
    )
    tick(serin_server, token, namespace)
    assert routes(local_cluster, namespace, route=0) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert any("not ready" in message for message in events(local_cluster, namespace))

    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    tick(serin_server, token, namespace)
    assert routes(local_cluster, namespace, route=0) == [("podinfo-primary", 0), ("podinfo-canary", 100)]
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.1")
    history = events(local_cluster, namespace)
    assert f"Advance podinfo.{namespace} canary iteration 4/4" in history
    assert not any(message.startswith("Halt") for message in history), history


def test_blue_green_routes_all_traffic_to_the_canary_before_promotion(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """As Flagger: the first step runs no analysis, then the iterations, then one analysed step with
    all traffic on the canary, then promotion while it serves. Every hook request carries its own
    idempotency key."""
    token = tokens["ticker"]
    with HookServer() as gates:
        analysis = {
            "interval": "10s",
            "threshold": 2,
            "iterations": 2,
            "webhooks": [
                {"name": "load", "type": "rollout", "url": gates.url("load")},
                {"name": "news", "type": "event", "url": gates.url("news")},
                {"name": "done", "type": "post-rollout", "url": gates.url("done")},
            ],
        }
        initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
        set_image(local_cluster, namespace, "6.0.1")
        # The row from before the first tick: as installed, that tick may find the canary ready
        # and take the first step at once.
        before = canary_status(local_cluster, namespace)
        seen: list[tuple[Any, ...]] = [
            (before["phase"], before["iterations"], routes(local_cluster, namespace)[1][1], 0)
        ]
        for _ in range(15):
            report = tick(serin_server, token, namespace)["canaries"][0]
            calls = sum(path == "load" for path, _ in gates.received)
            row = (report["phase"], report["iterations"], routes(local_cluster, namespace)[1][1], calls)
            if seen[-1] != row:  # a step waiting for pods to be ready repeats the last row
                seen.append(row)
            if report["phase"] == "Succeeded":
                break
            time.sleep(0.5)
    assert seen == [
        ("Progressing", 0, 0, 0),  # new revision: the canary is scaled up
        ("Progressing", 1, 0, 0),  # first step: no analysis
        ("Progressing", 2, 0, 1),
        ("Progressing", 3, 100, 2),  # all traffic to the canary
        ("Promoting", 3, 100, 3),  # analysed with all traffic on it, then promoted
        ("Finalising", 3, 0, 3),
        ("Succeeded", 0, 0, 3),
    ], seen
    assert "Routing all traffic to canary" in events(local_cluster, namespace)
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.1")
    # Each request was sent once (no tick died): each has a key of its own, in the body and, the
    # same, as the Idempotency-Key header, a quoted string. Each analysed step asked the gate anew.
    keys = [payload["idempotencyKey"] for _, payload in gates.received]
    assert len(set(keys)) == len(keys)
    assert sorted(header or "" for _, header in gates.idempotency_keys) == sorted(f'"{key}"' for key in keys)
    assert [path for path, _ in gates.received].count("load") == 3
    assert [path for path, _ in gates.received].count("done") == 1
    assert {path for path, _ in gates.received} == {"load", "news", "done"}


# Read over 5s, so that a step after a weight change waits little for its metric window.
ERRORS = {"name": "errors", "interval": "5s", "thresholdRange": {"max": 1}}
TEMPLATED = {**ERRORS, "templateRef": {"name": "errors"}}


@pytest.mark.parametrize(
    ("metric", "template_query", "event", "admitted_in"),
    [
        pytest.param(
            {**ERRORS, "query": "sum(rate(istio_requests_total[1m])"},
            None,
            "Prometheus query failed for errors: prometheus at",
            # Admission refuses it; it gets this far only past a webhook that was down.
            "namespace_without_webhooks",
            id="promql-prometheus-refuses",
        ),
        pytest.param(
            TEMPLATED,
            "sum(rate(istio_requests_total[1m])",
            "Metric query failed for errors: prometheus at",
            "namespace",
            id="template-promql-prometheus-refuses",
        ),
        pytest.param(
            TEMPLATED,
            'sum(up{namespace="{{ nmespace }}"})',
            "Metric query failed for errors: unknown placeholder(s) nmespace",
            "namespace",
            id="template-unknown-placeholder",
        ),
        pytest.param(
            {**ERRORS, "query": "vector(1)[1m:10s]"},
            None,
            "Prometheus query failed for errors: query vector(1)[1m:10s] returned a matrix result",
            "namespace",
            id="not-one-number",
        ),
    ],
)
def test_a_wrong_query_is_a_failed_check_not_a_hold(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    request: pytest.FixtureRequest,
    metric: dict[str, Any],
    template_query: str | None,
    event: str,
    admitted_in: str,
) -> None:
    """(Admission refuses such queries in a Canary where it can; a MetricTemplate's, or one written
    while Prometheus could not be asked, reaches the analysis.)"""
    token, namespace = tokens["ticker"], request.getfixturevalue(admitted_in)
    if template_query is not None:
        local_cluster.apply(
            {
                "apiVersion": "serin.dev/v1beta1",
                "kind": "MetricTemplate",
                "metadata": {"name": "errors", "namespace": namespace},
                "spec": {
                    "provider": {"type": "prometheus", "address": local_cluster.urls["prometheus"]},
                    "query": template_query,
                },
            }
        )
    initialized(
        local_cluster,
        serin_server,
        token,
        namespace,
        analysis={"interval": "10s", "threshold": 2, "stepWeight": 20, "metrics": [metric]},
    )
    set_image(local_cluster, namespace, "6.0.1")
    drive(local_cluster, serin_server, token, namespace, "Failed", max_ticks=8)
    history = events(local_cluster, namespace)
    assert any(message.startswith(event) for message in history), history
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.0")


def test_a_deleted_metric_template_is_a_failed_check(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    template = {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": "errors", "namespace": namespace},
        "spec": {"provider": {"type": "prometheus", "address": local_cluster.urls["prometheus"]}, "query": "vector(0)"},
    }
    local_cluster.apply(template)
    metric = {"name": "errors", "interval": "5s", "templateRef": {"name": "errors"}, "thresholdRange": {"max": 1}}
    initialized(
        local_cluster,
        serin_server,
        token,
        namespace,
        analysis={"interval": "10s", "threshold": 2, "stepWeight": 20, "metrics": [metric]},
    )
    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 40)
    local_cluster.kubectl("delete", "metrictemplate", "errors", "-n", namespace)
    drive(local_cluster, serin_server, token, namespace, "Failed", max_ticks=6)
    assert any(
        message.startswith(f"Metric query failed for errors: MetricTemplate {namespace}/errors does not exist")
        for message in events(local_cluster, namespace)
    )


def test_an_unreachable_prometheus_holds_for_a_bounded_number_of_steps(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A metrics backend that is down is not the release's fault: the step holds. But only so
    long: from the step after ``UNAVAILABLE_LIMIT`` on, it counts as a failed check."""
    token = tokens["ticker"]
    closed = f"http://127.0.0.1:{free_port()}"
    initialized(
        local_cluster,
        serin_server,
        token,
        namespace,
        analysis={"interval": "10s", "threshold": 1, "stepWeight": 20, "metrics": METRICS},
        metricsServer=closed,
    )
    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    summaries = [tick(serin_server, token, namespace)["canaries"][0]["summary"] for _ in range(UNAVAILABLE_LIMIT + 2)]
    assert [summary.split(":")[0] for summary in summaries] == [
        *(f"holding ({step}/{UNAVAILABLE_LIMIT})" for step in range(1, UNAVAILABLE_LIMIT + 1)),
        "failed check",
        "rolled back",
    ], summaries
    assert canary_status(local_cluster, namespace)["phase"] == "Failed"
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]


def test_derived_defaults_follow_the_field_they_come_from(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A metric's interval is 1m unless set (not the analysis interval, frozen when the Canary was
    created), and the Services' targetPort follows the port until it is set."""
    token = tokens["ticker"]
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    manifest = canary(namespace, {"interval": "30s", "stepWeight": 10, "metrics": [{"name": "request-success-rate"}]})
    local_cluster.apply(manifest)
    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["spec"]
    assert stored["analysis"]["metrics"][0]["interval"] == "1m"
    assert "targetPort" not in stored["service"]

    manifest["spec"]["service"]["port"] = 8080
    local_cluster.apply(manifest)
    drive(local_cluster, serin_server, token, namespace, "Initialized")
    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        (port,) = local_cluster.get_json("service", name, "-n", namespace)["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (8080, 8080), name
    vs = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    # The destinations name the Services by host only, as Flagger's do: their one port is meant.
    assert [entry["destination"] for entry in vs["spec"]["http"][0]["route"]] == [
        {"host": "podinfo-primary"},
        {"host": "podinfo-canary"},
    ]


def test_unforced_ticks_at_the_interval_take_one_step_each(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A tick a few hundred milliseconds early (a CronJob's jitter) is still in time: with the tick
    period equal to the interval, every tick takes a step and none slips a whole interval."""
    token = tokens["ticker"]
    interval = 10.0
    started = analysis_started(
        local_cluster, serin_server, token, namespace, {"interval": "10s", "stepWeights": [10, 20, 30, 40]}
    )
    assert started["weight"] == 10
    # The schedule starts at that forced step; from now on only the interval's ticks, early and late.
    start = time.monotonic() + interval
    weights = []
    for number, jitter in enumerate([0.0, -0.4, 0.3, -0.5]):
        time.sleep(max(0.0, start + number * interval + jitter - time.monotonic()))
        response = serin_server.tick(token, namespace=namespace, name="podinfo")
        assert response.status_code == 200, response.text
        weights.append(response.json()["canaries"][0]["weight"])
    assert weights == [20, 30, 40, 40], weights
    assert canary_status(local_cluster, namespace)["phase"] == "Promoting"


def test_a_revision_seen_by_the_webhook_is_due_at_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis={"interval": "1m", "stepWeight": 25})
    set_image(local_cluster, namespace, "6.0.1")
    assert canary_status(local_cluster, namespace)["phase"] == "Progressing"
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    response = serin_server.tick(token, namespace=namespace, name="podinfo")
    report = response.json()["canaries"][0]
    assert (report["phase"], report["weight"]) == ("Progressing", 25), report


def event_objects(cluster: ClusterHandle, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.get_json("events", "-n", namespace, "--field-selector", "involvedObject.kind=Canary")
    items: list[dict[str, Any]] = listed["items"]
    return items


def test_a_canary_without_its_target_has_a_status_and_one_counted_event(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    local_cluster.apply(canary(namespace, {"interval": "10s", "stepWeight": 10}))
    for _ in range(3):
        tick(serin_server, tokens["ticker"], namespace)
    status = canary_status(local_cluster, namespace)
    assert status["phase"] == "Initializing"
    condition = status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("Unknown", "Initializing")
    assert condition["message"].startswith(f"Target deployment podinfo.{namespace} not found")
    # Repeats are counted on one Event, as client-go's recorder does, not one object per tick.
    (event,) = event_objects(local_cluster, namespace)
    assert (event["type"], event["message"], event["count"]) == (
        "Warning",
        f"Target deployment podinfo.{namespace} not found",
        3,
    )
    described = local_cluster.kubectl("describe", "canaries.serin.dev", "podinfo", "-n", namespace).stdout
    assert "(x3 over" in described, described


def test_a_suspended_canary_says_so_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    local_cluster.kubectl(
        "patch", "canaries.serin.dev", "podinfo", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    set_image(local_cluster, namespace, "6.0.1")
    for _ in range(3):
        assert tick(serin_server, token, namespace)["canaries"][0]["summary"] == "suspended: spec.suspend is true"
    skipping = [e for e in event_objects(local_cluster, namespace) if e["message"].startswith("skipping")]
    assert [(e["message"], e["count"]) for e in skipping] == [("skipping canary run as object is suspended", 1)]
    assert canary_status(local_cluster, namespace)["phase"] == "Initialized"
