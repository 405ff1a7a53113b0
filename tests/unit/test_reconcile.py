"""The tick's orchestration with small fakes of our own ports: request counts and isolation."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import threading
from typing import Any

import pytest

from serin import telemetry
from serin.decide import (
    METRICS,
    CopyToPrimary,
    Decision,
    EnsureObjects,
    MetricReading,
    Observation,
    ScaleTarget,
    WorkloadState,
    is_due,
)
from serin.groups import MAX_GROUP_MEMBERS
from serin.kube.store import KubeError, NotFound
from serin.model import SHARED_WITH, parse_canary
from serin.ports import ProviderConfig
from serin.reconcile import Observed, Reconciler, Shard, shard_of
from serin.scope import WHOLE_CLUSTER, Scope
from serin.status import CanaryStatus, MetricCheck, Pending, Phase, format_time

NOW = datetime.datetime(2026, 1, 1, 12, 3, tzinfo=datetime.UTC)  # not a time of the orphan sweep


def canary(namespace: str, name: str, phase: str = "Succeeded", analysed: datetime.datetime = NOW) -> dict[str, Any]:
    return {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 80},
            "analysis": {"interval": "1m", "stepWeight": 10},
        },
        "status": {"phase": phase, "lastAnalysisTime": format_time(analysed), "lastAppliedSpec": "x"},
    }


class CountingStore:
    """Records every call; Deployments exist only where given; one namespace can be made to fail."""

    def __init__(self, canaries: list[dict[str, Any]], broken_namespace: str | None = None) -> None:
        self.canaries = canaries
        self.broken_namespace = broken_namespace
        self.calls: list[str] = []
        self.status_writes: dict[str, dict[str, Any]] = {}

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.calls.append("list_canaries")
        return self.canaries

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {kind} {namespace}/{name}")
        if namespace == self.broken_namespace:
            raise KubeError(f"get deployment {namespace}/{name}: 500 etcd is sad")
        return None

    def write_canary_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        self.calls.append(f"write_canary_status {namespace}/{name}")
        self.status_writes[f"{namespace}/{name}"] = status
        return "2"

    def record_event(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("record_event")

    def reads_of_one_tick(self, canaries: Any = None) -> contextlib.AbstractContextManager[None]:
        self.tick_canaries = dict(canaries or {})
        return contextlib.nullcontext()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected store call: {name}")


def reconciler(store: CountingStore, scope: Scope = WHOLE_CLUSTER, clock: datetime.datetime = NOW) -> Reconciler:
    def no_metrics(config: ProviderConfig) -> Any:
        raise AssertionError("no metrics expected")

    def no_router(provider: str) -> Any:
        raise AssertionError("no routing expected")

    return Reconciler(
        store=store,  # type: ignore[arg-type]
        router_for=no_router,
        metrics_for=no_metrics,
        hooks=None,  # type: ignore[arg-type]
        default_metrics_server="http://prometheus",
        clock=lambda: clock,
        scope=scope,
    )


@pytest.mark.parametrize("count", [1, 10, 200])
def test_tick_with_nothing_due_makes_one_request(count: int) -> None:
    store = CountingStore(
        [
            canary(f"ns{i % 7}", f"app{i}", phase="Progressing", analysed=NOW - datetime.timedelta(seconds=5))
            for i in range(count)
        ]
    )
    reports = reconciler(store).tick()
    assert store.calls == ["list_canaries"]
    assert len(reports) == count
    assert all(report.summary.startswith("not due: next step in 55s") for report in reports)


def test_a_shard_lists_a_namespace_by_its_own_share_of_the_canaries_there() -> None:
    """Its steps read a namespace's objects as lists once they have read a tenth of the Canaries the
    shard takes there one by one, not a tenth of all of them."""
    canaries = [canary("a", f"app{i}") for i in range(30)] + [canary("b", f"app{i}") for i in range(6)]
    store = CountingStore(canaries)
    shard = Shard(1, 3)
    reconciler(store).tick(shard=shard)
    expected = {
        namespace: sum(1 for raw in canaries if raw["metadata"]["namespace"] == namespace and shard.holds(raw))
        for namespace in ("a", "b")
    }
    assert store.tick_canaries == {namespace: count for namespace, count in expected.items() if count}
    assert sum(store.tick_canaries.values()) < len(canaries)


def test_idle_canaries_are_checked_once_per_interval_each_at_its_own_time() -> None:
    """Between releases nothing is recorded per check: a Canary is looked at by the first tick after
    a boundary of its own grid (spread by uid). Their targets are missing here: a warning each,
    sent without a status write."""
    idle = [canary("ns", f"app{i}") for i in range(60)]
    window = 5.0
    expected = {
        raw["metadata"]["name"]
        for raw in idle
        if is_due(parse_canary(raw), CanaryStatus.from_dict(raw["status"]), NOW, window)
    }
    assert 0 < len(expected) < len(idle), "a 5s window out of 60s catches some, not all"
    store = CountingStore(idle)
    reports = {report.name: report for report in reconciler(store).tick(window=window)}
    checked = {
        call.split("/")[1] for call in store.calls if call.startswith("get Deployment") and "primary" not in call
    }
    assert checked == expected
    assert not any(call.startswith("write_canary_status") for call in store.calls)
    assert {name for name, report in reports.items() if report.summary == "idle: not checked by this tick"} == (
        set(reports) - expected
    )


def test_one_failing_canary_does_not_stop_the_others() -> None:
    store = CountingStore(
        [
            canary("broken", "a", phase="Progressing", analysed=NOW - datetime.timedelta(minutes=5)),
            canary("fine", "b", phase="Progressing", analysed=NOW - datetime.timedelta(minutes=5)),
        ],
        broken_namespace="broken",
    )
    reports = {report.namespace: report for report in reconciler(store).tick()}
    assert reports["broken"].error == "get deployment broken/a: 500 etcd is sad"
    assert reports["fine"].error is None
    # The target of b is missing: reported with a Warning, nothing written.
    assert reports["fine"].summary == "Target deployment b.fine not found"
    assert "write_canary_status fine/b" not in store.calls


def test_invalid_canary_is_reported_not_acted_on() -> None:
    broken = canary("ns", "bad")
    broken["spec"]["analysis"]["stepWeight"] = 500
    store = CountingStore([broken])
    (report,) = reconciler(store).tick(force=True)
    assert report.error is not None and "spec.analysis.stepWeight: must be between 1 and 100" in report.error
    assert store.calls == ["list_canaries"]


def test_a_release_group_too_large_to_read_is_refused_without_a_request() -> None:
    members = [canary("shop", f"member-{index}") for index in range(MAX_GROUP_MEMBERS + 1)]
    for raw in members:
        raw["spec"]["group"] = "checkout"
    store = CountingStore([*members, canary("shop", "alone")])
    reports = reconciler(store).tick(force=True)
    expected = (
        f"release group checkout has {MAX_GROUP_MEMBERS + 1} members, more than the {MAX_GROUP_MEMBERS} one release "
        "may hold: no member is stepped"
    )
    assert {report.name: report.error for report in reports} == {
        **{raw["metadata"]["name"]: expected for raw in members},
        "alone": None,
    }
    assert not [call for call in store.calls if "member-" in call]


class ListingStore(CountingStore):
    """Lists by namespace (None: every one), as the API server does, recording where it listed."""

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(f"list_canaries {namespace or '*'}")
        return [raw for raw in self.canaries if namespace in (None, raw["metadata"]["namespace"])]

    def find(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(f"find {kind} {namespace or '*'} {label_selector}")
        return []


# A time of the orphan sweep: every ten minutes a tick also lists the primaries Serin made.
SWEEP_TIME = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("scope", "lists", "stepped"),
    [
        pytest.param(WHOLE_CLUSTER, ["*"], {"a/app", "b/app", "c/app"}, id="whole-cluster"),
        pytest.param(Scope(("a", "b")), ["a", "b"], {"a/app", "b/app"}, id="namespaced"),
    ],
)
def test_a_tick_lists_and_sweeps_each_namespace_the_install_serves(
    scope: Scope, lists: list[str], stepped: set[str]
) -> None:
    """A namespaced install never lists the whole cluster (its account may not): the Canaries and
    the primaries of the orphan sweep are listed in each namespace it serves, and no other."""
    store = ListingStore([canary(namespace, "app") for namespace in ("a", "b", "c")])
    reports = reconciler(store, scope, clock=SWEEP_TIME).tick()
    assert {f"{report.namespace}/{report.name}" for report in reports} == stepped
    kinds = ("Deployment", "DaemonSet", "StatefulSet")
    assert [call for call in store.calls if call.startswith(("list", "find"))] == [
        *(f"list_canaries {where}" for where in lists),
        *(f"find {kind} {where} app.kubernetes.io/managed-by=serin" for where in lists for kind in kinds),
    ]


def test_a_tick_of_a_namespace_the_install_does_not_serve_lists_nothing() -> None:
    store = ListingStore([canary("c", "app")])
    assert reconciler(store, Scope(("a",)), clock=SWEEP_TIME).tick(namespace="c") == []
    assert store.calls == []


def test_status_round_trip_keeps_what_the_tick_needs() -> None:
    status = CanaryStatus.from_dict(canary("ns", "a", phase="Progressing")["status"])
    assert status.phase is Phase.PROGRESSING and status.last_analysis_time == NOW


class RecordingObjects:
    """The Canary's objects, recording what the tick asks of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def copy_to_primary(self, canary: Any, revision: str, target: Any, replicas: int | None = None) -> None:
        self.calls.append(("copy_to_primary", revision, replicas))

    def ensure(self, *args: Any) -> None:
        self.calls.append(("ensure",))

    def scale_target(self, canary: Any, target: Any, replicas: int) -> None:
        self.calls.append(("scale_target", replicas))

    def reconcile_scalers(self, canary: Any, target_replicas: int) -> None:
        self.calls.append(("reconcile_scalers", target_replicas))


