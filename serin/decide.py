"""The decision core: one analysis step of one Canary, as a pure function.

``decide(canary, status, observation, now)`` returns the new status, the actions that bring the
cluster in line with it (each sets an absolute value, so repeating one is harmless) and the Events
to record. When the step needs the result of a gate (webhooks) or of the metric analysis that the
observation does not carry yet, the Decision lists them in ``needs`` and changes nothing; the
reconciler gathers exactly those and calls again. So hooks and queries run only when the step
really consults them, and this module still does no I/O.

A step of a release runs, as Flagger's scheduler does: revision (a new one restarts the analysis,
the promoted one stops it) → readiness (with the progress deadline) → skipAnalysis → rollback hooks
→ the failed-checks threshold → routes (traffic the status says the canary has, it gets back) →
the strategy: ``_canary_step``, ``_ab_step`` or ``_blue_green_step``, each one small function.
A member of a release group (``spec.group``, see ``serin.groups``) also follows its group's
release after the revision check, and waits for the other members after the readiness check.

Where Serin differs from Flagger on purpose, it is safer: ``maxWeight`` is never overshot, traffic
never stays on a canary with no available pod, a backend that is down holds the step (bounded by
``UNAVAILABLE_LIMIT``) instead of failing a healthy release, and the promoted primary must have
rolled out before traffic goes back to it.

This is a purely computational module: no Kubernetes client, no HTTP, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from serin.groups import Group
from serin.model import Canary, HookType, ManualRequest, Metric, Strategy, parse_duration
from serin.ports import HookResult
from serin.status import IDLE_PHASES, CanaryStatus, GroupProgress, MetricCheck, Phase

METRICS: Literal["metrics"] = "metrics"
Need = HookType | Literal["metrics"]

# Steps in a row that may hold because a metrics backend or a hook cannot be reached; from the
# next one on, each such step counts as a failed check (Argo Rollouts' consecutiveErrorLimit is 4).
UNAVAILABLE_LIMIT = 4
# Forced steps (``force=true``) skip the interval, but never come closer together than this: a burst
# of forced ticks takes one step, not one each.
MIN_FORCED_STEP_SECONDS = 1.0
# A tick this early is still in time for a step (CronJob and Pod start-up jitter): 10% of the
# interval, at most 5 seconds.
DUE_TOLERANCE_FRACTION = 0.1
MAX_DUE_TOLERANCE_SECONDS = 5.0

# A traffic split: (primary weight, canary weight), percentages adding up to 100.
Split = tuple[int, int]
ALL_ON_PRIMARY: Split = (100, 0)


# ---- what the reconciler observed ----------------------------------------------------------


@dataclass(frozen=True)
class WorkloadState:
    """The parts of a workload (Deployment, DaemonSet, StatefulSet) the decision looks at."""

    name: str
    template_hash: str
    # spec.replicas (a DaemonSet: the nodes it runs on, 0 when held at zero), then what the
    # workload's status reports of them.
    replicas: int
    updated_replicas: int = 0
    available_replicas: int = 0
    status_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1
    # The Deployment's own Progressing condition gave up (its spec.progressDeadlineSeconds).
    progress_deadline_exceeded: bool = False
    # Primary only: the hash of the target template it was last copied from.
    source_hash: str = ""
    kind: str = "Deployment"

    def not_ready_because(self, threshold_percent: int) -> str | None:
        """Why the workload is not ready, in Flagger's words; None when it is.

        As Flagger's ``isDeploymentReady``: the controller saw the latest generation, every replica
        runs the current template, no old one is left, and ``floor(updated * threshold%)`` are
        available (so ``minReadySeconds`` counts). Unlike Flagger, a workload with replicas is never
        ready with none available, whatever the threshold: traffic is never sent to no pod at all.
        """
        kind = self.kind.lower()
        # A DaemonSet counts pods (one per node), as Flagger's messages do; the others replicas.
        unit = "pods" if self.kind == "DaemonSet" else "replicas"
        if self.observed_generation < self.generation:
            return f"waiting for rollout to finish: observed {kind} generation less than desired generation"
        if self.progress_deadline_exceeded:
            return f'{kind} "{self.name}" exceeded its progress deadline'
        if self.updated_replicas < self.replicas:
            return (
                f"waiting for rollout to finish: {self.updated_replicas} out of {self.replicas} new {unit} "
                "have been updated"
            )
        if self.status_replicas > self.updated_replicas:
            return (
                f"waiting for rollout to finish: {self.status_replicas - self.updated_replicas} old {unit} "
                "are pending termination"
            )
        needed = self.updated_replicas * threshold_percent // 100
        if self.replicas > 0:
            needed = max(1, needed)
        if self.available_replicas < needed:
            return (
                f"waiting for rollout to finish: {self.available_replicas} of {needed} (readyThreshold "
                f"{threshold_percent}%) updated {unit} are available"
            )
        if self.replicas <= 0:
            return "scaled to zero"
        return None


@dataclass(frozen=True)
class MetricReading:
    """A metric's value, or why there is none.

    ``no-data``: the backend answered without a value (a failed check, never a pass). ``invalid``:
    the query itself is wrong (a failed check at once). ``unavailable``: the backend could not
    answer (the step holds, up to ``UNAVAILABLE_LIMIT`` steps in a row).
    """

    value: float | None
    problem: Literal["no-data", "invalid", "unavailable"] | None = None
    detail: str = ""
    # A metric that compares (``Metric.compare``): the samples of the canary and of the primary
    # over the metric's interval, instead of one value.
    canary_samples: tuple[float, ...] = ()
    primary_samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class Observation:
    target: WorkloadState | None
    primary: WorkloadState | None
    config_hashes: Mapping[str, str] = field(default_factory=dict)
    # Another Canary that already targets the same workload.
    duplicate_of: str | None = None
    # Why no revision of the target can ever be promoted into the primary as it is (a StatefulSet's
    # volume claims differ from the primary's).
    unpromotable: str | None = None
    # The split the routing objects hold now; None when they do not exist (or reach no canary).
    routes: Split | None = ALL_ON_PRIMARY
    # Whether they copy requests to the canary now (``analysis.mirror``).
    mirrored: bool = False
    # Whether the primary still runs the promoted revision as recorded: None when not checked (its
    # spec has not changed since it last was), False when it drifted (someone edited it).
    primary_intact: bool | None = None
    # Hashes of the primary's own copies of the configs (by the original's key): what it runs.
    primary_config_hashes: Mapping[str, str] | None = None
    hooks: Mapping[HookType, tuple[HookResult, ...]] = field(default_factory=dict)
    # One reading per metric of the analysis, in the same order; None until gathered.
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
    # Copy requests to the canary too (its responses dropped).
    mirror: bool = False


@dataclass(frozen=True)
class CopyToPrimary:
    """Make the primary run ``revision`` (a pod template hash): promote the analysed revision, or put
    the promoted one back. Copied from the revision Serin recorded, never from whatever the target
    holds by then."""

    revision: str


@dataclass(frozen=True)
class RunHooks:
    """Notify hooks whose answer changes nothing (post-rollout)."""

    hook_type: HookType


Action = EnsureObjects | ScaleTarget | SetRoutes | CopyToPrimary | RunHooks


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
    # Each metric the step analysed, explained (None: the step analysed none).
    checks: tuple[MetricCheck, ...] | None = None
    # The person's request (``Canary.request``) this step acted on or turned down: the request is done
    # with, and its annotation goes. None while it waits (for readiness, a gate) or when there is none.
    answered: ManualRequest | None = None
    # The step holds for the other members of the Canary's release group: once one of them moves,
    # the tick takes this step again (see ``Reconciler.tick``).
    waits_for_group: bool = False


def _normal(message: str) -> Event:
    return Event("Normal", "Synced", message)


def _warning(message: str) -> Event:
    return Event("Warning", "Synced", message)


@dataclass(frozen=True)
class AlertMessage:
    """What a step tells the Canary's alert providers (Flagger's alert messages, sent beside
    some of its Events)."""

    message: str
    severity: Literal["info", "warn", "error"]
    # With the Canary's target, traffic routing and thresholds as fields (Flagger's metadata).
    details: bool = False


# The Events that Flagger sends an alert with, and that alert: a pattern of the Event's message,
# and the alert's message (a format of the pattern's groups and the target's kind), severity and
# whether it carries the Canary's details.
_ALERTS: tuple[tuple[re.Pattern[str], str, Literal["info", "warn", "error"], bool], ...] = (
    (re.compile(r"Initialization done! "), "New {kind} detected, initialization completed.", "info", True),
    (
        re.compile(r"New revision detected! Scaling up "),
        "New revision detected, progressing canary analysis.",
        "info",
        True,
    ),
    (
        re.compile(r"Promotion completed! Canary analysis was skipped "),
        "Canary analysis was skipped, promotion finished.",
        "info",
        False,
    ),
    (
        re.compile(r"Promotion completed! Scaling down "),
        "Canary analysis completed successfully, promotion finished.",
        "info",
        False,
    ),
    (
        re.compile(r"Rolling back \S+ failed checks threshold reached (\d+)"),
        "Failed checks threshold reached {0}",
        "error",
        False,
    ),
    (re.compile(r"Rolling back \S+ progress deadline exceeded(.*)"), "Progress deadline exceeded{0}", "error", False),
    (re.compile(r"Rolling back \S+ manual webhook invoked"), "Rolling back manual webhook invoked", "warn", False),
    (re.compile(r"Rolling back \S+ abort requested"), "Rolling back: abort requested", "warn", False),
    (re.compile(r"Halt \S+ advancement waiting for approval (\S+)"), "Canary is waiting for approval.", "warn", False),
    (
        re.compile(r"Halt \S+ advancement waiting for traffic increase approval (\S+)"),
        "Canary traffic increase is waiting for approval.",
        "warn",
        False,
    ),
    (
        re.compile(r"Halt \S+ advancement waiting for promotion approval (\S+)"),
        "Canary promotion is waiting for approval.",
        "warn",
        False,
    ),
)


def alerts_for(canary: Canary, events: tuple[Event, ...]) -> tuple[AlertMessage, ...]:
    """The alerts a step's Events call for, as Flagger sends them. A gate that holds the release
    alerts unless it has ``muteAlert``."""
    muted = {hook.name for hook in canary.analysis.webhooks if hook.mute_alert}
    alerts = []
    for event in events:
        for pattern, message, severity, details in _ALERTS:
            found = pattern.match(event.message)
            if found is None:
                continue
            if severity == "warn" and found.groups() and found.group(1) in muted:
                break
            alerts.append(AlertMessage(message.format(*found.groups(), kind=canary.target_ref.kind), severity, details))
            break
    return tuple(alerts)


# ---- the schedule --------------------------------------------------------------------------


def due_tolerance_seconds(canary: Canary) -> float:
    return min(MAX_DUE_TOLERANCE_SECONDS, DUE_TOLERANCE_FRACTION * canary.analysis.interval_seconds)


# Ticks come at least once a minute (the CronJob); an idle Canary is checked at the first tick after
# each of its interval's boundaries, unless the caller says when it ticked last.
DEFAULT_TICK_WINDOW_SECONDS = 60.0


def _due_at(canary: Canary, status: CanaryStatus) -> datetime.datetime | None:
    if status.phase in (None, Phase.INITIALIZING) or status.last_analysis_time is None:
        return None
    return status.last_analysis_time + datetime.timedelta(seconds=canary.analysis.interval_seconds)


def _idle_boundary(canary: Canary, now: datetime.datetime) -> float:
    """The last boundary of an idle Canary's own grid before ``now`` (Unix seconds).

    Boundaries are one interval apart, offset per Canary (from its uid) so that many idle
    Canaries are not all checked by the same tick.
    """
    interval = canary.analysis.interval_seconds
    offset = int(hashlib.sha256(canary.uid.encode()).hexdigest()[:8], 16) % max(1, int(interval))
    stamp = now.timestamp() - offset
    return stamp - stamp % interval + offset


def is_due(canary: Canary, status: CanaryStatus, now: datetime.datetime, window: float | None = None) -> bool:
    """Whether this tick takes a step of this Canary.

    During a release: one interval after the last step was due, accepting a tick a little early.
    Idle (between releases) nothing is recorded per check, so no status is written: the Canary is
    checked when a boundary of its own grid falls within the ``window`` seconds since the caller's
    previous tick.
    """
    if status.phase in IDLE_PHASES and status.last_analysis_time is not None:
        span = DEFAULT_TICK_WINDOW_SECONDS if window is None else window
        return now.timestamp() - _idle_boundary(canary, now) < max(span, due_tolerance_seconds(canary))
    due = _due_at(canary, status)
    return due is None or (due - now).total_seconds() <= due_tolerance_seconds(canary)


def seconds_until_due(canary: Canary, status: CanaryStatus, now: datetime.datetime) -> float:
    due = _due_at(canary, status)
    return 0.0 if due is None or is_due(canary, status, now) else (due - now).total_seconds()


def next_step_in(canary: Canary, status: CanaryStatus, now: datetime.datetime) -> float | None:
    """Seconds until this Canary wants its next tick; None when no tick sooner than the CronJob's
    next one will move it: suspended, or idle (a new revision is seen by the Deployment webhook at
    once, and made due). A Canary that is initializing is looked at once per interval; one under
    analysis, when its next step is due and its metric window open."""
    if canary.suspend or (status.phase in IDLE_PHASES and status.last_analysis_time is not None):
        return None
    if status.phase in (None, Phase.INITIALIZING):
        return canary.analysis.interval_seconds
    return max(seconds_until_due(canary, status, now), window_opens_in(canary, status, now))


def waiting_for_interval(
    canary: Canary, status: CanaryStatus, now: datetime.datetime, force: bool, window: float | None = None
) -> str | None:
    """Why this Canary takes no step now, or None when it is due (or forced)."""
    if force and status.phase not in IDLE_PHASES and status.last_analysis_time is not None:
        since = (now - status.last_analysis_time).total_seconds()
        if 0 <= since < MIN_FORCED_STEP_SECONDS:
            return f"a step was taken {since:.1f}s ago: forced steps are at least {MIN_FORCED_STEP_SECONDS:g}s apart"
    if force or is_due(canary, status, now, window):
        return None
    if status.phase in IDLE_PHASES:
        return "idle: not checked by this tick"
    return f"not due: next step in {seconds_until_due(canary, status, now):.0f}s"


def _scheduled(canary: Canary, status: CanaryStatus, now: datetime.datetime, force: bool) -> datetime.datetime:
    """When this step counts as having happened: its due time, so the schedule does not drift.

    A tick a little early or late keeps the grid; a forced step, or one more than an interval
    late (no tick for a while), starts a new grid now.
    """
    due = _due_at(canary, status)
    if due is None or force or (now - due).total_seconds() >= canary.analysis.interval_seconds:
        return now
    return due


# ---- the metric window ---------------------------------------------------------------------
#
# Serin goes past Flagger here. Right after a weight change (or the start of the analysis) a
# metric's window still holds the traffic from before it: the previous weight, or the previous
# release's pods, which a target's builtin query matches too, while ``rate()`` has not yet two
# scrapes of the new pods. So a metric is judged only over a window that starts after the change:
# the step waits until the longest metric interval has passed since (but for the schedule's
# tolerance), and each metric reads the time since the change when that is shorter than its interval.


def _longest_window(canary: Canary) -> float:
    return max((parse_duration(metric.interval) for metric in canary.analysis.metrics), default=0.0)


def window_opens_in(canary: Canary, status: CanaryStatus, now: datetime.datetime) -> float:
    """Seconds until every metric's window holds only traffic since the canary's last change;
    0 when it does, or when nothing is judged."""
    if status.traffic_since is None or status.phase not in _ANALYSING or not canary.analysis.metrics:
        return 0.0
    longest = _longest_window(canary)
    elapsed = max(0.0, (now - status.traffic_since).total_seconds())
    tolerance = min(MAX_DUE_TOLERANCE_SECONDS, DUE_TOLERANCE_FRACTION * longest)
    return longest - elapsed if longest - elapsed > tolerance else 0.0


def windowed(canary: Canary, traffic_since: datetime.datetime | None, now: datetime.datetime) -> Canary:
    """``canary`` with each metric's interval as a step reads it at ``now`` (see ``metric_window``)."""
    if traffic_since is None:
        return canary
    metrics = tuple(metric_window(metric, traffic_since, now) for metric in canary.analysis.metrics)
    return dataclasses.replace(canary, analysis=dataclasses.replace(canary.analysis, metrics=metrics))


