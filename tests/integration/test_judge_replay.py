"""The canary-versus-primary judge and replay, live: two releases side by side on the local control
plane, each version's latency set on the simulator, judged from real Prometheus data; then both
windows replayed through POST /replay, as they were and with a stricter threshold."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from localcluster.simulator.cluster import ERROR_RATE_ANNOTATION, LATENCY_ANNOTATION
from localcluster.testing import ClusterHandle, eventually
from serin.status import format_time
from tests.integration.helpers import (
    WEBHOOK_NAMESPACE_LABEL,
    SerinServer,
    canary,
    canary_status,
    drive,
    events,
    podinfo,
)

pytestmark = pytest.mark.integration

# Mean latency the destination sidecars saw, of the workload {{ target }} names.
MEAN_LATENCY = (
    'sum(rate(istio_request_duration_milliseconds_sum{reporter="destination", '
    'destination_workload_namespace="{{ namespace }}", destination_workload="{{ target }}"}[{{ interval }}]))'
    " / "
    'sum(rate(istio_request_duration_milliseconds_count{reporter="destination", '
    'destination_workload_namespace="{{ namespace }}", destination_workload="{{ target }}"}[{{ interval }}]))'
)
ANALYSIS = {
    "interval": "10s",
    "threshold": 1,
    "maxWeight": 20,
    "stepWeight": 20,
    "metrics": [
        # Every version fails 3% of its requests (at random): far above 90%.
        {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 90}},
        {"name": "latency", "interval": "15s", "query": MEAN_LATENCY, "compare": {"tolerance": 0.1}},
    ],
}
ERROR_RATE = "0.03"
# A judged failure, as the Event and the tick's answer explain it. The canary's 130 ms is measured
# from histogram buckets over a window that may begin before its pods served: a little less.
WORSE = re.compile(
    r"canary latency 1[1-3]\d(\.\d+)? vs primary (9\d|10\d)(\.\d+)?, \+\d+% \(98% CI \+\d+%\.\.\+\d+%\), "
    r"worse beyond tolerance 10%: failed"
)
PASSED = re.compile(
    r"canary latency \d+(\.\d+)? vs primary \d+(\.\d+)?, .*(within|better beyond) tolerance 10%: passed"
)


@pytest.fixture
def second_namespace(local_cluster: ClusterHandle, namespace: str) -> Iterator[str]:
    core = client.CoreV1Api(local_cluster.api)
    name = f"{namespace[:50]}-b"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=WEBHOOK_NAMESPACE_LABEL)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def initialized(cluster: ClusterHandle, server: SerinServer, token: str, namespace: str) -> None:
    cluster.apply(podinfo(namespace, **{LATENCY_ANNOTATION: "100", ERROR_RATE_ANNOTATION: ERROR_RATE}))
    cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    cluster.apply(canary(namespace, ANALYSIS))
    drive(cluster, server, token, namespace, "Initialized")


def release(cluster: ClusterHandle, namespace: str, latency_ms: int) -> None:
    """A new revision: the same image, another latency."""
    annotations = {LATENCY_ANNOTATION: str(latency_ms), ERROR_RATE_ANNOTATION: ERROR_RATE, "release": "2"}
    cluster.kubectl(
        "patch", "deployment", "podinfo", "-n", namespace, "--type=merge",
        "-p", f'{{"spec":{{"template":{{"metadata":{{"annotations":{_json(annotations)}}}}}}}}}',
    )  # fmt: skip


def _json(value: dict[str, str]) -> str:
    return "{" + ",".join(f'"{key}":"{item}"' for key, item in value.items()) + "}"


def distinct(states: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The states in order, each repeat of the one before dropped (waiting steps change nothing)."""
    return [state for index, state in enumerate(states) if index == 0 or state != states[index - 1]]


def live(
    cluster: ClusterHandle, server: SerinServer, token: str, latencies: dict[str, int]
) -> tuple[dict[str, datetime.datetime], dict[str, list[tuple[str, int, int]]], dict[str, list[dict[str, Any]]]]:
    """Releases the versions, then ticks as a CronJob would (unforced, often) until each Canary is
    Succeeded or Failed. Returns when each release started, each Canary's states step by step,
    and the tick answers' metric checks."""
    started: dict[str, datetime.datetime] = {}
    states: dict[str, list[tuple[str, int, int]]] = {namespace: [] for namespace in latencies}
    checks: dict[str, list[dict[str, Any]]] = {namespace: [] for namespace in latencies}
    for namespace, latency in latencies.items():
        release(cluster, namespace, latency)
        started[namespace] = datetime.datetime.now(datetime.UTC)
        # The Deployment webhook saw the new revision: the canary is scaled up, nothing is routed yet.
        status = canary_status(cluster, namespace)
        states[namespace].append((status["phase"], status["canaryWeight"], status["failedChecks"]))
    deadline = time.monotonic() + 150
    pending = set(latencies)
    while pending and time.monotonic() < deadline:
        for namespace in sorted(pending):
            response = server.tick(token, namespace=namespace, name="podinfo")
            assert response.status_code == 200, response.text
            report = response.json()["canaries"][0]
            assert report["error"] is None, report
            states[namespace].append((report["phase"], report["weight"], report["failedChecks"]))
            checks[namespace].extend(report["metrics"])
            if report["phase"] in ("Succeeded", "Failed"):
                pending.discard(namespace)
        time.sleep(0.5)
    assert not pending, f"never finished: {states}"
    return started, {namespace: distinct(found) for namespace, found in states.items()}, checks


