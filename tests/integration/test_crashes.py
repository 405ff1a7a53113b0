"""A crash after any write of a whole release leaves a state the next ticks complete.

The access layer is made to die (an exception nothing catches) right after its k-th write, for every
k of a whole promotion and of a whole rollback, against the real API server. Then ticks run without
faults. Every run must end as the fault-free run does; and after every tick, crashed or not, the
primary runs a revision the status names and no traffic goes to a workload with no available pod.
An event hook may hear an Event again after a crash, but always under the key it first had.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localcluster.testing import ClusterHandle
from serin.kube.store import KubeStore
from serin.metrics.prometheus import PrometheusProvider
from serin.notify.webhooks import HttpHookCaller
from serin.reconcile import CLAIM_SECONDS, Reconciler
from serin.routers import router_for
from serin.workloads import SOURCE_HASH_ANNOTATION
from tests.integration.helpers import WEBHOOK_NAMESPACE_LABEL, HookServer, canary, podinfo

pytestmark = pytest.mark.integration

PARALLEL_RUNS = 5
MAX_TICKS = 15
LIFECYCLE_EVENTS = (
    "New revision detected!",
    "Starting canary analysis",
    "Advance ",
    "Copying ",
    "Routing all traffic",
    "Promotion completed!",
    "Rolling back",
    "Canary failed!",
)


class Crash(BaseException):
    """The process dies here: nothing in Serin catches it."""


class FaultyStore(KubeStore):
    """Serin's access layer, dying right after its ``crash_after``-th write (None: never)."""

    def __init__(self, api: client.ApiClient, crash_after: int | None) -> None:
        super().__init__(api)
        self.crash_after = crash_after
        self.writes = 0

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = super().request(method, path, *args, **kwargs)
        if method != "GET":
            self.writes += 1
            if self.writes == self.crash_after:
                self.crash_after = None
                raise Crash(f"after write {self.writes}: {method} {path}")
        return answer


@dataclass
class Outcome:
    phase: str
    primary_image: str
    target_replicas: int
    routes: tuple[int, int]
    promoted_is_applied: bool
    # The Events of the release itself (what a crash could lose between the status and sending).
    events: frozenset[str]
    # What the release's event hook heard of those, each once per idempotency key it came under
    # (more than one key for an Event would be one sent twice with nothing to tell so).
    hook_events: frozenset[str] = frozenset()