def metric_window(metric: Metric, traffic_since: datetime.datetime | None, now: datetime.datetime) -> Metric:
    """``metric`` as a step reads it at ``now``: over its interval, or over the whole seconds since
    the canary's traffic last changed when that is shorter (by the tolerance at most; the step
    waits otherwise), so that no sample from before the change is judged."""
    if traffic_since is None:
        return metric
    elapsed = (now - traffic_since).total_seconds()
    if elapsed >= parse_duration(metric.interval):
        return metric
    return dataclasses.replace(metric, interval=f"{max(1, int(elapsed))}s")


# ---- routes --------------------------------------------------------------------------------


def desired_split(canary: Canary, status: CanaryStatus) -> Split:
    """The split the status says the routes hold: everything a repair restores.

    A/B testing routes matched requests to the canary from its first iteration on (its status
    weight stays 0, as in Flagger); blue/green routes everything to it after the last iteration;
    a canary release follows ``canaryWeight``. While promoting, ``canaryWeight`` is what is left on
    the canary until all traffic is back on the primary.
    """
    if status.phase is Phase.PROMOTING:
        weight = status.canary_weight
    elif status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        strategy = canary.analysis.strategy
        if strategy is Strategy.AB_TESTING:
            weight = 100 if status.iterations >= 1 else 0
        elif strategy is Strategy.BLUE_GREEN:
            weight = 100 if status.iterations > (canary.analysis.iterations or 0) else 0
        else:
            weight = status.canary_weight
    else:
        weight = 0
    return 100 - weight, weight