def replayed(
    server: SerinServer, token: str, namespace: str, start: datetime.datetime, body: Any = None
) -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/replay",
        params={"namespace": namespace, "name": "podinfo", "from": format_time(start, precise=True)},
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        verify=str(server.ca_bundle),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def replayed_states(answer: dict[str, Any]) -> list[tuple[str, int, int]]:
    return distinct([(step["phase"], step["weight"], step["failedChecks"]) for step in answer["steps"]])


def test_judge_and_replay_of_a_promotion_and_a_rollback(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    second_namespace: str,
) -> None:
    token = tokens["ticker"]
    good, bad = namespace, second_namespace
    for each in (good, bad):
        initialized(local_cluster, serin_server, token, each)

    started, states, checks = live(local_cluster, serin_server, token, {good: 100, bad: 130})

    # The judge: 100 ms against 100 ms passes, 130 ms against 100 ms fails, each explained.
    assert states[good] == [
        ("Progressing", 0, 0),
        ("Progressing", 20, 0),
        ("Promoting", 20, 0),
        ("Finalising", 0, 0),
        ("Succeeded", 0, 0),
    ]
    assert states[bad] == [("Progressing", 0, 0), ("Progressing", 20, 0), ("Progressing", 20, 1), ("Failed", 0, 0)]
    good_latency = [check for check in checks[good] if check["name"] == "latency"]
    assert len(good_latency) == 1 and all(
        check["passed"] and PASSED.fullmatch(check["message"]) for check in good_latency
    ), good_latency
    bad_latency = [check for check in checks[bad] if check["name"] == "latency"]
    assert len(bad_latency) == 1 and bad_latency[0]["passed"] is False, bad_latency
    assert WORSE.fullmatch(bad_latency[0]["message"].removeprefix(f"Halt podinfo.{bad} advancement ")), bad_latency
    halts = [message for message in events(local_cluster, bad) if "vs primary" in message]
    assert len(halts) == 1 and WORSE.search(halts[0]), halts
    assert canary_status(local_cluster, good)["phase"] == "Succeeded"

    # Replay: both windows give the decisions taken live, and change nothing.
    before = {
        each: local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", each)["metadata"]["resourceVersion"]
        for each in (good, bad)
    }
    # Live steps may come up to a second early (the due tolerance), replayed ones come on the grid:
    # the window must reach the replayed promotion's last step.
    replayable = started[good] + datetime.timedelta(seconds=42) - datetime.datetime.now(datetime.UTC)
    time.sleep(max(0.0, replayable.total_seconds()))
    promotion = replayed(serin_server, token, good, started[good])
    assert (promotion["outcome"], replayed_states(promotion)) == ("promoted", states[good]), [
        (step["phase"], step["summary"]) for step in promotion["steps"]
    ]
    rollback = replayed(serin_server, token, bad, started[bad])
    assert (rollback["outcome"], replayed_states(rollback)) == ("rolled back", states[bad])
    judged = [check for step in rollback["steps"] for check in step["metrics"] if check["name"] == "latency"]
    assert [check["passed"] for check in judged] == [False] and WORSE.search(judged[0]["message"]), judged

    # A stricter threshold turns the promotion into a rollback at the step where the metric is below it.
    # The errors are drawn at random and a step sees a few dozen canary requests, so it may well have
    # seen none: the threshold is set just above the lowest success rate the promotion measured.
    measured = [
        check["value"]
        for step in promotion["steps"]
        for check in step["metrics"]
        if check["name"] == "request-success-rate"
    ]
    threshold = min(measured) + 0.01
    stricter = [{"op": "replace", "path": "/spec/analysis/metrics/0/thresholdRange/min", "value": threshold}]
    strict = replayed(serin_server, token, good, started[good], body=stricter)
    assert strict["modified"] is True and strict["outcome"] == "rolled back", strict
    rates = [
        (index, check["value"])
        for index, step in enumerate(strict["steps"])
        for check in step["metrics"]
        if check["name"] == "request-success-rate"
    ]
    crossed = next(index for index, value in rates if value < threshold)
    assert all(value >= threshold for index, value in rates if index < crossed), rates
    steps = strict["steps"]
    assert (steps[crossed]["failedChecks"], steps[crossed + 1]["phase"], len(steps)) == (1, "Failed", crossed + 2)
    # The same data as the replay of what happened: the value at that step passed the live threshold.
    same = [check for check in promotion["steps"][crossed]["metrics"] if check["name"] == "request-success-rate"]
    assert same[0]["value"] == dict(rates)[crossed] and same[0]["passed"] is True
    after = {
        each: local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", each)["metadata"]["resourceVersion"]
        for each in (good, bad)
    }
    assert after == before


