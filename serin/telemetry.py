"""Serin's own metrics, served at /metrics (names follow Flagger's where users know them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serin.status import Phase

REGISTRY = CollectorRegistry()

CANARY_WEIGHT = Gauge(
    "serin_canary_weight", "Traffic percentage per workload of a Canary", ["workload", "namespace"], registry=REGISTRY
)
CANARY_STATUS = Gauge(
    "serin_canary_status",
    "Canary state: 0 running, 1 successful, 2 failed",
    ["name", "namespace"],
    registry=REGISTRY,
)
CANARY_TOTAL = Gauge("serin_canary_total", "Canaries per namespace", ["namespace"], registry=REGISTRY)
CANARY_RESULTS = Counter(
    "serin_canary_results", "Finished releases by outcome", ["name", "namespace", "outcome"], registry=REGISTRY
)
ANALYSIS_DURATION = Histogram(
    "serin_canary_step_duration_seconds",
    "Time one analysis step of one Canary took (including its queries and hooks)",
    ["namespace"],
    registry=REGISTRY,
)
TICK_DURATION = Histogram("serin_tick_duration_seconds", "Time one tick took", registry=REGISTRY)
TICK_ERRORS = Counter("serin_tick_errors", "Canary steps that ended in an error", ["namespace"], registry=REGISTRY)

_STATUS_CODES = {Phase.SUCCEEDED: 1, Phase.INITIALIZED: 1, Phase.FAILED: 2}


def record_canary(name: str, namespace: str, target: str, phase: Phase | None, canary_weight: int) -> None:
    CANARY_WEIGHT.labels(f"{target}-primary", namespace).set(100 - canary_weight)
    CANARY_WEIGHT.labels(target, namespace).set(canary_weight)
    CANARY_STATUS.labels(name, namespace).set(_STATUS_CODES.get(phase, 0) if phase else 0)


def record_counts(per_namespace: dict[str, int]) -> None:
    for namespace, count in per_namespace.items():
        CANARY_TOTAL.labels(namespace).set(count)