class Release:
    """One namespace, one Canary, driven tick by tick by an in-process reconciler; with
    ``webhooks``, Serin's server answers the API server's admission reviews in that namespace,
    as installed (what the webhooks write is never faulted: the ticks must complete it either way)."""

    def __init__(
        self,
        cluster: ClusterHandle,
        kubeconfig: Path,
        prometheus: str,
        analysis: dict[str, Any],
        webhooks: bool,
        news: HookServer | None = None,
    ) -> None:
        self.cluster = cluster
        # The receiver of the Canary's event hook, if it has one (shared by all the runs).
        self.news = news
        self.webhooks = webhooks
        self.namespace = f"crash-{uuid.uuid4().hex[:8]}"
        self.api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.prometheus = prometheus
        self.analysis = analysis
        # Forced steps are a second apart; the reconciler's clock runs ahead instead of the test sleeping.
        self.offset = datetime.timedelta()

    def clock(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.offset

    def reconciler(self, store: KubeStore) -> Reconciler:
        return Reconciler(
            store=store,
            router_for=lambda provider: router_for(provider, store),
            metrics_for=lambda config: PrometheusProvider(config.address),
            hooks=HttpHookCaller(),
            default_metrics_server=self.prometheus,
            clock=self.clock,
        )

    def tick(self, store: KubeStore) -> None:
        self.offset += datetime.timedelta(seconds=2)
        (report,) = self.reconciler(store).tick(namespace=self.namespace, name="podinfo", force=True)
        assert report.error is None, report
        if report.summary.startswith("another tick is taking a step"):
            # The tick that claimed this step died: the claim runs out, and then the step is taken.
            self.offset += datetime.timedelta(seconds=CLAIM_SECONDS)
            (report,) = self.reconciler(store).tick(namespace=self.namespace, name="podinfo", force=True)
            assert report.error is None, report

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.cluster.get_json(kind, name, "-n", self.namespace)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.get("canaries.serin.dev", "podinfo").get("status", {})
        return status

    def routes(self) -> tuple[int, int]:
        http = self.get("virtualservice", "podinfo")["spec"]["http"][0]["route"]
        weights = {entry["destination"]["host"]: entry.get("weight", 0) for entry in http}
        return weights["podinfo-primary"], weights["podinfo-canary"]

    def prepare(self) -> None:
        """Initialized at 6.0.0 without faults, then the new revision applied."""
        labels = WEBHOOK_NAMESPACE_LABEL if self.webhooks else {}
        self.cluster.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}}
        )
        self.cluster.apply(podinfo(self.namespace))
        self.cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", self.namespace, "--timeout=60s")
        self.cluster.apply(canary(self.namespace, self.analysis))
        store = KubeStore(self.api)
        for _ in range(MAX_TICKS):
            self.tick(store)
            if self.status().get("phase") == "Initialized":
                break
            time.sleep(0.3)
        assert self.status().get("phase") == "Initialized"

    def release(self, template: dict[str, Any]) -> None:
        self.cluster.apply(template)

    def check_invariants(self) -> None:
        status = self.status()
        primary = self.get("deployment", "podinfo-primary")
        source = primary["metadata"]["annotations"][SOURCE_HASH_ANNOTATION]
        named = {status.get("lastPromotedSpec"), status.get("lastAppliedSpec")}
        assert source in named, f"the primary runs {source}, the status names {named}"
        primary_weight, canary_weight = self.routes()
        for weight, name in ((primary_weight, "podinfo-primary"), (canary_weight, "podinfo")):
            if weight > 0:
                available = self.get("deployment", name)["status"].get("availableReplicas", 0)
                assert available > 0, f"{weight}% of the traffic goes to {name}, which has no available pod"

    def outcome(self) -> Outcome:
        status = self.status()
        primary = self.get("deployment", "podinfo-primary")
        listed = self.cluster.get_json(
            "events", "-n", self.namespace, "--field-selector", "involvedObject.kind=Canary"
        )["items"]
        return Outcome(
            phase=status.get("phase", ""),
            primary_image=primary["spec"]["template"]["spec"]["containers"][0]["image"],
            target_replicas=self.get("deployment", "podinfo")["spec"]["replicas"],
            routes=self.routes(),
            promoted_is_applied=status.get("lastPromotedSpec") == status.get("lastAppliedSpec"),
            events=frozenset(
                event["message"].replace(self.namespace, "NS")
                for event in listed
                if event["message"].startswith(LIFECYCLE_EVENTS)
            ),
            hook_events=self.hook_events(),
        )

    def hook_events(self) -> frozenset[str]:
        if self.news is None:
            return frozenset()
        keys: dict[str, set[str]] = {}
        for _, payload in self.news.received:
            message = payload["metadata"]["eventMessage"].replace(self.namespace, "NS")
            if payload["namespace"] == self.namespace and message.startswith(LIFECYCLE_EVENTS):
                keys.setdefault(message, set()).add(payload["idempotencyKey"])
        return frozenset(
            message if len(under) == 1 else f"{message} (under {len(under)} keys)" for message, under in keys.items()
        )

    def run(self, crash_after: int | None, until: str) -> tuple[Outcome, int]:
        """Tick (crashing once after the given write) until ``until`` and one tick more (the one that
        completes what a crash right after that status left undone); the outcome and the writes made."""
        store = FaultyStore(self.api, crash_after)
        writes, extra = 0, 1
        for _ in range(MAX_TICKS):
            try:
                self.tick(store)
            except Crash:
                writes += store.writes
                store = FaultyStore(self.api, None)  # a new process: nothing remembered
            self.check_invariants()
            if self.status().get("phase") == until:
                if extra == 0:
                    break
                extra -= 1
            time.sleep(0.4)  # time for the pods to follow a scale or a rollout
        return self.outcome(), writes + store.writes

    def close(self) -> None:
        self.api.close()
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false")


Make = Callable[[dict[str, Any], bool, HookServer | None], Release]


@pytest.fixture
def release_factory(
    local_cluster: ClusterHandle, serin_crds: None, serin_kubeconfig: Path, serin_webhooks: None
) -> Iterator[Make]:
    made: list[Release] = []

    def make(analysis: dict[str, Any], webhooks: bool, news: HookServer | None) -> Release:
        prometheus = local_cluster.urls["prometheus"]
        release = Release(local_cluster, serin_kubeconfig, prometheus, analysis, webhooks, news)
        made.append(release)
        return release

    yield make
    for release in made:
        release.close()