def session_cookie(canary: Canary, status: CanaryStatus) -> str | None:
    """The cookie that keeps users on the canary of the release the status records (with
    ``analysis.sessionAffinity``): set while the canary has traffic, taken back after."""
    affinity = canary.analysis.session_affinity
    if affinity is None or not status.last_applied_spec:
        return None
    return affinity.cookie(canary.uid, status.last_applied_spec)


def _route(observation: Observation, split: Split) -> tuple[Action, ...]:
    """The SetRoutes that makes the routes ``split`` with nothing mirrored, if they are not already."""
    return () if observation.routes == split and not observation.mirrored else (SetRoutes(*split),)


# ---- one step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """The inputs of one step, and the names its messages use."""

    canary: Canary
    status: CanaryStatus
    observation: Observation
    now: datetime.datetime
    # When the previous step counted: a step that waits for its metric window leaves the schedule
    # there, so that the next tick takes the step.
    previous_analysis_time: datetime.datetime | None = None
    # The other members of its release group, as their statuses show them (``spec.group``).
    group: Group | None = None

    def with_status(self, status: CanaryStatus) -> _Step:
        return dataclasses.replace(self, status=status)

    @property
    def who(self) -> str:
        return f"{self.canary.name}.{self.canary.namespace}"

    @property
    def kind(self) -> str:
        """The target's kind, which Flagger's condition messages name."""
        return self.canary.target_ref.kind

    @property
    def target(self) -> str:
        return f"{self.canary.target_ref.name}.{self.canary.namespace}"

    @property
    def primary(self) -> str:
        return f"{self.canary.primary_name}.{self.canary.namespace}"

    def hooks(self, hook_type: HookType) -> tuple[HookResult, ...] | None:
        """The answers of every hook of that type: () when there are none, None until asked."""
        if not self.canary.analysis.hooks(hook_type):
            return ()
        return self.observation.hooks.get(hook_type)

    def decision(
        self, summary: str, status: CanaryStatus | None = None, actions: tuple[Action, ...] = (), *events: Event
    ) -> Decision:
        return Decision(self.status if status is None else status, summary, actions, events)

    def asking(self, summary: str, *needs: Need) -> Decision:
        return Decision(self.status, summary, needs=needs)


def decide(
    canary: Canary,
    status: CanaryStatus,
    observation: Observation,
    now: datetime.datetime,
    force: bool = False,
    window: float | None = None,
    group: Group | None = None,
) -> Decision:
    """One step for one Canary. Pure: same inputs, same Decision.

    ``window``: seconds since the caller's previous tick, which decides whether an idle Canary is
    checked (see ``is_due``); ``force`` takes the step whatever the schedule says. ``group``: the
    other members of the Canary's release group (see ``serin.groups``), None when it has none.
    """
    if group is None and status.group is not None and not canary.group:
        status = status.replace(group=None)  # it left its group
    decision = _decide(canary, status, observation, now, force, window, group)
    if decision.needs:
        # Asking for results is not a step: nothing may change until they are in.
        return Decision(status, decision.summary, needs=decision.needs)
    return _noting_traffic(decision, observation, now)


def _noting_traffic(decision: Decision, observation: Observation, now: datetime.datetime) -> Decision:
    """A step under analysis that changes what the canary receives starts a new metric window."""
    if decision.status.phase not in _ANALYSING:
        return decision
    for action in decision.actions:
        if isinstance(action, SetRoutes) and (
            (action.primary_weight, action.canary_weight) != observation.routes or action.mirror != observation.mirrored
        ):
            return dataclasses.replace(decision, status=decision.status.replace(traffic_since=now))
    return decision


def _decide(
    canary: Canary,
    status: CanaryStatus,
    observation: Observation,
    now: datetime.datetime,
    force: bool,
    window: float | None,
    group: Group | None,
) -> Decision:
    step = _Step(canary, status, observation, now, group=group)
    if canary.request is not None and _can_answer(step):
        return _on_request(step, canary.request)
    if canary.suspend:
        return _suspended(step)
    if observation.duplicate_of:
        message = f"Target {step.target} is already managed by canary {observation.duplicate_of}"
        return Decision(status, message, events=(_warning(message),))
    if observation.target is None:
        return _target_missing(step)
    if status.phase in (None, Phase.INITIALIZING):
        return _with_objects(_initialize(step))
    if observation.unpromotable:
        # Nothing is started or promoted: the primary keeps serving what it runs, and a release
        # under way is rolled back, since it could never be promoted.
        message = f"Halt {step.who} advancement: {observation.unpromotable}"
        if status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
            return _with_objects(_rollback(step, "its revision cannot be promoted", _warning(message)))
        return Decision(status, message, events=(_warning(message),))
    waiting = waiting_for_interval(canary, status, now, force, window)
    if waiting:
        return Decision(status, waiting)

    if status.phase in IDLE_PHASES:
        # Nothing about a check is recorded: an idle Canary that needs nothing costs no write.
        step = _Step(canary, status.replace(observed_generation=canary.generation), observation, now, group=group)
        if status.phase is Phase.FAILED and not status.last_promoted_spec:
            # Initialization failed (the primary never became ready): keep trying.
            return _with_objects(_initialize(step))
        return _with_objects(_keep_primary(step, _idle(step)))
    stepped = status.replace(
        last_analysis_time=_scheduled(canary, status, now, force), observed_generation=canary.generation
    )
    step = _Step(canary, stepped, observation, now, previous_analysis_time=status.last_analysis_time, group=group)
    if status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        return _with_objects(_keep_primary(step, _progress(step)))
    if status.phase is Phase.PROMOTING:
        return _with_objects(_promoting(step))
    if status.phase is Phase.FINALISING:
        return _with_objects(_finalise(step))
    return Decision(status, f"nothing to do in phase {status.phase.value if status.phase else 'none'}")


# ---- a person's request -------------------------------------------------------------------

