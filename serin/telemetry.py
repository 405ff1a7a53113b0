"""Serin's own metrics, served at /metrics (names follow Flagger's where users know them).

Two kinds, kept apart so that both are right under gunicorn's several worker processes:

* What happens in a process (ticks, their duration and errors, finished releases) is counted by
  prometheus-client, in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn's
  config sets it), so a scrape sees the sum over every worker, whichever one it reaches.
* What each Canary is like now (its weight, its status, how many there are) is read from the
  Canaries themselves: one list request, at most every ``GAUGE_SECONDS`` per process however many
  scrape (a scrape after that reads them anew; those in between share its answer), and a deleted
  Canary's series are gone with it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serin.decide import desired_split
from serin.kube.store import KubeError, KubeStore
from serin.model import InvalidCanary, parse_canary
from serin.scope import WHOLE_CLUSTER, Scope
from serin.status import CanaryStatus, Phase

REGISTRY = CollectorRegistry()

CANARY_RESULTS = Counter(
    "serin_canary_results", "Finished releases by outcome", ["namespace", "outcome"], registry=REGISTRY
)
ANALYSIS_DURATION = Histogram(
    "serin_canary_step_duration_seconds",
    "Time one analysis step of one Canary took (including its queries and hooks)",
    ["namespace"],
    registry=REGISTRY,
)
TICK_DURATION = Histogram("serin_tick_duration_seconds", "Time one tick took", registry=REGISTRY)
TICK_ERRORS = Counter("serin_tick_errors", "Canary steps that ended in an error", ["namespace"], registry=REGISTRY)
ALERTS_FAILED = Counter(
    "serin_alerts_failed",
    "Alerts that could not be sent, by alert provider type",
    ["namespace", "type"],
    registry=REGISTRY,
)

_STATUS_CODES = {Phase.SUCCEEDED: 1, Phase.INITIALIZED: 1, Phase.FAILED: 2}
# How long one list of the Canaries answers scrapes: a scraper, or many, cannot make Serin list
# every Canary of the cluster more often than this.
GAUGE_SECONDS = 5.0


class CanaryCollector(Collector):
    """The gauges of every Canary, read from the API server at most every ``GAUGE_SECONDS``."""

    def __init__(
        self,
        store: KubeStore,
        default_provider: str,
        clock: Callable[[], float] = time.monotonic,
        scope: Scope = WHOLE_CLUSTER,
    ) -> None:
        self.store = store
        self.default_provider = default_provider
        self.clock = clock
        # The namespaces served: a namespaced install lists each, never the whole cluster.
        self.scope = scope
        self._lock = threading.Lock()
        self._read: tuple[float, list[Any]] | None = None

    def collect(self) -> Iterator[Any]:
        # One scrape at a time reads; the ones that wait meanwhile get what it read.
        with self._lock:
            if self._read is None or self.clock() - self._read[0] >= GAUGE_SECONDS:
                families = list(self._families())
                if not families:
                    return  # the API server did not answer: no gauge rather than a wrong one
                self._read = (self.clock(), families)
            read = self._read[1]
        yield from read

    def _families(self) -> Iterator[Any]:
        weight = GaugeMetricFamily(
            "serin_canary_weight", "Traffic percentage per workload of a Canary", labels=["workload", "namespace"]
        )
        status = GaugeMetricFamily(
            "serin_canary_status", "Canary state: 0 running, 1 successful, 2 failed", labels=["name", "namespace"]
        )
        total = GaugeMetricFamily("serin_canary_total", "Canaries per namespace", labels=["namespace"])
        try:
            canaries = [raw for where in self.scope.lists(None) for raw in self.store.list_canaries(where)]
        except KubeError:
            return  # the API server did not answer: no gauge rather than a wrong one
        per_namespace: Tally[str] = Tally()
        for raw in canaries:
            try:
                canary = parse_canary(raw, self.default_provider)
            except InvalidCanary:
                continue
            per_namespace[canary.namespace] += 1
            current = CanaryStatus.from_dict(raw.get("status"))
            primary_weight, canary_weight = desired_split(canary, current)
            weight.add_metric([canary.primary_name, canary.namespace], primary_weight)
            weight.add_metric([canary.target_ref.name, canary.namespace], canary_weight)
            status.add_metric(
                [canary.name, canary.namespace], _STATUS_CODES.get(current.phase, 0) if current.phase else 0
            )
        for namespace, count in sorted(per_namespace.items()):
            total.add_metric([namespace], count)
        yield from (weight, status, total)


def exposition(canaries: CanaryCollector) -> bytes:
    """Every metric, in Prometheus's text format."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registered())
    registry.register(canaries)
    return generate_latest(registry)


class _Registered(Collector):
    """This process's own counters, when there is only one process."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()
