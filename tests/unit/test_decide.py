"""The decision core, table by table, in the spirit of Flagger's scheduler tests."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from serin.decide import (
    METRICS,
    Decision,
    EnsureObjects,
    MetricReading,
    Observation,
    PromotePrimary,
    RunHooks,
    ScaleTarget,
    SetRoutes,
    WorkloadState,
    decide,
    is_due,
)
from serin.model import Canary, HookType, parse_canary
from serin.ports import HookResult
from serin.status import CanaryStatus, Phase

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


def make_canary(analysis: dict[str, Any] | None = None, **spec: Any) -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1", "generation": 1},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis
                or {
                    "interval": "1m",
                    "threshold": 2,
                    "maxWeight": 20,
                    "stepWeight": 10,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                        {"name": "request-duration", "thresholdRange": {"max": 500}},
                    ],
                },
                **spec,
            },
        }
    )


AB = {
    "interval": "1m",
    "threshold": 2,
    "iterations": 2,
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
    "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
}


def workload(name: str, template: str, replicas: int = 2, ready: int | None = None, source: str = "") -> WorkloadState:
    ready = replicas if ready is None else ready
    return WorkloadState(
        name=name,
        template_hash=template,
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=replicas,
        source_hash=source,
    )


def status(phase: Phase | None, **fields: Any) -> CanaryStatus:
    base = CanaryStatus(
        phase=phase,
        last_applied_spec="v1",
        last_promoted_spec="v1",
        last_transition_time=NOW - MINUTE,
        last_analysis_time=NOW - 2 * MINUTE,
    )
    return base.replace(**fields)


def observe(template: str = "v1", target_replicas: int = 0, **fields: Any) -> Observation:
    defaults: dict[str, Any] = {
        "target": workload("podinfo", template, replicas=target_replicas),
        "primary": workload("podinfo-primary", "p", source="v1"),
    }
    defaults.update(fields)
    return Observation(**defaults)


GOOD_METRICS = (MetricReading("request-success-rate", 100.0), MetricReading("request-duration", 120.0))
ok = HookResult("gate", True, "")
no = HookResult("gate", False, "status 403")


def names(decision: Decision) -> list[str]:
    return [type(action).__name__ for action in decision.actions]


def messages(decision: Decision) -> str:
    return " | ".join(event.message for event in decision.events)


CASES = [
    pytest.param(
        make_canary(),
        status(None),
        observe(target_replicas=2, primary=None),
        Phase.INITIALIZING,
        [EnsureObjects()],
        "",
        (),
        id="init-creates-primary-and-waits",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZING),
        observe(target_replicas=2),
        Phase.INITIALIZED,
        [SetRoutes(100, 0), ScaleTarget(0)],
        "Initialization done! podinfo.test",
        (),
        id="init-done-once-primary-ready",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe(),
        Phase.INITIALIZED,
        [EnsureObjects()],
        "",
        (),
        id="idle-without-new-revision",
    ),
    pytest.param(
        make_canary(),
        status(Phase.SUCCEEDED),
        observe(target_replicas=3),
        Phase.SUCCEEDED,
        [ScaleTarget(0)],
        "",
        (),
        id="idle-target-scaled-back-to-zero",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe("v2"),
        Phase.PROGRESSING,
        [ScaleTarget(2)],
        "New revision detected! Scaling up podinfo.test",
        (),
        id="new-revision-scales-canary-up",
    ),
    pytest.param(
        make_canary(),
        status(Phase.SUCCEEDED),
        observe("v1", config_hashes={"configmap/cfg": "c2"}),
        Phase.PROGRESSING,
        [ScaleTarget(2)],
        "New revision detected!",
        (),
        id="config-change-is-a-new-revision",
    ),
    pytest.param(
        make_canary(),
        status(Phase.FAILED, last_applied_spec="v2"),
        observe("v1"),
        Phase.FAILED,
        [ScaleTarget(0)],
        "",
        (),
        id="revert-to-promoted-revision-does-nothing",
    ),
    pytest.param(
        make_canary(
            analysis={
                "interval": "1m",
                "stepWeight": 10,
                "webhooks": [{"name": "gate", "type": "confirm-rollout", "url": "http://gate/"}],
            }
        ),
        status(Phase.INITIALIZED),
        observe("v2"),
        Phase.INITIALIZED,
        [],
        "",
        (HookType.CONFIRM_ROLLOUT,),
        id="confirm-rollout-is-asked",
    ),
    pytest.param(
        make_canary(
            analysis={
                "interval": "1m",
                "stepWeight": 10,
                "webhooks": [{"name": "gate", "type": "confirm-rollout", "url": "http://gate/"}],
            }
        ),
        status(Phase.INITIALIZED),
        observe("v2", hooks={HookType.CONFIRM_ROLLOUT: (no,)}),
        Phase.WAITING,
        [],
        "Waiting for approval",
        (),
        id="confirm-rollout-refused-waits",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Phase.PROGRESSING,
        [SetRoutes(90, 10)],
        "Starting canary analysis for podinfo.test",
        (),
        id="first-step-shifts-first-weight-without-metrics",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2),
        Phase.PROGRESSING,
        [],
        "",
        (METRICS,),
        id="analysis-asks-for-metrics",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, metrics=GOOD_METRICS),
        Phase.PROGRESSING,
        [SetRoutes(80, 20)],
        "Advance podinfo.test canary weight 20",
        (),
        id="good-metrics-advance-weight",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2",
            target_replicas=2,
            metrics=(MetricReading("request-success-rate", 61.234), MetricReading("request-duration", 120.0)),
        ),
        Phase.PROGRESSING,
        [],
        "Halt podinfo.test advancement success rate 61.23% < 99%",
        (),
        id="low-success-rate-halts",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2",
            target_replicas=2,
            metrics=(MetricReading("request-success-rate", 100.0), MetricReading("request-duration", 812.0)),
        ),
        Phase.PROGRESSING,
        [],
        "Halt podinfo.test advancement request duration 812ms > 500ms",
        (),
        id="slow-requests-halt",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2",
            target_replicas=2,
            metrics=(MetricReading("request-success-rate", None, "no-data"), MetricReading("request-duration", 1.0)),
        ),
        Phase.PROGRESSING,
        [],
        "Halt advancement no values found for request-success-rate metric",
        (),
        id="missing-data-never-passes",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2",
            target_replicas=2,
            metrics=(
                MetricReading("request-success-rate", None, "unavailable", "connection refused"),
                MetricReading("request-duration", 1.0),
            ),
        ),
        Phase.PROGRESSING,
        [],
        "Metrics server unavailable",
        (),
        id="metrics-server-down-holds",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, failed_checks=2),
        observe("v2", target_replicas=2),
        Phase.FAILED,
        [SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)],
        "Rolling back podinfo.test failed checks threshold reached 2 | Canary failed! Scaling down podinfo.test",
        (),
        id="threshold-reached-rolls-back",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, last_transition_time=NOW - 11 * MINUTE),
        observe(target=workload("podinfo", "v2", replicas=2, ready=0)),
        Phase.FAILED,
        [SetRoutes(100, 0), ScaleTarget(0)],
        "Rolling back podinfo.test progress deadline exceeded",
        (),
        id="progress-deadline-rolls-back",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(target=workload("podinfo", "v2", replicas=2, ready=0)),
        Phase.PROGRESSING,
        [SetRoutes(100, 0)],
        "",
        (),
        id="no-traffic-to-a-canary-without-ready-pods",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=20),
        observe("v3", target_replicas=2),
        Phase.PROGRESSING,
        [SetRoutes(100, 0), ScaleTarget(2)],
        "New revision detected! Restarting analysis",
        (),
        id="new-revision-mid-analysis-restarts",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, metrics=GOOD_METRICS),
        Phase.PROMOTING,
        [PromotePrimary()],
        "Copying podinfo.test template spec to podinfo-primary.test",
        (),
        id="max-weight-and-good-metrics-promote",
    ),
    pytest.param(
        make_canary(
            analysis={
                "interval": "1m",
                "stepWeight": 10,
                "maxWeight": 10,
                "webhooks": [{"name": "gate", "type": "confirm-promotion", "url": "http://gate/"}],
            }
        ),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, hooks={HookType.CONFIRM_PROMOTION: (no,)}),
        Phase.WAITING_PROMOTION,
        [],
        "Waiting for approval: confirm-promotion",
        (),
        id="confirm-promotion-refused-waits",
    ),
    pytest.param(
        make_canary(skipAnalysis=True),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Phase.PROMOTING,
        [PromotePrimary()],
        "Copying",
        (),
        id="skip-analysis-promotes-a-ready-canary",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, primary=workload("podinfo-primary", "p1", source="v1")),
        Phase.PROMOTING,
        [PromotePrimary()],
        "",
        (),
        id="promotion-copy-repaired-after-crash",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, primary=workload("podinfo-primary", "p2", source="v2")),
        Phase.FINALISING,
        [SetRoutes(100, 0)],
        "Routing all traffic to primary",
        (),
        id="promoted-primary-ready-takes-all-traffic",
    ),
    pytest.param(
        make_canary(),
        status(Phase.FINALISING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, primary=workload("podinfo-primary", "p2", source="v2")),
        Phase.SUCCEEDED,
        [ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)],
        "Promotion completed! Scaling down podinfo.test",
        (),
        id="finalising-scales-canary-down",
    ),
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Phase.PROGRESSING,
        [SetRoutes(0, 100)],
        "Starting canary analysis",
        (),
        id="ab-routes-matched-traffic-to-canary",
    ),
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=100, iterations=1),
        observe("v2", target_replicas=2, metrics=(MetricReading("request-success-rate", 100.0),)),
        Phase.PROGRESSING,
        [],
        "Advance podinfo.test canary iteration 2/2",
        (),
        id="ab-advances-iterations",
    ),
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=100, iterations=2),
        observe("v2", target_replicas=2, metrics=(MetricReading("request-success-rate", 100.0),)),
        Phase.PROMOTING,
        [PromotePrimary()],
        "Copying",
        (),
        id="ab-promotes-after-iterations",
    ),
    pytest.param(
        make_canary(suspend=True),
        status(Phase.INITIALIZED),
        observe("v2"),
        Phase.INITIALIZED,
        [],
        "",
        (),
        id="suspended-does-nothing",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe("v2", duplicate_of="test/other"),
        Phase.INITIALIZED,
        [],
        "already managed by canary test/other",
        (),
        id="duplicate-target-reported",
    ),
]


@pytest.mark.parametrize(("canary", "before", "observation", "phase", "actions", "events", "needs"), CASES)
def test_decide(
    canary: Canary,
    before: CanaryStatus,
    observation: Observation,
    phase: Phase,
    actions: list[Any],
    events: str,
    needs: tuple[Any, ...],
) -> None:
    decision = decide(canary, before, observation, NOW)
    assert decision.status.phase is phase, decision.summary
    for action in actions:
        assert action in decision.actions, f"{action} not in {decision.actions}"
    for part in events.split(" | ") if events else ():
        assert part in messages(decision), messages(decision)
    assert decision.needs == needs
    if needs:
        assert decision.status == before and not decision.actions, "asking must change nothing"


def test_not_due_until_interval_passed() -> None:
    canary = make_canary()
    recent = status(Phase.PROGRESSING, last_applied_spec="v2", last_analysis_time=NOW - datetime.timedelta(seconds=20))
    decision = decide(canary, recent, observe("v2", target_replicas=2), NOW)
    assert decision.status == recent and not decision.actions
    assert "not due" in decision.summary
    assert not is_due(canary, recent, NOW)
    forced = decide(canary, recent, observe("v2", target_replicas=2), NOW, force=True)
    assert forced.status.canary_weight == 10


def test_promoted_condition_follows_phase() -> None:
    failed = decide(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", failed_checks=2),
        observe("v2", target_replicas=2),
        NOW,
    ).status
    assert failed.condition is not None
    assert (failed.condition.status, failed.condition.reason) == ("False", "Failed")
    assert CanaryStatus.from_dict(failed.to_dict()) == failed


class FakeWorld:
    """A tiny cluster for the decision: applies actions to workload states, serves metrics."""

    def __init__(self, target_template: str, success_rate: float) -> None:
        self.target = workload("podinfo", target_template, replicas=2)
        self.primary: WorkloadState | None = None
        self.routes = (100, 0)
        self.success_rate = success_rate
        self.clock = NOW

    def observation(self, metrics: bool) -> Observation:
        readings = (MetricReading("request-success-rate", self.success_rate), MetricReading("request-duration", 50.0))
        return Observation(target=self.target, primary=self.primary, metrics=readings if metrics else None)

    def apply(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, EnsureObjects) and self.primary is None:
                self.primary = workload("podinfo-primary", "p", source=self.target.template_hash)
            elif isinstance(action, ScaleTarget):
                self.target = dataclasses.replace(
                    self.target,
                    replicas=action.replicas,
                    ready_replicas=action.replicas,
                    updated_replicas=action.replicas,
                )
            elif isinstance(action, SetRoutes):
                self.routes = (action.primary_weight, action.canary_weight)
            elif isinstance(action, PromotePrimary):
                assert self.primary is not None
                self.primary = dataclasses.replace(self.primary, source_hash=self.target.template_hash)


def drive(world: FakeWorld, canary: Canary, current: CanaryStatus, ticks: int) -> tuple[CanaryStatus, list[str]]:
    history: list[str] = []
    for _ in range(ticks):
        world.clock += MINUTE
        now = world.clock
        decision = decide(canary, current, world.observation(metrics=False), now)
        if decision.needs:
            decision = decide(canary, current, world.observation(metrics=True), now)
        world.apply(decision)
        current = decision.status
        history.extend(event.message for event in decision.events)
    return current, history


def test_whole_release_from_init_to_succeeded() -> None:
    canary = make_canary()
    world = FakeWorld("v1", success_rate=100.0)
    current, history = drive(world, canary, CanaryStatus(), 3)
    assert current.phase is Phase.INITIALIZED and world.target.replicas == 0

    world.target = dataclasses.replace(world.target, template_hash="v2")
    current, more = drive(world, canary, current, 8)
    history += more
    assert current.phase is Phase.SUCCEEDED, history
    assert current.last_promoted_spec == "v2"
    assert world.routes == (100, 0) and world.target.replicas == 0
    assert world.primary is not None and world.primary.source_hash == "v2"
    assert [m for m in history if m.startswith("Advance")] == [
        "Advance podinfo.test canary weight 10",
        "Advance podinfo.test canary weight 20",
    ]


def test_whole_bad_release_rolls_back_and_keeps_primary() -> None:
    canary = make_canary()
    world = FakeWorld("v1", success_rate=40.0)
    current, _ = drive(world, canary, CanaryStatus(), 2)
    world.target = dataclasses.replace(world.target, template_hash="v2")
    current, history = drive(world, canary, current, 8)
    assert current.phase is Phase.FAILED, history
    assert world.primary is not None and world.primary.source_hash == "v1"
    assert world.routes == (100, 0) and world.target.replicas == 0
    assert "Rolling back podinfo.test failed checks threshold reached 2" in history
