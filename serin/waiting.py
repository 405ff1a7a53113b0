"""``serin wait``: watch a Canary until the release of its current revision is over.

For CI pipelines: a line each time the release takes a step, and an exit status a pipeline can act
on. Only what Serin writes is read (the phase, the generation observed, the Reconciling condition),
never the target's revision.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from serin.kube.store import KubeError
from serin.model import parse_duration
from serin.ports import TemporaryError
from serin.status import CanaryStatus, MetricCheck, Phase, condition_message, format_time

EXIT_FAILED = 1
EXIT_TIMED_OUT = 2


class WaitRefused(Exception):
    """The API server refused to show the Canary (no permission): waiting longer will not help."""


@dataclass(frozen=True)
class Duration:
    """A Go-style duration (``90s``, ``10m``, ``1h30m``) as given, and in seconds."""

    text: str
    seconds: float

    def __str__(self) -> str:
        return self.text


def duration(text: str) -> Duration:
    """argparse's type for durations: a bad one is a usage error that says what is expected."""
    try:
        return Duration(text, parse_duration(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m or 1h30m") from None


def positive_duration(text: str) -> Duration:
    found = duration(text)
    if found.seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not longer than zero")
    return found


class Clock:
    """The time as ``wait`` reads it: the deadline on a monotonic clock (a wall clock set back or
    forward must not move it), the progress lines stamped with the wall clock. Tests swap it."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def check_words(check: MetricCheck) -> str:
    value = "" if check.value is None else f" {check.value:.4g}"
    result = "unavailable" if check.passed is None else "passed" if check.passed else "failed"
    return f"{check.name}{value} {result}"


def generation_behind(canary: Mapping[str, Any]) -> int | None:
    """The Canary's generation when Serin has not acted on it yet (its status is of an older spec)."""
    generation = int((canary.get("metadata") or {}).get("generation") or 0)
    observed = CanaryStatus.from_dict(canary.get("status")).observed_generation
    return generation if observed < generation else None


def reconciling(status: CanaryStatus) -> bool:
    """A new revision is on its way though the phase does not say so yet (a gate to ask first)."""
    return any(c.type == "Reconciling" and c.status == "True" for c in status.health)


def wait_progress(canary: Mapping[str, Any]) -> str:
    """Where a Canary's release is, on one line (without the time and the name)."""
    status = CanaryStatus.from_dict(canary.get("status"))
    if status.phase is None:
        return "no status yet"
    notes = ["suspended"] if (canary.get("spec") or {}).get("suspend") else []
    behind = generation_behind(canary)
    if behind is not None:
        notes.append(f"generation {behind} not observed yet")
    if status.phase in (Phase.SUCCEEDED, Phase.INITIALIZED, Phase.FAILED) and reconciling(status):
        notes.append("new revision, not started yet")
    line = status.phase.value + "".join(f" ({note})" for note in notes)
    line += f" weight {status.canary_weight} iteration {status.iterations} failed checks {status.failed_checks}"
    if status.checks:
        line += ": " + ", ".join(map(check_words, status.checks))
    return line


def wait_verdict(canary: Mapping[str, Any]) -> tuple[int, str] | None:
    """The exit status and the last line once the release of the current revision is over, else None.

    Only what Serin writes is read: the phase, ``status.observedGeneration`` to know that the phase
    is about the current spec, and the Reconciling condition, which the Deployment webhook sets as
    soon as a new revision is stored. The target's revision is not compared with the status's.
    """
    status = CanaryStatus.from_dict(canary.get("status"))
    if status.phase not in (Phase.SUCCEEDED, Phase.INITIALIZED, Phase.FAILED) or generation_behind(canary):
        return None
    if reconciling(status):
        return None
    message = status.condition.message if status.condition else condition_message(status.phase)
    if status.phase is Phase.FAILED:
        revision = f", revision {status.last_applied_spec} rolled back" if status.last_applied_spec else ""
        unpassed = [check for check in status.checks if check.passed is not True]
        # The checks of the rollback's step: why the analysis gave up (none for an abort).
        why = "; ".join(f"{check.name}: {check.message or check_words(check)}" for check in unpassed)
        plural = "s" if len(unpassed) > 1 else ""
        return EXIT_FAILED, f"failed{revision}: {message}" + (f" Last failed check{plural}: {why}" if why else "")
    done = "succeeded" if status.phase is Phase.SUCCEEDED else "initialized"
    where = "promoted" if status.phase is Phase.SUCCEEDED else "in place"
    revision = f", revision {status.last_promoted_spec} {where}" if status.last_promoted_spec else ""
    return 0, f"{done}{revision}: {message}"


def wait_for(
    read: Callable[[], Mapping[str, Any] | None],
    who: str,
    timeout: Duration,
    interval: float,
    clock: Clock,
    say: Callable[[str], None],
) -> int:
    """Read the Canary with ``read`` every ``interval`` seconds until its release is over (its exit
    status) or ``timeout`` (``EXIT_TIMED_OUT``); ``say`` a line each time where it is changes."""
    deadline = clock.monotonic() + timeout.seconds
    said = ""  # what was last said, so that a line is printed only when something changed
    where = ""  # where it was at the last read, for the timeout's line
    while True:
        try:
            canary = read()
        except KubeError as error:
            if not isinstance(error, TemporaryError):
                raise WaitRefused(f"cannot wait for {who}: the API server refused: {error}") from None
            where = f"cannot be read: {error}"
            # Once per outage: the message itself may differ at each try (addresses of objects).
            if said != "unreadable":
                said = "unreadable"
                print(
                    f"serin: {format_time(clock.now())} cannot read canary {who}, retrying until the timeout: {error}",
                    file=sys.stderr,
                    flush=True,
                )
        else:
            # Not there yet: it may be applied a moment after this started.
            where = "not found" if canary is None else wait_progress(canary)
            if where != said:
                said = where
                say(f"{format_time(clock.now())} {who} {where}")
            verdict = wait_verdict(canary) if canary is not None else None
            if verdict is not None:
                code, line = verdict
                say(f"{format_time(clock.now())} {who} {line}")
                return code
        left = deadline - clock.monotonic()
        if left <= 0:
            say(f"{format_time(clock.now())} {who} timed out after {timeout}: {where}")
            return EXIT_TIMED_OUT
        # The last read falls on the deadline, not up to an interval before it.
        clock.sleep(min(interval, left))
