"""One namespace's slow Canaries cannot take every thread of a tick: each namespace steps in a
fair share of lanes, and the pool takes the namespaces in turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from serin.reconcile import Reconciler, StepReport, namespace_lanes

from .test_reconcile import NOW, CountingStore, canary


class Tenants(Reconciler):
    """A tick whose steps do only what ``behave`` says (with the step's report)."""

    def __init__(self, canaries: list[dict[str, Any]], concurrency: int, behave: Callable[[StepReport], None]) -> None:
        super().__init__(
            store=CountingStore(canaries),  # type: ignore[arg-type]
            router_for=lambda provider: None,  # type: ignore[arg-type, return-value]
            metrics_for=lambda config: None,  # type: ignore[arg-type, return-value]
            hooks=None,  # type: ignore[arg-type]
            default_metrics_server="http://prometheus",
            clock=lambda: NOW,
            concurrency=concurrency,
        )
        self.behave = behave

    def step(
        self,
        raw: Any,
        others: Any,
        report: StepReport,
        force: bool = False,
        dry_run: bool = False,
        window: float | None = None,
        groups: Any = None,
    ) -> None:
        self.behave(report)


def test_a_namespace_of_slow_canaries_leaves_threads_to_the_others() -> None:
    """Steps of namespace ``slow`` wait until a step of another namespace has been taken."""
    other_stepped = threading.Event()

    def behave(report: StepReport) -> None:
        if report.namespace == "slow":
            report.summary = "waited" if other_stepped.wait(timeout=5) else "held every thread"
        else:
            other_stepped.set()
            report.summary = "stepped"

    canaries = [*(canary("slow", f"app-{index}") for index in range(6)), canary("fast", "app")]
    reports = Tenants(canaries, 4, behave).tick()
    assert [(report.namespace, report.summary) for report in reports] == [
        *((("slow", "waited"),) * 6),
        ("fast", "stepped"),
    ]


@pytest.mark.parametrize(
    ("namespaces", "concurrency", "lanes"),
    [
        (["a", "a", "a", "b"], 4, [[0, 2], [3], [1]]),
        (["a", "a", "a", "a", "a", "a", "b"], 4, [[0, 2, 4], [6], [1, 3, 5]]),
        (["a", "a", "a", "a"], 4, [[0], [1], [2], [3]]),
        (["a", "b", "c", "d", "e", "a"], 4, [[0, 5], [1], [2], [3], [4]]),
        (["a", "a", "b", "b"], 1, [[0, 1], [2, 3]]),
        ([], 4, []),
    ],
)
def test_the_lanes_of_a_tick(namespaces: list[str], concurrency: int, lanes: list[list[int]]) -> None:
    """Each namespace gets at most its share of the threads (the concurrency over the namespaces,
    at least one), its Canaries spread over its lanes; the lanes alternate between namespaces."""
    assert namespace_lanes(namespaces, concurrency) == lanes


def test_each_report_says_how_long_its_own_step_took() -> None:
    def behave(report: StepReport) -> None:
        if report.namespace == "slow":
            time.sleep(0.3)

    slow, fast = Tenants([canary("slow", "app"), canary("fast", "app")], 2, behave).tick()
    assert 0.3 <= slow.duration_seconds < 0.6
    assert fast.duration_seconds < 0.3
    assert slow.to_dict()["durationSeconds"] == slow.duration_seconds
