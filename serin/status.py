"""A Canary's status: everything the stateless tick needs between two calls.

Frozen, with copy-returning updates, and a lossless round trip to and from the dict stored in the
``status`` subresource. Pure: no clock (times are passed in), no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serin.model import HookType

HOOK_TYPES = frozenset(hook.value for hook in HookType)


class Phase(enum.StrEnum):
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"


# Phases in which no release is under way: a new revision may start one.
IDLE_PHASES = frozenset({Phase.INITIALIZED, Phase.WAITING, Phase.SUCCEEDED, Phase.FAILED})


def format_time(moment: datetime.datetime, precise: bool = False) -> str:
    """RFC 3339 in UTC, to the second (as Kubernetes writes times) or, ``precise``, the millisecond."""
    utc = moment.astimezone(datetime.UTC)
    if precise:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.datetime.strptime(text, layout).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


# Flagger's messages for the Promoted condition, by phase; users and dashboards know them.
_CONDITION_MESSAGES = {
    Phase.INITIALIZING: "New {kind} detected, starting initialization.",
    Phase.INITIALIZED: "{kind} initialization completed.",
    Phase.WAITING: "Waiting for approval.",
    Phase.PROGRESSING: "New revision detected, progressing canary analysis.",
    Phase.WAITING_PROMOTION: "Waiting for approval.",
    Phase.PROMOTING: "Canary analysis completed, starting primary rolling update.",
    Phase.FINALISING: "Canary analysis completed, routing all traffic to primary.",
    Phase.SUCCEEDED: "Canary analysis completed successfully, promotion finished.",
    Phase.FAILED: "Canary analysis failed, {kind} scaled to zero.",
    Phase.TERMINATING: "Canary is being deleted, handing traffic back to the {kind}.",
    Phase.TERMINATED: "Canary deleted, traffic handed back to the {kind}.",
}


def condition_message(phase: Phase, kind: str = "Deployment") -> str:
    return _CONDITION_MESSAGES.get(phase, "").format(kind=kind)


@dataclass(frozen=True)
class Condition:
    """A standard condition. ``Promoted`` is the one Flagger users know, with the phase as its
    reason; ``Ready``, ``Reconciling`` and ``Stalled`` are kstatus's, for GitOps tools and
    ``kubectl wait``."""

    status: str
    reason: str
    message: str
    last_transition_time: str
    last_update_time: str
    type: str = "Promoted"

    def to_dict(self, observed_generation: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "lastUpdateTime": self.last_update_time,
        }
        if observed_generation is not None:
            data["observedGeneration"] = observed_generation
        return data

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> Condition:
        return cls(
            status=str(item.get("status", "Unknown")),
            reason=str(item.get("reason", "")),
            message=str(item.get("message", "")),
            last_transition_time=str(item.get("lastTransitionTime", "")),
            last_update_time=str(item.get("lastUpdateTime", "")),
            type=str(item.get("type", "Promoted")),
        )

    def moved_to(self, status: str, reason: str, message: str, stamp: str) -> Condition:
        """This condition as it is after a change to ``status``/``reason``/``message`` at ``stamp``:
        the transition time moves only with the status, and nothing moves when nothing changed."""
        if (self.status, self.reason, self.message) == (status, reason, message):
            return self
        transitioned = self.status != status
        return Condition(
            status, reason, message, stamp if transitioned else self.last_transition_time, stamp, self.type
        )


# The kstatus conditions, in the order they are stored after Promoted.
HEALTH_CONDITIONS = ("Ready", "Reconciling", "Stalled")


def health_condition_statuses(phase: Phase) -> dict[str, str]:
    """kstatus's reading of a phase: Ready once the current revision is promoted (or the first one
    is in place), Stalled once it was rolled back (nothing happens until a new revision or a
    request), Reconciling while anything is under way. Abnormal-true conditions are present only
    while true, as kstatus recommends."""
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED):
        return {"Ready": "True"}
    if phase is Phase.FAILED:
        return {"Ready": "False", "Stalled": "True"}
    if phase is Phase.TERMINATED:
        return {"Ready": "False"}
    return {"Ready": "False", "Reconciling": "True"}


def promoted_condition_status(phase: Phase) -> str:
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED):
        return "True"
    if phase is Phase.FAILED:
        return "False"
    return "Unknown"


@dataclass(frozen=True)
class Pending:
    """What a step recorded for sending after its status was stored (Events as (type, reason,
    message), notification hook types, alerts), kept until a tick has sent it: a worker that dies
    in between loses none of it."""

    step: str
    events: tuple[tuple[str, str, str], ...] = ()
    hooks: tuple[str, ...] = ()
    # Alerts as (message, severity, with the Canary's details).
    alerts: tuple[tuple[str, str, bool], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "events": [{"type": kind, "reason": reason, "message": message} for kind, reason, message in self.events],
            "hooks": list(self.hooks),
        }
        if self.alerts:
            data["alerts"] = [
                {"message": message, "severity": severity, "details": details}
                for message, severity, details in self.alerts
            ]
        return data

    @classmethod
    def from_dict(cls, raw: Any) -> Pending | None:
        if not isinstance(raw, Mapping) or not raw.get("step"):
            return None
        events = tuple(
            (str(item.get("type", "Normal")), str(item.get("reason", "")), str(item.get("message", "")))
            for item in raw.get("events") or []
            if isinstance(item, Mapping)
        )
        alerts = tuple(
            (str(item.get("message", "")), str(item.get("severity", "info")), bool(item.get("details")))
            for item in raw.get("alerts") or []
            if isinstance(item, Mapping)
        )
        # Only hook types a tick records: anyone who may write the status could write others.
        hooks = tuple(str(hook) for hook in raw.get("hooks") or [] if hook in HOOK_TYPES)
        return cls(str(raw["step"]), events, hooks, alerts)


@dataclass(frozen=True)
class Unconfirmed:
    """A revision the Deployment webhook recorded before the update was stored, and how the status
    was before: another webhook may still refuse the update, and then the tick puts it back."""

    revision: str
    phase: Phase | None
    applied: str

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "phase": self.phase.value if self.phase else "", "applied": self.applied}

    @classmethod
    def from_dict(cls, raw: Any) -> Unconfirmed | None:
        if not isinstance(raw, Mapping) or not raw.get("revision"):
            return None
        try:
            phase: Phase | None = Phase(raw["phase"]) if raw.get("phase") else None
        except ValueError:
            phase = None
        return cls(str(raw["revision"]), phase, str(raw.get("applied") or ""))


@dataclass(frozen=True)
class MetricCheck:
    """One metric's part in an analysis step: for the tick's answer, a replay's timeline and the
    status (the last step's checks, for ``serin status`` and the page)."""

    name: str
    # The value judged (a comparison: the canary's median); None when there was none.
    value: float | None
    # None: the backend could not be asked, the step holds.
    passed: bool | None
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "passed": self.passed, "message": self.message}

    def to_status(self) -> dict[str, object]:
        """As stored: JSON has no NaN, and a result in words reads better in ``kubectl get -o yaml``."""
        result = "Unavailable" if self.passed is None else "Passed" if self.passed else "Failed"
        stored: dict[str, object] = {"name": self.name, "result": result, "message": self.message}
        if self.value is not None and math.isfinite(self.value):
            stored["value"] = self.value
        return stored

    @classmethod
    def from_status(cls, raw: Any) -> MetricCheck | None:
        if not isinstance(raw, Mapping) or not raw.get("name"):
            return None
        value = raw.get("value")
        result = raw.get("result")
        return cls(
            name=str(raw["name"]),
            value=float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
            passed=None if result == "Unavailable" else result == "Passed",
            message=str(raw.get("message") or ""),
        )


