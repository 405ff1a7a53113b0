"""The decision core: one analysis step of one Canary, as a pure function.

``decide(canary, status, observation, now)`` returns the new status, the actions that bring the
cluster in line with it (each sets an absolute value, so repeating one is harmless) and the Events
to record. When the step needs the result of a gate (webhooks) or of the metric analysis that the
observation does not carry yet, the Decision lists them in ``needs`` and changes nothing; the
reconciler gathers exactly those and calls again. So hooks and queries run only when the step
really consults them, and this module still does no I/O.

This is a purely computational module: no Kubernetes client, no HTTP, no clock.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from serin.model import Canary, HookType, Metric, Strategy
from serin.ports import HookResult
from serin.status import IDLE_PHASES, CanaryStatus, Phase

METRICS: Literal["metrics"] = "metrics"
Need = HookType | Literal["metrics"]


# ---- what the reconciler observed ----------------------------------------------------------


@dataclass(frozen=True)
class WorkloadState:
    """The parts of a Deployment the decision looks at."""

    name: str
    template_hash: str
    replicas: int
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1
    # Primary only: the hash of the target template it was last copied from.
    source_hash: str = ""

    def is_ready(self, threshold_percent: int) -> bool:
        """Rolled out to its current template, with enough ready pods (at least one)."""
        if self.replicas <= 0:
            return False
        rolled_out = self.observed_generation >= self.generation and self.updated_replicas >= self.replicas
        needed = max(1, math.ceil(self.replicas * threshold_percent / 100))
        return rolled_out and self.ready_replicas >= needed


@dataclass(frozen=True)
class MetricReading:
    """A metric's value, or why there is none: ``no-data`` (fails the check) or ``unavailable`` (holds)."""

    name: str
    value: float | None
    problem: Literal["no-data", "unavailable"] | None = None
    detail: str = ""


@dataclass(frozen=True)
class Observation:
    target: WorkloadState | None
    primary: WorkloadState | None
    config_hashes: Mapping[str, str] = field(default_factory=dict)
    # Another Canary that already targets the same workload.
    duplicate_of: str | None = None
    hooks: Mapping[HookType, tuple[HookResult, ...]] = field(default_factory=dict)
    metrics: tuple[MetricReading, ...] | None = None


# ---- what the decision asks for ------------------------------------------------------------


@dataclass(frozen=True)
class EnsureObjects:
    """Create whatever of the primary, its configs, the Services and the routing is missing."""


@dataclass(frozen=True)
class ScaleTarget:
    replicas: int


@dataclass(frozen=True)
class SetRoutes:
    primary_weight: int
    canary_weight: int


@dataclass(frozen=True)
class PromotePrimary:
    """Copy the target's pod template and configs into the primary."""


@dataclass(frozen=True)
class RunHooks:
    """Notify hooks whose answer changes nothing (post-rollout)."""

    hook_type: HookType


Action = EnsureObjects | ScaleTarget | SetRoutes | PromotePrimary | RunHooks


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: CanaryStatus
    summary: str
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    needs: tuple[Need, ...] = ()


def _normal(message: str) -> Event:
    return Event("Normal", "Synced", message)


def _warning(message: str) -> Event:
    return Event("Warning", "Synced", message)


# ---- helpers -------------------------------------------------------------------------------


def is_due(canary: Canary, status: CanaryStatus, now: datetime.datetime) -> bool:
    """A Canary is due when one analysis interval has passed since its last step."""
    if status.phase in (None, Phase.INITIALIZING) or status.last_analysis_time is None:
        return True
    return (now - status.last_analysis_time).total_seconds() >= canary.analysis.interval_seconds


def seconds_until_due(canary: Canary, status: CanaryStatus, now: datetime.datetime) -> float:
    if is_due(canary, status, now) or status.last_analysis_time is None:
        return 0.0
    return canary.analysis.interval_seconds - (now - status.last_analysis_time).total_seconds()


def waiting_for_interval(canary: Canary, status: CanaryStatus, now: datetime.datetime, force: bool) -> str | None:
    """Why this Canary takes no step now, or None when it is due (or forced)."""
    if force or is_due(canary, status, now):
        return None
    return f"not due: next step in {seconds_until_due(canary, status, now):.0f}s"