# The phases of a release under analysis: what promote skips the rest of and abort rolls back.
_ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION)


def _can_answer(step: _Step) -> bool:
    """A request waits until the Canary is initialized and its target is there (and is its own)."""
    observed = step.observation
    return (
        observed.target is not None
        and not observed.duplicate_of
        and step.status.phase
        not in (
            None,
            Phase.INITIALIZING,
        )
    )


def _on_request(step: _Step, request: ManualRequest) -> Decision:
    """Act on the request at once, whatever the schedule; a request that cannot apply to the phase
    is turned down with a Warning that says why, and done with."""
    status = step.status
    phase = status.phase.value if status.phase else "new"
    if step.canary.suspend and request is not ManualRequest.ABORT:
        return _turned_down(step, request, f"{step.who} is suspended (spec.suspend): resume it first")
    stepped = _Step(
        step.canary,
        status.replace(
            last_analysis_time=_scheduled(step.canary, status, step.now, True),
            observed_generation=step.canary.generation,
        ),
        step.observation,
        step.now,
        group=step.group,
    )
    if request is ManualRequest.ABORT:
        if status.phase not in _ANALYSING:
            return _turned_down(step, request, f"{step.who} has no release under analysis (phase {phase})")
        rolled_back = _rollback(stepped, "abort requested", _warning(f"Rolling back {step.who} abort requested"))
        return dataclasses.replace(_with_objects(rolled_back), answered=request)
    if request is ManualRequest.RETRY:
        if status.phase is not Phase.FAILED or not status.last_promoted_spec or _is_promoted_revision(step):
            return _turned_down(step, request, f"{step.who} has no failed release to analyse again (phase {phase})")
        restarted = stepped.decision(
            "retry requested: analysing the revision again from the first step",
            _restart(stepped),
            (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(_canary_replicas(step.observation))),
            _normal(f"Retry requested! Restarting analysis for {step.target}"),
        )
        return dataclasses.replace(_with_objects(restarted), answered=request)
    if status.phase not in _ANALYSING:
        return _turned_down(step, request, f"{step.who} has no release under analysis (phase {phase})")
    if step.observation.unpromotable:
        return _turned_down(step, request, f"its revision cannot be promoted: {step.observation.unpromotable}")
    # The revision and readiness checks of any step first: the request waits while they hold it.
    for check in (_on_unconfirmed, _on_revision, _on_readiness):
        outcome = check(stepped)
        if isinstance(outcome, Decision):
            return _with_objects(outcome)
        stepped = outcome
    requested = _normal(f"Promotion requested! Skipping the remaining steps of {step.who}")
    decision = _confirm(
        stepped, lambda confirmed, events: _promote(confirmed, "promotion requested", *events, requested)
    )
    if decision.needs or decision.status.phase is not Phase.PROMOTING:
        return decision  # the confirm-promotion gate holds it: the request waits
    return dataclasses.replace(_with_objects(decision), answered=request)


def _turned_down(step: _Step, request: ManualRequest, why: str) -> Decision:
    message = f"{request.value} requested, but {why}: nothing done"
    return Decision(step.status, message, events=(_warning(message),), answered=request)


def _keep_primary(step: _Step, decision: Decision) -> Decision:
    """The primary runs the promoted revision: an edit of it is undone, with a Warning, and a check
    that found it intact is recorded (so it is not checked again until its spec changes)."""
    intact, primary, promoted = (
        step.observation.primary_intact,
        step.observation.primary,
        step.status.last_promoted_spec,
    )
    if decision.needs or intact is None or primary is None or not promoted:
        return decision
    if any(isinstance(action, CopyToPrimary) for action in decision.actions):
        return decision  # the primary is being given a revision anyway
    if intact:
        checked = decision.status.replace(primary_generation=primary.generation)
        return dataclasses.replace(decision, status=checked)
    restored = _warning(f"{step.primary} drifted from the promoted revision {promoted}: restored")
    return dataclasses.replace(
        decision,
        summary=f"{decision.summary}; the primary drifted: restored",
        actions=(*decision.actions, CopyToPrimary(promoted)),
        events=(*decision.events, restored),
    )


def _with_objects(decision: Decision) -> Decision:
    """Every step that acts first makes sure the primary, Services and routes exist."""
    if decision.needs:
        return decision
    actions = decision.actions if EnsureObjects() in decision.actions else (EnsureObjects(), *decision.actions)
    return dataclasses.replace(decision, actions=actions)


def _suspended(step: _Step) -> Decision:
    """Nothing moves; Flagger's Event once per change of the spec, not once per tick."""
    if step.status.observed_generation == step.canary.generation:
        return step.decision("suspended: spec.suspend is true")
    return step.decision(
        "suspended: spec.suspend is true",
        step.status.replace(observed_generation=step.canary.generation),
        (),
        _normal("skipping canary run as object is suspended"),
    )


def _kind(step: _Step) -> str:
    """The target's kind as Flagger's event messages name it: ``deployment``, ``daemonset``, ..."""
    return step.kind.lower()


def _target_missing(step: _Step) -> Decision:
    message = f"Target {_kind(step)} {step.target} not found"
    status = step.status
    if status.phase in (None, Phase.INITIALIZING):
        # A status that says why, rather than none at all.
        status = status.with_phase(
            Phase.INITIALIZING, step.now, kind=step.kind, message=f"{message}: waiting for it to be created."
        )
    return step.decision(message, status, (), _warning(message))


def _readiness_deadline_passed(step: _Step, since: datetime.datetime | None) -> bool:
    return since is not None and (step.now - since).total_seconds() > step.canary.progress_deadline_seconds


def _initialize(step: _Step) -> Decision:
    """Wait for the primary, then hand it all traffic: the target goes to zero, Initialized."""
    target, primary = step.observation.target, step.observation.primary
    assert target is not None
    status = step.status if step.status.phase else step.status.with_phase(Phase.INITIALIZING, step.now, kind=step.kind)
    why = (
        "not created yet"
        if primary is None
        else primary.not_ready_because(step.canary.analysis.primary_ready_threshold)
    )
    if why is not None:
        message = f"{step.primary} not ready: {why}"
        if status.phase is Phase.INITIALIZING and _readiness_deadline_passed(step, status.last_transition_time):
            # The target keeps running: only the primary failed to come up.
            seconds = step.canary.progress_deadline_seconds
            failed = status.with_phase(
                Phase.FAILED, step.now, kind=step.kind, message=f"{step.primary} not ready after {seconds}s: {why}"
            )
            return step.decision(
                "initialization failed: progress deadline exceeded",
                failed.replace(last_analysis_time=step.now),
                (),
                _warning(message),
                _warning(f"Canary failed! {step.primary} not ready after progressDeadlineSeconds ({seconds}s)"),
            )
        return step.decision(f"waiting for {step.primary} to be ready: {why}", status, (), _warning(message))
    assert primary is not None
    # What the primary really runs, which need not be what the target holds now: a change made
    # since the primary was created is a new revision, analysed like any other.
    running = primary.source_hash or target.template_hash
    initialized = status.with_phase(Phase.INITIALIZED, step.now, kind=step.kind).replace(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_applied_spec=running,
        last_promoted_spec=running,
        tracked_configs=dict(
            step.observation.config_hashes
            if step.observation.primary_config_hashes is None
            else step.observation.primary_config_hashes
        ),
        last_analysis_time=step.now,
        observed_generation=step.canary.generation,
        waiting_since=None,
        unavailable_steps=0,
        checks=(),
        traffic_since=None,
    )
    return step.decision(
        "initialized: the primary serves all traffic",
        initialized,
        (SetRoutes(*ALL_ON_PRIMARY), ScaleTarget(0)),
        _normal(f"Initialization done! {step.who}"),
    )


def _has_new_revision(step: _Step) -> bool:
    target = step.observation.target
    assert target is not None
    status = step.status
    return target.template_hash != status.last_applied_spec or dict(step.observation.config_hashes) != dict(
        status.tracked_configs
    )