def test_replay_refuses_what_it_cannot_do(
    serin_server: SerinServer, tokens: dict[str, str], namespace: str, local_cluster: ClusterHandle
) -> None:
    local_cluster.apply(canary(namespace, ANALYSIS))
    url, verify = f"{serin_server.url}/replay", str(serin_server.ca_bundle)
    ticker = {"Authorization": f"Bearer {tokens['ticker']}"}
    hour_ago = format_time(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))

    def post(headers: dict[str, str], body: Any = None, **params: str) -> tuple[int, str]:
        response = requests.post(url, params=params, headers=headers, json=body, verify=verify, timeout=30)
        return response.status_code, response.json()["error"]

    target = {"namespace": namespace, "name": "podinfo"}
    assert post({}, **target, **{"from": hour_ago})[0] == 401
    assert post({"Authorization": f"Bearer {tokens['stranger']}"}, **target, **{"from": hour_ago}) == (
        403,
        f"system:serviceaccount:serin-tests:stranger may not get canaries.serin.dev in namespace {namespace}",
    )
    assert post(ticker, **target) == (
        400,
        "query parameter from is required: a time (RFC 3339, or seconds since the epoch)",
    )
    assert post(ticker, **target, **{"from": "yesterday"}) == (
        400,
        "query parameter from must be a time (RFC 3339 such as 2026-11-28T10:00:00Z, or seconds since the epoch), "
        "not 'yesterday'",
    )
    assert post(ticker, namespace=namespace, name="nothing", **{"from": hour_ago}) == (
        404,
        f"no canary {namespace}/nothing",
    )
    assert (
        post(ticker, **target, **{"from": "2026-01-01T00:00:00Z"})[0] == 400
    )  # far more intervals than a replay takes
    changes = {"spec": {"analysis": {"interval": "1s"}}}
    # A replay that changes the Canary needs `update`, which a ticker does not have.
    assert post(ticker, changes, **target, **{"from": hour_ago}) == (
        403,
        "the patch changes spec.analysis.interval: a caller who may only get the Canary replays it changing only "
        "how it judges and steps (spec.analysis.threshold, stepWeight, stepWeights, stepWeightPromotion, maxWeight, "
        "iterations, metrics[].thresholdRange, metrics[].threshold, metrics[].compare); anything else needs update "
        "on canaries.serin.dev",
    )
    editor = {"apiGroups": ["serin.dev"], "resources": ["canaries"], "verbs": ["get", "update"]}
    local_cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "canary-editor", "namespace": namespace},
                "rules": [editor],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "ticker-edits", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "canary-editor"},
                "subjects": [{"kind": "ServiceAccount", "name": "ticker", "namespace": "serin-tests"}],
            },
        ]
    )
    status, message = eventually(
        lambda: (answer := post(ticker, changes, **target, **{"from": hour_ago}))[0] != 403 and answer,
        timeout=10,
        what="the RoleBinding to take effect",
    )
    assert (status, message) == (
        422,
        "the Canary as the body modifies it is invalid: spec.analysis.interval: must be at least 10s (got 1s)",
    )
    assert post(ticker, [{"op": "remove", "path": "/spec/nothing"}], **target, **{"from": hour_ago})[0] == 400


def test_admission_denies_what_cannot_compare(local_cluster: ClusterHandle, namespace: str) -> None:
    """Through the real API server: a builtin that does not select the workload, and a
    MetricTemplate whose query does not, are denied with their field paths."""
    template = {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": "errors", "namespace": namespace},
        "spec": {"provider": {"type": "prometheus"}, "query": 'sum(rate(errors{namespace="{{ namespace }}"}[1m]))'},
    }
    local_cluster.apply(template)
    metrics = [
        {"name": "request-duration", "compare": {}},
        {"name": "errors", "templateRef": {"name": "errors"}, "compare": {}},
    ]
    nginx = canary(namespace, {**ANALYSIS, "metrics": metrics}, provider="nginx")
    nginx["spec"]["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}
    denied = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(nginx), check=False)
    assert denied.returncode != 0
    assert 'admission webhook "canaries.serin.dev" denied the request' in denied.stderr
    assert (
        "spec.analysis.metrics[0].compare: the builtin request-duration of provider nginx does not select the "
        "workload by {{ target }}: give a query that does" in denied.stderr
    ), denied.stderr
    assert (
        f"spec.analysis.metrics[1].compare: MetricTemplate {namespace}/errors does not select the workload by "
        "{{ target }}: compare runs its query once for the canary and once for the primary" in denied.stderr
    ), denied.stderr
