"""Serin's Grafana dashboard: every query of every panel and variable returns data from the local
Prometheus during a real promotion, scraping both the mesh (the traffic simulator) and Serin's own
/metrics over HTTPS; and the ConfigMap the chart ships carries the same JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from localcluster import prometheus
from localcluster.testing import ClusterHandle, eventually
from tests.integration.helpers import SerinServer, drive, initialized, set_image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "serin" / "dashboards" / "serin.json"
# What Grafana puts in place of its own variables: rates over a minute (the simulator's traffic is
# steady), totals over the whole test.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "15m"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def with_values(expr: str, namespace: str, canary: str) -> str:
    # Longest first: $canary must not eat the start of a longer variable.
    values = {**GRAFANA_VARIABLES, "$namespace": namespace, "$canary": canary}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


@pytest.fixture
def serin_scraped(local_cluster: ClusterHandle, serin_server: SerinServer, metrics_token: str) -> Iterator[str]:
    """Prometheus scraping the test server's /metrics (HTTPS, its CA trusted, with the token of an
    account that may get /metrics) for this test only."""
    ca = serin_server.ca_bundle.read_bytes()
    prometheus.scrape_serin(local_cluster.state_dir, [serin_server.url], ca, metrics_token)
    try:
        yield local_cluster.urls["prometheus"]
    finally:
        prometheus.scrape_serin(local_cluster.state_dir, [], ca, "")


def test_the_configmap_carries_the_dashboard() -> None:
    configmap = yaml.safe_load((REPO / "k8s" / "dashboard.yaml").read_text())
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["serin.json"]) == dashboard()
    assert json.loads((REPO / "k8s" / "grafana" / "serin.json").read_text()) == dashboard()


def test_every_panel_has_data_during_a_promotion(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    serin_scraped: str,
    tokens: dict[str, str],
    namespace: str,
) -> None:
    queries = panel_queries()
    assert len(queries) == 12
    initialized(local_cluster, serin_server, tokens["ticker"], namespace)
    set_image(local_cluster, namespace, "6.0.1")
    drive(local_cluster, serin_server, tokens["ticker"], namespace, "Succeeded")

    def missing() -> list[str]:
        empty = []
        for title, expr in queries:
            result = prometheus.query(serin_scraped, with_values(expr, namespace, "podinfo"))
            if not result or not all(math.isfinite(float(sample["value"][1])) for sample in result):
                empty.append(f"{title}: {result}")
        return empty

    eventually(lambda: not missing(), timeout=30, what="data for every panel")

    # Serin lists the Canaries for its gauges at most every GAUGE_SECONDS, and Prometheus scrapes it
    # after that: the status panel shows Succeeded within both.
    def status() -> list[str]:
        found = prometheus.query(serin_scraped, with_values(queries[0][1], namespace, "podinfo"))
        return [sample["value"][1] for sample in found]

    eventually(lambda: status() == ["1"], timeout=30, what="the status panel to show Succeeded")
    releases = prometheus.query(serin_scraped, with_values(queries[2][1], namespace, "podinfo"))
    assert [sample["metric"]["outcome"] for sample in releases] == ["succeeded"]
    for title, expr in queries:
        if "istio_requests_total" in expr or "istio_request_duration" in expr:
            result = prometheus.query(serin_scraped, with_values(expr, namespace, "podinfo"))
            workloads = {sample["metric"]["destination_workload"] for sample in result}
            assert workloads == {"podinfo", "podinfo-primary"}, title

    # The variables' queries: Grafana's label_values() asks the series API.
    for variable in dashboard()["templating"]["list"][1:]:
        query: str = variable["query"]["query"]
        selector, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        selector = with_values(selector, namespace, "podinfo")
        series = requests.get(f"{serin_scraped}/api/v1/series", params={"match[]": selector}, timeout=5).json()["data"]
        wanted = {"namespace": namespace, "canary": "podinfo"}[variable["name"]]
        assert wanted in {found[label] for found in series}, (variable["name"], series)