def new_revision(namespace: str, tag: str) -> dict[str, Any]:
    """The target with another image, at the replicas Serin keeps it at between releases (zero)."""
    target = podinfo(namespace, f"ghcr.io/stefanprodan/podinfo:{tag}")
    target["spec"]["replicas"] = 0
    return target


def crash_matrix(
    make: Make,
    analysis: dict[str, Any],
    template: Callable[[str], dict[str, Any]],
    until: str,
    webhooks: bool,
    news: HookServer | None = None,
) -> tuple[Outcome, dict[int, Outcome]]:
    clean = make(analysis, webhooks, news)
    clean.prepare()
    clean.release(template(clean.namespace))
    expected, writes = clean.run(None, until)
    assert expected.phase == until

    def crashed(k: int) -> Outcome:
        run = make(analysis, webhooks, news)
        run.prepare()
        run.release(template(run.namespace))
        return run.run(k, until)[0]

    with concurrent.futures.ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        outcomes = dict(zip(range(1, writes + 1), pool.map(crashed, range(1, writes + 1)), strict=True))
    assert writes >= 10, f"a whole release makes more writes than {writes}"
    print(f"\n{until} with webhooks {'on' if webhooks else 'off'}: a crash after each of {writes} writes")
    return expected, outcomes


PROMOTION_EVENTS = frozenset(
    {
        "New revision detected! Scaling up podinfo.NS",
        "Starting canary analysis for podinfo.NS",
        "Advance podinfo.NS canary weight 50",
        "Copying podinfo.NS template spec to podinfo-primary.NS",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down podinfo.NS",
    }
)
# Each Event heard by the event hook under one key, however often a crash had it sent.
PROMOTED = Outcome(
    "Succeeded", "ghcr.io/stefanprodan/podinfo:6.0.1", 0, (100, 0), True, PROMOTION_EVENTS, PROMOTION_EVENTS
)
ROLLED_BACK = Outcome(
    "Failed",
    "ghcr.io/stefanprodan/podinfo:6.0.0",
    0,
    (100, 0),
    False,
    frozenset(
        {
            "New revision detected! Scaling up podinfo.NS",
            "Starting canary analysis for podinfo.NS",
            "Advance podinfo.NS canary weight 50",
            "Rolling back podinfo.NS failed checks threshold reached 1",
            "Canary failed! Scaling down podinfo.NS",
        }
    ),
)


@pytest.mark.parametrize(
    "webhooks",
    [
        pytest.param(True, id="as-installed"),
        # The same crash points where no webhook saw the release: the ticks alone do all of it.
        pytest.param(False, id="without-webhooks", marks=pytest.mark.nightly),
    ],
)
def test_a_crash_after_any_write_of_a_promotion_is_completed(release_factory: Make, webhooks: bool) -> None:
    with HookServer() as news:
        expected, outcomes = crash_matrix(
            release_factory,
            {
                "interval": "10s",
                "stepWeights": [50],
                "webhooks": [{"name": "news", "type": "event", "url": news.url("news")}],
            },
            lambda namespace: new_revision(namespace, "6.0.1"),
            "Succeeded",
            webhooks,
            news,
        )
        keys = [payload["idempotencyKey"] for _, payload in news.received]
        print(f"the event hook was sent {len(keys)} requests under {len(set(keys))} keys")
    assert expected == PROMOTED
    assert {k: outcome for k, outcome in outcomes.items() if outcome != expected} == {}


@pytest.mark.nightly  # the same write protocol as a promotion's; make test runs that matrix
@pytest.mark.parametrize(
    "webhooks", [pytest.param(True, id="as-installed"), pytest.param(False, id="without-webhooks")]
)
def test_a_crash_after_any_write_of_a_rollback_is_completed(release_factory: Make, webhooks: bool) -> None:
    with HookServer() as gates:
        gates.statuses["load"] = 403
        analysis = {
            "interval": "10s",
            "threshold": 1,
            "stepWeights": [50],
            "webhooks": [{"name": "load", "type": "rollout", "url": gates.url("load")}],
        }
        expected, outcomes = crash_matrix(
            release_factory, analysis, lambda namespace: new_revision(namespace, "6.0.2"), "Failed", webhooks
        )
    assert expected == ROLLED_BACK
    assert {k: outcome for k, outcome in outcomes.items() if outcome != expected} == {}
