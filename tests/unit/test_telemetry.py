"""/metrics's per-Canary gauges: one list of the Canaries answers every scrape for a while."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from serin.kube.store import KubeError
from serin.scope import Scope
from serin.telemetry import GAUGE_SECONDS, CanaryCollector, exposition

from .test_reconcile import canary


class Listing:
    """Lists the Canaries given, counting the lists; fails while ``down``."""

    def __init__(self, canaries: list[dict[str, Any]]) -> None:
        self.canaries = canaries
        self.lists = 0
        self.listed: list[str | None] = []
        self.down = False

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.lists += 1
        self.listed.append(namespace)
        if self.down:
            raise KubeError("connection refused")
        return [raw for raw in self.canaries if namespace in (None, raw["metadata"]["namespace"])]


def test_scrapes_share_one_list_of_the_canaries_for_a_while() -> None:
    store = Listing([canary("shop", "web")])
    now = [0.0]
    gauges = CanaryCollector(store, "istio", clock=lambda: now[0])  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda _: exposition(gauges), range(32)))
    assert store.lists == 1
    assert all(b'serin_canary_status{name="web",namespace="shop"} 1.0' in page for page in pages)
    now[0] = GAUGE_SECONDS
    store.canaries = []
    assert b'name="web"' not in exposition(gauges)
    assert store.lists == 2


def test_an_api_server_that_does_not_answer_gives_no_gauge_and_is_asked_again() -> None:
    store = Listing([canary("shop", "web")])
    store.down = True
    gauges = CanaryCollector(store, "istio", clock=lambda: 0.0)  # type: ignore[arg-type]
    assert b"serin_canary_status" not in exposition(gauges)
    store.down = False
    assert b'serin_canary_status{name="web",namespace="shop"}' in exposition(gauges)
    assert store.lists == 2


def test_a_namespaced_install_gauges_only_the_canaries_of_its_namespaces() -> None:
    store = Listing([canary("shop", "web"), canary("ops", "api"), canary("elsewhere", "db")])
    gauges = CanaryCollector(store, "istio", clock=lambda: 0.0, scope=Scope(("shop", "ops")))  # type: ignore[arg-type]
    page = exposition(gauges)
    assert store.listed == ["shop", "ops"]
    assert [line for line in page.decode().splitlines() if line.startswith("serin_canary_total")] == [
        'serin_canary_total{namespace="ops"} 1.0',
        'serin_canary_total{namespace="shop"} 1.0',
    ]
