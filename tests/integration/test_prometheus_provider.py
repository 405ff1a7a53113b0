"""PrometheusProvider against the local cluster's real Prometheus: values, empty answers, errors, outages."""

from __future__ import annotations

import pytest

from localcluster.processes import free_port
from localcluster.testing import ClusterHandle
from serin.metrics.prometheus import PrometheusProvider
from serin.ports import InvalidQuery, MetricsUnavailable, NoValuesFound

pytestmark = pytest.mark.integration


@pytest.fixture
def provider(local_cluster: ClusterHandle) -> PrometheusProvider:
    return PrometheusProvider(local_cluster.urls["prometheus"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("vector(42)", 42.0, id="vector"),
        pytest.param("scalar(vector(3)) * 2", 6.0, id="scalar"),
        pytest.param('sum(label_replace(vector(5), "a", "b", "", ""))', 5.0, id="aggregated"),
    ],
)
def test_values(provider: PrometheusProvider, query: str, expected: float) -> None:
    assert provider.query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("vector(1) > 2", id="empty-vector"),
        pytest.param("vector(0) / vector(0)", id="nan-from-no-traffic"),
        pytest.param('sum(rate(serin_no_such_metric_total{namespace="nowhere"}[1m]))', id="unknown-series"),
    ],
)
def test_no_values(provider: PrometheusProvider, query: str) -> None:
    with pytest.raises(NoValuesFound, match="no values found for query"):
        provider.query(query)


def test_syntax_error_is_the_querys_fault_with_the_parse_error(provider: PrometheusProvider) -> None:
    with pytest.raises(InvalidQuery, match="parse error") as caught:
        provider.query("sum(rate(up[1m])")
    assert "status 400 (bad_data)" in str(caught.value)


def test_a_range_vector_is_not_one_number(provider: PrometheusProvider) -> None:
    with pytest.raises(InvalidQuery, match="returned a matrix result, not a single value"):
        provider.query("vector(1)[1m:10s]")


def test_online(provider: PrometheusProvider) -> None:
    assert provider.is_online()


def test_closed_port_is_unavailable() -> None:
    closed = PrometheusProvider(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        closed.query("vector(1)")
    assert not closed.is_online()
