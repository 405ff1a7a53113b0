"""A Canary's status: everything the stateless tick needs between two calls.

Frozen, with copy-returning updates, and a lossless round trip to and from the dict stored in the
``status`` subresource. Pure: no clock (times are passed in), no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Condition:
    """The one condition Flagger users know: ``Promoted``, with the phase as its reason."""

    status: str
    reason: str
    message: str
    last_transition_time: str
    last_update_time: str

    def to_dict(self) -> dict[str, str]:
        return {
            "type": "Promoted",
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "lastUpdateTime": self.last_update_time,
        }


def promoted_condition_status(phase: Phase) -> str:
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED):
        return "True"
    if phase is Phase.FAILED:
        return "False"
    return "Unknown"


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
    # When the last analysis step ran: the tick is due again one interval later.
    last_analysis_time: datetime.datetime | None = None
    observed_generation: int = 0
    condition: Condition | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> CanaryStatus:
        raw = raw or {}
        try:
            phase: Phase | None = Phase(raw["phase"]) if raw.get("phase") else None
        except ValueError:
            phase = None
        condition = None
        for item in raw.get("conditions") or []:
            if isinstance(item, Mapping) and item.get("type") == "Promoted":
                condition = Condition(
                    status=str(item.get("status", "Unknown")),
                    reason=str(item.get("reason", "")),
                    message=str(item.get("message", "")),
                    last_transition_time=str(item.get("lastTransitionTime", "")),
                    last_update_time=str(item.get("lastUpdateTime", "")),
                )
        tracked = raw.get("trackedConfigs") or {}
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
        )

    def to_dict(self) -> dict[str, Any]:
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
            result["lastAnalysisTime"] = format_time(self.last_analysis_time)
        if self.condition is not None:
            result["conditions"] = [self.condition.to_dict()]
        return result

    def replace(self, **changes: Any) -> CanaryStatus:
        return dataclasses.replace(self, **changes)

    def with_phase(self, phase: Phase, now: datetime.datetime, message: str = "") -> CanaryStatus:
        """Move to ``phase``; the transition time and the Promoted condition follow it."""
        stamp = format_time(now)
        status = promoted_condition_status(phase)
        previous = self.condition
        transitioned = previous is None or previous.status != status
        condition = Condition(
            status=status,
            reason=phase.value,
            message=message or (previous.message if previous and not transitioned else ""),
            last_transition_time=stamp if transitioned or previous is None else previous.last_transition_time,
            last_update_time=stamp,
        )
        return dataclasses.replace(
            self,
            phase=phase,
            last_transition_time=now if phase is not self.phase else self.last_transition_time,
            condition=condition,
        )
