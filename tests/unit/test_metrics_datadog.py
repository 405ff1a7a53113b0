"""The Datadog provider against a local Datadog of the test's own.

No real Datadog API server can be run here (none is published on PyPI or in Debian), so
``FakeDatadog`` serves ``GET /api/v1/query`` on 127.0.0.1 as Datadog's API reference documents it
("Metrics > Query timeseries points", https://docs.datadoghq.com/api/latest/metrics/query-timeseries-points/):
``query``, ``from`` and ``to`` (seconds since the epoch) are required; ``DD-API-KEY`` and
``DD-APPLICATION-KEY`` must hold the keys (403 ``{"errors": ["Forbidden"]}`` otherwise); the answer
is ``{"status": "ok", "series": [{"pointlist": [[<ms>, <value or null>], ...], ...}], ...}`` and a
query it cannot parse is a 400 ``{"errors": [...]}``. Flagger's ``pkg/metrics/providers/datadog.go``
is the reference for what is sent (the window: ten metric intervals).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serin.metrics.datadog import DEFAULT_ADDRESS, DatadogProvider, build
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

API_KEY = "dd-api-key-0123456789abcdef"
APPLICATION_KEY = "dd-app-key-fedcba9876543210"
SECRET = "test/datadog"
NOW = 1_700_000_000
QUERY = "sum:istio.mesh.request.count{destination_workload:podinfo,!response_code:404}.as_count()"
SLOW = "avg:slow.query{*}"


class FakeDatadog(RecordingApi[Received]):
    """``/api/v1/query`` with the series of each known query; other queries do not parse."""

    def __init__(self) -> None:
        super().__init__(DatadogHandler)
        # query -> pointlists of its series
        self.series: dict[str, list[list[list[float | None]]]] = {}
        # query -> (status, body) answered instead
        self.canned: dict[str, tuple[int, Any]] = {}


class DatadogHandler(JsonHandler):
    server: FakeDatadog

    def do_GET(self) -> None:
        sent = self.server.record(Received.of(self))
        params = sent.params
        if sent.path != "/api/v1/query":
            return self.answer(404, {"errors": ["Not found"]})
        keys = (self.headers.get("DD-API-KEY"), self.headers.get("DD-APPLICATION-KEY"))
        if keys != (API_KEY, APPLICATION_KEY):
            return self.answer(403, {"errors": ["Forbidden"]})
        missing = [name for name in ("query", "from", "to") if name not in params]
        if missing:
            return self.answer(400, {"errors": [f"The parameter '{missing[0]}' is required"]})
        query = params["query"]
        if query == SLOW:
            # Answers nothing: the client has given up by the time the test releases it.
            self.server.release.wait(5)
            return None
        if query in self.server.canned:
            return self.answer(*self.server.canned[query])
        if query not in self.server.series:
            return self.answer(400, {"errors": [f"Error parsing query: unable to parse {query}"]})
        start, end = int(params["from"]) * 1000, int(params["to"]) * 1000
        series = [
            {"metric": query.split("{")[0], "scope": "*", "aggr": "sum", "interval": 60, "pointlist": points}
            for points in self.server.series[query]
        ]
        body = {"status": "ok", "res_type": "time_series", "query": query, "message": "", "group_by": []}
        self.answer(200, {**body, "from_date": start, "to_date": end, "series": series})


@pytest.fixture
def datadog() -> Iterator[FakeDatadog]:
    with serving(FakeDatadog()) as server:
        yield server


def config(address: str, **secret: str) -> ProviderConfig:
    keys = {"datadog_api_key": API_KEY, "datadog_application_key": APPLICATION_KEY}
    return ProviderConfig(
        type="datadog",
        address=address,
        headers=(("X-Team", ("canary",)),),
        secret_name=SECRET,
        secret=tuple(sorted({**keys, **secret}.items())),
    )


def provider(datadog: FakeDatadog, timeout: float = 5.0, **secret: str) -> DatadogProvider:
    built = build(config(datadog.url, **secret), FakeStore())
    built.clock = lambda: NOW + 0.75
    built.backend.timeout = timeout
    return built


def test_the_value_is_the_last_point_sent_with_the_keys_and_flaggers_window(datadog: FakeDatadog) -> None:
    # The newest bucket is often still empty (null): the value is the last point that has one.
    datadog.series[QUERY] = [[[1_699_999_400_000, 12.0], [1_699_999_940_000, 97.25], [1_700_000_000_000, None]]]
    assert provider(datadog).query(QUERY) == 97.25
    [sent] = datadog.received
    assert sent.path == "/api/v1/query"
    # Ten times Flagger's default metric interval (1m), up to now.
    assert sent.params == {"query": QUERY, "from": str(NOW - 600), "to": str(NOW)}
    assert (sent.headers["DD-API-KEY"], sent.headers["DD-APPLICATION-KEY"]) == (API_KEY, APPLICATION_KEY)
    assert sent.headers["X-Team"] == "canary"


def test_the_window_is_ten_metric_intervals(datadog: FakeDatadog) -> None:
    datadog.series[QUERY] = [[[1_699_999_940_000, 3.0]]]
    assert provider(datadog).query(QUERY, interval_seconds=120) == 3.0
    assert (datadog.received[0].params["from"], datadog.received[0].params["to"]) == (str(NOW - 1200), str(NOW))


@pytest.mark.parametrize(
    "series",
    [
        pytest.param([], id="no-series"),
        pytest.param([[]], id="no-points"),
        pytest.param([[[1_699_999_940_000, None], [1_700_000_000_000, None]]], id="only-null-points"),
    ],
)
def test_no_data_is_no_values_found(datadog: FakeDatadog, series: list[list[list[float | None]]]) -> None:
    datadog.series[QUERY] = series
    with pytest.raises(NoValuesFound) as caught:
        provider(datadog).query(QUERY)
    assert str(caught.value) == f"no values found for query {QUERY} in the last 600s"


def test_several_series_are_an_invalid_query(datadog: FakeDatadog) -> None:
    query = "avg:system.cpu.user{*}by{host}"
    datadog.series[query] = [[[1_699_999_940_000, 1.0]], [[1_699_999_940_000, 2.0]]]
    with pytest.raises(InvalidQuery) as caught:
        provider(datadog).query(query)
    assert str(caught.value) == f"query {query} returned 2 series, not one: aggregate them into one"


def test_a_query_datadog_cannot_parse_is_an_invalid_query(datadog: FakeDatadog) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(datadog).query("sum:broken{")
    assert str(caught.value) == (
        f"datadog at {datadog.url} answered status 400 for query sum:broken{{: "
        "Error parsing query: unable to parse sum:broken{"
    )


def test_an_answer_of_status_error_is_an_invalid_query(datadog: FakeDatadog) -> None:
    datadog.canned[QUERY] = (200, {"status": "error", "error": "Rollup interval too small", "series": []})
    with pytest.raises(InvalidQuery) as caught:
        provider(datadog).query(QUERY)
    assert str(caught.value) == f"datadog refused query {QUERY}: Rollup interval too small"


def test_a_malformed_point_is_an_invalid_query(datadog: FakeDatadog) -> None:
    datadog.canned[QUERY] = (200, {"status": "ok", "series": [{"pointlist": [[1_699_999_940_000, "97"]]}]})
    with pytest.raises(InvalidQuery) as caught:
        provider(datadog).query(QUERY)
    assert str(caught.value) == f"query {QUERY} returned a malformed point: [1699999940000, '97']"


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_or_overloaded_datadog_is_unavailable(datadog: FakeDatadog, status: int) -> None:
    datadog.canned[QUERY] = (status, {"errors": ["Internal Server Error"]})
    with pytest.raises(MetricsUnavailable) as caught:
        provider(datadog).query(QUERY)
    assert str(caught.value) == (
        f"datadog at {datadog.url} answered status {status} for query {QUERY}: Internal Server Error"
    )


def test_a_slow_datadog_is_unavailable(datadog: FakeDatadog) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        provider(datadog, timeout=0.3).query(SLOW)
    assert str(caught.value) == f"datadog at {datadog.url} did not answer query {SLOW} in time: no answer within 0.3s"


def test_refused_keys_name_the_secret_not_the_keys(datadog: FakeDatadog) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        provider(datadog, datadog_application_key="revoked-app-key-0000").query(QUERY)
    assert (
        str(caught.value) == f"datadog at {datadog.url} refused the credentials (403; they come from Secret {SECRET})"
    )
    assert "revoked-app-key-0000" not in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_a_refusal_quotes_nothing_the_server_said(datadog: FakeDatadog) -> None:
    datadog.canned[QUERY] = (401, {"errors": [f"Invalid API key {API_KEY}"]})
    with pytest.raises(InvalidCredentials) as caught:
        provider(datadog).query(QUERY)
    assert (
        str(caught.value) == f"datadog at {datadog.url} refused the credentials (401; they come from Secret {SECRET})"
    )


def test_keys_a_server_echoes_back_are_redacted(datadog: FakeDatadog) -> None:
    datadog.canned[QUERY] = (400, {"errors": [f"Invalid API key {API_KEY}"]})
    with pytest.raises(InvalidQuery) as caught:
        provider(datadog).query(QUERY)
    assert str(caught.value) == (
        f"datadog at {datadog.url} answered status 400 for query {QUERY}: Invalid API key <redacted>"
    )


@pytest.mark.parametrize("missing", ["datadog_api_key", "datadog_application_key"])
def test_a_missing_key_names_the_key_and_the_secret(missing: str) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config(DEFAULT_ADDRESS, **{missing: ""}), FakeStore())
    assert str(caught.value) == f"datadog needs {missing} in its credentials: Secret {SECRET} has none"


def test_keys_lose_the_newline_of_echo_and_a_key_a_header_cannot_carry_is_refused(datadog: FakeDatadog) -> None:
    datadog.series[QUERY] = [[[1_699_999_940_000, 5.0]]]
    assert provider(datadog, datadog_api_key=API_KEY + "\n").query(QUERY) == 5.0
    with pytest.raises(InvalidCredentials) as caught:
        build(config(datadog.url, datadog_api_key="dd-api\nkey"), FakeStore())
    assert (
        str(caught.value) == f"datadog: datadog_api_key in Secret {SECRET} has characters an HTTP header cannot carry"
    )


def test_the_default_address_is_datadogs_and_the_keys_stay_out_of_its_repr() -> None:
    built = build(config(""), FakeStore())
    assert built.backend.address == DEFAULT_ADDRESS == "https://api.datadoghq.com"
    assert repr(built) == "DatadogProvider('https://api.datadoghq.com')"
    assert built.syntax_error(QUERY) is None


def test_it_is_the_provider_of_its_type() -> None:
    port: MetricsProvider = build(config(""), FakeStore())
    assert type(provider_for(config(""), FakeStore())) is type(port) is DatadogProvider