def _is_promoted_revision(step: _Step) -> bool:
    """The target is back at what the primary runs: never analysed (Flagger's manual rollback rule)."""
    target = step.observation.target
    assert target is not None
    return target.template_hash == step.status.last_promoted_spec and dict(step.observation.config_hashes) == dict(
        step.status.tracked_configs
    )


def _at_rest(step: _Step) -> tuple[Action, ...]:
    """Between releases: all traffic on the primary, the target at zero."""
    target = step.observation.target
    assert target is not None
    return (*_route(step.observation, ALL_ON_PRIMARY), *((ScaleTarget(0),) if target.replicas > 0 else ()))


def _canary_replicas(observation: Observation) -> int:
    """The canary runs as many pods as the primary (at least one)."""
    primary = observation.primary
    return max(1, primary.replicas if primary else 1)


def _passed(hook_name: str, results: tuple[HookResult, ...]) -> tuple[Event, ...]:
    return tuple(_normal(f"{hook_name} check {result.name} passed") for result in results)


def _idle(step: _Step) -> Decision:
    target = step.observation.target
    assert target is not None
    status = step.status
    if not _has_new_revision(step):
        if _rejoins_group(step):
            return _restart_for_group(step)
        if not (status.phase is Phase.WAITING and _is_promoted_revision(step)):
            # A revision the Deployment webhook marked Reconciling, undone before a tick started it.
            return step.decision("no new revision", status.with_health_of_phase(step.now), _at_rest(step))
    if _is_promoted_revision(step):
        # Waiting for approval of a revision that was undone, too: nothing is left to release.
        back = status.replace(last_applied_spec=target.template_hash).with_health_of_phase(step.now)
        if status.phase is Phase.WAITING:
            back = back.with_phase(
                Phase.SUCCEEDED, step.now, kind=step.kind, message="The target is back at the promoted revision."
            )
        return step.decision("the target is back at the promoted revision", back, _at_rest(step))
    answers = step.hooks(HookType.CONFIRM_ROLLOUT)
    if answers is None:
        return step.asking("asking confirm-rollout hooks", HookType.CONFIRM_ROLLOUT)
    refused = [answer for answer in answers if not answer.ok]
    if refused:
        events: tuple[Event, ...] = ()
        if status.phase is not Phase.WAITING:
            events = (_warning(f"Halt {step.who} advancement waiting for approval {refused[0].name}"),)
        waiting = status.with_phase(Phase.WAITING, step.now, kind=step.kind)
        return step.decision("waiting for confirm-rollout approval", waiting, _at_rest(step), *events)
    started = _restart(step)
    return step.decision(
        "new revision: scaling up the canary",
        started,
        (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(_canary_replicas(step.observation))),
        *_passed("Confirm-rollout", answers),
        _normal(f"New revision detected! Scaling up {step.target}"),
    )


def _restart(step: _Step) -> CanaryStatus:
    """Progressing from the first step with the target's current revision."""
    target = step.observation.target
    assert target is not None
    return step.status.with_phase(Phase.PROGRESSING, step.now, kind=step.kind).replace(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_applied_spec=target.template_hash,
        tracked_configs=dict(step.observation.config_hashes),
        last_transition_time=step.now,
        last_analysis_time=step.now,
        waiting_since=None,
        unavailable_steps=0,
        checks=(),
        traffic_since=None,
        # Without its group in view (a webhook's step), the next tick's step joins the release.
        group=_group_progress(step, target.template_hash),
    )


def _group_progress(step: _Step, revision: str) -> GroupProgress | None:
    """A member's start of the release its revision makes with the others'."""
    group = step.group
    if group is None:
        return None
    return GroupProgress(group.name, group.release(step.canary.name, revision), since=step.now)