def promotion(autoscaled: bool) -> list[tuple[Any, ...]]:
    raw = canary("test", "podinfo", phase="Promoting")
    if autoscaled:
        raw["spec"]["autoscalerRef"] = {"kind": "HorizontalPodAutoscaler", "name": "podinfo"}
    parsed = parse_canary(raw)
    status = CanaryStatus.from_dict({"phase": "Promoting", "lastAppliedSpec": "new", "lastPromotedSpec": "old"})
    target = WorkloadState(name="podinfo", template_hash="new", replicas=6)
    observed = Observed(Observation(target=target, primary=None), {"spec": {}}, None)
    decision = Decision(status, "promoting", (EnsureObjects(), CopyToPrimary("new"), ScaleTarget(0)))
    objects = RecordingObjects()
    ticker = reconciler(CountingStore([]))
    ticker.objects = objects  # type: ignore[assignment]
    ticker.apply(parsed, decision, observed, status)
    return objects.calls


def test_promotion_gives_the_primary_the_canary_replicas_as_flagger_does() -> None:
    assert promotion(autoscaled=False) == [
        ("ensure",),
        ("copy_to_primary", "new", 6),
        ("scale_target", 0),
        ("reconcile_scalers", 0),
    ]


def test_promotion_leaves_an_autoscaled_primary_replicas_to_its_autoscaler() -> None:
    assert promotion(autoscaled=True) == [
        ("ensure",),
        ("copy_to_primary", "new", None),
        ("scale_target", 0),
        ("reconcile_scalers", 0),
    ]


