"""A person's requests (promote, abort, retry) as the decision core answers them, step by step.

Each case: the Canary with its request annotation, a status and an observation in; the exact
outcome out, and whether the request is done with (its annotation goes) or waits.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from serin.decide import (
    CopyToPrimary,
    Decision,
    EnsureObjects,
    Observation,
    RunHooks,
    ScaleTarget,
    SetRoutes,
    alerts_for,
    decide,
)
from serin.model import REQUEST_ANNOTATION, Canary, HookType, InvalidCanary, ManualRequest, parse_canary
from serin.status import CanaryStatus, Phase
from tests.unit.test_decide import (
    GOOD,
    NOW,
    WEIGHTED,
    Expect,
    check,
    hooks,
    make_canary,
    no,
    normal,
    observe,
    ready,
    status,
    warning,
    yes,
)

ENSURE = EnsureObjects()
PROMOTE, ABORT, RETRY = ManualRequest.PROMOTE, ManualRequest.ABORT, ManualRequest.RETRY


def requesting(request: ManualRequest, analysis: dict[str, Any] | None = None, **spec: Any) -> Canary:
    return dataclasses.replace(make_canary(analysis, **spec), request=request)


ANALYSING = status(Phase.PROGRESSING, canary_weight=10, last_applied_spec="v2")
RUNNING_V2 = observe("v2", target_replicas=2, routes=(90, 10))
FAILED = status(Phase.FAILED, last_applied_spec="v2")

CASES = [
    pytest.param(
        requesting(PROMOTE),
        ANALYSING,
        RUNNING_V2,
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (
                normal("Promotion requested! Skipping the remaining steps of podinfo.test"),
                normal("Copying podinfo.test template spec to podinfo-primary.test"),
            ),
            weight=10,
        ),
        PROMOTE,
        id="promote-skips-the-remaining-steps",
    ),
    pytest.param(
        requesting(PROMOTE, {**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        ANALYSING,
        dataclasses.replace(RUNNING_V2, hooks={HookType.CONFIRM_PROMOTION: (yes,)}),
        Expect(
            Phase.PROMOTING,
            (ENSURE, CopyToPrimary("v2")),
            (
                normal("Confirm-promotion check gate passed"),
                normal("Promotion requested! Skipping the remaining steps of podinfo.test"),
                normal("Copying podinfo.test template spec to podinfo-primary.test"),
            ),
            weight=10,
        ),
        PROMOTE,
        id="promote-through-an-open-confirm-promotion-gate",
    ),
    pytest.param(
        requesting(PROMOTE, {**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        ANALYSING,
        dataclasses.replace(RUNNING_V2, hooks={HookType.CONFIRM_PROMOTION: (no,)}),
        Expect(
            Phase.WAITING_PROMOTION,
            (),
            (warning("Halt podinfo.test advancement waiting for promotion approval gate"),),
            weight=10,
        ),
        None,
        id="promote-waits-at-a-closed-confirm-promotion-gate",
    ),
    pytest.param(
        requesting(PROMOTE, {**WEIGHTED, "webhooks": hooks("confirm-promotion")}),
        ANALYSING,
        RUNNING_V2,
        Expect(Phase.PROGRESSING, needs=(HookType.CONFIRM_PROMOTION,), weight=10),
        None,
        id="promote-asks-the-confirm-promotion-gate",
    ),
    pytest.param(
        requesting(PROMOTE),
        ANALYSING,
        observe("v2", target_replicas=2, routes=(90, 10), target=ready("podinfo", "v2", available_replicas=0)),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, SetRoutes(100, 0)),
            (
                warning(
                    "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 (readyThreshold "
                    "100%) updated replicas are available"
                ),
            ),
            weight=10,
        ),
        None,
        id="promote-waits-for-a-ready-canary",
    ),
    pytest.param(
        requesting(PROMOTE),
        status(Phase.SUCCEEDED),
        observe(),
        Expect(
            Phase.SUCCEEDED,
            (),
            (
                warning(
                    "promote requested, but podinfo.test has no release under analysis (phase Succeeded): nothing done"
                ),
            ),
        ),
        PROMOTE,
        id="promote-with-nothing-under-analysis-is-turned-down",
    ),
    pytest.param(
        requesting(PROMOTE, suspend=True),
        ANALYSING,
        RUNNING_V2,
        Expect(
            Phase.PROGRESSING,
            (),
            (
                warning(
                    "promote requested, but podinfo.test is suspended (spec.suspend): resume it first: nothing done"
                ),
            ),
            weight=10,
        ),
        PROMOTE,
        id="promote-of-a-suspended-canary-is-turned-down",
    ),
    pytest.param(
        requesting(PROMOTE),
        ANALYSING,
        dataclasses.replace(RUNNING_V2, unpromotable="the claims differ"),
        Expect(
            Phase.PROGRESSING,
            (),
            (warning("promote requested, but its revision cannot be promoted: the claims differ: nothing done"),),
            weight=10,
        ),
        PROMOTE,
        id="promote-of-an-unpromotable-revision-is-turned-down",
    ),
    pytest.param(
        requesting(ABORT),
        ANALYSING,
        RUNNING_V2,
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Rolling back podinfo.test abort requested"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        ABORT,
        id="abort-rolls-back-now",
    ),
    pytest.param(
        requesting(ABORT, suspend=True),
        status(Phase.WAITING_PROMOTION, canary_weight=20, last_applied_spec="v2"),
        observe("v2", target_replicas=2, routes=(80, 20)),
        Expect(
            Phase.FAILED,
            (ENSURE, SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
            (
                warning("Rolling back podinfo.test abort requested"),
                warning("Canary failed! Scaling down podinfo.test"),
            ),
        ),
        ABORT,
        id="abort-rolls-back-a-suspended-release-too",
    ),
    pytest.param(
        requesting(ABORT),
        status(Phase.PROMOTING, canary_weight=10, last_applied_spec="v2"),
        RUNNING_V2,
        Expect(
            Phase.PROMOTING,
            (),
            (
                warning(
                    "abort requested, but podinfo.test has no release under analysis (phase Promoting): nothing done"
                ),
            ),
            weight=10,
        ),
        ABORT,
        id="abort-during-promotion-is-turned-down",
    ),
    pytest.param(
        requesting(RETRY),
        FAILED,
        observe("v2"),
        Expect(
            Phase.PROGRESSING,
            (ENSURE, ScaleTarget(2)),
            (normal("Retry requested! Restarting analysis for podinfo.test"),),
        ),
        RETRY,
        id="retry-analyses-a-failed-release-again",
    ),
    pytest.param(
        requesting(RETRY),
        status(Phase.FAILED),
        observe("v1"),
        Expect(
            Phase.FAILED,
            (),
            (
                warning(
                    "retry requested, but podinfo.test has no failed release to analyse again (phase Failed): "
                    "nothing done"
                ),
            ),
        ),
        RETRY,
        id="retry-when-the-target-is-back-at-the-promoted-revision-is-turned-down",
    ),
    pytest.param(
        requesting(RETRY),
        ANALYSING,
        RUNNING_V2,
        Expect(
            Phase.PROGRESSING,
            (),
            (
                warning(
                    "retry requested, but podinfo.test has no failed release to analyse again (phase Progressing): "
                    "nothing done"
                ),
            ),
            weight=10,
        ),
        RETRY,
        id="retry-during-analysis-is-turned-down",
    ),
    pytest.param(
        requesting(RETRY),
        CanaryStatus(),
        observe(target_replicas=2, primary=None),
        Expect(Phase.INITIALIZING, (ENSURE,), (warning("podinfo-primary.test not ready: not created yet"),)),
        None,
        id="a-request-waits-for-initialization",
    ),
]


@pytest.mark.parametrize(("canary", "before", "observation", "expected", "answered"), CASES)
def test_a_request(
    canary: Canary, before: CanaryStatus, observation: Observation, expected: Expect, answered: ManualRequest | None
) -> None:
    decision = decide(canary, before, observation, NOW)
    check(decision, before, expected)
    assert decision.answered is answered


def test_a_request_is_acted_on_before_its_interval_is_due() -> None:
    """A step was taken a second ago; the request does not wait for the next interval."""
    before = ANALYSING.replace(last_analysis_time=NOW)
    assert decide(make_canary(), before, RUNNING_V2, NOW).summary.startswith("not due")
    decision = decide(requesting(ABORT), before, RUNNING_V2, NOW)
    assert (decision.status.phase, decision.answered) == (Phase.FAILED, ABORT)


def test_after_a_retry_the_analysis_goes_on_as_for_a_new_revision() -> None:
    retried = decide(requesting(RETRY), FAILED, observe("v2"), NOW).status
    later = NOW + datetime.timedelta(minutes=1)
    decision = decide(make_canary(), retried, observe("v2", target_replicas=2), later)
    assert (decision.needs, decision.answered, decision.status.canary_weight) == ((), None, 10)
    assert [event.message for event in decision.events] == [
        "Starting canary analysis for podinfo.test",
        "Advance podinfo.test canary weight 10",
    ]


def test_abort_alerts_with_a_warning() -> None:
    decision = decide(requesting(ABORT), ANALYSING, RUNNING_V2, NOW)
    assert [(alert.message, alert.severity) for alert in alerts_for(make_canary(), decision.events)] == [
        ("Rolling back: abort requested", "warn")
    ]


def test_an_unknown_request_is_an_invalid_canary_naming_the_annotation() -> None:
    raw: dict[str, Any] = {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": {REQUEST_ANNOTATION: "rollback"}},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 80},
            "analysis": WEIGHTED,
        },
    }
    with pytest.raises(InvalidCanary) as invalid:
        parse_canary(raw)
    assert [(error.path, error.message) for error in invalid.value.errors] == [
        ("metadata.annotations[serin.dev/request]", "must be one of promote, abort, retry (got 'rollback')")
    ]
    raw["metadata"]["annotations"][REQUEST_ANNOTATION] = "promote"
    assert parse_canary(raw).request is PROMOTE


def test_a_decision_without_a_request_answers_none() -> None:
    decision: Decision = decide(make_canary(), ANALYSING, dataclasses.replace(RUNNING_V2, metrics=GOOD), NOW)
    assert decision.answered is None
