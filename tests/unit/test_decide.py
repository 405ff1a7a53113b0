"""The decision core at parity with Flagger's scheduler, table by table.

Two kinds of table. Single steps: one status and observation in, the exact Decision out (status
fields, the exact tuple of actions, the exact Events). Whole releases: a small world (our own fake
of the cluster, applying the actions as the reconciler would) ticked step by step, and the exact
sequence of phase, weight, iterations, failed checks, routes and Events, ported from Flagger's
scheduler tests (``pkg/controller/scheduler_deployment_test.go``) and from Flagger v1.36.1 as
observed on the local control plane. Where Serin differs on purpose, the case says so.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from serin.decide import (
    METRICS,
    UNAVAILABLE_LIMIT,
    Action,
    AlertMessage,
    CopyToPrimary,
    Decision,
    EnsureObjects,
    Event,
    MetricReading,
    Observation,
    RunHooks,
    ScaleTarget,
    SetRoutes,
    Split,
    WorkloadState,
    alerts_for,
    decide,
    desired_split,
    go_duration,
    is_due,
    metric_window,
    next_step_in,
)
from serin.model import Canary, HookType, parse_canary
from serin.ports import HookResult
from serin.status import CanaryStatus, Phase, Unconfirmed

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)

SUCCESS_RATE = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
# Read over a 15s analysis interval: with the default 1m, every step after a change of the
# canary's traffic would wait for its metric window (see the tables of the window).
SUCCESS_RATE_15S = {**SUCCESS_RATE, "interval": "15s"}
DURATION = {"name": "request-duration", "thresholdRange": {"max": 500}}
WEIGHTED = {"interval": "1m", "threshold": 2, "maxWeight": 20, "stepWeight": 10, "metrics": [SUCCESS_RATE, DURATION]}
AB = {
    "interval": "1m",
    "threshold": 2,
    "iterations": 2,
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
    "metrics": [SUCCESS_RATE],
}
BLUE_GREEN = {"interval": "1m", "threshold": 2, "iterations": 2, "metrics": [SUCCESS_RATE]}


def make_canary(analysis: dict[str, Any] | None = None, **spec: Any) -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1", "generation": 1},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": WEIGHTED if analysis is None else analysis,
                **spec,
            },
        }
    )


def hooks(*types: str) -> list[dict[str, str]]:
    return [{"name": f"{kind}-gate", "type": kind, "url": "http://gate/"} for kind in types]


def ready(name: str, template: str, replicas: int = 2, source: str = "", **fields: Any) -> WorkloadState:
    """A Deployment rolled out to ``template`` with every replica available."""
    return dataclasses.replace(
        WorkloadState(
            name=name,
            template_hash=template,
            replicas=replicas,
            updated_replicas=replicas,
            available_replicas=replicas,
            status_replicas=replicas,
            source_hash=source,
        ),
        **fields,
    )


def status(phase: Phase | None, **fields: Any) -> CanaryStatus:
    base = CanaryStatus(
        phase=phase,
        last_applied_spec="v1",
        last_promoted_spec="v1",
        last_transition_time=NOW - MINUTE,
        last_analysis_time=NOW - 2 * MINUTE,
        observed_generation=1,
    )
    return base.replace(**fields)


def observe(template: str = "v1", target_replicas: int = 0, **fields: Any) -> Observation:
    defaults: dict[str, Any] = {
        "target": ready("podinfo", template, replicas=target_replicas),
        "primary": ready("podinfo-primary", "p1", source="v1"),
    }
    defaults.update(fields)
    return Observation(**defaults)


def normal(message: str) -> Event:
    return Event("Normal", "Synced", message)


def warning(message: str) -> Event:
    return Event("Warning", "Synced", message)


yes = HookResult("gate", True, "status 200")
no = HookResult("gate", False, "status 403: no")
down = HookResult("gate", False, "cannot reach http://gate/: connection refused", temporary=True)
GOOD = (MetricReading(100.0), MetricReading(120.0))


@dataclass(frozen=True)
class Expect:
    """The exact outcome of one step."""

    phase: Phase | None
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    weight: int = 0
    iterations: int = 0
    failed_checks: int = 0
    needs: tuple[Any, ...] = ()
    unavailable_steps: int = 0


def check(decision: Decision, before: CanaryStatus, expected: Expect) -> None:
    got = Expect(
        phase=decision.status.phase,
        actions=decision.actions,
        events=decision.events,
        weight=decision.status.canary_weight,
        iterations=decision.status.iterations,
        failed_checks=decision.status.failed_checks,
        needs=decision.needs,
        unavailable_steps=decision.status.unavailable_steps,
    )
    assert got == expected, decision.summary
    if decision.needs:
        assert decision.status == before, "asking must change nothing"


ENSURE = EnsureObjects()

STEPS = [
    # ---- initialization ---------------------------------------------------------------------
    pytest.param(
        make_canary(),
        CanaryStatus(),
        observe(target_replicas=2, primary=None),
        Expect(
            Phase.INITIALIZING,
            (ENSURE,),
            (warning("podinfo-primary.test not ready: not created yet"),),
        ),
        id="init-creates-primary-and-waits",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZING),
        observe(target_replicas=2),
        Expect(
            Phase.INITIALIZED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0)),
            (normal("Initialization done! podinfo.test"),),
        ),
        id="init-done-once-primary-ready",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZING, last_transition_time=NOW - 11 * MINUTE),
        observe(target_replicas=2, primary=ready("podinfo-primary", "p1", available_replicas=0)),
        Expect(
            Phase.FAILED,
            (ENSURE,),
            (
                warning(
                    "podinfo-primary.test not ready: waiting for rollout to finish: 0 of 2 (readyThreshold 100%) "
                    "updated replicas are available"
                ),
                warning("Canary failed! podinfo-primary.test not ready after progressDeadlineSeconds (600s)"),
            ),
        ),
        id="init-has-a-deadline-and-leaves-the-target-running",
    ),
    pytest.param(
        make_canary(),
        CanaryStatus(),
        observe(target=None),
        Expect(Phase.INITIALIZING, (), (warning("Target deployment podinfo.test not found"),)),
        id="missing-target-gets-a-status",
    ),
    # ---- idle -------------------------------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe(),
        Expect(Phase.INITIALIZED, (ENSURE,)),
        id="idle-without-new-revision",
    ),
    pytest.param(
        make_canary(),
        status(Phase.SUCCEEDED),
        observe(target_replicas=3, routes=(70, 30)),
        Expect(Phase.SUCCEEDED, (ENSURE, SetRoutes(100, 0), ScaleTarget(0))),
        id="idle-reasserts-all-traffic-on-primary-and-target-at-zero",
    ),
    pytest.param(
        make_canary({**BLUE_GREEN, "mirror": True}),
        status(Phase.FAILED),
        observe(mirrored=True),
        Expect(Phase.FAILED, (ENSURE, SetRoutes(100, 0))),
        id="idle-stops-mirroring",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe("v2"),
        Expect(
            Phase.PROGRESSING, (ENSURE, ScaleTarget(2)), (normal("New revision detected! Scaling up podinfo.test"),)
        ),
        id="new-revision-scales-canary-up",
    ),
    pytest.param(
        make_canary(),
        status(Phase.SUCCEEDED),
        observe("v1", config_hashes={"configmap/cfg": "c2"}),
        Expect(
            Phase.PROGRESSING, (ENSURE, ScaleTarget(2)), (normal("New revision detected! Scaling up podinfo.test"),)
        ),
        id="config-change-is-a-new-revision",
    ),
    pytest.param(
        make_canary(),
        status(Phase.FAILED, last_applied_spec="v2"),
        observe("v1"),
        Expect(Phase.FAILED, (ENSURE,)),
        id="revert-to-promoted-revision-does-nothing",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-rollout")}),
        status(Phase.INITIALIZED),
        observe("v2"),
        Expect(Phase.INITIALIZED, needs=(HookType.CONFIRM_ROLLOUT,)),
        id="confirm-rollout-is-asked",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-rollout")}),
        status(Phase.INITIALIZED),
        observe("v2", hooks={HookType.CONFIRM_ROLLOUT: (no,)}),
        Expect(Phase.WAITING, (ENSURE,), (warning("Halt podinfo.test advancement waiting for approval gate"),)),
        id="confirm-rollout-refused-waits",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-rollout")}),
        status(Phase.WAITING),
        observe("v2", hooks={HookType.CONFIRM_ROLLOUT: (no,)}),
        Expect(Phase.WAITING, (ENSURE,)),
        id="confirm-rollout-refused-again-says-nothing-new",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-rollout")}),
        status(Phase.WAITING),
        observe("v2", hooks={HookType.CONFIRM_ROLLOUT: (yes,)}),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, ScaleTarget(2)),
            (normal("Confirm-rollout check gate passed"), normal("New revision detected! Scaling up podinfo.test")),
        ),
        id="confirm-rollout-approved-starts",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-rollout")}),
        status(Phase.WAITING),
        observe("v1"),
        Expect(Phase.SUCCEEDED, (ENSURE,)),
        id="waiting-for-approval-and-the-target-is-back-at-the-promoted-revision",
    ),
    # ---- the first step ---------------------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(90, 10)),
            (normal("Starting canary analysis for podinfo.test"), normal("Advance podinfo.test canary weight 10")),
            weight=10,
        ),
        id="first-step-shifts-first-weight-without-metrics",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "mirror": True, "mirrorWeight": 50}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(100, 0, mirror=True)),
            (normal("Starting canary analysis for podinfo.test"), normal("Advance podinfo.test canary weight 0")),
        ),
        id="mirror-first-step-only-mirrors",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "mirror": True}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, mirrored=True, metrics=(MetricReading(100.0), MetricReading(100.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(90, 10)),
            (normal("Advance podinfo.test canary weight 10"),),
            weight=10,
        ),
        id="mirror-copies-analysed-then-first-weight-without-mirroring",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "mirror": True}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, mirrored=True, metrics=(MetricReading(50.0), MetricReading(100.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement success rate 50.00% < 99%"),),
            failed_checks=1,
        ),
        id="mirror-copies-that-fail-are-failed-checks-while-users-see-the-primary",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("pre-rollout")}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, hooks={HookType.PRE_ROLLOUT: (no,)}),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (
                normal("Starting canary analysis for podinfo.test"),
                warning("Halt podinfo.test advancement pre-rollout check gate failed status 403: no"),
            ),
            failed_checks=1,
        ),
        id="pre-rollout-refused-is-a-failed-check",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("pre-rollout")}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, hooks={HookType.PRE_ROLLOUT: (down,)}),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (
                normal("Starting canary analysis for podinfo.test"),
                warning(
                    "Halt podinfo.test advancement pre-rollout check gate failed cannot reach http://gate/: "
                    "connection refused"
                ),
            ),
            unavailable_steps=1,
        ),
        id="pre-rollout-unreachable-holds",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-traffic-increase")}),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2", target_replicas=2, routes=(90, 10), metrics=GOOD, hooks={HookType.CONFIRM_TRAFFIC_INCREASE: (no,)}
        ),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement waiting for traffic increase approval gate"),),
            weight=10,
        ),
        id="confirm-traffic-increase-refused-holds-the-weight",
    ),
    # ---- the analysis -----------------------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10)),
        Expect(Phase.PROGRESSING, needs=(METRICS,), weight=10),
        id="analysis-asks-for-metrics",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=GOOD),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(80, 20)),
            (normal("Advance podinfo.test canary weight 20"),),
            weight=20,
        ),
        id="good-metrics-advance-weight",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=(MetricReading(61.234), MetricReading(120.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement success rate 61.23% < 99%"),),
            weight=10,
            failed_checks=1,
        ),
        id="low-success-rate-halts",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=(MetricReading(100.0), MetricReading(812.9))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement request duration 812ms > 500ms"),),
            weight=10,
            failed_checks=1,
        ),
        id="slow-requests-halt-in-flaggers-words",
    ),
    pytest.param(
        make_canary(
            {
                **WEIGHTED,
                "metrics": [
                    {"name": "errors", "query": "sum(rate(errors_total[1m]))", "thresholdRange": {"max": 1}},
                    {"name": "errors", "query": "sum(rate(errors_total[5m]))", "thresholdRange": {"max": 5}},
                ],
            }
        ),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=(MetricReading(3.0), MetricReading(3.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement errors 3.00 > 1"),),
            weight=10,
            failed_checks=1,
        ),
        id="metrics-of-one-name-are-each-judged-on-their-own-reading",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=(MetricReading(None, "no-data"), MetricReading(1.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (
                warning(
                    "Halt advancement no values found for istio metric request-success-rate probably podinfo.test "
                    "is not receiving traffic"
                ),
            ),
            weight=10,
            failed_checks=1,
        ),
        id="missing-data-never-passes",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(
            "v2",
            target_replicas=2,
            routes=(90, 10),
            metrics=(MetricReading(None, "unavailable", "connection refused"), MetricReading(1.0)),
        ),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt advancement request-success-rate could not be measured: connection refused"),),
            weight=10,
            unavailable_steps=1,
        ),
        id="metrics-server-down-holds",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, unavailable_steps=UNAVAILABLE_LIMIT),
        observe(
            "v2",
            target_replicas=2,
            routes=(90, 10),
            metrics=(MetricReading(None, "unavailable", "connection refused"), MetricReading(1.0)),
        ),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (
                warning("Halt advancement request-success-rate could not be measured: connection refused"),
                warning(
                    f"Halt podinfo.test advancement: not analysed for {UNAVAILABLE_LIMIT + 1} steps in a row, "
                    "counted as a failed check"
                ),
            ),
            weight=10,
            failed_checks=1,
            unavailable_steps=UNAVAILABLE_LIMIT + 1,
        ),
        id="holding-is-bounded",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, unavailable_steps=2),
        observe(
            "v2",
            target_replicas=2,
            routes=(90, 10),
            metrics=(MetricReading(None, "invalid", "400 (bad_data): parse error"), MetricReading(1.0)),
        ),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Prometheus query failed: 400 (bad_data): parse error"),),
            weight=10,
            failed_checks=1,
        ),
        id="a-wrong-query-is-a-failed-check-at-once",
    ),
    pytest.param(
        make_canary(
            {
                **WEIGHTED,
                "metrics": [
                    {"name": "errors", "query": "sum(a)", "thresholdRange": {"max": 1}},
                    {"name": "errors", "query": "sum(b)", "thresholdRange": {"max": 1}},
                ],
            }
        ),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=(MetricReading(0.0), MetricReading(5.0))),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement errors 5.00 > 1"),),
            weight=10,
            failed_checks=1,
        ),
        id="two-metrics-with-one-name-are-each-judged",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("rollout")}),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), metrics=GOOD, hooks={HookType.ROLLOUT: (no,)}),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (warning("Halt podinfo.test advancement external check gate failed status 403: no"),),
            weight=10,
            failed_checks=1,
        ),
        id="rollout-hook-refusal-is-a-failed-check",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, failed_checks=2),
        observe("v2", target_replicas=2, routes=(90, 10)),
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Rolling back podinfo.test failed checks threshold reached 2"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="threshold-reached-rolls-back",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("rollback")}),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe("v2", target_replicas=2, routes=(90, 10), hooks={HookType.ROLLBACK: (yes,)}),
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Rollback check gate passed"),
                warning("Rolling back podinfo.test manual webhook invoked"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="rollback-hook-rolls-back-at-once",
    ),
    # ---- readiness --------------------------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, waiting_since=NOW - 11 * MINUTE),
        observe(target=ready("podinfo", "v2", available_replicas=0), routes=(100, 0)),
        Expect(
            Phase.FAILED,
            (ENSURE, ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning(
                    "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 "
                    "(readyThreshold 100%) updated replicas are available"
                ),
                warning("Rolling back podinfo.test progress deadline exceeded"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="progress-deadline-counts-from-when-waiting-began",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, last_transition_time=NOW - 11 * MINUTE),
        observe(target=ready("podinfo", "v2", available_replicas=0), routes=(90, 10)),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(100, 0)),
            (
                warning(
                    "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 "
                    "(readyThreshold 100%) updated replicas are available"
                ),
            ),
            weight=10,
        ),
        id="no-traffic-to-a-canary-without-available-pods-and-no-rollback-on-an-old-transition",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10),
        observe(target=ready("podinfo", "v2", progress_deadline_exceeded=True), routes=(90, 10)),
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning(
                    'canary deployment podinfo.test not ready: deployment "podinfo" exceeded its progress deadline'
                ),
                warning("Rolling back podinfo.test progress deadline exceeded"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="the-deployments-own-deadline-rolls-back",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, waiting_since=NOW - MINUTE),
        observe("v2", target_replicas=2, routes=(100, 0)),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(90, 10)),
            (),
            weight=10,
            unavailable_steps=1,
        ),
        id="traffic-comes-back-when-the-canary-is-ready-and-that-step-is-not-analysed",
    ),
    # ---- revisions during the analysis --------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=20),
        observe("v3", target_replicas=2, routes=(80, 20)),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(2)),
            (normal("New revision detected! Restarting analysis for podinfo.test"),),
        ),
        id="new-revision-mid-analysis-restarts",
    ),
    pytest.param(
        make_canary(),
        status(Phase.WAITING_PROMOTION, last_applied_spec="v2", canary_weight=20),
        observe("v1", target_replicas=2, routes=(80, 20)),
        Expect(
            Phase.SUCCEEDED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0)),
            (normal("Target podinfo.test is back at the promoted revision: analysis stopped"),),
        ),
        id="the-promoted-revision-is-never-analysed",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", unconfirmed=Unconfirmed("v2", Phase.SUCCEEDED, "v1")),
        observe("v1", target_replicas=0),
        Expect(
            Phase.SUCCEEDED,
            (ENSURE,),
            (normal("New revision of podinfo.test was refused after admission: back to Succeeded"),),
        ),
        id="a-revision-another-webhook-refused-is-undone",
    ),
    # ---- promotion ----------------------------------------------------------------------------
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), metrics=GOOD),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (normal("Copying podinfo.test template spec to podinfo-primary.test"),),
            weight=20,
        ),
        id="max-weight-and-good-metrics-promote",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), metrics=GOOD, hooks={HookType.CONFIRM_PROMOTION: (no,)}),
        Expect(
            Phase.WAITING_PROMOTION,
            (ENSURE,),
            (warning("Halt podinfo.test advancement waiting for promotion approval gate"),),
            weight=20,
        ),
        id="confirm-promotion-refused-waits",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        status(Phase.WAITING_PROMOTION, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), metrics=(MetricReading(10.0), MetricReading(50.0))),
        Expect(
            Phase.WAITING_PROMOTION,
            (ENSURE,),
            (warning("Halt podinfo.test advancement success rate 10.00% < 99%"),),
            weight=20,
            failed_checks=1,
        ),
        id="waiting-promotion-keeps-analysing",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        status(Phase.WAITING_PROMOTION, last_applied_spec="v2", canary_weight=20, failed_checks=2),
        observe("v2", target_replicas=2, routes=(80, 20)),
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Rolling back podinfo.test failed checks threshold reached 2"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="waiting-promotion-rolls-back-at-the-threshold",
    ),
    pytest.param(
        make_canary({**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        status(Phase.WAITING_PROMOTION, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), metrics=GOOD, hooks={HookType.CONFIRM_PROMOTION: (yes,)}),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (
                normal("Confirm-promotion check gate passed"),
                normal("Copying podinfo.test template spec to podinfo-primary.test"),
            ),
            weight=20,
        ),
        id="waiting-promotion-approved-promotes",
    ),
    pytest.param(
        make_canary(skipAnalysis=True),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (normal("Copying podinfo.test template spec to podinfo-primary.test"),),
        ),
        id="skip-analysis-promotes-a-ready-canary",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), primary=ready("podinfo-primary", "p1", source="v1")),
        Expect(Phase.PROMOTING, (ENSURE, CopyToPrimary("v2")), weight=20),
        id="promotion-copy-repaired-after-crash",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe(
            "v2",
            target_replicas=2,
            routes=(80, 20),
            primary=ready("podinfo-primary", "p2", source="v2", updated_replicas=1),
        ),
        Expect(
            Phase.PROMOTING,
            (ENSURE,),
            (
                warning(
                    "podinfo-primary.test not ready: waiting for rollout to finish: 1 out of 2 new replicas have "
                    "been updated"
                ),
            ),
            weight=20,
        ),
        id="traffic-waits-for-the-promoted-primary-to-roll-out",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe("v2", target_replicas=2, routes=(80, 20), primary=ready("podinfo-primary", "p2", source="v2")),
        Expect(Phase.FINALISING, (ENSURE, SetRoutes(100, 0)), (normal("Routing all traffic to primary"),)),
        id="promoted-primary-ready-takes-all-traffic",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROMOTING, last_applied_spec="v2", canary_weight=20),
        observe(
            target=ready("podinfo", "v2", available_replicas=0),
            routes=(80, 20),
            primary=ready("podinfo-primary", "p2", source="v2", updated_replicas=1),
        ),
        Expect(
            Phase.PROMOTING,
            (ENSURE, SetRoutes(100, 0)),
            (warning("canary deployment podinfo.test has no available pod: all traffic to the primary"),),
        ),
        id="promoting-never-leaves-traffic-on-a-canary-without-pods",
    ),
    pytest.param(
        make_canary(),
        status(Phase.FINALISING, last_applied_spec="v2"),
        observe("v2", target_replicas=2, primary=ready("podinfo-primary", "p2", source="v2")),
        Expect(
            Phase.SUCCEEDED,
            (ENSURE, ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (normal("Promotion completed! Scaling down podinfo.test"),),
        ),
        id="finalising-scales-canary-down",
    ),
    # ---- A/B testing --------------------------------------------------------------------------
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(0, 100)),
            (normal("Starting canary analysis for podinfo.test"), normal("Advance podinfo.test canary iteration 1/2")),
            iterations=1,
        ),
        id="ab-first-step-routes-matched-traffic-and-counts-iteration-1",
    ),
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=1),
        observe("v2", target_replicas=2, routes=(0, 100), metrics=(MetricReading(100.0),)),
        Expect(Phase.PROGRESSING, (ENSURE,), (normal("Advance podinfo.test canary iteration 2/2"),), iterations=2),
        id="ab-advances-iterations-with-status-weight-0-as-flagger",
    ),
    pytest.param(
        make_canary(AB),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=2),
        observe("v2", target_replicas=2, routes=(0, 100), metrics=(MetricReading(100.0),)),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (normal("Copying podinfo.test template spec to podinfo-primary.test"),),
            weight=100,
            iterations=2,
        ),
        id="ab-promotes-after-iterations-while-matched-traffic-stays-on-the-canary",
    ),
    # ---- blue/green ---------------------------------------------------------------------------
    pytest.param(
        make_canary(BLUE_GREEN),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROGRESSING,
            (ENSURE,),
            (normal("Starting canary analysis for podinfo.test"), normal("Advance podinfo.test canary iteration 1/2")),
            iterations=1,
        ),
        id="blue-green-first-step-runs-no-metrics",
    ),
    pytest.param(
        make_canary({**BLUE_GREEN, "mirror": True}),
        status(Phase.PROGRESSING, last_applied_spec="v2"),
        observe("v2", target_replicas=2),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(100, 0, mirror=True)),
            (normal("Starting canary analysis for podinfo.test"), normal("Advance podinfo.test canary iteration 1/2")),
            iterations=1,
        ),
        id="blue-green-mirrors-from-the-first-iteration",
    ),
    pytest.param(
        make_canary({**BLUE_GREEN, "mirror": True}),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=1),
        observe("v2", target_replicas=2, mirrored=True, metrics=(MetricReading(100.0),)),
        Expect(Phase.PROGRESSING, (ENSURE,), (normal("Advance podinfo.test canary iteration 2/2"),), iterations=2),
        id="blue-green-keeps-mirroring",
    ),
    pytest.param(
        make_canary({**BLUE_GREEN, "mirror": True}),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=2),
        observe("v2", target_replicas=2, mirrored=True, metrics=(MetricReading(100.0),)),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(0, 100)),
            (normal("Stop traffic mirroring and route all traffic to canary"),),
            iterations=3,
        ),
        id="blue-green-stops-mirroring-when-all-traffic-moves",
    ),
    pytest.param(
        make_canary(BLUE_GREEN),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=2),
        observe("v2", target_replicas=2, metrics=(MetricReading(100.0),)),
        Expect(
            Phase.PROGRESSING, (ENSURE, SetRoutes(0, 100)), (normal("Routing all traffic to canary"),), iterations=3
        ),
        id="blue-green-routes-all-traffic-to-the-canary-after-the-iterations",
    ),
    pytest.param(
        make_canary(BLUE_GREEN),
        status(Phase.PROGRESSING, last_applied_spec="v2", iterations=3),
        observe("v2", target_replicas=2, routes=(0, 100), metrics=(MetricReading(100.0),)),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (normal("Copying podinfo.test template spec to podinfo-primary.test"),),
            weight=100,
            iterations=3,
        ),
        id="blue-green-promotes-after-one-analysed-step-on-all-traffic",
    ),
    # ---- suspended, duplicates --------------------------------------------------------------
    pytest.param(
        make_canary(suspend=True),
        status(Phase.INITIALIZED, observed_generation=0),
        observe("v2"),
        Expect(Phase.INITIALIZED, (), (normal("skipping canary run as object is suspended"),)),
        id="suspended-says-so-once",
    ),
    pytest.param(
        make_canary(suspend=True),
        status(Phase.INITIALIZED),
        observe("v2"),
        Expect(Phase.INITIALIZED),
        id="suspended-does-nothing",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe("v2", duplicate_of="test/other"),
        Expect(Phase.INITIALIZED, (), (warning("Target podinfo.test is already managed by canary test/other"),)),
        id="duplicate-target-reported",
    ),
    pytest.param(
        make_canary(),
        status(Phase.INITIALIZED),
        observe("v2", unpromotable="the claims differ"),
        Expect(Phase.INITIALIZED, (), (warning("Halt podinfo.test advancement: the claims differ"),)),
        id="unpromotable-revision-not-started",
    ),
    pytest.param(
        make_canary(),
        status(Phase.PROGRESSING, canary_weight=20, last_applied_spec="v2"),
        observe("v2", target_replicas=2, routes=(80, 20), unpromotable="the claims differ"),
        Expect(
            Phase.FAILED,
            (EnsureObjects(), SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Halt podinfo.test advancement: the claims differ"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        id="unpromotable-revision-rolled-back",
    ),
]


@pytest.mark.parametrize(("canary", "before", "observation", "expected"), STEPS)
def test_one_step(canary: Canary, before: CanaryStatus, observation: Observation, expected: Expect) -> None:
    check(decide(canary, before, observation, NOW), before, expected)


# ---- readiness, as Flagger's isDeploymentReady ---------------------------------------------


@pytest.mark.parametrize(
    ("workload", "threshold", "expected"),
    [
        pytest.param(ready("d", "t"), 100, None, id="ready"),
        pytest.param(
            ready("d", "t", observed_generation=0),
            100,
            "waiting for rollout to finish: observed deployment generation less than desired generation",
            id="generation-not-observed",
        ),
        pytest.param(
            ready("d", "t", updated_replicas=1),
            100,
            "waiting for rollout to finish: 1 out of 2 new replicas have been updated",
            id="not-all-updated",
        ),
        pytest.param(
            ready("d", "t", status_replicas=3),
            100,
            "waiting for rollout to finish: 1 old replicas are pending termination",
            id="old-replicas-left",
        ),
        pytest.param(
            ready("d", "t", available_replicas=1),
            100,
            "waiting for rollout to finish: 1 of 2 (readyThreshold 100%) updated replicas are available",
            id="not-available",
        ),
        pytest.param(ready("d", "t", available_replicas=1), 50, None, id="threshold-floor"),
        pytest.param(
            ready("d", "t", replicas=3, available_replicas=1),
            70,
            "waiting for rollout to finish: 1 of 2 (readyThreshold 70%) updated replicas are available",
            id="threshold-floors-like-flagger",
        ),
        pytest.param(
            ready("d", "t", replicas=1, available_replicas=0),
            50,
            "waiting for rollout to finish: 0 of 1 (readyThreshold 50%) updated replicas are available",
            id="never-ready-with-no-pod-available",
        ),
        pytest.param(
            ready("d", "t", progress_deadline_exceeded=True),
            100,
            'deployment "d" exceeded its progress deadline',
            id="progress-deadline-exceeded",
        ),
        pytest.param(ready("d", "t", replicas=0), 100, "scaled to zero", id="scaled-to-zero"),
    ],
)
def test_readiness(workload: WorkloadState, threshold: int, expected: str | None) -> None:
    assert workload.not_ready_because(threshold) == expected


# ---- whole releases ------------------------------------------------------------------------


@dataclass
class World:
    """A tiny cluster around ``decide``: applies actions as the reconciler would, answers as told.

    Pods are ready as soon as a workload is scaled, unless ``canary_available`` says otherwise;
    metrics and hooks answer from the functions given, which see the world (weights, step).
    """

    canary: Canary
    status: CanaryStatus
    target: WorkloadState
    primary: WorkloadState | None
    routes: Split | None = (100, 0)
    canary_available: bool = True
    readings: Callable[[World], tuple[MetricReading, ...]] = lambda world: tuple(
        MetricReading(100.0 if m.name == "request-success-rate" else 50.0) for m in world.canary.analysis.metrics
    )
    answers: dict[HookType, Callable[[World], HookResult]] = field(default_factory=dict)
    now: datetime.datetime = NOW
    asked: list[HookType] = field(default_factory=list)

    def release(self, template: str) -> None:
        self.target = dataclasses.replace(self.target, template_hash=template)

    def tick(self) -> tuple[Any, ...]:
        self.now += datetime.timedelta(seconds=self.canary.analysis.interval_seconds)
        observation = Observation(target=self.target, primary=self.primary, routes=self.routes)
        decision = decide(self.canary, self.status, observation, self.now)
        while decision.needs:
            gathered: dict[HookType, tuple[HookResult, ...]] = dict(observation.hooks)
            metrics = observation.metrics
            for need in decision.needs:
                if need == METRICS:
                    metrics = self.readings(self)
                else:
                    assert isinstance(need, HookType)
                    self.asked.append(need)
                    answer = self.answers.get(need)
                    gathered[need] = (answer(self) if answer else yes,)
            observation = dataclasses.replace(observation, hooks=gathered, metrics=metrics)
            decision = decide(self.canary, self.status, observation, self.now)
        for action in decision.actions:
            self.apply(action)
        self.status = decision.status
        return (
            self.status.phase.value if self.status.phase else None,
            self.status.canary_weight,
            self.status.iterations,
            self.status.failed_checks,
            self.routes,
            tuple(event.message for event in decision.events),
        )

    def apply(self, action: Action) -> None:
        if isinstance(action, EnsureObjects) and self.primary is None:
            self.primary = ready("podinfo-primary", "p", source=self.target.template_hash)
        elif isinstance(action, ScaleTarget):
            available = action.replicas if self.canary_available else 0
            self.target = dataclasses.replace(
                self.target,
                replicas=action.replicas,
                updated_replicas=action.replicas,
                available_replicas=available,
                status_replicas=action.replicas,
            )
        elif isinstance(action, SetRoutes):
            self.routes = (action.primary_weight, action.canary_weight)
        elif isinstance(action, CopyToPrimary):
            assert self.primary is not None
            self.primary = dataclasses.replace(self.primary, source_hash=action.revision)


def initialized_world(analysis: dict[str, Any], **spec: Any) -> World:
    world = World(
        canary=make_canary(analysis, **spec),
        status=CanaryStatus(),
        target=ready("podinfo", "v1"),
        primary=None,
    )
    world.tick()  # creates the primary
    assert world.tick()[0] == "Initialized"
    return world


def new_revision(world: World, template: str = "v2") -> None:
    world.release(template)
    assert world.tick() == (
        "Progressing",
        0,
        0,
        0,
        (100, 0),
        ("New revision detected! Scaling up podinfo.test",),
    )


COPYING = "Copying podinfo.test template spec to podinfo-primary.test"
TO_PRIMARY = "Routing all traffic to primary"
COMPLETED = "Promotion completed! Scaling down podinfo.test"
STARTING = "Starting canary analysis for podinfo.test"


def test_weighted_release_caps_at_max_weight() -> None:
    """Flagger v1.36.1 overshoots maxWeight 50 with stepWeight 20 (20, 40, 60); Serin stops at 50."""
    world = initialized_world({"interval": "15s", "stepWeight": 20, "maxWeight": 50, "metrics": [SUCCESS_RATE_15S]})
    new_revision(world)
    assert [world.tick() for _ in range(6)] == [
        ("Progressing", 20, 0, 0, (80, 20), (STARTING, "Advance podinfo.test canary weight 20")),
        ("Progressing", 40, 0, 0, (60, 40), ("Advance podinfo.test canary weight 40",)),
        ("Progressing", 50, 0, 0, (50, 50), ("Advance podinfo.test canary weight 50",)),
        ("Promoting", 50, 0, 0, (50, 50), (COPYING,)),
        ("Finalising", 0, 0, 0, (100, 0), (TO_PRIMARY,)),
        ("Succeeded", 0, 0, 0, (100, 0), (COMPLETED,)),
    ]
    assert world.target.replicas == 0 and world.primary is not None and world.primary.source_hash == "v2"


@pytest.mark.parametrize(
    ("step_weights", "weights"),
    [
        pytest.param([1, 5, 10], [1, 5, 10], id="stops-at-the-last-step"),
        pytest.param([10, 30], [10, 30], id="flagger-observed-10-30"),
    ],
)
def test_step_weights_promote_from_the_last_step(step_weights: list[int], weights: list[int]) -> None:
    world = initialized_world({"interval": "15s", "stepWeights": step_weights, "metrics": [SUCCESS_RATE_15S]})
    new_revision(world)
    seen = [world.tick() for _ in range(len(weights) + 1)]
    assert [row[1] for row in seen] == [*weights, weights[-1]]
    assert seen[-1][0] == "Promoting" and seen[-1][5] == (COPYING,)


def test_flaggers_analysis_phases_with_step_weight_promotion() -> None:
    """TestScheduler_DeploymentAnalysisPhases: stepWeight 100, stepWeightPromotion 50."""
    world = initialized_world({"interval": "1m", "stepWeight": 100, "stepWeightPromotion": 50})
    new_revision(world)
    assert [world.tick() for _ in range(5)] == [
        ("Progressing", 100, 0, 0, (0, 100), (STARTING, "Advance podinfo.test canary weight 100")),
        ("Promoting", 100, 0, 0, (0, 100), (COPYING,)),
        ("Promoting", 50, 0, 0, (50, 50), ("Advance podinfo.test primary weight 50",)),
        ("Finalising", 0, 0, 0, (100, 0), ("Advance podinfo.test primary weight 100",)),
        ("Succeeded", 0, 0, 0, (100, 0), (COMPLETED,)),
    ]


def test_flaggers_new_revision_reset() -> None:
    """TestScheduler_DeploymentNewRevisionReset: 90/10, then a second revision puts 100/0 back."""
    world = initialized_world(WEIGHTED)
    new_revision(world)
    assert world.tick()[4] == (90, 10)
    world.release("v3")
    assert world.tick() == (
        "Progressing",
        0,
        0,
        0,
        (100, 0),
        ("New revision detected! Restarting analysis for podinfo.test",),
    )
    assert world.status.last_applied_spec == "v3"


def test_blue_green_routes_all_traffic_to_the_canary_before_promoting() -> None:
    """As Flagger v1.36.1 did with iterations 3: no metric on the first step, then one analysed
    step with all traffic on the canary, promotion while it serves, Finalising gives it back."""
    world = initialized_world({"interval": "15s", "iterations": 3, "metrics": [SUCCESS_RATE_15S]})
    new_revision(world)
    queried: list[int] = []

    def readings(w: World) -> tuple[MetricReading, ...]:
        queried.append(w.status.iterations)
        return (MetricReading(100.0),)

    world.readings = readings
    assert [world.tick() for _ in range(7)] == [
        ("Progressing", 0, 1, 0, (100, 0), (STARTING, "Advance podinfo.test canary iteration 1/3")),
        ("Progressing", 0, 2, 0, (100, 0), ("Advance podinfo.test canary iteration 2/3",)),
        ("Progressing", 0, 3, 0, (100, 0), ("Advance podinfo.test canary iteration 3/3",)),
        ("Progressing", 0, 4, 0, (0, 100), ("Routing all traffic to canary",)),
        ("Promoting", 100, 4, 0, (0, 100), (COPYING,)),
        ("Finalising", 0, 4, 0, (100, 0), (TO_PRIMARY,)),
        ("Succeeded", 0, 0, 0, (100, 0), (COMPLETED,)),
    ]
    assert queried == [1, 2, 3, 4]


def test_ab_testing_gets_matched_traffic_back_after_a_readiness_blip() -> None:
    """Serin takes traffic off a canary with no available pod (Flagger leaves it); once the pods are
    back, matched requests go to the canary again and the analysis resumes the step after."""
    world = initialized_world({**AB, "iterations": 4})
    new_revision(world)
    assert world.tick() == ("Progressing", 0, 1, 0, (0, 100), (STARTING, "Advance podinfo.test canary iteration 1/4"))
    assert world.tick()[2] == 2

    world.target = dataclasses.replace(world.target, available_replicas=0)
    blip = (
        "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 (readyThreshold 100%) "
        "updated replicas are available"
    )
    assert world.tick() == ("Progressing", 0, 2, 0, (100, 0), (blip,))
    world.target = dataclasses.replace(world.target, available_replicas=2)
    assert world.tick() == ("Progressing", 0, 2, 0, (0, 100), ())
    assert [world.tick() for _ in range(5)] == [
        ("Progressing", 0, 3, 0, (0, 100), ("Advance podinfo.test canary iteration 3/4",)),
        ("Progressing", 0, 4, 0, (0, 100), ("Advance podinfo.test canary iteration 4/4",)),
        ("Promoting", 100, 4, 0, (0, 100), (COPYING,)),
        ("Finalising", 0, 4, 0, (100, 0), (TO_PRIMARY,)),
        ("Succeeded", 0, 0, 0, (100, 0), (COMPLETED,)),
    ]


def test_waiting_promotion_is_analysed_and_rolls_back_without_approval() -> None:
    """Flagger v1.36.1: a refused confirm-promotion keeps analysing; 10% success rolls back."""
    world = initialized_world(
        {
            "interval": "15s",
            "threshold": 3,
            "stepWeight": 50,
            "metrics": [SUCCESS_RATE_15S],
            "webhooks": hooks("confirm-promotion"),
        }
    )
    world.answers[HookType.CONFIRM_PROMOTION] = lambda w: no
    new_revision(world)
    assert world.tick()[1] == 50
    assert world.tick()[1] == 100
    assert world.tick()[0] == "WaitingPromotion"
    world.readings = lambda w: (MetricReading(10.0),)
    halt = "Halt podinfo.test advancement success rate 10.00% < 99%"
    assert [world.tick() for _ in range(4)] == [
        ("WaitingPromotion", 100, 0, 1, (0, 100), (halt,)),
        ("WaitingPromotion", 100, 0, 2, (0, 100), (halt,)),
        ("WaitingPromotion", 100, 0, 3, (0, 100), (halt,)),
        (
            "Failed",
            0,
            0,
            0,
            (100, 0),
            ("Rolling back podinfo.test failed checks threshold reached 3", "Canary failed! Scaling down podinfo.test"),
        ),
    ]
    assert world.primary is not None and world.primary.source_hash == "v1"


def test_a_dead_metrics_backend_holds_then_counts_as_failed_checks() -> None:
    world = initialized_world({"interval": "15s", "threshold": 2, "stepWeight": 10, "metrics": [SUCCESS_RATE_15S]})
    new_revision(world)
    world.tick()
    world.readings = lambda w: (MetricReading(None, "unavailable", "timed out"),)
    rows = [world.tick() for _ in range(UNAVAILABLE_LIMIT + 3)]
    assert [(row[0], row[1], row[3]) for row in rows] == [
        *[("Progressing", 10, 0)] * UNAVAILABLE_LIMIT,
        ("Progressing", 10, 1),
        ("Progressing", 10, 2),
        ("Failed", 0, 0),
    ]


def test_skip_analysis_promotes_without_queries() -> None:
    world = initialized_world(WEIGHTED, skipAnalysis=True)
    world.readings = lambda w: pytest.fail("no metric may be queried")
    new_revision(world)
    assert [world.tick() for _ in range(3)] == [
        ("Promoting", 0, 0, 0, (100, 0), (COPYING,)),
        ("Finalising", 0, 0, 0, (100, 0), (TO_PRIMARY,)),
        ("Succeeded", 0, 0, 0, (100, 0), ("Promotion completed! Canary analysis was skipped for podinfo.test",)),
    ]


def test_hooks_are_asked_only_when_their_gate_is_reached() -> None:
    world = initialized_world(
        {
            **WEIGHTED,
            "webhooks": hooks(
                "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion"
            ),
        }
    )
    world.release("v2")
    for _ in range(6):
        world.tick()
    assert world.status.phase is Phase.SUCCEEDED
    assert world.asked == [
        HookType.CONFIRM_ROLLOUT,
        HookType.PRE_ROLLOUT,
        HookType.CONFIRM_TRAFFIC_INCREASE,
        HookType.ROLLOUT,
        HookType.CONFIRM_TRAFFIC_INCREASE,
        HookType.ROLLOUT,
        HookType.CONFIRM_PROMOTION,
    ]


def test_a_new_image_before_initialization_is_a_revision() -> None:
    """The primary runs what it was created from; a target changed since then is analysed."""
    world = World(make_canary(), CanaryStatus(), ready("podinfo", "v1"), None)
    world.tick()
    world.release("v2")
    assert world.tick()[0] == "Initialized"
    assert world.status.last_promoted_spec == "v1"
    assert world.tick()[5] == ("New revision detected! Scaling up podinfo.test",)


# ---- the schedule --------------------------------------------------------------------------


def test_a_tick_a_little_early_is_in_time_and_keeps_the_schedule() -> None:
    canary = make_canary({**WEIGHTED, "interval": "1m"})
    last = status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, last_analysis_time=NOW - MINUTE)
    early = NOW - datetime.timedelta(seconds=0.4)
    assert is_due(canary, last, early)
    assert not is_due(canary, last, NOW - datetime.timedelta(seconds=5.1))
    decision = decide(canary, last, observe("v2", target_replicas=2, routes=(90, 10), metrics=GOOD), early)
    assert decision.status.canary_weight == 20
    # The step counts as taken when it was due, so the next one is due a whole interval later.
    assert decision.status.last_analysis_time == NOW


def test_a_late_tick_keeps_the_schedule_and_a_very_late_one_restarts_it() -> None:
    canary = make_canary({**WEIGHTED, "interval": "1m"})
    last = status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, last_analysis_time=NOW - MINUTE)
    later = NOW + datetime.timedelta(seconds=20)
    assert decide(canary, last, observe("v2", 2, routes=(90, 10), metrics=GOOD), later).status.last_analysis_time == NOW
    much_later = NOW + 2 * MINUTE
    assert (
        decide(canary, last, observe("v2", 2, routes=(90, 10), metrics=GOOD), much_later).status.last_analysis_time
        == much_later
    )


def test_not_due_until_the_interval_has_passed() -> None:
    canary = make_canary()
    recent = status(Phase.PROGRESSING, last_applied_spec="v2", last_analysis_time=NOW - datetime.timedelta(seconds=20))
    decision = decide(canary, recent, observe("v2", target_replicas=2), NOW)
    assert (decision.status, decision.actions, decision.summary) == (recent, (), "not due: next step in 40s")
    forced = decide(canary, recent, observe("v2", target_replicas=2), NOW, force=True)
    assert forced.status.canary_weight == 10


def test_a_revision_recorded_without_a_step_time_is_due_at_once() -> None:
    canary = make_canary()
    assert is_due(canary, status(Phase.PROGRESSING, last_analysis_time=None), NOW)


# ---- status, routes, messages --------------------------------------------------------------


def test_promoted_condition_carries_flaggers_messages() -> None:
    failed = decide(
        make_canary(),
        status(Phase.PROGRESSING, last_applied_spec="v2", failed_checks=2),
        observe("v2", target_replicas=2),
        NOW,
    ).status
    assert failed.condition is not None
    assert (failed.condition.status, failed.condition.reason, failed.condition.message) == (
        "False",
        "Failed",
        "Canary analysis failed, Deployment scaled to zero.",
    )
    assert CanaryStatus.from_dict(failed.to_dict()) == failed


@pytest.mark.parametrize(
    ("analysis", "before", "split"),
    [
        pytest.param(WEIGHTED, status(Phase.PROGRESSING, canary_weight=10), (90, 10), id="canary"),
        pytest.param(WEIGHTED, status(Phase.SUCCEEDED, canary_weight=10), (100, 0), id="idle"),
        pytest.param(AB, status(Phase.PROGRESSING, iterations=0), (100, 0), id="ab-not-started"),
        pytest.param(AB, status(Phase.WAITING_PROMOTION, iterations=2), (0, 100), id="ab-routed"),
        pytest.param(BLUE_GREEN, status(Phase.PROGRESSING, iterations=2), (100, 0), id="blue-green-iterating"),
        pytest.param(BLUE_GREEN, status(Phase.PROGRESSING, iterations=3), (0, 100), id="blue-green-switched"),
        pytest.param(BLUE_GREEN, status(Phase.PROMOTING, canary_weight=100), (0, 100), id="promoting"),
        pytest.param(BLUE_GREEN, status(Phase.FINALISING, canary_weight=0), (100, 0), id="finalising"),
    ],
)
def test_desired_split(analysis: dict[str, Any], before: CanaryStatus, split: Split) -> None:
    assert desired_split(make_canary(analysis), before) == split


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [(0, "0s"), (500, "500ms"), (212.5, "212.5ms"), (1200, "1.2s"), (90_000, "1m30s"), (60_000, "1m0s")],
)
def test_go_duration(milliseconds: float, text: str) -> None:
    assert go_duration(milliseconds) == text


def test_a_revision_the_target_holds_is_confirmed_and_analysed() -> None:
    before = status(Phase.PROGRESSING, last_applied_spec="v2", unconfirmed=Unconfirmed("v2", Phase.SUCCEEDED, "v1"))
    decision = decide(make_canary(), before, observe("v2", target_replicas=2), NOW)
    assert (decision.status.unconfirmed, decision.status.canary_weight) == (None, 10)


# ---- alerts, as Flagger sends them beside its Events ---------------------------------------


@pytest.mark.parametrize(
    ("event", "alert"),
    [
        pytest.param(
            normal("Initialization done! podinfo.test"),
            AlertMessage("New Deployment detected, initialization completed.", "info", True),
            id="initialized",
        ),
        pytest.param(
            normal("New revision detected! Scaling up podinfo.test"),
            AlertMessage("New revision detected, progressing canary analysis.", "info", True),
            id="new-revision",
        ),
        pytest.param(
            normal("Promotion completed! Scaling down podinfo.test"),
            AlertMessage("Canary analysis completed successfully, promotion finished.", "info"),
            id="promoted",
        ),
        pytest.param(
            normal("Promotion completed! Canary analysis was skipped for podinfo.test"),
            AlertMessage("Canary analysis was skipped, promotion finished.", "info"),
            id="skipped",
        ),
        pytest.param(
            warning("Rolling back podinfo.test failed checks threshold reached 3"),
            AlertMessage("Failed checks threshold reached 3", "error"),
            id="failed-checks",
        ),
        pytest.param(
            warning("Rolling back podinfo.test progress deadline exceeded"),
            AlertMessage("Progress deadline exceeded", "error"),
            id="deadline",
        ),
        pytest.param(
            warning("Rolling back podinfo.test manual webhook invoked"),
            AlertMessage("Rolling back manual webhook invoked", "warn"),
            id="rollback-hook",
        ),
        pytest.param(
            warning("Halt podinfo.test advancement waiting for approval gate"),
            AlertMessage("Canary is waiting for approval.", "warn"),
            id="confirm-rollout",
        ),
        pytest.param(
            warning("Halt podinfo.test advancement waiting for traffic increase approval gate"),
            AlertMessage("Canary traffic increase is waiting for approval.", "warn"),
            id="confirm-traffic-increase",
        ),
        pytest.param(
            warning("Halt podinfo.test advancement waiting for promotion approval gate"),
            AlertMessage("Canary promotion is waiting for approval.", "warn"),
            id="confirm-promotion",
        ),
        pytest.param(warning("Halt podinfo.test advancement waiting for approval muted"), None, id="muted-gate"),
        pytest.param(normal("Advance podinfo.test canary weight 20"), None, id="no-alert"),
    ],
)
def test_alerts_follow_flaggers_events(event: Event, alert: AlertMessage | None) -> None:
    hook = {"name": "muted", "type": "confirm-rollout", "url": "http://gate/", "muteAlert": True}
    canary = make_canary({**WEIGHTED, "webhooks": [hook]})
    assert alerts_for(canary, (event,)) == (() if alert is None else (alert,))


# ---- the metric window: judged only on traffic since the last change ------------------------

SECOND = datetime.timedelta(seconds=1)
WINDOW = "for the metric window"


def test_a_weighted_release_waits_for_a_window_longer_than_its_interval() -> None:
    """Serin differs on purpose: with a 15s interval and the default 1m metric interval, Flagger
    judges each weight on a window that is three quarters the previous weight's traffic; Serin's
    steps after a weight change wait until the window holds only the new one."""
    world = initialized_world({"interval": "15s", "stepWeight": 20, "maxWeight": 40, "metrics": [SUCCESS_RATE]})
    new_revision(world)
    waiting = ("Progressing", 20, 0, 0, (80, 20), ())
    assert [world.tick() for _ in range(9)] == [
        ("Progressing", 20, 0, 0, (80, 20), (STARTING, "Advance podinfo.test canary weight 20")),
        waiting,
        waiting,
        waiting,
        ("Progressing", 40, 0, 0, (60, 40), ("Advance podinfo.test canary weight 40",)),
        ("Progressing", 40, 0, 0, (60, 40), ()),
        ("Progressing", 40, 0, 0, (60, 40), ()),
        ("Progressing", 40, 0, 0, (60, 40), ()),
        ("Promoting", 40, 0, 0, (60, 40), (COPYING,)),
    ]


def test_iterations_that_keep_the_traffic_wait_for_the_window_once() -> None:
    """Blue/green: the window opens a metric interval after the analysis started; the iterations
    after it route nothing new and take a step per interval."""
    world = initialized_world({"interval": "30s", "iterations": 3, "metrics": [SUCCESS_RATE]})
    new_revision(world)
    steps = [world.tick()[2:4] for _ in range(5)]
    assert steps == [(1, 0), (1, 0), (2, 0), (3, 0), (4, 0)]


@pytest.mark.parametrize(
    ("since", "force", "summary"),
    [
        (2, False, f"waiting 58.0s {WINDOW}: the canary's traffic changed 2.0s ago, its metrics read 60s"),
        (2, True, f"waiting 58.0s {WINDOW}: the canary's traffic changed 2.0s ago, its metrics read 60s"),
        (50, False, f"waiting 10.0s {WINDOW}: the canary's traffic changed 50.0s ago, its metrics read 60s"),
    ],
    ids=["2s-after-the-shift", "forced", "outside-the-tolerance"],
)
def test_a_step_before_the_window_opens_changes_nothing(since: int, force: bool, summary: str) -> None:
    canary = make_canary()
    before = status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, traffic_since=NOW - since * SECOND)
    observed = observe("v2", target_replicas=2, routes=(90, 10))
    assert decide(canary, before, observed, NOW, force=force) == Decision(before, summary, (EnsureObjects(),))


@pytest.mark.parametrize(
    ("since", "needs"),
    [(None, (METRICS,)), (56, (METRICS,)), (60, (METRICS,)), (3600, (METRICS,))],
    ids=["not-recorded", "within-the-tolerance", "one-interval", "long-ago"],
)
def test_a_step_with_its_window_open_reads_the_metrics(since: int | None, needs: tuple[Any, ...]) -> None:
    canary = make_canary()
    traffic_since = None if since is None else NOW - since * SECOND
    before = status(Phase.PROGRESSING, last_applied_spec="v2", canary_weight=10, traffic_since=traffic_since)
    assert decide(canary, before, observe("v2", target_replicas=2, routes=(90, 10)), NOW).needs == needs


def test_the_start_a_weight_change_and_the_mirror_open_a_window_and_a_new_revision_clears_it() -> None:
    canary = make_canary({**WEIGHTED, "mirror": True})
    progressing = status(Phase.PROGRESSING, last_applied_spec="v2", traffic_since=NOW - 5 * MINUTE)
    observed = observe("v2", target_replicas=2, hooks={HookType.PRE_ROLLOUT: ()})
    mirrored = decide(canary, progressing, observed, NOW)
    assert (mirrored.actions, mirrored.status.traffic_since) == ((EnsureObjects(), SetRoutes(100, 0, mirror=True)), NOW)
    weighted = dataclasses.replace(observed, mirrored=True, metrics=GOOD, hooks={HookType.ROLLOUT: ()})
    advanced = decide(canary, progressing.replace(traffic_since=NOW - MINUTE), weighted, NOW)
    assert (advanced.actions, advanced.status.traffic_since) == ((EnsureObjects(), SetRoutes(90, 10)), NOW)
    restarted = decide(canary, progressing, observe("v3", target_replicas=2), NOW)
    assert (restarted.status.last_applied_spec, restarted.status.traffic_since) == ("v3", None)


def test_routes_that_stay_as_they_are_keep_the_window() -> None:
    canary = make_canary(AB)
    since = NOW - 2 * MINUTE
    before = status(Phase.PROGRESSING, last_applied_spec="v2", iterations=1, traffic_since=since)
    observed = observe("v2", target_replicas=2, routes=(0, 100), metrics=(GOOD[0],), hooks={HookType.ROLLOUT: ()})
    stepped = decide(canary, before, observed, NOW)
    assert (stepped.status.iterations, stepped.actions, stepped.status.traffic_since) == (2, (EnsureObjects(),), since)


@pytest.mark.parametrize(
    ("interval", "since", "read"),
    [("1m", None, "1m"), ("1m", 60.0, "1m"), ("1m", 57.6, "57s"), ("15s", 14.2, "14s"), ("1m", 0.2, "1s")],
    ids=["not-recorded", "one-interval", "cut-to-the-change", "a-short-metric", "never-below-a-second"],
)
def test_a_metric_reads_no_sample_from_before_the_change(interval: str, since: float | None, read: str) -> None:
    metric = make_canary({**WEIGHTED, "metrics": [{**SUCCESS_RATE, "interval": interval}]}).analysis.metrics[0]
    traffic_since = None if since is None else NOW - datetime.timedelta(seconds=since)
    assert metric_window(metric, traffic_since, NOW) == dataclasses.replace(metric, interval=read)


def test_the_next_step_is_asked_for_when_the_window_opens() -> None:
    canary = make_canary({**WEIGHTED, "interval": "15s"})
    shifted = status(Phase.PROGRESSING, canary_weight=10, last_analysis_time=NOW, traffic_since=NOW)
    assert next_step_in(canary, shifted, NOW) == 60.0
    assert next_step_in(canary, shifted, NOW + 20 * SECOND) == 40.0
    assert next_step_in(canary, shifted.replace(traffic_since=None), NOW) == 15.0
