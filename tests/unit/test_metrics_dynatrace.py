"""The Dynatrace provider against a local Metrics API v2 of the test's own.

No real Dynatrace server can be run here (none is published on PyPI or in Debian), so
``FakeDynatrace`` serves ``GET /api/v2/metrics/query`` on 127.0.0.1 as Dynatrace's Metrics API v2
documentation describes it ("GET metric data points",
https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points): the token
as ``Authorization: Api-Token <token>`` (401 ``{"error": {"code": 401, "message": ...}}``
otherwise), ``metricSelector``, ``resolution``, ``from``/``to`` in milliseconds, and the answer
``{"totalCount": n, "nextPageKey": null, "resolution": "Inf", "result": [{"metricId": ...,
"data": [{"dimensions": [...], "dimensionMap": {...}, "timestamps": [...], "values": [...]}]}]}``
(a value is null where there are no data points); a selector it cannot parse is a 400 with the
same error object. Flagger's ``pkg/metrics/providers/dynatrace.go`` is the reference for what is
sent (``resolution=Inf`` over ten metric intervals).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serin.metrics.dynatrace import DynatraceProvider, build
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

TOKEN = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.0123456789abcdef"
SECRET = "test/dynatrace"
NOW = 1_700_000_000
# Flagger's documented example.
SELECTOR = "builtin:service.response.time:filter(eq(dt.entity.service,SERVICE-ABCDEFG0123456789)):percentile(95)"
SLOW = "builtin:slow.metric"
SERVICE = {
    "dimensions": ["SERVICE-ABCDEFG0123456789"],
    "dimensionMap": {"dt.entity.service": "SERVICE-ABCDEFG0123456789"},
}


class FakeDynatrace(RecordingApi[Received]):
    """The metric data points of each known selector: per metric, its series' values."""

    def __init__(self) -> None:
        super().__init__(DynatraceHandler)
        # selector -> per metric, per series, its values
        self.metrics: dict[str, list[list[list[float | None]]]] = {}
        self.canned: dict[str, tuple[int, Any]] = {}


def error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class DynatraceHandler(JsonHandler):
    server: FakeDynatrace

    def do_GET(self) -> None:
        sent = self.server.record(Received.of(self))
        params = sent.params
        if sent.path != "/api/v2/metrics/query":
            return self.answer(404, error(404, "Not found"))
        if self.headers.get("Authorization") != f"Api-Token {TOKEN}":
            return self.answer(401, error(401, "Token Authentication failed"))
        selector = params.get("metricSelector")
        if not selector:
            return self.answer(400, error(400, "Constraints violated."))
        if selector == SLOW:
            # Answers nothing: the client has given up by the time the test releases it.
            self.server.release.wait(5)
            return None
        if selector in self.server.canned:
            return self.answer(*self.server.canned[selector])
        if selector not in self.server.metrics:
            return self.answer(400, error(400, f"The metric selector {selector!r} is invalid"))
        end = int(params["to"])
        result = [
            {
                "metricId": selector,
                "dataPointCountRatio": 0.0001,
                "dimensionCountRatio": 0.01,
                "data": [{**SERVICE, "timestamps": [end] * len(values), "values": values} for values in series],
            }
            for series in self.server.metrics[selector]
        ]
        body = {"totalCount": sum(len(series) for series in self.server.metrics[selector]), "nextPageKey": None}
        self.answer(200, {**body, "resolution": params.get("resolution", "1m"), "result": result})


@pytest.fixture
def dynatrace() -> Iterator[FakeDynatrace]:
    with serving(FakeDynatrace()) as server:
        yield server


def config(address: str, **secret: str) -> ProviderConfig:
    return ProviderConfig(
        type="dynatrace",
        address=address,
        secret_name=SECRET,
        secret=tuple(sorted({"dynatrace_token": TOKEN, **secret}.items())),
    )


def provider(dynatrace: FakeDynatrace, timeout: float = 5.0, **secret: str) -> DynatraceProvider:
    built = build(config(dynatrace.url, **secret), FakeStore())
    built.clock = lambda: NOW + 0.75
    built.backend.timeout = timeout
    return built


def test_the_value_sent_with_the_token_and_flaggers_window(dynatrace: FakeDynatrace) -> None:
    dynatrace.metrics[SELECTOR] = [[[42.125]]]
    assert provider(dynatrace).query(SELECTOR) == 42.125
    [sent] = dynatrace.received
    assert sent.path == "/api/v2/metrics/query"
    # Ten times Flagger's default metric interval (1m), up to now, in milliseconds.
    assert sent.params == {
        "metricSelector": SELECTOR,
        "resolution": "Inf",
        "from": str(NOW * 1000 - 600_000),
        "to": str(NOW * 1000),
    }
    assert sent.headers["Authorization"] == f"Api-Token {TOKEN}"