class TemplateStore:
    """MetricTemplates and Secrets by (namespace, name), as the API server would hand them."""

    def __init__(self, templates: dict[tuple[str, str], Any], secrets: dict[tuple[str, str], Any]) -> None:
        self.templates, self.secrets = templates, secrets

    def get_metric_template(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.templates:
            raise NotFound(f"MetricTemplate {namespace}/{name} does not exist")
        return dict(self.templates[(namespace, name)])

    def get_config(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "secret"
        found = self.secrets.get((namespace, name))
        return None if found is None else dict(found)


DATADOG_TEMPLATE = {
    "metadata": {"name": "dd", "namespace": "shared", "annotations": {SHARED_WITH: "team-a,test"}},
    "spec": {
        "provider": {
            "type": "datadog",
            "address": "https://dd.example",
            "secretRef": {"name": "datadog"},
            "headers": {"X-Team": ["a", "b"]},
        },
        "query": "avg:errors{service:{{ target }}}",
    },
}
DATADOG_SECRET = {"data": {"datadog_api_key": "YWs=", "datadog_application_key": "YXBw", "blob": "/w=="}}


def read_with(
    templates: dict[tuple[str, str], Any],
    secrets: dict[tuple[str, str], Any],
    metrics_server: str = "",
    scope: Scope = WHOLE_CLUSTER,
) -> tuple[Any, list[Any]]:
    asked: list[tuple[ProviderConfig, str, float]] = []

    class Answers:
        def __init__(self, config: ProviderConfig) -> None:
            self.config = config

        def query(self, query: str, interval_seconds: float = 60.0) -> float:
            asked.append((self.config, query, interval_seconds))
            return 1.5

    raw = canary("test", "podinfo")
    raw["spec"]["analysis"]["metrics"] = [
        {
            "name": "errors",
            "interval": "2m",
            "templateRef": {"name": "dd", "namespace": "shared"},
            "thresholdRange": {"max": 2},
        }
    ]
    if metrics_server:
        raw["spec"]["metricsServer"] = metrics_server
    parsed = parse_canary(raw)
    ticker = Reconciler(
        store=TemplateStore(templates, secrets),  # type: ignore[arg-type]
        router_for=lambda provider: None,  # type: ignore[arg-type, return-value]
        metrics_for=Answers,  # type: ignore[arg-type]
        hooks=None,  # type: ignore[arg-type]
        default_metrics_server="http://prometheus",
        scope=scope,
    )
    return ticker.read_metric(parsed, parsed.analysis.metrics[0]), asked


def test_a_template_in_another_namespace_queries_its_backend_with_its_secret() -> None:
    reading, asked = read_with({("shared", "dd"): DATADOG_TEMPLATE}, {("shared", "datadog"): DATADOG_SECRET})
    assert reading == MetricReading(1.5)
    assert asked == [
        (
            ProviderConfig(
                type="datadog",
                address="https://dd.example",
                headers=(("X-Team", ("a", "b")),),
                secret_name="shared/datadog",
                secret=(("datadog_api_key", "ak"), ("datadog_application_key", "app")),
            ),
            "avg:errors{service:podinfo}",
            120.0,
        )
    ]
    assert "ak" not in repr(asked[0][0])


def test_a_template_another_namespace_does_not_share_is_a_failed_check() -> None:
    unshared = {**DATADOG_TEMPLATE, "metadata": {"name": "dd", "namespace": "shared"}}
    reading, asked = read_with({("shared", "dd"): unshared}, {("shared", "datadog"): DATADOG_SECRET})
    assert reading == MetricReading(
        None,
        "invalid",
        "MetricTemplate shared/dd is not shared with namespace test: "
        "its annotation serin.dev/allowed-namespaces must name test (or be *)",
    )
    assert asked == []


def test_a_template_in_a_namespace_the_install_does_not_serve_is_a_failed_check() -> None:
    """Shared or not, it is not read: a namespaced install's account may not, and must not, read there."""
    reading, asked = read_with(
        {("shared", "dd"): DATADOG_TEMPLATE}, {("shared", "datadog"): DATADOG_SECRET}, scope=Scope(("test",))
    )
    assert reading == MetricReading(
        None,
        "invalid",
        "MetricTemplate shared/dd: namespace shared is not served by this install of Serin, which serves test "
        "only (SERIN_WATCH_NAMESPACES)",
    )
    assert asked == []


@pytest.mark.parametrize(
    ("provider", "address"),
    [
        pytest.param({"type": "prometheus"}, "http://team-a-prometheus", id="no-credentials"),
        pytest.param({"type": "prometheus", "secretRef": {"name": "datadog"}}, "http://prometheus", id="secret"),
        pytest.param({"type": "prometheus", "headers": {"X-Scope-OrgID": ["ops"]}}, "http://prometheus", id="headers"),
    ],
)
def test_a_template_with_credentials_and_no_address_asks_only_the_installs_prometheus(
    provider: dict[str, Any], address: str
) -> None:
    """The Canary's author chooses spec.metricsServer: a template author's credentials never go there."""
    template = {**DATADOG_TEMPLATE, "spec": {"provider": provider, "query": "up"}}
    _, asked = read_with(
        {("shared", "dd"): template}, {("shared", "datadog"): DATADOG_SECRET}, "http://team-a-prometheus"
    )
    assert [config.address for config, _, _ in asked] == [address]


@pytest.mark.parametrize(
    ("query", "reading", "asked"),
    [
        pytest.param("keptnmetric/{{ namespace }}/errors", MetricReading(1.5), ["keptnmetric/test/errors"], id="own"),
        pytest.param(
            "analysis/Shop/errors/5m",
            MetricReading(
                None,
                "invalid",
                "keptn query analysis/Shop/errors/5m is in namespace shop: "
                "a Canary's Keptn metrics and analyses are those of its own namespace, test",
            ),
            [],
            id="another",
        ),
    ],
)
def test_keptn_is_asked_only_about_the_canarys_namespace(query: str, reading: MetricReading, asked: list[str]) -> None:
    """Keptn is asked as Serin, which may read and create Analyses anywhere."""
    template = {**DATADOG_TEMPLATE, "spec": {"provider": {"type": "keptn"}, "query": query}}
    found, queries = read_with({("shared", "dd"): template}, {})
    assert (found, [query for _, query, _ in queries]) == (reading, asked)


def test_a_missing_template_is_a_failed_check_naming_it() -> None:
    reading, asked = read_with({}, {})
    assert reading == MetricReading(None, "invalid", "MetricTemplate shared/dd does not exist")
    assert asked == []


def test_a_missing_secret_is_a_failed_check_naming_it() -> None:
    reading, _ = read_with({("shared", "dd"): DATADOG_TEMPLATE}, {})
    assert reading == MetricReading(
        None, "invalid", "Secret shared/datadog, the credentials of MetricTemplate shared/dd, does not exist"
    )


class AlertStore:
    """AlertProviders and Secrets by name in namespace ``test``; Events recorded."""

    def __init__(self, providers: dict[str, Any], secrets: dict[str, Any]) -> None:
        self.providers, self.secrets = providers, secrets
        self.events: list[tuple[str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "AlertProvider"
        return self.providers.get(name if namespace == "test" else f"{namespace}/{name}")

    def get_config(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get(name)

    def record_event(self, canary: Any, event_type: str, reason: str, message: str, now: Any) -> None:
        self.events.append((event_type, message))


@pytest.mark.parametrize(
    ("providers", "secrets", "event"),
    [
        pytest.param({}, {}, "alert chat not sent: AlertProvider test/chat does not exist", id="no-provider"),
        pytest.param(
            {"chat": {"spec": {"type": "slack", "secretRef": {"name": "hook"}}}},
            {},
            "alert chat not sent: Secret test/hook of AlertProvider test/chat does not exist",
            id="no-secret",
        ),
        pytest.param(
            {"chat": {"spec": {"type": "slack", "secretRef": {"name": "hook"}}}},
            {"hook": {"data": {"token": "dG9r"}}},
            "alert chat not sent: Secret test/hook of AlertProvider test/chat has no address",
            id="no-address",
        ),
        pytest.param(
            {"chat": {"spec": {"type": "slack", "address": "http://127.0.0.1:9/hooks/T0K3N"}}},
            {},
            "alert chat not sent: cannot reach http://127.0.0.1:9: connection refused",
            id="down",
        ),
        pytest.param(
            {"ops/chat": {"spec": {"type": "slack", "address": "http://127.0.0.1:9/hooks/T0K3N"}}},
            {},
            "alert chat not sent: AlertProvider ops/chat is not shared with namespace test: "
            "its annotation serin.dev/allowed-namespaces must name test (or be *)",
            id="not-shared",
        ),
    ],
)
def test_an_alert_that_cannot_be_sent_is_a_warning_event(
    providers: dict[str, Any], secrets: dict[str, Any], event: str
) -> None:
    raw = canary("test", "podinfo")
    ref = {"name": "chat", "namespace": "ops"} if "ops/chat" in providers else {"name": "chat"}
    raw["spec"]["analysis"]["alerts"] = [{"name": "chat", "providerRef": ref}]
    store = AlertStore(providers, secrets)
    ticker = reconciler(CountingStore([]))
    ticker.store = store  # type: ignore[assignment]

    def failures() -> float:
        labels = {"namespace": "test", "type": "provider"}
        return telemetry.REGISTRY.get_sample_value("serin_alerts_failed_total", labels) or 0.0

    before = failures()
    ticker.alert(parse_canary(raw), "Failed checks threshold reached 2", "error", False, NOW)
    ((event_type, message),) = store.events
    assert (event_type, message) == ("Warning", event)
    assert "T0K3N" not in message
    assert failures() == before + 1


class Rendezvous(Reconciler):
    """Each step waits for another to be under way at the same time: steps taken one after the
    other never meet, and say so in their report."""

    barrier = threading.Barrier(2, timeout=5)

    def step(
        self,
        raw: Any,
        others: Any,
        report: Any,
        force: bool = False,
        dry_run: bool = False,
        window: float | None = None,
        groups: Any = None,
    ) -> None:
        try:
            self.barrier.wait()
            report.summary = "met"
        except threading.BrokenBarrierError:
            report.summary = "alone"


def test_due_canaries_are_stepped_side_by_side() -> None:
    store = CountingStore([canary("a", "one"), canary("b", "two")])
    ticker = Rendezvous(
        store=store,  # type: ignore[arg-type]
        router_for=lambda provider: None,  # type: ignore[arg-type, return-value]
        metrics_for=lambda config: None,  # type: ignore[arg-type, return-value]
        hooks=None,  # type: ignore[arg-type]
        default_metrics_server="http://prometheus",
        clock=lambda: NOW,
        concurrency=2,
    )
    assert [(report.name, report.summary) for report in ticker.tick()] == [("one", "met"), ("two", "met")]


def test_the_metrics_of_a_step_are_asked_side_by_side() -> None:
    barrier = threading.Barrier(2, timeout=5)

    class Meeting:
        def __init__(self, config: ProviderConfig) -> None:
            pass

        def query(self, query: str, interval_seconds: float = 60.0) -> float:
            barrier.wait()
            return 1.0

    raw = canary("test", "podinfo")
    raw["spec"]["analysis"]["metrics"] = [
        {"name": "a", "query": "sum(a)", "thresholdRange": {"max": 2}},
        {"name": "b", "query": "sum(b)", "thresholdRange": {"max": 2}},
    ]
    ticker = reconciler(CountingStore([]))
    ticker.metrics_for = Meeting  # type: ignore[assignment]
    assert ticker.read_metrics(parse_canary(raw)) == (MetricReading(1.0), MetricReading(1.0))


def test_every_canary_falls_in_exactly_one_shard_always_the_same() -> None:
    canaries = [canary(f"ns-{index % 7}", f"app-{index}") for index in range(300)]
    taken: list[str] = []
    sizes = []
    for index in range(4):
        store = CountingStore(canaries)
        reports = reconciler(store).tick(shard=Shard(index, 4))
        taken += [f"{report.namespace}/{report.name}" for report in reports]
        sizes.append(len(reports))
    assert sorted(taken) == sorted(f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in canaries)
    assert all(50 <= size <= 100 for size in sizes), sizes  # a hash spreads them, roughly evenly
    # The key's hash, not Python's salted hash(): the same shard in every process.
    assert shard_of("test", "podinfo", 4) == int(hashlib.sha256(b"test/podinfo").hexdigest()[:16], 16) % 4


def test_the_last_checks_are_stored_in_words_and_read_back() -> None:
    checks = (
        MetricCheck("request-success-rate", 99.5, True, "request-success-rate 99.5 >= 99: passed"),
        MetricCheck("latency", float("nan"), False, "Halt advancement no values found for metric: latency"),
        MetricCheck("errors", None, None, "cannot reach http://prometheus:9090"),
    )
    stored = CanaryStatus(phase=Phase.PROGRESSING, checks=checks).to_dict()
    assert stored["checks"] == [
        {
            "name": "request-success-rate",
            "result": "Passed",
            "message": "request-success-rate 99.5 >= 99: passed",
            "value": 99.5,
        },
        {"name": "latency", "result": "Failed", "message": "Halt advancement no values found for metric: latency"},
        {"name": "errors", "result": "Unavailable", "message": "cannot reach http://prometheus:9090"},
    ]
    assert CanaryStatus.from_dict(stored).checks == (
        checks[0],
        MetricCheck("latency", None, False, "Halt advancement no values found for metric: latency"),
        checks[2],
    )


def test_a_step_reads_each_metric_from_the_last_change_of_the_canarys_traffic_on() -> None:
    asked: list[tuple[str, float]] = []

    class Answers:
        def __init__(self, config: ProviderConfig) -> None:
            pass

        def query(self, query: str, interval_seconds: float = 60.0) -> float:
            asked.append((query, interval_seconds))
            return 1.0

    raw = canary("test", "podinfo")
    raw["spec"]["analysis"]["metrics"] = [
        {"name": "long", "interval": "1m", "query": "sum(rate(a[{{ interval }}]))", "thresholdRange": {"max": 2}},
        {"name": "short", "interval": "30s", "query": "sum(rate(b[{{ interval }}]))", "thresholdRange": {"max": 2}},
    ]
    ticker = reconciler(CountingStore([]))
    ticker.metrics_for = Answers  # type: ignore[assignment]
    since = NOW - datetime.timedelta(seconds=57.5)
    status = CanaryStatus(phase=Phase.PROGRESSING, traffic_since=since)
    gathered = ticker.gather(parse_canary(raw), (METRICS,), Observation(None, None), status)
    assert gathered.metrics == (MetricReading(1.0), MetricReading(1.0))
    assert sorted(asked) == [("sum(rate(a[57s]))", 57.0), ("sum(rate(b[30s]))", 30.0)]


@pytest.mark.parametrize(
    ("claimed_for", "summary"),
    [
        pytest.param(datetime.timedelta(seconds=60), "another tick is taking a step of this canary", id="a-tick's"),
        pytest.param(datetime.timedelta(days=365 * 900), "not due: next step in 55s", id="no-tick's"),
    ],
)
def test_a_claim_longer_than_any_tick_makes_holds_nothing(claimed_for: datetime.timedelta, summary: str) -> None:
    """Whoever may write a Canary's status could otherwise freeze it with a claim that never ends."""
    raw = canary("ns", "app", phase="Progressing", analysed=NOW - datetime.timedelta(seconds=5))
    raw["status"]["serin"] = {"claimedUntil": format_time(NOW + claimed_for)}
    (report,) = reconciler(CountingStore([raw])).tick()
    assert report.summary.startswith(summary), report.summary


def test_pending_hooks_of_no_known_type_are_not_kept() -> None:
    pending = Pending.from_dict({"step": "s", "hooks": ["post-rollout", "rm -rf", 3]})
    assert pending is not None and pending.hooks == ("post-rollout",)


def test_an_alert_provider_in_a_namespace_the_install_does_not_serve_is_not_read() -> None:
    raw = canary("test", "podinfo")
    raw["spec"]["analysis"]["alerts"] = [{"name": "chat", "providerRef": {"name": "chat", "namespace": "ops"}}]
    shared = {"metadata": {"annotations": {SHARED_WITH: "*"}}, "spec": {"type": "slack", "address": "http://x"}}
    store = AlertStore({"ops/chat": shared}, {})
    ticker = reconciler(CountingStore([]), Scope(("test",)))
    ticker.store = store  # type: ignore[assignment]
    ticker.alert(parse_canary(raw), "Failed checks threshold reached 2", "error", False, NOW)
    assert store.events == [
        (
            "Warning",
            "alert chat not sent: AlertProvider ops/chat: namespace ops is not served by this install of Serin, "
            "which serves test only (SERIN_WATCH_NAMESPACES)",
        )
    ]


SWEEP_TIME = datetime.datetime(2026, 1, 1, 12, 10, 5, tzinfo=datetime.UTC)
MADE = format_time(SWEEP_TIME - datetime.timedelta(hours=1))


def made_for(kind: str, name: str, canary_name: str, **metadata: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": canary_name}
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": MADE, "labels": labels, **metadata},
        "spec": {"selector": {"app": f"{canary_name}-primary"}},
    }


def taken_over(name: str, canary_name: str) -> dict[str, Any]:
    """A Service of the user's whose selector Serin took over for ``canary_name``: never owned."""
    service = made_for("Service", name, canary_name, annotations={"serin.dev/original-selector": '{"app": "web"}'})
    del service["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    return service


class LabelledObjects:
    """Objects found by label, deleted, patched or applied: only the calls the sweep makes."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.changes: list[str] = []

    def find(self, kind: str, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [o for o in self.objects if o["kind"] == kind and o["metadata"]["labels"].get(key) == value]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.changes.append(f"delete {kind}/{name}")

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.changes.append(f"patch {kind}/{name}")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected store call: {name}")


def test_the_sweep_never_touches_a_live_canarys_objects() -> None:
    """Objects of Canary web that carry no owner (its user's Service it took over never does; an
    owner reference may be edited off its primary) stay as they are; only those made for a name
    no Canary has go, and what was the user's is given back."""
    store = LabelledObjects(
        [
            made_for("Deployment", "web-primary", "web"),
            made_for("Service", "web-primary", "web"),
            taken_over("web", "web"),
            made_for("Deployment", "ghost-primary", "ghost"),
            made_for("Service", "ghost-primary", "ghost"),
            taken_over("ledger", "ghost"),
        ]
    )
    live = canary("shop", "web")
    reconciler(store).sweep_orphans(None, [live], SWEEP_TIME)  # type: ignore[arg-type]
    assert store.changes == ["delete Deployment/ghost-primary", "delete Service/ghost-primary", "patch Service/ledger"]