@dataclass(frozen=True)
class GroupProgress:
    """Where this member is in its release group's current release (``spec.group``)."""

    name: str
    # The group's release this run belongs to: a fingerprint of every member's revision. A member
    # with a new revision makes a new one, and every member's run of the old one restarts.
    release: str = ""
    # When this member's run of the release started (a member that failed earlier than this did
    # not fail this run).
    since: datetime.datetime | None = None
    # Analysis steps this member passed in the run: a member takes its next step only once no
    # other member is behind it.
    steps: int = 0
    # The analysis passed: the member waits for every other member's before it is promoted.
    analysed: bool = False
    # Where the group is, as this member's last step saw it.
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "release": self.release, "steps": self.steps}
        if self.since is not None:
            data["since"] = format_time(self.since, precise=True)
        if self.analysed:
            data["analysed"] = True
        if self.message:
            data["message"] = self.message
        return data

    @classmethod
    def from_dict(cls, raw: Any) -> GroupProgress | None:
        if not isinstance(raw, Mapping) or not raw.get("name"):
            return None
        steps = raw.get("steps")
        return cls(
            name=str(raw["name"]),
            release=str(raw.get("release") or ""),
            since=parse_time(raw.get("since")),
            steps=steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else 0,
            analysed=raw.get("analysed") is True,
            message=str(raw.get("message") or ""),
        )

    def replace(self, **changes: Any) -> GroupProgress:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class CanaryStatus:
    phase: Phase | None = None
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    last_applied_spec: str = ""
    last_promoted_spec: str = ""
    tracked_configs: Mapping[str, str] = field(default_factory=dict)
    last_transition_time: datetime.datetime | None = None
    # When the last analysis step was due (not when it ran, so late or early ticks do not make the
    # schedule drift): the next one is due one interval later. None: due at once.
    last_analysis_time: datetime.datetime | None = None
    observed_generation: int = 0
    condition: Condition | None = None
    # Ready, and Reconciling or Stalled while true: kstatus's conditions, which follow the phase.
    health: tuple[Condition, ...] = ()
    # The metrics of the last analysis step of the current release, as judged then.
    checks: tuple[MetricCheck, ...] = ()
    # Bookkeeping under ``status.serin``. Since when the step has been waiting for a workload to be
    # ready (the progress deadline runs from there), and how many steps in a row could not be
    # analysed because a backend was unavailable (holding is bounded).
    waiting_since: datetime.datetime | None = None
    unavailable_steps: int = 0
    # The primary's metadata.generation when it was last found running the promoted revision.
    primary_generation: int = 0
    # A tick that asks hooks first claims the step until then; others leave the Canary alone.
    claimed_until: datetime.datetime | None = None
    # The id of the step claimed, kept with its claim: a tick that takes over a step whose claimer
    # died asks its hooks with the same idempotency keys. Empty once the step is stored.
    claimed_step: str = ""
    pending: Pending | None = None
    unconfirmed: Unconfirmed | None = None
    # When the canary's traffic last changed (its weight, the mirror) or its analysis started, its
    # pods ready: a metric is judged only over a window that starts after it. None: no constraint.
    traffic_since: datetime.datetime | None = None
    # The member's place in its release group, for a Canary with ``spec.group``.
    group: GroupProgress | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> CanaryStatus:
        raw = raw or {}
        try:
            phase: Phase | None = Phase(raw["phase"]) if raw.get("phase") else None
        except ValueError:
            phase = None
        condition = None
        health: list[Condition] = []
        for item in raw.get("conditions") or []:
            if isinstance(item, Mapping) and item.get("type") == "Promoted":
                condition = Condition.from_dict(item)
            elif isinstance(item, Mapping) and item.get("type") in HEALTH_CONDITIONS:
                health.append(Condition.from_dict(item))
        if condition is not None and phase is not None and not health:
            # Stored before Serin wrote kstatus's conditions: they are what the phase says.
            since = condition.last_transition_time
            health = [
                Condition(value, phase.value, condition.message, since, since, kind)
                for kind, value in health_condition_statuses(phase).items()
            ]
        tracked = raw.get("trackedConfigs") or {}
        own: Mapping[str, Any] = raw["serin"] if isinstance(raw.get("serin"), Mapping) else {}
        return cls(
            phase=phase,
            canary_weight=int(raw.get("canaryWeight") or 0),
            failed_checks=int(raw.get("failedChecks") or 0),
            iterations=int(raw.get("iterations") or 0),
            last_applied_spec=str(raw.get("lastAppliedSpec") or ""),
            last_promoted_spec=str(raw.get("lastPromotedSpec") or ""),
            tracked_configs={str(k): str(v) for k, v in tracked.items()} if isinstance(tracked, Mapping) else {},
            last_transition_time=parse_time(raw.get("lastTransitionTime")),
            last_analysis_time=parse_time(raw.get("lastAnalysisTime")),
            observed_generation=int(raw.get("observedGeneration") or 0),
            condition=condition,
            health=tuple(sorted(health, key=lambda c: HEALTH_CONDITIONS.index(c.type))),
            checks=tuple(check for check in map(MetricCheck.from_status, raw.get("checks") or ()) if check is not None),
            waiting_since=parse_time(own.get("waitingSince")),
            unavailable_steps=int(own.get("unavailableSteps") or 0),
            primary_generation=int(own.get("primaryGeneration") or 0),
            claimed_until=parse_time(own.get("claimedUntil")),
            claimed_step=str(own.get("claimedStep") or ""),
            pending=Pending.from_dict(own.get("pending")),
            unconfirmed=Unconfirmed.from_dict(own.get("unconfirmed")),
            traffic_since=parse_time(own.get("trafficSince")),
            group=GroupProgress.from_dict(raw.get("group")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The whole status, as stored: a field absent here is absent from the stored status."""
        result: dict[str, Any] = {
            "canaryWeight": self.canary_weight,
            "failedChecks": self.failed_checks,
            "iterations": self.iterations,
            "lastAppliedSpec": self.last_applied_spec,
            "lastPromotedSpec": self.last_promoted_spec,
            "trackedConfigs": dict(self.tracked_configs),
            "observedGeneration": self.observed_generation,
        }
        if self.phase is not None:
            result["phase"] = self.phase.value
        if self.last_transition_time is not None:
            result["lastTransitionTime"] = format_time(self.last_transition_time)
        if self.last_analysis_time is not None:
            # To the millisecond: forced steps are told apart by less than a second.
            result["lastAnalysisTime"] = format_time(self.last_analysis_time, precise=True)
        if self.condition is not None:
            generation = self.observed_generation
            result["conditions"] = [self.condition.to_dict()] + [c.to_dict(generation) for c in self.health]
        if self.checks:
            result["checks"] = [check.to_status() for check in self.checks]
        if self.group is not None:
            result["group"] = self.group.to_dict()
        own: dict[str, Any] = {}
        if self.waiting_since is not None:
            own["waitingSince"] = format_time(self.waiting_since)
        if self.unavailable_steps:
            own["unavailableSteps"] = self.unavailable_steps
        if self.primary_generation:
            own["primaryGeneration"] = self.primary_generation
        if self.claimed_until is not None:
            own["claimedUntil"] = format_time(self.claimed_until)
        if self.claimed_step:
            own["claimedStep"] = self.claimed_step
        if self.pending is not None:
            own["pending"] = self.pending.to_dict()
        if self.unconfirmed is not None:
            own["unconfirmed"] = self.unconfirmed.to_dict()
        if self.traffic_since is not None:
            own["trafficSince"] = format_time(self.traffic_since, precise=True)
        if own:
            result["serin"] = own
        return result

    def replace(self, **changes: Any) -> CanaryStatus:
        return dataclasses.replace(self, **changes)

    def with_phase(
        self, phase: Phase, now: datetime.datetime, message: str = "", kind: str = "Deployment"
    ) -> CanaryStatus:
        """Move to ``phase``; the transition time and the conditions follow it.

        The conditions' message is Flagger's for the phase (naming the target's ``kind``) unless
        ``message`` says more. As in Flagger, a condition is left alone when neither its status nor
        its reason nor its message changes.
        """
        stamp = format_time(now)
        message = message or condition_message(phase, kind)
        previous = self.condition or Condition("", "", "", stamp, stamp)
        condition = previous.moved_to(promoted_condition_status(phase), phase.value, message, stamp)
        health = self._moved_health(health_condition_statuses(phase), phase.value, message, stamp)
        return dataclasses.replace(
            self,
            phase=phase,
            last_transition_time=now if phase is not self.phase else self.last_transition_time,
            condition=condition,
            health=health,
        )

    def reconciling(self, reason: str, message: str, now: datetime.datetime) -> CanaryStatus:
        """Ready False and Reconciling True with the phase unchanged: a new revision seen by the
        Deployment webhook, for the next tick to start. Whoever waits on Ready does not take the
        previous release's for this one's."""
        health = self._moved_health({"Ready": "False", "Reconciling": "True"}, reason, message, format_time(now))
        return dataclasses.replace(self, health=health)

    def with_health_of_phase(self, now: datetime.datetime) -> CanaryStatus:
        """The kstatus conditions back in line with the phase, if anything left them otherwise."""
        if self.phase is None or self.condition is None:
            return self
        if {c.type: c.status for c in self.health} == health_condition_statuses(self.phase):
            return self
        statuses = health_condition_statuses(self.phase)
        health = self._moved_health(statuses, self.phase.value, self.condition.message, format_time(now))
        return dataclasses.replace(self, health=health)

    def _moved_health(
        self, statuses: Mapping[str, str], reason: str, message: str, stamp: str
    ) -> tuple[Condition, ...]:
        """The kstatus conditions ``statuses`` names, each moved from how it was (absent ones go)."""
        kept = {c.type: c for c in self.health}
        return tuple(
            kept.get(kind, Condition("", "", "", stamp, stamp, kind)).moved_to(value, reason, message, stamp)
            for kind, value in statuses.items()
        )