def _gate(canary: Canary, observation: Observation, hook_type: HookType) -> bool | None:
    """True when every hook of that type passed (or there are none), False if one failed, None if unknown."""
    if not canary.analysis.hooks(hook_type):
        return True
    results = observation.hooks.get(hook_type)
    if results is None:
        return None
    return all(result.ok for result in results)


def _failed_hooks(observation: Observation, hook_type: HookType) -> list[HookResult]:
    return [result for result in observation.hooks.get(hook_type, ()) if not result.ok]


def _has_new_revision(status: CanaryStatus, observation: Observation) -> bool:
    assert observation.target is not None
    return observation.target.template_hash != status.last_applied_spec or dict(observation.config_hashes) != dict(
        status.tracked_configs
    )


def _canary_replicas(observation: Observation) -> int:
    """The canary runs as many pods as the primary (at least one)."""
    primary = observation.primary
    return max(1, primary.replicas if primary else 1)


def _halt_message(canary: Canary, metric: Metric, value: float) -> str | None:
    """Flagger's words for a metric outside its range, or None when it is inside."""
    low, high = metric.threshold_range.min, metric.threshold_range.max
    who = f"{canary.name}.{canary.namespace}"
    if low is not None and value < low:
        if metric.name == "request-success-rate":
            return f"Halt {who} advancement success rate {value:.2f}% < {low:g}%"
        return f"Halt {who} advancement {metric.name} {value:.2f} < {low:g}"
    if high is not None and value > high:
        if metric.name == "request-duration":
            return f"Halt {who} advancement request duration {value:.0f}ms > {high:g}ms"
        return f"Halt {who} advancement {metric.name} {value:.2f} > {high:g}"
    return None


@dataclass(frozen=True)
class _Analysis:
    outcome: Literal["pass", "fail", "hold"]
    messages: tuple[str, ...] = ()


def _judge_analysis(canary: Canary, observation: Observation) -> _Analysis:
    failures = [
        f"Rollout check {result.name} failed: {result.message}"
        for result in _failed_hooks(observation, HookType.ROLLOUT)
    ]
    readings = {reading.name: reading for reading in observation.metrics or ()}
    held = []
    for metric in canary.analysis.metrics:
        reading = readings.get(metric.name)
        if reading is None or reading.problem == "no-data" or reading.value is None:
            if reading is not None and reading.problem == "unavailable":
                held.append(f"Metrics server unavailable for {metric.name}: {reading.detail}")
                continue
            failures.append(f"Halt advancement no values found for {metric.name} metric")
            continue
        halt = _halt_message(canary, metric, reading.value)
        if halt:
            failures.append(halt)
    if failures:
        return _Analysis("fail", tuple(failures))
    if held:
        return _Analysis("hold", tuple(held))
    return _Analysis("pass")


# ---- the decision --------------------------------------------------------------------------


def decide(
    canary: Canary,
    status: CanaryStatus,
    observation: Observation,
    now: datetime.datetime,
    force: bool = False,
) -> Decision:
    """One step for one Canary. Pure: same inputs, same Decision."""
    decision = _decide(canary, status, observation, now, force)
    if decision.needs:
        # Asking for results is not a step: nothing may change until they are in.
        return Decision(status, decision.summary, needs=decision.needs)
    return decision


def _decide(
    canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime, force: bool
) -> Decision:
    target_name = f"{canary.target_ref.name}.{canary.namespace}"
    if canary.suspend:
        return Decision(status, "suspended: spec.suspend is true")
    if observation.duplicate_of:
        message = f"Target {target_name} is already managed by canary {observation.duplicate_of}"
        return Decision(status, message, events=(_warning(message),))
    if observation.target is None:
        message = f"Target deployment {target_name} not found"
        return Decision(status, message, events=(_warning(message),))
    if status.phase in (None, Phase.INITIALIZING):
        return _initialize(canary, status, observation, now)
    waiting = waiting_for_interval(canary, status, now, force)
    if waiting:
        return Decision(status, waiting)

    stepped = status.replace(last_analysis_time=now, observed_generation=canary.generation)
    if status.phase in IDLE_PHASES:
        return _idle(canary, stepped, observation, now)
    if status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        return _progress(canary, stepped, observation, now)
    if status.phase is Phase.PROMOTING:
        return _promoting(canary, stepped, observation, now)
    if status.phase is Phase.FINALISING:
        return _finalise(canary, stepped, observation, now)
    return Decision(status, f"nothing to do in phase {status.phase.value if status.phase else 'none'}")


