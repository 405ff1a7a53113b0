"""Prometheus scrapes the traffic simulator, which follows the VirtualService Serin would write."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localcluster.prometheus import query
from localcluster.testing import ClusterHandle, deployment, eventually, service

pytestmark = pytest.mark.integration


def virtual_service(namespace: str, primary_weight: int, canary_weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "hosts": ["shop"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "shop-primary"}, "weight": primary_weight},
                        {"destination": {"host": "shop-canary"}, "weight": canary_weight},
                    ]
                }
            ],
        },
    }


def request_counts(prometheus: str, namespace: str) -> dict[tuple[str, str], float]:
    """Requests so far by (destination workload, response class), as Prometheus last scraped them."""
    promql = (
        'sum by (destination_workload, response_code) (istio_requests_total{reporter="destination", '
        f'destination_workload_namespace="{namespace}"}})'
    )
    counts: dict[tuple[str, str], float] = {}
    for sample in query(prometheus, promql):
        labels = sample["metric"]
        key = (labels["destination_workload"], labels["response_code"][0] + "xx")
        counts[key] = counts.get(key, 0.0) + float(sample["value"][1])
    return counts


def counted_since(
    prometheus: str, namespace: str, before: dict[tuple[str, str], float], minimum: float
) -> dict[tuple[str, str], float]:
    """Wait until at least ``minimum`` more requests were scraped, and return the increase."""

    def increase() -> dict[tuple[str, str], float] | None:
        now = request_counts(prometheus, namespace)
        delta = {key: value - before.get(key, 0.0) for key, value in now.items()}
        return delta if sum(delta.values()) >= minimum else None

    result: dict[tuple[str, str], float] = eventually(
        increase, timeout=60, interval=0.5, what=f"{minimum} more requests"
    )
    return result


def test_prometheus_sees_the_annotated_error_rate_and_the_routed_split(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    prometheus = local_cluster.urls["prometheus"]
    local_cluster.apply(
        [
            deployment("shop-primary", namespace, 2, {"simulator.serin.dev/latency-ms": "20"}),
            deployment(
                "shop", namespace, 1, {"simulator.serin.dev/error-rate": "0.3", "simulator.serin.dev/latency-ms": "400"}
            ),
            service("shop-primary", namespace, "shop-primary"),
            service("shop-canary", namespace, "shop"),
            virtual_service(namespace, 50, 50),
        ]
    )
    for name in ("shop-primary", "shop"):
        local_cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=60s")

    # The error rate as an analysis would measure it: a PromQL rate ratio over the canary workload.
    selector = f'reporter="destination", destination_workload_namespace="{namespace}", destination_workload=~"shop"'
    success_rate = (
        f'100 * sum(rate(istio_requests_total{{{selector}, response_code!~"5.*"}}[15s])) '
        f"/ sum(rate(istio_requests_total{{{selector}}}[15s]))"
    )
    eventually(
        lambda: sum(request_counts(prometheus, namespace).values()) >= 600,
        timeout=60,
        interval=0.5,
        what="enough scraped requests",
    )
    measured = float(query(prometheus, success_rate)[0]["value"][1])
    assert 60 <= measured <= 80, f"success rate {measured}% for an error rate of 30%"

    p99 = f"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{selector}}}[15s])) by (le))"
    latency = float(query(prometheus, p99)[0]["value"][1])
    assert 250 <= latency <= 1000, f"p99 {latency}ms for a mean latency of 400ms"

    before = request_counts(prometheus, namespace)
    split = counted_since(prometheus, namespace, before, minimum=500)
    canary_share = (split.get(("shop", "2xx"), 0) + split.get(("shop", "5xx"), 0)) / sum(split.values())
    assert 0.4 <= canary_share <= 0.6, f"canary got {canary_share:.0%} of traffic at weight 50"
    assert split.get(("shop-primary", "5xx"), 0) == 0

    local_cluster.apply(virtual_service(namespace, 90, 10))
    # Let the simulator reread the route and Prometheus scrape it before counting afresh.
    time.sleep(3)
    before = request_counts(prometheus, namespace)
    split = counted_since(prometheus, namespace, before, minimum=500)
    canary_share = (split.get(("shop", "2xx"), 0) + split.get(("shop", "5xx"), 0)) / sum(split.values())
    assert 0.04 <= canary_share <= 0.17, f"canary got {canary_share:.0%} of traffic at weight 10"