def test_the_window_is_ten_metric_intervals(dynatrace: FakeDynatrace) -> None:
    dynatrace.metrics[SELECTOR] = [[[3.0]]]
    assert provider(dynatrace).query(SELECTOR, interval_seconds=120) == 3.0
    params = dynatrace.received[0].params
    assert (params["from"], params["to"]) == (str(NOW * 1000 - 1_200_000), str(NOW * 1000))


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param([], id="no-metric"),
        pytest.param([[]], id="no-series"),
        pytest.param([[[None]]], id="no-data-points"),
        pytest.param([[[]]], id="no-values"),
    ],
)
def test_no_data_is_no_values_found(dynatrace: FakeDynatrace, metrics: list[list[list[float | None]]]) -> None:
    dynatrace.metrics[SELECTOR] = metrics
    with pytest.raises(NoValuesFound) as caught:
        provider(dynatrace).query(SELECTOR)
    assert str(caught.value) == f"no values found for metric selector {SELECTOR} in the last 600000ms"


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        pytest.param([[[1.0]], [[2.0]]], "selected 2 metrics, not one", id="several-metrics"),
        pytest.param(
            [[[1.0], [2.0]]], "returned 2 series, not one: fold them (e.g. with :splitBy())", id="several-series"
        ),
        pytest.param([[[1.0, 2.0]]], "returned 2 values, not one", id="several-values"),
    ],
)
def test_several_values_are_an_invalid_query(
    dynatrace: FakeDynatrace, metrics: list[list[list[float | None]]], message: str
) -> None:
    dynatrace.metrics[SELECTOR] = metrics
    with pytest.raises(InvalidQuery) as caught:
        provider(dynatrace).query(SELECTOR)
    assert str(caught.value) == f"metric selector {SELECTOR} {message}"


def test_a_selector_dynatrace_cannot_parse_is_an_invalid_query(dynatrace: FakeDynatrace) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(dynatrace).query("builtin:host.cpu.usage:filter(")
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} answered status 400 for metric selector builtin:host.cpu.usage:filter(: "
        "The metric selector 'builtin:host.cpu.usage:filter(' is invalid"
    )


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_or_overloaded_dynatrace_is_unavailable(dynatrace: FakeDynatrace, status: int) -> None:
    dynatrace.canned[SELECTOR] = (status, error(status, "Internal server error"))
    with pytest.raises(MetricsUnavailable) as caught:
        provider(dynatrace).query(SELECTOR)
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} answered status {status} for metric selector {SELECTOR}: Internal server error"
    )


def test_a_slow_dynatrace_is_unavailable(dynatrace: FakeDynatrace) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        provider(dynatrace, timeout=0.3).query(SLOW)
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} did not answer metric selector {SLOW} in time: no answer within 0.3s"
    )


def test_a_refused_token_names_the_secret_not_the_token(dynatrace: FakeDynatrace) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        provider(dynatrace, dynatrace_token="dt0c01.REVOKED.0000").query(SELECTOR)
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} refused the credentials (401; they come from Secret {SECRET})"
    )
    assert "dt0c01.REVOKED.0000" not in str(caught.value)


def test_a_refusal_quotes_nothing_the_server_said(dynatrace: FakeDynatrace) -> None:
    dynatrace.canned[SELECTOR] = (403, error(403, f"Token {TOKEN} is missing the scope metrics.read"))
    with pytest.raises(InvalidCredentials) as caught:
        provider(dynatrace).query(SELECTOR)
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} refused the credentials (403; they come from Secret {SECRET})"
    )


def test_a_token_a_server_echoes_back_is_redacted(dynatrace: FakeDynatrace) -> None:
    dynatrace.canned[SELECTOR] = (400, error(400, f"Token {TOKEN} cannot read {SELECTOR}"))
    with pytest.raises(InvalidQuery) as caught:
        provider(dynatrace).query(SELECTOR)
    assert str(caught.value) == (
        f"dynatrace at {dynatrace.url} answered status 400 for metric selector {SELECTOR}: "
        f"Token <redacted> cannot read {SELECTOR}"
    )


def test_a_missing_token_names_the_key_and_the_secret(dynatrace: FakeDynatrace) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config(dynatrace.url, dynatrace_token=""), FakeStore())
    assert str(caught.value) == f"dynatrace needs dynatrace_token in its credentials: Secret {SECRET} has none"


def test_there_is_no_default_address() -> None:
    with pytest.raises(InvalidQuery) as caught:
        build(config(""), FakeStore())
    assert str(caught.value) == (
        "dynatrace needs spec.provider.address, the environment's URL "
        "(such as https://<environment-id>.live.dynatrace.com): there is no default"
    )


def test_the_token_loses_the_newline_of_echo_and_stays_out_of_the_repr(dynatrace: FakeDynatrace) -> None:
    dynatrace.metrics[SELECTOR] = [[[0.5]]]
    built = provider(dynatrace, dynatrace_token=TOKEN + "\n")
    assert built.query(SELECTOR) == 0.5
    assert repr(built) == f"DynatraceProvider({dynatrace.url!r})"
    assert built.syntax_error(SELECTOR) is None


def test_it_is_the_provider_of_its_type() -> None:
    port: MetricsProvider = build(config("http://127.0.0.1:9"), FakeStore())
    assert type(provider_for(config("http://127.0.0.1:9"), FakeStore())) is type(port) is DynatraceProvider
