"""A release's timeline from the Canary's Events, for people: when it started and its weight over
time. Pure: the Events are passed in (as the API server lists them), no I/O.

The Events are the record every installation has (no Prometheus scraping Serin needed). They are
counted rather than repeated (a message seen again moves its ``lastTimestamp``), so each weight of
the current release appears once, at the time it was last set.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from serin.status import parse_time

# Messages that set the canary's weight, and the weight they set (None: the weight is the group).
_WEIGHTS: tuple[tuple[re.Pattern[str], int | None], ...] = (
    (re.compile(r"New revision detected! "), 0),
    (re.compile(r"Retry requested! "), 0),
    (re.compile(r"Advance \S+ canary weight (\d+)$"), None),
    (re.compile(r"(Stop traffic mirroring and route|Routing) all traffic to canary"), 100),
    (re.compile(r"Routing all traffic to primary"), 0),
    (re.compile(r"Promotion completed! "), 0),
    (re.compile(r"Canary failed! "), 0),
)
# Where a release begins.
_STARTS = re.compile(r"(New revision detected|Retry requested)! ")
# The window a page shows when no release has started (or it started long ago).
DEFAULT_WINDOW = datetime.timedelta(minutes=30)
MAX_WINDOW = datetime.timedelta(hours=6)


def age(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``, as kubectl's AGE column; ``-`` for no time."""
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def event_time(event: Mapping[str, Any]) -> datetime.datetime | None:
    return parse_time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"))


def release_start(events: Sequence[Mapping[str, Any]], now: datetime.datetime) -> datetime.datetime:
    """When the latest release began (its revision detected or retried), within ``MAX_WINDOW`` of
    now; ``DEFAULT_WINDOW`` ago when none did."""
    starts = [
        moment
        for event in events
        if _STARTS.match(str(event.get("message", ""))) and (moment := event_time(event)) is not None
    ]
    start = max(starts) if starts else now - DEFAULT_WINDOW
    return max(start, now - MAX_WINDOW)


def weight_points(events: Sequence[Mapping[str, Any]], start: datetime.datetime) -> list[tuple[float, int]]:
    """(seconds since the epoch, canary weight) at each Event since ``start`` that set it, in order."""
    points = []
    for event in events:
        moment = event_time(event)
        if moment is None or moment < start:
            continue
        message = str(event.get("message", ""))
        for pattern, weight in _WEIGHTS:
            found = pattern.match(message)
            if found is not None:
                points.append((moment.timestamp(), int(found.group(1)) if weight is None else weight))
                break
    return sorted(points)