def _rollback(step: _Step, reason: str, *events: Event) -> Decision:
    """All traffic to the primary, the canary to zero, Failed (Flagger resets the counters)."""
    progress = step.status.group
    failed = step.status.with_phase(Phase.FAILED, step.now, kind=step.kind).replace(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        waiting_since=None,
        unavailable_steps=0,
        group=progress.replace(analysed=False, message="") if progress is not None else None,
    )
    return step.decision(
        f"rolled back: {reason}",
        failed,
        (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
        *events,
        _warning(f"Canary failed! Scaling down {step.target}"),
    )


# ---- Progressing and WaitingPromotion: the analysis ----------------------------------------

_Check = Callable[[_Step], "Decision | _Step"]


def _progress(step: _Step) -> Decision:
    """Each check either decides the step or hands a (possibly updated) step to the next one."""
    checks: tuple[_Check, ...] = (
        _on_unconfirmed,
        _on_revision,
        _on_group_release,
        _on_readiness,
        _on_group_step,
        _on_skip_analysis,
        _on_rollback_hooks,
        _on_threshold,
        _on_routes,
    )
    for check in checks:
        outcome = check(step)
        if isinstance(outcome, Decision):
            return outcome
        step = outcome
    strategy = step.canary.analysis.strategy
    if strategy is Strategy.AB_TESTING:
        return _ab_step(step)
    if strategy is Strategy.BLUE_GREEN:
        return _blue_green_step(step)
    return _canary_step(step)


def _on_unconfirmed(step: _Step) -> Decision | _Step:
    """A revision recorded by the Deployment webhook is confirmed by the target holding it; if the
    target does not, another webhook refused the update after ours, and the status goes back."""
    unconfirmed, target = step.status.unconfirmed, step.observation.target
    assert target is not None
    if unconfirmed is None:
        return step
    if target.template_hash == unconfirmed.revision:
        return step.with_status(step.status.replace(unconfirmed=None))
    phase = unconfirmed.phase or Phase.INITIALIZED
    restored = step.status.with_phase(phase, step.now, kind=step.kind).replace(
        last_applied_spec=unconfirmed.applied,
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        waiting_since=None,
        unavailable_steps=0,
        unconfirmed=None,
    )
    return step.decision(
        f"the update admission saw for revision {unconfirmed.revision} was not stored: back to {phase.value}",
        restored,
        _at_rest(step),
        _normal(f"New revision of {step.target} was refused after admission: back to {phase.value}"),
    )


def _on_revision(step: _Step) -> Decision | _Step:
    if not _has_new_revision(step):
        return step
    target = step.observation.target
    assert target is not None
    if _is_promoted_revision(step):
        stopped = step.status.with_phase(
            Phase.SUCCEEDED, step.now, kind=step.kind, message="The target is back at the promoted revision."
        ).replace(
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            last_applied_spec=target.template_hash,
            waiting_since=None,
            unavailable_steps=0,
        )
        return step.decision(
            "the target is back at the promoted revision: analysis stopped",
            stopped,
            (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(0)),
            _normal(f"Target {step.target} is back at the promoted revision: analysis stopped"),
        )
    return step.decision(
        "new revision during analysis: restarting it",
        _restart(step),
        (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(_canary_replicas(step.observation))),
        _normal(f"New revision detected! Restarting analysis for {step.target}"),
    )


def _on_readiness(step: _Step) -> Decision | _Step:
    """Both workloads ready, or wait for them; past the deadline, roll back."""
    target, primary = step.observation.target, step.observation.primary
    assert target is not None
    analysis = step.canary.analysis
    canary_why = target.not_ready_because(analysis.canary_ready_threshold)
    primary_why = "not found" if primary is None else primary.not_ready_because(analysis.primary_ready_threshold)
    if canary_why is None and primary_why is None:
        return step.with_status(step.status.replace(waiting_since=None))

    since = step.status.waiting_since or step.now
    message = (
        f"canary {_kind(step)} {step.target} not ready: {canary_why}"
        if canary_why is not None
        else f"{step.primary} not ready: {primary_why}"
    )
    if target.progress_deadline_exceeded or _readiness_deadline_passed(step, since):
        return _rollback(
            step,
            "progress deadline exceeded",
            _warning(message),
            _warning(f"Rolling back {step.who} progress deadline exceeded"),
        )
    actions: tuple[Action, ...] = ()
    if target.replicas == 0:
        # Scaled down under the release (by hand, or a crash between two writes): scale it again.
        actions += (ScaleTarget(_canary_replicas(step.observation)),)
    if target.available_replicas == 0:
        # Never leave traffic on a canary with no pod to serve it; the status keeps the step, and
        # the traffic comes back once the canary is ready again.
        actions += _route(step.observation, ALL_ON_PRIMARY)
    waiting = step.status.replace(waiting_since=since)
    return step.decision(f"waiting: {message}", waiting, actions, _warning(message))


def _on_skip_analysis(step: _Step) -> Decision | _Step:
    if not step.canary.skip_analysis:
        return step
    return _promote(step, "analysis skipped")


def _on_rollback_hooks(step: _Step) -> Decision | _Step:
    """A rollback hook that answers yes means: roll back now."""
    answers = step.hooks(HookType.ROLLBACK)
    if answers is None:
        return step.asking("asking rollback hooks", HookType.ROLLBACK)
    yes = [answer for answer in answers if answer.ok]
    if not yes:
        return step
    return _rollback(
        step,
        "manual rollback requested by a rollback hook",
        _warning(f"Rollback check {yes[0].name} passed"),
        _warning(f"Rolling back {step.who} manual webhook invoked"),
    )


def _on_threshold(step: _Step) -> Decision | _Step:
    failed = step.status.failed_checks
    if failed < step.canary.analysis.threshold:
        return step
    return _rollback(
        step,
        f"failed checks threshold reached {failed}",
        _warning(f"Rolling back {step.who} failed checks threshold reached {failed}"),
    )


def _on_routes(step: _Step) -> Decision | _Step:
    """Traffic the status says the canary has, it gets back; this step's metrics would not show it."""
    split = desired_split(step.canary, step.status)
    if step.observation.routes == split:
        return step
    return _unavailable(
        step,
        f"routes restored to {split[0]}/{split[1]}: the analysis resumes at the next step",
        (SetRoutes(*split),),
    )


# ---- release groups (see serin.groups) ------------------------------------------------------


def _group_release(step: _Step) -> str:
    assert step.group is not None
    return step.group.release(step.canary.name, step.status.last_applied_spec)


def _restart_for_group(step: _Step) -> Decision:
    assert step.group is not None
    return step.decision(
        f"group {step.group.name} has a new release: restarting the analysis",
        _restart(step),
        (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(_canary_replicas(step.observation))),
        _normal(f"Group {step.group.name} has a new release! Restarting analysis for {step.target}"),
    )


def _rejoins_group(step: _Step) -> bool:
    """A member rolled back with the rest of its group runs the release again once the group
    does: another member brought a new revision, or started the release again (a retry)."""
    group, status = step.group, step.status
    if group is None or status.phase is not Phase.FAILED or not status.last_promoted_spec:
        return False
    if status.last_applied_spec == status.last_promoted_spec:
        return False
    release = _group_release(step)
    if status.group is None or status.group.release != release:
        return True
    return group.rejoins(release, status.last_transition_time)


def _on_group_release(step: _Step) -> Decision | _Step:
    """A member runs its group's current release: it joins a release it has just started, restarts
    when another member brought a new revision, and is rolled back when another failed this run."""
    group, status = step.group, step.status
    if group is None:
        return step
    release = _group_release(step)
    progress = status.group
    if progress is None or progress.release != release:
        not_started = (progress is None or progress.steps == 0) and status.traffic_since is None
        if not_started:
            joined = GroupProgress(group.name, release, since=status.last_transition_time or step.now)
            return step.with_status(status.replace(group=joined))
        return _restart_for_group(step)
    failed = group.failed(release, progress.since)
    if not failed:
        return step
    names = ", ".join(failed)
    return _rollback(
        step,
        f"{names} of group {group.name} failed",
        _warning(f"Rolling back {step.who}: {names} of group {group.name} failed"),
    )


def _on_group_step(step: _Step) -> Decision | _Step:
    """A member takes its next step once no other member is behind it, and is promoted once every
    member's analysis has passed."""
    group, progress = step.group, step.status.group
    if group is None or progress is None:
        return step
    if progress.analysed:
        waiting = _waiting_for_group(step)
        return waiting if waiting is not None else _promote(step, f"the analysis of group {group.name} passed")
    behind = group.behind(progress.release, progress.since, progress.steps)
    if not behind:
        where = group.summary(progress.release, progress.since)
        return step.with_status(step.status.replace(group=progress.replace(message=where)))
    return _group_hold(step, f"waiting for {', '.join(behind)} of group {group.name} to pass step {progress.steps}")


def _waiting_for_group(step: _Step, *events: Event) -> Decision | None:
    """The analysis passed: while another member's has not, wait for it in WaitingPromotion."""
    group, progress = step.group, step.status.group
    if group is None or progress is None:
        return None
    waiting = group.not_analysed(progress.release, progress.since)
    if not waiting:
        return None
    summary = f"analysis passed: waiting for {', '.join(waiting)} of group {group.name}"
    if progress.analysed:
        return _group_hold(step, summary)
    analysed = step.status.with_phase(
        Phase.WAITING_PROMOTION,
        step.now,
        kind=step.kind,
        message=f"Canary analysis passed, waiting for the rest of group {group.name}.",
    ).replace(
        # Looked at again at every tick, as a hold is.
        last_analysis_time=step.previous_analysis_time,
        group=progress.replace(analysed=True, message=group.summary(progress.release, progress.since)),
    )
    passed = _normal(f"Canary analysis of {step.target} passed: waiting for group {group.name}")
    return dataclasses.replace(step.decision(summary, analysed, (), *events, passed), waits_for_group=True)


def _group_hold(step: _Step, summary: str) -> Decision:
    """Nothing moves; the next tick looks again (the schedule stays where it was)."""
    progress = step.status.group
    assert step.group is not None and progress is not None
    where = step.group.summary(progress.release, progress.since)
    held = step.status.replace(last_analysis_time=step.previous_analysis_time, group=progress.replace(message=where))
    return dataclasses.replace(step.decision(summary, held), waits_for_group=True)


def _one_more_step(status: CanaryStatus) -> CanaryStatus:
    """A step of the analysis passed: its group sees this member one step further."""
    if status.group is None:
        return status
    return status.replace(group=status.group.replace(steps=status.group.steps + 1))


def _is_first_step(status: CanaryStatus) -> bool:
    return status.canary_weight == 0 and status.iterations == 0


def _start(step: _Step, then: Callable[[_Step, tuple[Event, ...]], Decision]) -> Decision:
    """The first step: pre-rollout hooks, no metrics (no traffic has reached the canary yet)."""
    starting = _normal(f"Starting canary analysis for {step.target}")
    answers = step.hooks(HookType.PRE_ROLLOUT)
    if answers is None:
        return step.asking("running pre-rollout hooks", HookType.PRE_ROLLOUT)
    failed = [answer for answer in answers if not answer.ok]
    if failed:
        halts = tuple(
            _warning(f"Halt {step.who} advancement pre-rollout check {answer.name} failed {answer.message}")
            for answer in failed
        )
        if all(answer.temporary for answer in failed):
            return _unavailable(step, "pre-rollout hooks could not be reached", (), starting, *halts)
        return _failed_check(step, "pre-rollout hooks failed", starting, *halts)
    started = step.with_status(step.status.replace(unavailable_steps=0, traffic_since=step.now))
    return then(started, (starting, *_passed("Pre-rollout", answers)))


def _analyse(step: _Step, then: Callable[[_Step], Decision]) -> Decision:
    """Every later step: rollout hooks and metrics; a failure is a failed check, an outage holds."""
    opens_in = window_opens_in(step.canary, step.status, step.now)
    if opens_in:
        # Not a step: judged now, a metric would read the traffic from before the last change
        # (the previous weight, the previous release's pods), and pass or fail on it.
        kept = step.status.replace(last_analysis_time=step.previous_analysis_time)
        longest = _longest_window(step.canary)
        return step.decision(
            f"waiting {opens_in:.1f}s for the metric window: the canary's traffic changed "
            f"{longest - opens_in:.1f}s ago, its metrics read {longest:g}s",
            kept,
        )
    needs: tuple[Need, ...] = ()
    if step.hooks(HookType.ROLLOUT) is None:
        needs += (HookType.ROLLOUT,)
    if step.canary.analysis.metrics and step.observation.metrics is None:
        needs += (METRICS,)
    if needs:
        return step.asking("running the analysis", *needs)
    failures: list[str] = []
    held: list[str] = []
    for answer in step.hooks(HookType.ROLLOUT) or ():
        if not answer.ok:
            message = f"Halt {step.who} advancement external check {answer.name} failed {answer.message}"
            (held if answer.temporary else failures).append(message)
    checks = metric_checks(step.canary, step.observation.metrics or ())
    for check in checks:
        if not check.passed:
            (held if check.passed is None else failures).append(check.message)
    if failures:
        decision = _failed_check(step, "; ".join(failures), *map(_warning, failures))
    elif held:
        decision = _unavailable(step, "; ".join(held), (), *map(_warning, held))
    else:
        decision = then(step.with_status(step.status.replace(unavailable_steps=0)))
    # The status keeps them until the next analysed step (a new release starts without).
    return dataclasses.replace(decision, checks=checks, status=decision.status.replace(checks=checks))


@dataclass(frozen=True)
class _Checked:
    value: float | None
    # Flagger's words for what is wrong; None when the metric passed.
    problem: str | None
    # What a passing metric found, for the step's report.
    found: str = ""


def _check(canary: Canary, metric: Metric, reading: MetricReading) -> _Checked:
    """What one reading says, and what is wrong with it in Flagger's words."""
    who = f"{canary.name}.{canary.namespace}"
    kind = "builtin" if metric.is_builtin else "template" if metric.template_ref else "query"
    if metric.compare is None:
        # An infinity is no measurement: +Inf would pass any minimum and -Inf any maximum.
        missing = reading.value is None or not math.isfinite(reading.value)
    else:
        missing = not (reading.canary_samples and reading.primary_samples)
    if reading.problem == "no-data" or (reading.problem is None and missing):
        if kind == "builtin":
            target = f"{canary.target_ref.name}.{canary.namespace}"
            return _Checked(
                None,
                f"Halt advancement no values found for {canary.provider} metric {metric.name} "
                f"probably {target} is not receiving traffic",
            )
        if kind == "template":
            return _Checked(None, f"Halt advancement no values found for custom metric: {metric.name}")
        return _Checked(None, f"Halt advancement no values found for metric: {metric.name}")
    if reading.problem is not None:
        if reading.problem == "unavailable":
            return _Checked(None, f"Halt advancement {metric.name} could not be measured: {reading.detail}")
        if kind == "builtin":
            return _Checked(None, f"Prometheus query failed: {reading.detail}")
        if kind == "template":
            return _Checked(None, f"Metric query failed for {metric.name}: {reading.detail}")
        return _Checked(None, f"Prometheus query failed for {metric.name}: {reading.detail}")
    if metric.compare is not None:
        # Only a Canary that compares with the primary needs the judge (and its statistics).
        from serin.judge import judge

        judgement = judge(metric.name, metric.compare, reading.canary_samples, reading.primary_samples)
        problem = None if judgement.passed else f"Halt {who} advancement {judgement.message}"
        return _Checked(judgement.canary_median, problem, judgement.message)
    assert reading.value is not None
    problem = _outside_range(who, metric, reading.value)
    return _Checked(reading.value, problem, f"{metric.name} {reading.value:.4g} {_range(metric)}: passed")


def _range(metric: Metric) -> str:
    low, high = metric.threshold_range.min, metric.threshold_range.max
    if low is not None and high is not None:
        return f"within {low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "(no range)"


def metric_checks(canary: Canary, readings: tuple[MetricReading, ...]) -> tuple[MetricCheck, ...]:
    """How each metric of the analysis fared in a step that read ``readings``, explained."""
    checks = []
    for metric, reading in zip(canary.analysis.metrics, readings, strict=True):
        checked = _check(canary, metric, reading)
        passed = None if reading.problem == "unavailable" else checked.problem is None
        checks.append(MetricCheck(metric.name, checked.value, passed, checked.problem or checked.found))
    return tuple(checks)


def _outside_range(who: str, metric: Metric, value: float) -> str | None:
    low, high = metric.threshold_range.min, metric.threshold_range.max
    if metric.is_builtin and metric.name == "request-success-rate":
        if low is not None and value < low:
            return f"Halt {who} advancement success rate {value:.2f}% < {low:g}%"
        if high is not None and value > high:
            return f"Halt {who} advancement success rate {value:.2f}% > {high:g}%"
        return None
    if metric.is_builtin and metric.name == "request-duration":
        value = float(int(value))  # Flagger reads whole milliseconds
        if low is not None and value < low:
            return f"Halt {who} advancement request duration {go_duration(value)} < {go_duration(low)}"
        if high is not None and value > high:
            return f"Halt {who} advancement request duration {go_duration(value)} > {go_duration(high)}"
        return None
    if low is not None and value < low:
        return f"Halt {who} advancement {metric.name} {value:.2f} < {low:g}"
    if high is not None and value > high:
        return f"Halt {who} advancement {metric.name} {value:.2f} > {high:g}"
    return None


def go_duration(milliseconds: float) -> str:
    """A duration as Go prints it (``212.5ms``, ``1.2s``, ``1m30s``): Flagger's messages use it."""
    nanoseconds = round(milliseconds * 1e6)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1e6:.6f}".rstrip("0").rstrip(".") + "ms"
    minutes, rest = divmod(nanoseconds, 60_000_000_000)
    seconds = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{seconds}" if minutes else seconds


