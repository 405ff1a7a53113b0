"""The tick's orchestration with small fakes of our own ports: request counts and isolation."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from serin.decide import CopyToPrimary, Decision, EnsureObjects, Observation, ScaleTarget, WorkloadState, is_due
from serin.kube.store import KubeError
from serin.model import parse_canary
from serin.ports import ProviderConfig
from serin.reconcile import Observed, Reconciler
from serin.status import CanaryStatus, Phase, format_time

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

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected store call: {name}")


def reconciler(store: CountingStore) -> Reconciler:
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
        clock=lambda: NOW,
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
