"""Ticks over many Canaries: shards taken by two Serin replicas side by side, and a hung metrics
backend that holds only its own Canary's step, not the steps of all the others."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from localcluster.testing import ClusterHandle, eventually
from serin.decide import MIN_FORCED_STEP_SECONDS
from serin.metrics.http import DEFAULT_TIMEOUT
from serin.reconcile import shard_of
from tests.integration.helpers import SerinServer, canary, podinfo

pytestmark = pytest.mark.integration

OLD, NEW = "ghcr.io/stefanprodan/podinfo:6.0.0", "ghcr.io/stefanprodan/podinfo:6.0.1"
# Forced ticks closer together than this are refused by each Canary (see serin.decide).
PAUSE = MIN_FORCED_STEP_SECONDS + 0.1

Report = dict[str, Any]


def app(namespace: str, name: str, analysis: dict[str, Any], **spec: Any) -> list[dict[str, Any]]:
    """A one-replica podinfo Deployment ``name`` (kwok runs its pods) and its Canary."""
    deployment = podinfo(namespace, OLD)
    deployment["metadata"].update(name=name, labels={"app": name})
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["selector"]["matchLabels"] = {"app": name}
    deployment["spec"]["template"]["metadata"]["labels"] = {"app": name}
    manifest = canary(namespace, analysis, **spec)
    manifest["metadata"]["name"] = name
    manifest["spec"]["targetRef"]["name"] = name
    return [deployment, manifest]


def forced_tick(server: SerinServer, token: str, namespace: str, **params: str) -> dict[str, Any]:
    """One forced tick of the namespace; it must answer 200 with no Canary in error."""
    response = server.tick(token, namespace=namespace, force="true", **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    failed = [report for report in body["canaries"] if report["error"] is not None]
    assert not failed, failed
    return body


def tick_until(
    server: SerinServer,
    token: str,
    namespace: str,
    done: Callable[[Report], bool],
    max_ticks: int = 20,
    **params: str,
) -> list[Report]:
    """Forced ticks until every Canary's report is ``done``; the last reports."""
    for _ in range(max_ticks):
        reports: list[Report] = forced_tick(server, token, namespace, **params)["canaries"]
        if reports and all(done(report) for report in reports):
            return reports
        time.sleep(PAUSE)
    raise AssertionError(f"not every canary done after {max_ticks} ticks: {[r for r in reports if not done(r)]}")


def release(cluster: ClusterHandle, namespace: str, names: list[str]) -> None:
    """A new revision of every Deployment, in one request."""
    deployments = [f"deployment/{name}" for name in names]
    cluster.kubectl("set", "image", *deployments, f"podinfod={NEW}", "-n", namespace)


def all_rolled_out(cluster: ClusterHandle, namespace: str) -> bool:
    items = cluster.get_json("deployments", "-n", namespace)["items"]
    return all(
        d["status"].get("observedGeneration") == d["metadata"]["generation"]
        and d["status"].get("updatedReplicas", 0) == d["spec"]["replicas"]
        and d["status"].get("readyReplicas", 0) == d["spec"]["replicas"]
        and d["status"].get("replicas", 0) == d["spec"]["replicas"]
        for d in items
    )


def event_counts(cluster: ClusterHandle, namespace: str) -> dict[tuple[str, str], int]:
    """(Canary, message) -> count of every Event on the namespace's Canaries."""
    listed = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=Canary", "-o", "json"
        ).stdout
    )
    counts: dict[tuple[str, str], int] = {}
    for event in listed["items"]:
        key = (event["involvedObject"]["name"], event["message"])
        counts[key] = counts.get(key, 0) + int(event.get("count") or 1)
    return counts


# ---- two replicas, each ticking its shard ----------------------------------------------------

SHARDS = 2
PER_SHARD = 4
# No metrics: the test is about who steps which Canary, and how often.
STEPPED = {"interval": "10s", "threshold": 2, "maxWeight": 60, "stepWeight": 20}
WEIGHTS = [20, 40, 60]


def names_by_shard(namespace: str) -> list[list[str]]:
    """``PER_SHARD`` Canary names falling on each shard (the namespace is random: so are the shards)."""
    shards: list[list[str]] = [[] for _ in range(SHARDS)]
    for index in itertools.count():
        name = f"app-{index}"
        taken = shards[shard_of(namespace, name, SHARDS)]
        if len(taken) < PER_SHARD:
            taken.append(name)
        if all(len(shard) == PER_SHARD for shard in shards):
            return [sorted(shard) for shard in shards]
    raise AssertionError("unreachable")