def _failed_check(step: _Step, summary: str, *events: Event) -> Decision:
    failed = step.status.replace(failed_checks=step.status.failed_checks + 1, unavailable_steps=0)
    return step.decision(summary, failed, (), *events)


def _unavailable(step: _Step, summary: str, actions: tuple[Action, ...], *events: Event) -> Decision:
    """The step could not be analysed: hold, but only ``UNAVAILABLE_LIMIT`` steps in a row."""
    held = step.status.unavailable_steps
    status = step.status.replace(unavailable_steps=held + 1)
    if held < UNAVAILABLE_LIMIT:
        return step.decision(f"holding ({held + 1}/{UNAVAILABLE_LIMIT}): {summary}", status, actions, *events)
    note = f"Halt {step.who} advancement: not analysed for {held + 1} steps in a row, counted as a failed check"
    counted = status.replace(failed_checks=status.failed_checks + 1)
    return step.decision(f"failed check: {summary}", counted, actions, *events, _warning(note))


# ---- the strategies ------------------------------------------------------------------------


def _canary_step(step: _Step) -> Decision:
    """Weighted canary: one weight step per analysed interval, promotion at the maximum. With
    ``analysis.mirror``, as Flagger: a first step only mirrors, and the copies are analysed before
    the first weight."""
    if _is_first_step(step.status):
        if step.canary.analysis.mirror and step.observation.mirrored:
            return _analyse(step, lambda analysed: _advance_weight(analysed, ()))
        if step.canary.analysis.mirror:
            return _start(step, _mirror)
        return _start(step, _advance_weight)
    if step.status.canary_weight >= step.canary.analysis.max_weight:
        return _analyse(step, _confirm_and_promote)
    return _analyse(step, lambda analysed: _advance_weight(analysed, ()))


def _advance_weight(step: _Step, events: tuple[Event, ...]) -> Decision:
    if step.status.phase is Phase.PROGRESSING:
        answers = step.hooks(HookType.CONFIRM_TRAFFIC_INCREASE)
        if answers is None:
            return step.asking("asking confirm-traffic-increase hooks", HookType.CONFIRM_TRAFFIC_INCREASE)
        refused = [answer for answer in answers if not answer.ok]
        if refused:
            halt = _warning(f"Halt {step.who} advancement waiting for traffic increase approval {refused[0].name}")
            return step.decision("waiting for confirm-traffic-increase approval", step.status, (), *events, halt)
        events += _passed("Confirm-traffic-increase", answers)
    weight = step.canary.analysis.weight_after(step.status.canary_weight)
    advanced = _one_more_step(step.status.replace(canary_weight=weight, last_transition_time=step.now))
    return step.decision(
        f"canary weight {weight}",
        advanced,
        (SetRoutes(100 - weight, weight),),
        *events,
        _normal(f"Advance {step.who} canary weight {weight}"),
    )