def _initialize(canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime) -> Decision:
    assert observation.target is not None
    if status.phase is None:
        status = status.with_phase(Phase.INITIALIZING, now)
    primary = observation.primary
    if primary is None or not primary.is_ready(canary.analysis.primary_ready_threshold):
        return Decision(status, f"waiting for {canary.primary_name} to be ready", actions=(EnsureObjects(),))
    initialized = status.with_phase(Phase.INITIALIZED, now).replace(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_applied_spec=observation.target.template_hash,
        last_promoted_spec=observation.target.template_hash,
        tracked_configs=dict(observation.config_hashes),
        last_analysis_time=now,
        observed_generation=canary.generation,
    )
    return Decision(
        initialized,
        "initialized: the primary serves all traffic",
        actions=(EnsureObjects(), SetRoutes(100, 0), ScaleTarget(0)),
        events=(_normal(f"Initialization done! {canary.name}.{canary.namespace}"),),
    )


def _idle(canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime) -> Decision:
    target = observation.target
    assert target is not None
    target_name = f"{canary.target_ref.name}.{canary.namespace}"
    if not _has_new_revision(status, observation):
        actions: tuple[Action, ...] = (EnsureObjects(),)
        if target.replicas > 0:
            # Between releases the target stays at zero: the primary serves.
            actions += (ScaleTarget(0),)
        return Decision(status, "no new revision", actions=actions)
    if target.template_hash == status.last_promoted_spec and dict(observation.config_hashes) == dict(
        status.tracked_configs
    ):
        reverted = status.replace(last_applied_spec=target.template_hash)
        return Decision(
            reverted, "the target is back at the promoted revision", actions=(EnsureObjects(), ScaleTarget(0))
        )
    confirmed = _gate(canary, observation, HookType.CONFIRM_ROLLOUT)
    if confirmed is None:
        return Decision(status, "asking confirm-rollout hooks", needs=(HookType.CONFIRM_ROLLOUT,))
    if not confirmed:
        events: tuple[Event, ...] = ()
        if status.phase is not Phase.WAITING:
            events = (_normal(f"Waiting for approval: confirm-rollout hooks for {canary.name}.{canary.namespace}"),)
        return Decision(status.with_phase(Phase.WAITING, now), "waiting for confirm-rollout approval", events=events)
    started = _restart(status, observation, now)
    return Decision(
        started,
        "new revision: scaling up the canary",
        actions=(EnsureObjects(), ScaleTarget(_canary_replicas(observation))),
        events=(_normal(f"New revision detected! Scaling up {target_name}"),),
    )


def _restart(status: CanaryStatus, observation: Observation, now: datetime.datetime) -> CanaryStatus:
    """Progressing from the first step with the target's current revision."""
    assert observation.target is not None
    return status.with_phase(Phase.PROGRESSING, now).replace(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_applied_spec=observation.target.template_hash,
        tracked_configs=dict(observation.config_hashes),
        last_transition_time=now,
    )


