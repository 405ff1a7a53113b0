"""Longest tests first, so that parallel workers finish together.

pytest-xdist's ``loadgroup`` hands a worker the next unit of work (a test, or a whole
``xdist_group``) whenever it has fewer than two queued. In collection order a two-minute test may
be handed out last and run alone while the other workers idle; started first, it runs beside
the short ones. Each run records how long every test took in pytest's cache
(``.pytest_cache``), and the next run orders the units by it, longest first. A test never timed
(new) counts as longest, so it runs early too. A fresh clone (CI) has no cache: it orders by
``tests/durations.json``, the integration tests' seconds in a run on the 2-core machine
(``python -m tests.scheduling`` writes it again from the cache).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _pytest.nodeid import NodeId

DURATIONS_KEY = "serin/durations"
RECORDED = Path(__file__).with_name("durations.json")

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
    _order_by_duration(config, items)
    _name_groups(config, items)


def _name_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each grouped test the node id ``ID@GROUP`` that xdist's loadgroup reads its group from.

    pytest-xdist 3.8 writes it into the attribute pytest 8 kept a node's id in; pytest 9 keeps the
    id elsewhere, so without this every ``xdist_group`` is ignored and each of its tests sets up the
    group's fixtures (an image, a data plane, a second install) on a worker of its own.
    """
    if not getattr(config.option, "loadgroup", False):
        return  # the controller, or a run without loadgroup
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker is None or _has_group_suffix(item.nodeid):
            continue
        name = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
        item._id = NodeId.parse(f"{item.nodeid}@{name}")


def _has_group_suffix(nodeid: str) -> bool:
    # As xdist splits it: an "@" after the parameters' "]" (a parameter may hold an "@" itself).
    return nodeid.rfind("@") > nodeid.rfind("]")


def _without_group(nodeid: str) -> str:
    return nodeid.rsplit("@", 1)[0] if _has_group_suffix(nodeid) else nodeid


def _order_by_duration(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = _cache(config)
    if cache is None:
        return
    known: dict[str, float] = cache.get(DURATIONS_KEY, {}) or _recorded()
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
    nodeid = _without_group(report.nodeid)
    _measured[nodeid] = _measured.get(nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = _cache(session.config)
    if cache is None or hasattr(session.config, "workerinput") or not _measured:
        return
    known: dict[str, float] = cache.get(DURATIONS_KEY, {})
    cache.set(DURATIONS_KEY, {**known, **{nodeid: round(seconds, 2) for nodeid, seconds in _measured.items()}})


def _recorded() -> dict[str, float]:
    try:
        recorded: dict[str, float] = json.loads(RECORDED.read_text())
    except (OSError, ValueError):
        return {}
    return recorded


if __name__ == "__main__":
    # The integration tests' seconds from this clone's cache, for the first run of the next one.
    cached = json.loads((Path(".pytest_cache/v") / DURATIONS_KEY).read_text())
    integration = {
        nodeid: seconds for nodeid, seconds in sorted(cached.items()) if nodeid.startswith("tests/integration/")
    }
    RECORDED.write_text(json.dumps(integration, indent=0) + "\n")
