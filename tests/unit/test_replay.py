"""Replay of a past release with the tick's own decision, and the readings it and the judge take
from a backend over time."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import pytest

from serin.decide import MetricReading
from serin.model import Canary
from serin.ports import MetricsUnavailable, ProviderConfig
from serin.reconcile import Reconciler
from serin.replay import replay
from tests.unit.test_decide import make_canary

START = datetime.datetime(2026, 11, 28, 10, 0, 0, tzinfo=datetime.UTC)
SECONDS = datetime.timedelta(seconds=1)


SUCCESS_RATE = {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}}
WEIGHTED = {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20, "metrics": [SUCCESS_RATE]}


def readings(values: dict[datetime.datetime, float]) -> Any:
    """Success rates by time (100 when not given), and the times asked."""
    asked: list[datetime.datetime] = []

    def read(canary: Canary, at: datetime.datetime) -> tuple[MetricReading, ...]:
        asked.append(at)
        return (MetricReading(values.get(at, 100.0)),)

    read.asked = asked  # type: ignore[attr-defined]
    return read


def timeline(result: Any) -> list[tuple[int, str | None, int, int]]:
    """(seconds after the start, phase, weight, failed checks) of each step."""
    return [
        (
            int((step.time - START).total_seconds()),
            step.status.phase.value if step.status.phase else None,
            step.status.canary_weight,
            step.status.failed_checks,
        )
        for step in result.steps
    ]


def test_a_good_release_is_promoted_step_by_step() -> None:
    read = readings({})
    result = replay(make_canary(WEIGHTED), START, START + 600 * SECONDS, read)
    # As installed, the Deployment webhook saw the revision at the start: the first step is
    # taken at the next tick, a forced step's second later.
    assert timeline(result) == [
        (0, "Progressing", 0, 0),
        (1, "Progressing", 20, 0),
        (11, "Progressing", 40, 0),
        (21, "Promoting", 40, 0),
        (31, "Finalising", 0, 0),
        (41, "Succeeded", 0, 0),
    ]
    assert result.outcome == "promoted"
    # Metrics are read where the analysis reads them: not at the first step, which has no traffic.
    assert read.asked == [START + 11 * SECONDS, START + 21 * SECONDS]
    assert [check.message for check in result.steps[2].metrics or ()] == ["request-success-rate 100 >= 99: passed"]
    assert result.steps[1].events == (
        "Starting canary analysis for podinfo.test",
        "Advance podinfo.test canary weight 20",
    )


def test_a_release_whose_metric_falls_is_rolled_back_at_the_threshold() -> None:
    read = readings({START + 11 * SECONDS: 98.0, START + 21 * SECONDS: 97.5})
    result = replay(make_canary(WEIGHTED), START, START + 600 * SECONDS, read)
    assert timeline(result) == [
        (0, "Progressing", 0, 0),
        (1, "Progressing", 20, 0),
        (11, "Progressing", 20, 1),
        (21, "Progressing", 20, 2),
        (31, "Failed", 0, 0),
    ]
    assert result.outcome == "rolled back"
    assert result.steps[2].events == ("Halt podinfo.test advancement success rate 98.00% < 99%",)
    assert result.steps[-1].events == (
        "Rolling back podinfo.test failed checks threshold reached 2",
        "Canary failed! Scaling down podinfo.test",
    )


def test_a_step_after_a_weight_change_comes_when_its_metric_window_has_opened() -> None:
    """A 30s metric with a 10s interval: each weight is judged on 30s of its own traffic."""
    slow = {**WEIGHTED, "metrics": [{**SUCCESS_RATE, "interval": "30s"}]}
    read = readings({})
    result = replay(make_canary(slow), START, START + 600 * SECONDS, read)
    assert timeline(result) == [
        (0, "Progressing", 0, 0),
        (1, "Progressing", 20, 0),
        (31, "Progressing", 40, 0),
        (61, "Promoting", 40, 0),
        (71, "Finalising", 0, 0),
        (81, "Succeeded", 0, 0),
    ]
    assert read.asked == [START + 31 * SECONDS, START + 61 * SECONDS]


def test_a_window_shorter_than_the_release_leaves_it_undecided() -> None:
    result = replay(make_canary(WEIGHTED), START, START + 15 * SECONDS, readings({}))
    assert timeline(result) == [(0, "Progressing", 0, 0), (1, "Progressing", 20, 0), (11, "Progressing", 40, 0)]
    assert result.outcome == "undecided"


def test_hooks_are_not_called_gates_open_and_rollback_hooks_silent() -> None:
    hooks = [
        {"name": kind, "type": kind, "url": "http://gate.invalid/"}
        for kind in ("confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "rollback", "post-rollout")
    ]
    result = replay(make_canary({**WEIGHTED, "webhooks": hooks}), START, START + 600 * SECONDS, readings({}))
    assert result.outcome == "promoted"
    assert timeline(result)[-1] == (41, "Succeeded", 0, 0)


def test_an_unreachable_backend_stops_the_replay() -> None:
    def down(canary: Canary, at: datetime.datetime) -> tuple[MetricReading, ...]:
        return (MetricReading(None, "unavailable", "prometheus at http://p unreachable"),)

    with pytest.raises(MetricsUnavailable, match="2026-11-28T10:00:11Z could not be read: prometheus at http://p"):
        replay(make_canary(WEIGHTED), START, START + 600 * SECONDS, down)


# ---- readings over time ----------------------------------------------------------------------


class Series:
    """A Prometheus-like backend: answers at a time and over a range, and records the questions."""

    asked: ClassVar[list[tuple[str, ...]]] = []

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        raise AssertionError("an instant query for now was not expected")

    def query_at(self, query: str, at: datetime.datetime) -> float:
        Series.asked.append(("at", query, at.isoformat()))
        return 99.5

    def series(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[float, ...]:
        Series.asked.append(("range", query, start.isoformat(), end.isoformat(), f"{step_seconds:g}"))
        return (1.0, 2.0) if "primary" in query else (3.0, 4.0)

    def points(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[tuple[float, float], ...]:
        raise AssertionError("a replay draws no chart")


class InstantOnly:
    def __init__(self, config: ProviderConfig) -> None:
        pass

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        return 1.0


def reconciler(provider: Any) -> Reconciler:
    return Reconciler(
        store=None,  # type: ignore[arg-type]
        router_for=lambda provider: None,  # type: ignore[arg-type, return-value]
        metrics_for=provider,
        hooks=None,  # type: ignore[arg-type]
        default_metrics_server="http://prometheus",
        clock=lambda: START,
    )


LATENCY = {"name": "latency", "interval": "1m", "query": 'avg(latency{workload="{{ target }}"})', "compare": {}}


def test_a_compared_metric_reads_both_workloads_over_its_interval() -> None:
    Series.asked = []
    canary = make_canary({**WEIGHTED, "metrics": [LATENCY]})
    reading = reconciler(Series).read_metric(canary, canary.analysis.metrics[0])
    assert reading == MetricReading(None, canary_samples=(3.0, 4.0), primary_samples=(1.0, 2.0))
    window = ("2026-11-28T09:59:00+00:00", "2026-11-28T10:00:00+00:00", "3")
    assert Series.asked == [
        ("range", 'avg(latency{workload="podinfo"})', *window),
        ("range", 'avg(latency{workload="podinfo-primary"})', *window),
    ]


def test_a_replay_reads_each_metric_as_it_was() -> None:
    Series.asked = []
    canary = make_canary(
        {**WEIGHTED, "metrics": [LATENCY, {"name": "errors", "query": "sum(e)", "thresholdRange": {}}]}
    )
    at = START - datetime.timedelta(hours=1)
    readings = reconciler(Series).read_metrics(canary, at)
    assert readings == (MetricReading(None, canary_samples=(3.0, 4.0), primary_samples=(1.0, 2.0)), MetricReading(99.5))
    assert sorted(Series.asked) == [
        ("at", "sum(e)", "2026-11-28T09:00:00+00:00"),
        ("range", 'avg(latency{workload="podinfo"})', "2026-11-28T08:59:00+00:00", "2026-11-28T09:00:00+00:00", "3"),
        (
            "range",
            'avg(latency{workload="podinfo-primary"})',
            "2026-11-28T08:59:00+00:00",
            "2026-11-28T09:00:00+00:00",
            "3",
        ),
    ]


def test_a_backend_without_history_cannot_compare() -> None:
    canary = make_canary({**WEIGHTED, "metrics": [LATENCY]})
    reading = reconciler(InstantOnly).read_metric(canary, canary.analysis.metrics[0])
    assert reading == MetricReading(
        None,
        "invalid",
        "metric latency: a prometheus backend cannot answer for a past time or over a range; comparing with the "
        "primary and replaying need Prometheus",
    )


def test_a_builtin_that_does_not_select_the_workload_cannot_compare() -> None:
    canary = make_canary(
        {**WEIGHTED, "metrics": [{"name": "request-duration", "compare": {}}]},
        provider="nginx",
        ingressRef={"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
    )
    reading = reconciler(Series).read_metric(canary, canary.analysis.metrics[0])
    assert reading == MetricReading(
        None,
        "invalid",
        "metric request-duration cannot compare: the builtin request-duration of provider nginx does not select "
        "the workload by {{ target }}: give a query that does",
    )