def _mirror(step: _Step, events: tuple[Event, ...]) -> Decision:
    mirroring = _one_more_step(step.status.replace(last_transition_time=step.now))
    return step.decision(
        "mirroring requests to the canary",
        mirroring,
        (SetRoutes(*ALL_ON_PRIMARY, mirror=True),),
        *events,
        _normal(f"Advance {step.who} canary weight 0"),
    )


def _mirror_blue_green(step: _Step) -> tuple[Action, ...]:
    """Blue/green with ``analysis.mirror`` copies requests to the canary through its iterations."""
    if step.canary.analysis.mirror and not step.observation.mirrored:
        return (SetRoutes(*ALL_ON_PRIMARY, mirror=True),)
    return ()


def _advance_iteration(step: _Step, actions: tuple[Action, ...] = (), *events: Event) -> Decision:
    iterations = step.canary.analysis.iterations or 0
    advanced = _one_more_step(step.status.replace(iterations=step.status.iterations + 1, last_transition_time=step.now))
    return step.decision(
        f"iteration {advanced.iterations}/{iterations}",
        advanced,
        actions,
        *events,
        _normal(f"Advance {step.who} canary iteration {advanced.iterations}/{iterations}"),
    )


def _ab_step(step: _Step) -> Decision:
    """A/B testing: matched requests go to the canary from the first step, one iteration per step."""
    if _is_first_step(step.status):
        return _start(step, lambda started, events: _advance_iteration(started, (SetRoutes(0, 100),), *events))
    if step.status.iterations < (step.canary.analysis.iterations or 0):
        return _analyse(step, _advance_iteration)
    return _analyse(step, _confirm_and_promote)


def _blue_green_step(step: _Step) -> Decision:
    """Blue/green: the iterations on the canary alone, then one analysed step with all traffic on
    it, then promotion while it still serves."""
    iterations = step.canary.analysis.iterations or 0
    if _is_first_step(step.status):
        return _start(step, lambda started, events: _advance_iteration(started, _mirror_blue_green(started), *events))
    if step.status.iterations < iterations:
        return _analyse(step, lambda analysed: _advance_iteration(analysed, _mirror_blue_green(analysed)))
    if step.status.iterations == iterations:
        return _analyse(step, lambda analysed: _confirm(analysed, _switch_to_canary))
    return _analyse(step, _confirm_and_promote)


def _switch_to_canary(step: _Step, events: tuple[Event, ...]) -> Decision:
    switched = _one_more_step(step.status.replace(iterations=step.status.iterations + 1, last_transition_time=step.now))
    message = (
        "Stop traffic mirroring and route all traffic to canary"
        if step.canary.analysis.mirror
        else "Routing all traffic to canary"
    )
    return step.decision("all traffic to the canary", switched, (SetRoutes(0, 100),), *events, _normal(message))


def _confirm(step: _Step, then: Callable[[_Step, tuple[Event, ...]], Decision]) -> Decision:
    """The confirm-promotion gate: refused, the Canary waits in WaitingPromotion (and is still analysed)."""
    answers = step.hooks(HookType.CONFIRM_PROMOTION)
    if answers is None:
        return step.asking("asking confirm-promotion hooks", HookType.CONFIRM_PROMOTION)
    refused = [answer for answer in answers if not answer.ok]
    if refused:
        events: tuple[Event, ...] = ()
        if step.status.phase is not Phase.WAITING_PROMOTION:
            events = (_warning(f"Halt {step.who} advancement waiting for promotion approval {refused[0].name}"),)
        waiting = step.status.with_phase(Phase.WAITING_PROMOTION, step.now, kind=step.kind)
        return step.decision("waiting for confirm-promotion approval", waiting, (), *events)
    return then(step, _passed("Confirm-promotion", answers))


def _confirm_and_promote(step: _Step) -> Decision:
    return _confirm(step, lambda confirmed, events: _promote(confirmed, "analysis passed", *events))


def _promote(step: _Step, why: str, *events: Event) -> Decision:
    """Copy the target into the primary; the traffic the canary has stays on it until the primary is
    ready. A member of a release group waits until every member's analysis has passed."""
    waiting = _waiting_for_group(step, *events)
    if waiting is not None:
        return waiting
    progress = step.status.group
    promoting = step.status.with_phase(Phase.PROMOTING, step.now, kind=step.kind).replace(
        canary_weight=desired_split(step.canary, step.status)[1],
        waiting_since=None,
        unavailable_steps=0,
        group=progress.replace(message="") if progress is not None else None,
    )
    return step.decision(
        f"{why}: promoting",
        promoting,
        (CopyToPrimary(step.status.last_applied_spec),),
        *events,
        _normal(f"Copying {step.target} template spec to {step.primary}"),
    )


# ---- Promoting and Finalising --------------------------------------------------------------


def _promoting(step: _Step) -> Decision:
    primary, target = step.observation.primary, step.observation.target
    assert target is not None
    status = step.status
    if status.canary_weight > 0 and target.available_replicas == 0:
        # The canary lost its pods while the primary rolls out: what traffic it had goes back to
        # the primary now (its old pods serve until the new ones are ready), nothing is left to shift.
        status = status.replace(canary_weight=0)
        step = step.with_status(status)
        if step.observation.routes != ALL_ON_PRIMARY:
            message = f"canary {_kind(step)} {step.target} has no available pod: all traffic to the primary"
            return step.decision(message, status, (SetRoutes(*ALL_ON_PRIMARY),), _warning(message))
    if primary is None or primary.source_hash != status.last_applied_spec:
        # The copy did not land (or was undone): do it again.
        return step.decision(
            "copying the analysed revision to the primary", status, (CopyToPrimary(status.last_applied_spec),)
        )
    why = primary.not_ready_because(step.canary.analysis.primary_ready_threshold)
    if why is not None:
        message = f"{step.primary} not ready: {why}"
        return step.decision(f"waiting for the promoted primary: {message}", status, (), _warning(message))
    promotion_step = step.canary.analysis.step_weight_promotion
    if promotion_step and status.canary_weight > 0:
        # Shift traffic back to the (now updated) primary gradually.
        weight = max(0, status.canary_weight - promotion_step)
        shifted = status.replace(canary_weight=weight, last_transition_time=step.now)
        if weight == 0:
            shifted = shifted.with_phase(Phase.FINALISING, step.now, kind=step.kind)
        return step.decision(
            f"promotion: canary weight {weight}",
            shifted,
            (SetRoutes(100 - weight, weight),),
            _normal(f"Advance {step.who} primary weight {100 - weight}"),
        )
    finalising = status.with_phase(Phase.FINALISING, step.now, kind=step.kind).replace(canary_weight=0)
    return step.decision(
        "routing all traffic to the primary",
        finalising,
        (SetRoutes(*ALL_ON_PRIMARY),),
        _normal("Routing all traffic to primary"),
    )


def _finalise(step: _Step) -> Decision:
    status = step.status
    succeeded = status.with_phase(Phase.SUCCEEDED, step.now, kind=step.kind).replace(
        canary_weight=0, failed_checks=0, iterations=0, last_promoted_spec=status.last_applied_spec
    )
    completed = (
        f"Promotion completed! Canary analysis was skipped for {step.target}"
        if step.canary.skip_analysis
        else f"Promotion completed! Scaling down {step.target}"
    )
    return step.decision(
        "promotion completed",
        succeeded,
        (*_route(step.observation, ALL_ON_PRIMARY), ScaleTarget(0), RunHooks(HookType.POST_ROLLOUT)),
        _normal(completed),
    )