def _rollback(
    canary: Canary, status: CanaryStatus, now: datetime.datetime, reason: str, event: Event | None = None
) -> Decision:
    who = f"{canary.name}.{canary.namespace}"
    failed = status.with_phase(Phase.FAILED, now, message=reason).replace(canary_weight=0, iterations=0)
    events = (
        *((event,) if event else ()),
        _warning(f"Rolling back {who} {reason}"),
        _warning(f"Canary failed! Scaling down {canary.target_ref.name}.{canary.namespace}"),
    )
    return Decision(
        failed,
        f"rolled back: {reason}",
        actions=(SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
        events=events,
    )


def _progress(canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime) -> Decision:
    target, primary = observation.target, observation.primary
    assert target is not None
    who = f"{canary.name}.{canary.namespace}"
    target_name = f"{canary.target_ref.name}.{canary.namespace}"
    analysis = canary.analysis

    if _has_new_revision(status, observation):
        return Decision(
            _restart(status, observation, now),
            "new revision during analysis: restarting it",
            actions=(EnsureObjects(), SetRoutes(100, 0), ScaleTarget(_canary_replicas(observation))),
            events=(_normal(f"New revision detected! Restarting analysis for {target_name}"),),
        )

    deadline_passed = (
        status.last_transition_time is not None
        and (now - status.last_transition_time).total_seconds() > canary.progress_deadline_seconds
    )
    for name, workload, threshold in (
        (target_name, target, analysis.canary_ready_threshold),
        (f"{canary.primary_name}.{canary.namespace}", primary, analysis.primary_ready_threshold),
    ):
        if workload is None or not workload.is_ready(threshold):
            if deadline_passed:
                return _rollback(canary, status, now, "progress deadline exceeded")
            actions: tuple[Action, ...] = (EnsureObjects(),)
            if workload is target and target.replicas == 0:
                actions += (ScaleTarget(_canary_replicas(observation)),)
            if workload is target and target.ready_replicas == 0 and status.canary_weight > 0:
                # Never leave traffic on a canary with no ready pods; the ramp starts again.
                actions += (SetRoutes(100, 0),)
                status = status.replace(canary_weight=0)
            return Decision(status, f"waiting for {name} to be ready", actions=actions)

    if analysis.hooks(HookType.ROLLBACK):
        # A rollback hook that answers yes means: roll back now.
        answers = observation.hooks.get(HookType.ROLLBACK)
        if answers is None:
            return Decision(status, "asking rollback hooks", needs=(HookType.ROLLBACK,))
        if any(answer.ok for answer in answers):
            return _rollback(canary, status, now, "manual rollback requested by a rollback hook")

    if status.failed_checks >= analysis.threshold:
        return _rollback(canary, status, now, f"failed checks threshold reached {status.failed_checks}")

    if canary.skip_analysis:
        return _promote(canary, status, now, "analysis skipped")

    if status.phase is Phase.WAITING_PROMOTION:
        return _confirm_and_promote(canary, status, observation, now)

    strategy = analysis.strategy
    first_step = status.canary_weight == 0 and status.iterations == 0
    actions = (EnsureObjects(),)
    if first_step:
        pre_rollout = _gate(canary, observation, HookType.PRE_ROLLOUT)
        if pre_rollout is None:
            return Decision(status, "running pre-rollout hooks", needs=(HookType.PRE_ROLLOUT,))
        if not pre_rollout:
            failed = status.replace(failed_checks=status.failed_checks + 1)
            events = tuple(
                _warning(f"Pre-rollout check {result.name} failed: {result.message}")
                for result in _failed_hooks(observation, HookType.PRE_ROLLOUT)
            )
            return Decision(failed, "pre-rollout hooks failed", actions=actions, events=events)
        if strategy is Strategy.AB_TESTING:
            # Matched requests go to the canary for the whole analysis; the weight says so.
            routed = status.replace(canary_weight=100)
            return Decision(
                routed,
                "A/B testing: routing matched requests to the canary",
                actions=(*actions, SetRoutes(0, 100)),
                events=(_normal(f"Starting canary analysis for {target_name}"),),
            )
        if strategy is Strategy.CANARY:
            return _advance(
                canary, status, observation, now, events=(_normal(f"Starting canary analysis for {target_name}"),)
            )

    needs: tuple[Need, ...] = ()
    if analysis.hooks(HookType.ROLLOUT) and HookType.ROLLOUT not in observation.hooks:
        needs += (HookType.ROLLOUT,)
    if analysis.metrics and observation.metrics is None:
        needs += (METRICS,)
    if needs:
        return Decision(status, "running the analysis", needs=needs)
    judged = _judge_analysis(canary, observation)
    if judged.outcome == "hold":
        return Decision(
            status,
            "holding: " + "; ".join(judged.messages),
            actions=actions,
            events=tuple(_warning(message) for message in judged.messages),
        )
    if judged.outcome == "fail":
        failed = status.replace(failed_checks=status.failed_checks + 1)
        return Decision(
            failed,
            "; ".join(judged.messages),
            actions=actions,
            events=tuple(_warning(message) for message in judged.messages),
        )

    if strategy is Strategy.CANARY:
        if status.canary_weight >= analysis.max_weight:
            return _confirm_and_promote(canary, status, observation, now)
        return _advance(canary, status, observation, now)

    iterations = analysis.iterations or 0
    if status.iterations >= iterations:
        return _confirm_and_promote(canary, status, observation, now)
    advanced = status.replace(iterations=status.iterations + 1, last_transition_time=now)
    return Decision(
        advanced,
        f"iteration {advanced.iterations}/{iterations}",
        actions=actions,
        events=(_normal(f"Advance {who} canary iteration {advanced.iterations}/{iterations}"),),
    )


def _advance(
    canary: Canary,
    status: CanaryStatus,
    observation: Observation,
    now: datetime.datetime,
    events: tuple[Event, ...] = (),
) -> Decision:
    confirmed = _gate(canary, observation, HookType.CONFIRM_TRAFFIC_INCREASE)
    if confirmed is None:
        return Decision(status, "asking confirm-traffic-increase hooks", needs=(HookType.CONFIRM_TRAFFIC_INCREASE,))
    if not confirmed:
        return Decision(status, "waiting for confirm-traffic-increase approval", actions=(EnsureObjects(),))
    weight = canary.analysis.weight_after(status.canary_weight)
    advanced = status.replace(canary_weight=weight, last_transition_time=now)
    return Decision(
        advanced,
        f"canary weight {weight}",
        actions=(EnsureObjects(), SetRoutes(100 - weight, weight)),
        events=(*events, _normal(f"Advance {canary.name}.{canary.namespace} canary weight {weight}")),
    )


def _confirm_and_promote(
    canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime
) -> Decision:
    confirmed = _gate(canary, observation, HookType.CONFIRM_PROMOTION)
    if confirmed is None:
        return Decision(status, "asking confirm-promotion hooks", needs=(HookType.CONFIRM_PROMOTION,))
    if not confirmed:
        events: tuple[Event, ...] = ()
        if status.phase is not Phase.WAITING_PROMOTION:
            events = (_normal(f"Waiting for approval: confirm-promotion hooks for {canary.name}.{canary.namespace}"),)
        return Decision(
            status.with_phase(Phase.WAITING_PROMOTION, now),
            "waiting for confirm-promotion approval",
            actions=(EnsureObjects(),),
            events=events,
        )
    return _promote(canary, status, now, "analysis passed")


def _promote(canary: Canary, status: CanaryStatus, now: datetime.datetime, why: str) -> Decision:
    target_name = f"{canary.target_ref.name}.{canary.namespace}"
    return Decision(
        status.with_phase(Phase.PROMOTING, now),
        f"{why}: promoting",
        actions=(EnsureObjects(), PromotePrimary()),
        events=(_normal(f"Copying {target_name} template spec to {canary.primary_name}.{canary.namespace}"),),
    )


def _promoting(canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime) -> Decision:
    target, primary = observation.target, observation.primary
    assert target is not None
    if primary is None or primary.source_hash != status.last_applied_spec:
        # The copy did not land (or was undone): do it again.
        return Decision(
            status, "copying the target's template to the primary", actions=(EnsureObjects(), PromotePrimary())
        )
    if not primary.is_ready(canary.analysis.primary_ready_threshold):
        return Decision(status, f"waiting for {canary.primary_name} to roll out", actions=(EnsureObjects(),))
    step = canary.analysis.step_weight_promotion
    if step and status.canary_weight > step:
        # Shift traffic back to the (now updated) primary gradually.
        weight = status.canary_weight - step
        return Decision(
            status.replace(canary_weight=weight, last_transition_time=now),
            f"promotion: canary weight {weight}",
            actions=(EnsureObjects(), SetRoutes(100 - weight, weight)),
            events=(_normal(f"Advance {canary.name}.{canary.namespace} primary weight {100 - weight}"),),
        )
    return Decision(
        status.with_phase(Phase.FINALISING, now).replace(canary_weight=0),
        "routing all traffic to the primary",
        actions=(EnsureObjects(), SetRoutes(100, 0)),
        events=(_normal("Routing all traffic to primary"),),
    )


def _finalise(canary: Canary, status: CanaryStatus, observation: Observation, now: datetime.datetime) -> Decision:
    succeeded = status.with_phase(Phase.SUCCEEDED, now).replace(
        canary_weight=0, failed_checks=0, iterations=0, last_promoted_spec=status.last_applied_spec
    )
    return Decision(
        succeeded,
        "promotion completed",
        actions=(EnsureObjects(), SetRoutes(100, 0), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
        events=(_normal(f"Promotion completed! Scaling down {canary.target_ref.name}.{canary.namespace}"),),
    )
