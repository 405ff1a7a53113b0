"""The New Relic provider against a local Insights query API of the test's own.

No real New Relic server can be run here (none is published on PyPI or in Debian), so
``FakeInsights`` serves ``GET /v1/accounts/<account id>/query?nrql=...`` on 127.0.0.1 as New Relic's
"Insights query API" documentation describes it
(https://docs.newrelic.com/docs/apis/insights-apis/query-insights-event-data-api): the query key in
``X-Query-Key``, the NRQL in ``nrql``, the answer ``{"results": [{<function or "result">: <value>}],
"metadata": {...}}`` (``{"facets": [...]}`` for a FACET query), and an error
``{"error": "..."}`` (a NRQL syntax error is a 400). Flagger's
``pkg/metrics/providers/newrelic.go`` is the reference for what is sent (``SINCE <interval> seconds
ago`` appended to the query).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serin.metrics.newrelic import DEFAULT_ADDRESS, NewRelicProvider, build
from serin.metrics.providers import provider_for
from serin.ports import (
    InvalidCredentials,
    InvalidQuery,
    MetricsProvider,
    MetricsUnavailable,
    NoValuesFound,
    ProviderConfig,
)
from tests.unit.fake_store import FakeStore
from tests.unit.servers import JsonHandler, Received, RecordingApi, serving

ACCOUNT = "1234567"
QUERY_KEY = "NRIQ-0123456789abcdefghijklmnopqrst"
SECRET = "test/newrelic"
# Flagger's documented example, as a MetricTemplate's block scalar gives it (with a final newline).
ERROR_RATE = (
    "SELECT\n"
    "    filter(sum(nginx_ingress_controller_requests), WHERE status >= '500') /\n"
    "    sum(nginx_ingress_controller_requests) * 100\n"
    "FROM Metric\n"
    "WHERE metricName = 'nginx_ingress_controller_requests'\n"
    "AND ingress = 'podinfo' AND namespace = 'test'\n"
)
COUNT = "SELECT count(*) FROM Transaction WHERE appName = 'podinfo'"
SLOW = "SELECT count(*) FROM Slow"
METADATA = {"eventTypes": ["Metric"], "messages": [], "contents": [{"function": "alias"}]}


class FakeInsights(RecordingApi[Received]):
    """The query API of one account: each known NRQL (as sent, with its SINCE) has its answer."""

    def __init__(self) -> None:
        super().__init__(InsightsHandler)
        self.answers: dict[str, tuple[int, Any]] = {}

    def results(self, nrql: str, *results: dict[str, Any]) -> None:
        self.answers[nrql] = (200, {"results": list(results), "metadata": METADATA})


class InsightsHandler(JsonHandler):
    server: FakeInsights

    def do_GET(self) -> None:
        sent = self.server.record(Received.of(self))
        if not sent.path.startswith("/v1/accounts/") or not sent.path.endswith("/query"):
            return self.answer(404, {"error": "Not found"})
        if self.headers.get("X-Query-Key") != QUERY_KEY or sent.path != f"/v1/accounts/{ACCOUNT}/query":
            return self.answer(403, {"error": "Invalid query key"})
        nrql = sent.params.get("nrql")
        if not nrql:
            return self.answer(400, {"error": "Missing nrql parameter"})
        if nrql.startswith(SLOW):
            # Answers nothing: the client has given up by the time the test releases it.
            self.server.release.wait(5)
            return None
        status, body = self.server.answers.get(nrql, (400, {"error": "NRQL Syntax Error: Error at line 1"}))
        self.answer(status, body)


@pytest.fixture
def insights() -> Iterator[FakeInsights]:
    with serving(FakeInsights()) as server:
        yield server


def config(address: str, **secret: str) -> ProviderConfig:
    keys = {"newrelic_account_id": ACCOUNT, "newrelic_query_key": QUERY_KEY}
    return ProviderConfig(
        type="newrelic",
        address=address,
        secret_name=SECRET,
        secret=tuple(sorted({**keys, **secret}.items())),
    )


def provider(insights: FakeInsights, timeout: float = 5.0, **secret: str) -> NewRelicProvider:
    built = build(config(insights.url, **secret), FakeStore())
    built.backend.timeout = timeout
    return built


def test_the_value_of_an_expression_sent_with_the_key_and_flaggers_window(insights: FakeInsights) -> None:
    sent_nrql = ERROR_RATE.rstrip() + " SINCE 60 seconds ago"
    insights.results(sent_nrql, {"result": 1.25})
    assert provider(insights).query(ERROR_RATE) == 1.25
    [sent] = insights.received
    assert (sent.path, sent.params) == (f"/v1/accounts/{ACCOUNT}/query", {"nrql": sent_nrql})
    assert (sent.headers["X-Query-Key"], sent.headers["Accept"]) == (QUERY_KEY, "application/json")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param({"count": 42}, 42.0, id="count"),
        pytest.param({"average": 0.125}, 0.125, id="average"),
        pytest.param({"percentiles": {"99": 0.75}}, 0.75, id="one-percentile"),
    ],
)
def test_the_value_of_a_single_function(insights: FakeInsights, result: dict[str, Any], expected: float) -> None:
    insights.results(f"{COUNT} SINCE 60 seconds ago", result)
    assert provider(insights).query(COUNT) == expected


def test_the_window_is_the_metric_interval(insights: FakeInsights) -> None:
    insights.results(f"{COUNT} SINCE 120 seconds ago", {"count": 7})
    assert provider(insights).query(COUNT, interval_seconds=120) == 7.0


def test_a_query_with_its_own_since_is_sent_as_it_is(insights: FakeInsights) -> None:
    own = "SELECT count(*) FROM Transaction since 5 minutes ago WHERE appName = 'podinfo'"
    insights.results(own, {"count": 3})
    assert provider(insights).query(own) == 3.0
    # A quoted 'since' is a value, not a clause.
    quoted = "SELECT count(*) FROM Transaction WHERE name = 'since' AND `since` = 'it''s since'"
    insights.results(f"{quoted} SINCE 60 seconds ago", {"count": 4})
    assert provider(insights).query(quoted) == 4.0


@pytest.mark.parametrize(
    "results",
    [
        pytest.param([], id="no-results"),
        pytest.param([{"result": None}], id="null-expression"),
        pytest.param([{"average": None}], id="null-function"),
    ],
)
def test_no_data_is_no_values_found(insights: FakeInsights, results: list[dict[str, Any]]) -> None:
    insights.results(f"{COUNT} SINCE 60 seconds ago", *results)
    with pytest.raises(NoValuesFound) as caught:
        provider(insights).query(COUNT)
    assert str(caught.value) == f"no values found for query {COUNT} SINCE 60 seconds ago"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"results": [{"count": 1}, {"average": 2.0}], "metadata": METADATA},
            "gave 2 results, not one: select one value",
            id="several-results",
        ),
        pytest.param(
            {"results": [{"count": 1, "sum": 2}], "metadata": METADATA},
            "gave 2 values (count, sum), not one",
            id="several-values",
        ),
        pytest.param(
            {"results": [{"percentiles": {"95": 0.5, "99": 0.75}}], "metadata": METADATA},
            "gave 2 values (95, 99), not one",
            id="several-percentiles",
        ),
        pytest.param(
            {"facets": [{"name": "a", "results": [{"count": 1}]}], "totalResult": {"results": [{"count": 1}]}},
            "did not give results of one value (FACET and TIMESERIES queries give several)",
            id="facets",
        ),
        pytest.param(
            {"results": [{"latest": "podinfo-7d9f"}], "metadata": METADATA},
            "gave 'podinfo-7d9f', not a number",
            id="not-a-number",
        ),
    ],
)
def test_an_answer_that_is_not_one_number_is_an_invalid_query(
    insights: FakeInsights, body: dict[str, Any], message: str
) -> None:
    insights.answers[f"{COUNT} SINCE 60 seconds ago"] = (200, body)
    with pytest.raises(InvalidQuery) as caught:
        provider(insights).query(COUNT)
    assert str(caught.value) == f"query {COUNT} SINCE 60 seconds ago {message}"


def test_nrql_new_relic_cannot_parse_is_an_invalid_query(insights: FakeInsights) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(insights).query("SELECT count( FROM Transaction")
    assert str(caught.value) == (
        f"newrelic at {insights.url} answered status 400 for query SELECT count( FROM Transaction "
        "SINCE 60 seconds ago: NRQL Syntax Error: Error at line 1"
    )


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_or_overloaded_new_relic_is_unavailable(insights: FakeInsights, status: int) -> None:
    insights.answers[f"{COUNT} SINCE 60 seconds ago"] = (status, {"error": "Internal error"})
    with pytest.raises(MetricsUnavailable) as caught:
        provider(insights).query(COUNT)
    assert str(caught.value) == (
        f"newrelic at {insights.url} answered status {status} for query {COUNT} SINCE 60 seconds ago: Internal error"
    )


def test_a_slow_new_relic_is_unavailable(insights: FakeInsights) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        provider(insights, timeout=0.3).query(SLOW)
    assert str(caught.value) == (
        f"newrelic at {insights.url} did not answer query {SLOW} SINCE 60 seconds ago in time: no answer within 0.3s"
    )


def test_a_refused_key_names_the_secret_not_the_key(insights: FakeInsights) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        provider(insights, newrelic_query_key="NRIQ-revoked-key-000000").query(COUNT)
    assert (
        str(caught.value) == f"newrelic at {insights.url} refused the credentials (403; they come from Secret {SECRET})"
    )
    assert "NRIQ-revoked-key-000000" not in str(caught.value)


def test_a_refusal_quotes_nothing_the_server_said(insights: FakeInsights) -> None:
    insights.answers[f"{COUNT} SINCE 60 seconds ago"] = (401, {"error": f"Query key {QUERY_KEY} expired"})
    with pytest.raises(InvalidCredentials) as caught:
        provider(insights).query(COUNT)
    assert (
        str(caught.value) == f"newrelic at {insights.url} refused the credentials (401; they come from Secret {SECRET})"
    )


def test_a_key_a_server_echoes_back_is_redacted(insights: FakeInsights) -> None:
    insights.answers[f"{COUNT} SINCE 60 seconds ago"] = (400, {"error": f"Query key {QUERY_KEY} cannot run NRQL"})
    with pytest.raises(InvalidQuery) as caught:
        provider(insights).query(COUNT)
    assert str(caught.value) == (
        f"newrelic at {insights.url} answered status 400 for query {COUNT} SINCE 60 seconds ago: "
        "Query key <redacted> cannot run NRQL"
    )


@pytest.mark.parametrize("missing", ["newrelic_account_id", "newrelic_query_key"])
def test_a_missing_key_names_the_key_and_the_secret(missing: str) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config(DEFAULT_ADDRESS, **{missing: ""}), FakeStore())
    assert str(caught.value) == f"newrelic needs {missing} in its credentials: Secret {SECRET} has none"


def test_an_account_id_that_is_not_a_number_is_refused_without_quoting_it() -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config(DEFAULT_ADDRESS, newrelic_account_id="acct/../x"), FakeStore())
    assert str(caught.value) == f"newrelic: newrelic_account_id in Secret {SECRET} is not an account number"


def test_values_lose_the_newline_of_echo(insights: FakeInsights) -> None:
    insights.results(f"{COUNT} SINCE 60 seconds ago", {"count": 9})
    trailing = provider(insights, newrelic_account_id=ACCOUNT + "\n", newrelic_query_key=QUERY_KEY + "\n")
    assert trailing.query(COUNT) == 9.0


def test_the_default_address_is_new_relics_and_the_key_stays_out_of_its_repr() -> None:
    built = build(config(""), FakeStore())
    assert built.backend.address == DEFAULT_ADDRESS == "https://insights-api.newrelic.com"
    assert repr(built) == "NewRelicProvider('https://insights-api.newrelic.com')"
    assert built.syntax_error(COUNT) is None


def test_it_is_the_provider_of_its_type() -> None:
    port: MetricsProvider = build(config(""), FakeStore())
    assert type(provider_for(config(""), FakeStore())) is type(port) is NewRelicProvider
