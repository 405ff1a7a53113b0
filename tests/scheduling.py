"""Longest tests first, so that parallel workers finish together.

pytest-xdist's ``loadgroup`` hands a worker the next unit of work (a test, or a whole
``xdist_group``) whenever it has fewer than two queued. In collection order a two-minute test may
be handed out last and run alone while the other workers idle; started first, it runs beside
the short ones. Each run records how long every test took in pytest's cache
(``.pytest_cache``), and the next run orders the units by it, longest first. A test never timed
(new, or a fresh clone) counts as longest, so it runs early too. Without a cache the order is
collection order: correct, only less balanced.
"""

from __future__ import annotations

import math

import pytest

DURATIONS_KEY = "serin/durations"

_measured: dict[str, float] = {}


def _unit_of(item: pytest.Item) -> str:
    """What xdist's loadgroup schedules together: the group the test names, else the test alone."""
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return f"group:{marker.args[0] if marker.args else marker.kwargs.get('name', 'default')}"
    return item.nodeid


def _cache(config: pytest.Config) -> pytest.Cache | None:
    return getattr(config, "cache", None)  # None with -p no:cacheprovider


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = _cache(config)
    if cache is None:
        return
    known: dict[str, float] = cache.get(DURATIONS_KEY, {})
    if not known:
        return
    cost: dict[str, float] = {}
    for item in items:
        unit = _unit_of(item)
        cost[unit] = cost.get(unit, 0.0) + known.get(item.nodeid, math.inf)
    # A stable sort: every worker collects the same order, which xdist requires.
    items.sort(key=lambda item: -cost[_unit_of(item)])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Under xdist the controller receives every worker's reports; it alone writes the cache.
    _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = _cache(session.config)
    if cache is None or hasattr(session.config, "workerinput") or not _measured:
        return
    known: dict[str, float] = cache.get(DURATIONS_KEY, {})
    cache.set(DURATIONS_KEY, {**known, **{nodeid: round(seconds, 2) for nodeid, seconds in _measured.items()}})