def test_two_replicas_ticking_their_shards_step_every_canary_once(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    second_serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
) -> None:
    token = tokens["ticker"]
    replicas = [serin_server, second_serin_server]
    shards = names_by_shard(namespace)
    names = sorted(name for shard in shards for name in shard)
    local_cluster.apply([item for name in names for item in app(namespace, name, STEPPED)])
    rounds: list[list[Report]] = []

    def tick_round() -> list[Report]:
        """Each replica ticks its own shard, both at the same moment."""
        start = threading.Barrier(SHARDS)

        def call(index: int) -> requests.Response:
            start.wait(timeout=10)
            return replicas[index].tick(token, namespace=namespace, force="true", shard=str(index), shards="2")

        with concurrent.futures.ThreadPoolExecutor(SHARDS) as pool:
            answers = list(pool.map(call, range(SHARDS)))
        taken = []
        for index, answer in enumerate(answers):
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["shard"] == {"index": index, "of": SHARDS}
            failed = [report for report in body["canaries"] if report["error"] is not None]
            assert not failed, failed
            taken.append([report["name"] for report in body["canaries"]])
            rounds.append(body["canaries"])
        # Each replica steps exactly its shard's Canaries, each once; no Canary is in both answers.
        assert [sorted(names) for names in taken] == shards, f"round {len(rounds) // SHARDS}: {taken}"
        assert not set(taken[0]) & set(taken[1])
        return rounds[-2] + rounds[-1]

    def drive(phase: str, max_rounds: int = 25) -> None:
        for _ in range(max_rounds):
            if all(report["phase"] == phase for report in tick_round()):
                return
            time.sleep(PAUSE)
        raise AssertionError(f"not every canary {phase} after {max_rounds} rounds: {rounds[-2:]}")

    drive("Initialized")
    release(local_cluster, namespace, names)
    drive("Succeeded")

    # No step taken twice: each Canary went through each weight once, in order, in one answer.
    for name in names:
        advanced = [
            int(message.rsplit(" ", 1)[1])
            for reports in rounds
            for report in reports
            if report["name"] == name
            for message in report["events"]
            if message.startswith(f"Advance {name}.{namespace} canary weight ")
        ]
        assert advanced == WEIGHTS, f"{name}: {advanced}"
    counts = event_counts(local_cluster, namespace)
    for name in names:
        who = f"{name}.{namespace}"
        steps = [
            f"Initialization done! {who}",
            f"New revision detected! Scaling up {who}",
            f"Starting canary analysis for {who}",
            *(f"Advance {who} canary weight {weight}" for weight in WEIGHTS),
            f"Promotion completed! Scaling down {who}",
        ]
        assert {step: counts.get((name, step), 0) for step in steps} == dict.fromkeys(steps, 1), name
    for name in names:
        status = local_cluster.get_json("canaries.serin.dev", name, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded"
        primary = local_cluster.get_json("deployment", f"{name}-primary", "-n", namespace)
        assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == NEW


# ---- a hung metrics backend ------------------------------------------------------------------

OTHERS = 50
# Serin's Prometheus query timeout: it has no setting, every query waits at most this long.
METRIC_TIMEOUT = DEFAULT_TIMEOUT
# Blue/green on Services only, each iteration analysed by one query.
ANALYSED = {
    "interval": "1m",
    "threshold": 2,
    "iterations": 5,
    "metrics": [{"name": "always-up", "interval": "5s", "query": "vector(1)", "thresholdRange": {"min": 1}}],
}
# The hung Canary's analysis waits this long after its first iteration for its metric window.
WINDOW_SECONDS = 5.0


class HungServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers a byte. Each one is
    closed after ``hold`` seconds at most, and all of them when the block ends."""

    def __init__(self, hold: float = 30.0) -> None:
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.accepted: list[float] = []  # when, by time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        held: list[tuple[float, socket.socket]] = []
        try:
            while not self._stop.is_set():
                try:
                    connection, _ = self.listener.accept()
                    now = time.monotonic()
                    held.append((now + self.hold, connection))
                    self.accepted.append(now)
                except TimeoutError:
                    pass
                now = time.monotonic()
                for deadline, connection in held:
                    if deadline <= now:
                        connection.close()
                held = [(deadline, connection) for deadline, connection in held if deadline > now]
        finally:
            for _, connection in held:
                connection.close()
            self.listener.close()

    def __enter__(self) -> HungServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def hung_metrics() -> Iterator[HungServer]:
    with HungServer() as server:
        yield server


def steps_written_while(
    cluster: ClusterHandle, namespace: str, running: concurrent.futures.Future[Any]
) -> dict[str, float]:
    """When (time.monotonic()) each Canary of the namespace first had a status, watched while
    ``running`` runs."""
    custom = client.CustomObjectsApi(cluster.api)
    written: dict[str, float] = {}
    while not running.done():
        listed: Any = custom.list_namespaced_custom_object("serin.dev", "v1beta1", namespace, "canaries")
        now = time.monotonic()
        for item in listed["items"]:
            if (item.get("status") or {}).get("phase"):
                written.setdefault(item["metadata"]["name"], now)
        time.sleep(0.1)
    return written


def test_a_hung_metrics_server_delays_only_its_own_canary(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    hung_metrics: HungServer,
) -> None:
    token = tokens["ticker"]
    # One Canary whose Prometheus hangs, taken to its first analysed step (its first iteration
    # is not analysed: the hung server is not asked before). Its name comes first in the list a
    # tick takes, so a worker starts on it before the others.
    hung = "app-00"
    spec = {"provider": "kubernetes", "metricsServer": hung_metrics.url}
    local_cluster.apply(app(namespace, hung, ANALYSED, **spec))
    # (Admission tries the query on it, and lets the Canary in unchecked when it does not answer.)
    admitted = len(hung_metrics.accepted)
    tick_until(serin_server, token, namespace, lambda report: report["phase"] == "Initialized", name=hung)
    release(local_cluster, namespace, [hung])
    tick_until(serin_server, token, namespace, lambda report: report["phase"] == "Progressing", name=hung)
    eventually(lambda: all_rolled_out(local_cluster, namespace), timeout=60, what="the canary to roll out")
    tick_until(serin_server, token, namespace, lambda report: report["iterations"] == 1, name=hung)
    started = time.monotonic()
    assert len(hung_metrics.accepted) == admitted

    # Fifty new Canaries, all due for the same step as the hung one's analysis: initialization
    # (which creates the primary, the Services, the status and an Event of each). Their targets
    # have no replicas, so no pods come and go while the tick runs.
    others = [f"app-{index:02}" for index in range(1, OTHERS + 1)]
    batch = []
    for name in others:
        deployment, manifest = app(namespace, name, ANALYSED, provider="kubernetes")
        deployment["spec"]["replicas"] = 0
        batch += [deployment, manifest]
    local_cluster.apply(batch)
    time.sleep(max(PAUSE, WINDOW_SECONDS - (time.monotonic() - started)))

    # One tick takes every step; meanwhile the test sees when each Canary's step is written.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ticking = pool.submit(forced_tick, serin_server, token, namespace)
        written = steps_written_while(local_cluster, namespace, ticking)
        measured = ticking.result()

    reports = {report["name"]: report for report in measured["canaries"]}
    held = reports.pop(hung)
    assert held["error"] is None and held["iterations"] == 1, held
    assert held["summary"].startswith("holding (1/") and "always-up could not be measured" in held["summary"], held
    assert sorted(reports) == others
    for report in reports.values():
        # Admission made their primaries when they were applied: this first step may find them
        # ready already and finish the initialization.
        assert report["applied"] and report["phase"] in ("Initializing", "Initialized"), report
        assert any(action.startswith("EnsureObjects") for action in report["actions"]), report
    # The hung query was waited for...
    assert len(hung_metrics.accepted) == admitted + 1 and measured["durationSeconds"] >= METRIC_TIMEOUT, measured
    # ...beside the others' steps, not before them: while it hung, others were taken and written.
    asked = hung_metrics.accepted[admitted]
    while_hung = sorted(name for name, at in written.items() if asked < at < asked + METRIC_TIMEOUT)
    assert set(while_hung) - {hung}, f"no other step was written while the hung query waited: {written}"
