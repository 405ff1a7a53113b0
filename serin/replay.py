"""Replay: what a Canary's analysis would have decided over a past window, changing nothing.

A release is played again from its first step: at ``start`` the target holds a new revision (as
installed, the Deployment webhook sees it then, and the first step is due at once), and after that
the same ``decide()`` the tick uses takes each step when a tick would take it (an analysis
interval later, or once a metric window has opened), fed with the metrics as the backend recorded
them at that time (``read_metrics(canary, at)``). The cluster's
part is simulated: the workloads are ready as soon as they are scaled, the routes hold what the
previous step set, and hooks are not called (gates open, rollback hooks silent), since a hook's
answer cannot be asked of the past. The timeline ends when the release is promoted or rolled
back, or at ``end``.

Given a modified Canary ("what would threshold 99.5 have done?"), the same data is judged anew.
Pure but for ``read_metrics``: no Kubernetes client, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serin.decide import (
    ALL_ON_PRIMARY,
    METRICS,
    MIN_FORCED_STEP_SECONDS,
    CopyToPrimary,
    Decision,
    MetricReading,
    Observation,
    ScaleTarget,
    SetRoutes,
    Split,
    WorkloadState,
    decide,
    next_step_in,
    windowed,
)
from serin.model import Canary, HookType
from serin.ports import HookResult, MetricsUnavailable
from serin.status import CanaryStatus, MetricCheck, Phase, format_time

# A replay takes at most this many steps, however long the window (a day at a 1m interval).
MAX_STEPS = 1440
# Enough rounds for every gate of one step (as the tick's).
MAX_ROUNDS = 6
# The revisions of the replayed release and of the one before it, as the simulation names them.
REPLAYED, PROMOTED = "replayed", "promoted"
# Replicas each simulated workload runs.
REPLICAS = 1
ASSUMPTIONS = (
    "the canary and the primary are ready as soon as they are scaled",
    "the routes hold what the previous step set",
    "hooks are not called: gates are open, rollback hooks ask for nothing",
)

ReadMetrics = Callable[[Canary, datetime.datetime], tuple[MetricReading, ...]]


@dataclass(frozen=True)
class ReplayStep:
    time: datetime.datetime
    status: CanaryStatus
    summary: str
    events: tuple[str, ...]
    metrics: tuple[MetricCheck, ...] | None


@dataclass(frozen=True)
class Replay:
    start: datetime.datetime
    end: datetime.datetime
    steps: tuple[ReplayStep, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON with Kubernetes-style camelCase keys: the outcome, then each step."""
        last = self.steps[-1].status if self.steps else None
        return {
            "from": format_time(self.start),
            "to": format_time(self.end),
            "outcome": self.outcome,
            "phase": last.phase.value if last is not None and last.phase else None,
            "assumptions": list(ASSUMPTIONS),
            "steps": [
                {
                    "time": format_time(step.time),
                    "phase": step.status.phase.value if step.status.phase else None,
                    "weight": step.status.canary_weight,
                    "iterations": step.status.iterations,
                    "failedChecks": step.status.failed_checks,
                    "summary": step.summary,
                    "events": list(step.events),
                    "metrics": [check.to_dict() for check in step.metrics or ()],
                }
                for step in self.steps
            ],
        }

    @property
    def outcome(self) -> str:
        """``promoted``, ``rolled back``, or ``undecided`` when the window ended first."""
        last = self.steps[-1].status if self.steps else None
        if last is not None and last.phase is Phase.SUCCEEDED and len(self.steps) > 1:
            return "promoted"
        if last is not None and last.phase is Phase.FAILED:
            return "rolled back"
        return "undecided"


@dataclass
class _World:
    """The simulated cluster: what the actions of the steps so far have made of it."""

    target_replicas: int = 0
    primary_source: str = PROMOTED
    routes: Split = ALL_ON_PRIMARY
    mirrored: bool = False

    def observe(self, canary: Canary) -> Observation:
        ready = self.target_replicas
        target = WorkloadState(
            name=canary.target_ref.name,
            template_hash=REPLAYED,
            replicas=ready,
            updated_replicas=ready,
            available_replicas=ready,
            status_replicas=ready,
            kind=canary.target_ref.kind,
        )
        primary = WorkloadState(
            name=canary.primary_name,
            template_hash=self.primary_source,
            replicas=REPLICAS,
            updated_replicas=REPLICAS,
            available_replicas=REPLICAS,
            status_replicas=REPLICAS,
            source_hash=self.primary_source,
            kind=canary.target_ref.kind,
        )
        return Observation(target=target, primary=primary, routes=self.routes, mirrored=self.mirrored)

    def act(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, ScaleTarget):
                self.target_replicas = action.replicas
            elif isinstance(action, SetRoutes):
                self.routes, self.mirrored = (action.primary_weight, action.canary_weight), action.mirror
            elif isinstance(action, CopyToPrimary):
                self.primary_source = action.revision


def replay(canary: Canary, start: datetime.datetime, end: datetime.datetime, read_metrics: ReadMetrics) -> Replay:
    """The steps of a release of ``canary`` starting at ``start``, each when a tick would take it, up
    to ``end`` or the release's end. MetricsUnavailable when the backend cannot be asked: a replay
    without its data would only show holding steps."""
    # What the analysis decides on its own: a person's pending request is not part of the past.
    canary = dataclasses.replace(canary, request=None, suspend=False)
    world = _World()
    status = CanaryStatus(
        phase=Phase.SUCCEEDED, last_applied_spec=PROMOTED, last_promoted_spec=PROMOTED, observed_generation=1
    )
    steps: list[ReplayStep] = []
    now = start
    while now <= end and len(steps) < MAX_STEPS:
        observation = world.observe(canary)
        decision = decide(canary, status, observation, now, force=True)
        for _ in range(MAX_ROUNDS):
            if not decision.needs:
                break
            observation = _gather(canary, decision, observation, now, read_metrics)
            decision = decide(canary, status, observation, now, force=True)
        status = decision.status.replace(claimed_until=None, pending=None)
        if not steps:
            # The webhook records a revision with no step time: the next tick takes the first step.
            status = status.replace(last_analysis_time=None)
        events = tuple(event.message for event in decision.events)
        steps.append(ReplayStep(now, status, decision.summary, events, decision.checks))
        world.act(decision)
        if len(steps) > 1 and status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            break
        wait = next_step_in(canary, status, now)
        now += datetime.timedelta(
            seconds=max(MIN_FORCED_STEP_SECONDS, canary.analysis.interval_seconds if wait is None else wait)
        )
    return Replay(start, end, tuple(steps))


def _gather(
    canary: Canary, decision: Decision, observation: Observation, now: datetime.datetime, read_metrics: ReadMetrics
) -> Observation:
    hooks = dict(observation.hooks)
    metrics = observation.metrics
    for need in decision.needs:
        if need == METRICS:
            metrics = read_metrics(windowed(canary, decision.status.traffic_since, now), now)
            unavailable = [reading.detail for reading in metrics if reading.problem == "unavailable"]
            if unavailable:
                raise MetricsUnavailable(f"the metrics of {now:%Y-%m-%dT%H:%M:%SZ} could not be read: {unavailable[0]}")
        elif isinstance(need, HookType):
            # A rollback hook that answers yes asks for a rollback; every other hook's yes lets the
            # release go on.
            hooks[need] = tuple(
                HookResult(hook.name, ok=need is not HookType.ROLLBACK, message="not called in a replay")
                for hook in canary.analysis.hooks(need)
            )
    return dataclasses.replace(observation, hooks=hooks, metrics=metrics)
