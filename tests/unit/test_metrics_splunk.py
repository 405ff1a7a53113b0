"""The splunk provider (Splunk Observability Cloud, SignalFlow) against a local server of the test's own.

There is no SignalFlow server to run outside Splunk's cloud, so ``FakeSignalFlow`` (on 127.0.0.1)
implements the one endpoint the provider uses, ``POST /v2/signalflow/execute``, as Splunk's
SignalFlow API reference (dev.splunk.com/observability/reference/api/signalflow) and SignalFx's
Python client (its SSE transport and stream message classes) describe it: the program as a
``text/plain`` body, ``start``/``stop`` in epoch milliseconds and ``immediate`` as URL parameters,
the token in ``X-SF-Token``; the answer a ``text/event-stream`` of stream messages, each an event
whose type is the message type and whose JSON spans several ``data:`` lines: ``control-message``
(``STREAM_START``, ``JOB_START``, then ``END_OF_CHANNEL`` or ``CHANNEL_ABORT``), ``message``
(``JOB_RUNNING_RESOLUTION``), ``metadata`` per output time series, ``data`` per logical timestamp
(``[{tsId, value}]``) and ``error``. It computes nothing: each known program has its output time
series written out, and only their datapoints within ``[start, stop]`` are sent, so the window the
provider asks for decides what it gets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from serin.metrics.splunk import SplunkProvider, build, sse_events, stream_address
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig
from tests.unit.fake_store import FakeStore
from tests.unit.servers import FakeApi, JsonHandler, serving

SECRET = "test/splunk"
TOKEN = "sf-token-right-7f3a"
WRONG_TOKEN = "sf-token-wrong-91c2"
NOW = 1_790_000_000.0  # seconds; the provider's clock
NOW_MS = int(NOW * 1000)
ERRORS = "data('http.server.errors', filter=filter('app', 'podinfo')).sum().publish()"
BY_POD = "data('http.server.errors', filter=filter('app', 'podinfo')).sum(by=['pod']).publish()"
QUIET = "data('http.server.errors', filter=filter('app', 'quiet')).sum().publish()"
NONE_MATCH = "data('no.such.metric').publish()"


@dataclass
class Series:
    tsid: str
    properties: dict[str, str]
    # (epoch milliseconds, value); None is a datapoint without a value.
    points: list[tuple[int, float | None]]


PROGRAMS: dict[str, list[Series]] = {
    ERRORS: [
        Series(
            "AAAAAGnsQ3Y",
            {"sf_metric": "http.server.errors", "app": "podinfo"},
            [(NOW_MS - 700_000, 99.0), (NOW_MS - 300_000, 1.0), (NOW_MS - 60_000, 3.5), (NOW_MS - 30_000, None)],
        )
    ],
    BY_POD: [
        Series("AAAAAKlQ1xA", {"sf_metric": "http.server.errors", "pod": "podinfo-1"}, [(NOW_MS - 60_000, 1.0)]),
        Series("AAAAAKlQ1xB", {"sf_metric": "http.server.errors", "pod": "podinfo-2"}, [(NOW_MS - 60_000, 2.0)]),
    ],
    QUIET: [Series("AAAAAD2Jk0Q", {"sf_metric": "http.server.errors", "app": "quiet"}, [(NOW_MS - 60_000, None)])],
    NONE_MATCH: [],
}


@dataclass
class Received:
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: str


@dataclass
class State:
    # (status, JSON body) to answer instead of running the program.
    answer: tuple[int, Any] | None = None
    delay: float = 0.0
    # Seconds to stall after the stream started.
    stall: float = 0.0
    # An error message sent in the stream instead of the data.
    error: dict[str, Any] | None = None
    abort: str = ""
    # End the stream without END_OF_CHANNEL.
    cut: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeSignalFlow(FakeApi):
    def __init__(self) -> None:
        super().__init__(SignalFlowHandler)
        self.state = State()


class SignalFlowHandler(JsonHandler):
    server: FakeSignalFlow

    def do_POST(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        program = self.read_body().decode()
        with state.lock:
            state.received.append(Received(parts.path, params, dict(self.headers), program))
        if parts.path != "/v2/signalflow/execute":
            return self.answer(404, {"message": f"{parts.path} not found"})
        if self.headers.get("X-SF-Token") != TOKEN:
            return self.answer(401, {"message": "Unauthorized"})
        if state.delay:
            time.sleep(state.delay)
        if state.answer is not None:
            return self.answer(*state.answer)
        if program not in PROGRAMS:
            return self.answer(400, {"error": 400, "message": "Failed to compile SignalFlow program"})
        try:
            start, stop = int(params["start"][0]), int(params["stop"][0])
        except (KeyError, ValueError):
            return self.answer(400, {"error": 400, "message": "start and stop are required"})
        self.stream(PROGRAMS[program], start, stop)

    def stream(self, series: list[Series], start: int, stop: int) -> None:
        state = self.server.state
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.event("control-message", {"event": "STREAM_START", "timestampMs": NOW_MS})
            if state.stall:
                time.sleep(state.stall)
            self.event("control-message", {"event": "JOB_START", "handle": "FxKq8vMAYAA", "timestampMs": NOW_MS})
            resolution = {"messageCode": "JOB_RUNNING_RESOLUTION", "contents": {"resolutionMs": 10000}}
            self.event("message", {"logicalTimestampMs": start, "message": resolution})
            if state.error is not None:
                self.event("error", state.error)
                return
            for one in series:
                self.event("metadata", {"tsId": one.tsid, "properties": one.properties})
            times = sorted({ts for one in series for ts, _ in one.points if start <= ts <= stop})
            for ts in times:
                data = [{"tsId": one.tsid, "value": value} for one in series for at, value in one.points if at == ts]
                self.event("data", {"data": data, "logicalTimestampMs": ts})
            if state.abort:
                info = {"sf_job_abortState": "FAILED", "sf_job_abortReason": state.abort}
                self.event("control-message", {"event": "CHANNEL_ABORT", "abortInfo": info, "timestampMs": NOW_MS})
            elif not state.cut:
                self.event("control-message", {"event": "END_OF_CHANNEL", "timestampMs": NOW_MS})
        except OSError:
            pass

    def event(self, kind: str, message: dict[str, Any]) -> None:
        # The JSON pretty-printed, one "data:" line per line, as Splunk streams it.
        lines = "".join(f"data: {line}\n" for line in json.dumps(message, indent=2).splitlines())
        self.wfile.write(f"event: {kind}\n{lines}\n".encode())
        self.wfile.flush()


@pytest.fixture
def signalflow() -> Iterator[FakeSignalFlow]:
    with serving(FakeSignalFlow()) as server:
        yield server


def config(address: str, secret: dict[str, str] | None = None) -> ProviderConfig:
    return ProviderConfig(
        type="splunk",
        address=address,
        headers=(("X-Tenant", ("shop",)),),
        secret_name=SECRET,
        secret=tuple((secret if secret is not None else {"sf_token_key": TOKEN}).items()),
    )


def provider(address: str, token: str = TOKEN, timeout: float = 5.0) -> SplunkProvider:
    return SplunkProvider(config(address, {"sf_token_key": token}), token, timeout=timeout, clock=lambda: NOW)


def test_value_is_the_last_datapoint_with_a_value(signalflow: FakeSignalFlow) -> None:
    assert provider(signalflow.url).query(ERRORS) == 3.5


def test_the_request_carries_program_token_and_window(signalflow: FakeSignalFlow) -> None:
    built = build(config(signalflow.url), FakeStore())
    built.clock = lambda: NOW
    assert built.query(ERRORS) == 3.5
    [received] = signalflow.state.received
    assert received.path == "/v2/signalflow/execute"
    assert received.body == ERRORS
    assert received.params == {
        "start": [str(NOW_MS - 600_000)],
        "stop": [str(NOW_MS)],
        "immediate": ["true"],
    }
    assert received.headers["X-SF-Token"] == TOKEN
    assert received.headers["Content-Type"] == "text/plain"
    assert received.headers["X-Tenant"] == "shop"


def test_the_window_is_ten_metric_intervals(signalflow: FakeSignalFlow) -> None:
    # 10 x 40s reaches back to the point 300s ago but not to the 99 of 700s ago; 10 x 5s reaches
    # only the point without a value.
    splunk = provider(signalflow.url)
    assert splunk.query(ERRORS, interval_seconds=40) == 3.5
    assert signalflow.state.received[-1].params["start"] == [str(NOW_MS - 400_000)]
    with pytest.raises(NoValuesFound) as caught:
        splunk.query(ERRORS, interval_seconds=5)
    assert str(caught.value) == f"no values found for query {ERRORS} in the last 50s"


@pytest.mark.parametrize("program", [pytest.param(QUIET, id="only-nulls"), pytest.param(NONE_MATCH, id="no-series")])
def test_no_data(signalflow: FakeSignalFlow, program: str) -> None:
    with pytest.raises(NoValuesFound) as caught:
        provider(signalflow.url).query(program)
    assert str(caught.value) == f"no values found for query {program} in the last 600s"


def test_several_time_series_are_invalid(signalflow: FakeSignalFlow) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(signalflow.url).query(BY_POD)
    assert str(caught.value) == (
        f"query {BY_POD} returned 2 time series (AAAAAKlQ1xA, AAAAAKlQ1xB), not one: "
        "aggregate them into one (such as .sum() or .mean())"
    )


def test_a_program_that_does_not_compile_is_invalid(signalflow: FakeSignalFlow) -> None:
    program = "data('http.server.errors').sum(.publish()"
    with pytest.raises(InvalidQuery) as caught:
        provider(signalflow.url).query(program)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} answered status 400 for query {program}: 65 bytes of application/json"
    )


def test_an_error_message_in_the_stream_is_invalid(signalflow: FakeSignalFlow) -> None:
    signalflow.state.error = {"type": "error", "error": 400, "errorType": "ANALYTICS_ERROR", "message": "bad filter"}
    with pytest.raises(InvalidQuery) as caught:
        provider(signalflow.url).query(ERRORS)
    assert str(caught.value) == f"splunk refused query {ERRORS}: 400 (ANALYTICS_ERROR): bad filter"


def test_an_aborted_computation_is_unavailable(signalflow: FakeSignalFlow) -> None:
    signalflow.state.abort = "analytics backend restarting"
    with pytest.raises(MetricsUnavailable) as caught:
        provider(signalflow.url).query(ERRORS)
    assert str(caught.value) == f"splunk aborted query {ERRORS}: analytics backend restarting"


def test_a_stream_cut_short_is_unavailable(signalflow: FakeSignalFlow) -> None:
    signalflow.state.cut = True
    with pytest.raises(MetricsUnavailable) as caught:
        provider(signalflow.url).query(ERRORS)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} ended the answer to query {ERRORS} before the computation finished"
    )


def test_a_5xx_is_unavailable(signalflow: FakeSignalFlow) -> None:
    signalflow.state.answer = (500, {"message": "internal error"})
    with pytest.raises(MetricsUnavailable) as caught:
        provider(signalflow.url).query(ERRORS)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} answered status 500 for query {ERRORS}: 29 bytes of application/json"
    )


def test_no_answer_in_time_is_unavailable(signalflow: FakeSignalFlow) -> None:
    signalflow.state.delay = 1.0
    with pytest.raises(MetricsUnavailable) as caught:
        provider(signalflow.url, timeout=0.3).query(ERRORS)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} did not answer query {ERRORS} in time: no answer within 0.3s"
    )


def test_a_stream_that_stalls_is_unavailable(signalflow: FakeSignalFlow) -> None:
    # The head comes at once and the stream then stalls: a second is long enough for the head to
    # arrive on a loaded machine, so the deadline is met in the body.
    signalflow.state.stall = 1.5
    with pytest.raises(MetricsUnavailable) as caught:
        provider(signalflow.url, timeout=1.0).query(ERRORS)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} did not answer query {ERRORS} in time: the answer did not end in time"
    )


def test_a_refused_token_names_the_secret_not_the_token(signalflow: FakeSignalFlow) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config(signalflow.url, {"sf_token_key": WRONG_TOKEN}), FakeStore()).query(ERRORS)
    assert str(caught.value) == (
        f"splunk at {signalflow.url} refused the credentials (401; they come from Secret {SECRET})"
    )
    assert WRONG_TOKEN not in str(caught.value)
    assert signalflow.state.received[0].headers["X-SF-Token"] == WRONG_TOKEN


def test_a_secret_without_the_token_is_named() -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config("https://api.us1.signalfx.com", {"token": TOKEN}), FakeStore())
    assert str(caught.value) == f"splunk needs sf_token_key in its credentials: Secret {SECRET} has none"
    assert TOKEN not in str(caught.value)


def test_an_address_is_required() -> None:
    with pytest.raises(InvalidQuery) as caught:
        build(config(""), FakeStore())
    assert str(caught.value) == (
        "splunk needs spec.provider.address, the API or stream URL of its realm (such as https://api.us1.signalfx.com)"
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("https://api.us1.signalfx.com", "https://stream.us1.signalfx.com"),
        ("https://api.eu0.signalfx.com/", "https://stream.eu0.signalfx.com"),
        ("wss://stream.jp0.signalfx.com", "https://stream.jp0.signalfx.com"),
        ("ws://stream.local:8080", "http://stream.local:8080"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("https://splunk-api.example.com", "https://splunk-api.example.com"),
    ],
)
def test_stream_address(address: str, expected: str) -> None:
    assert stream_address(address) == expected
    assert repr(build(config(address), FakeStore())) == f"SplunkProvider({expected!r})"


def test_sse_events_across_chunks_and_line_endings() -> None:
    chunks = [b'event: data\r\ndata: {"a":', b" 1}\r\n\r\n: a comment\n", b"data: x\ndata: y\n\n", b"event: tail\n"]
    assert list(sse_events(chunks)) == [("data", '{"a": 1}'), ("message", "x\ny")]


def test_syntax_is_not_checked(signalflow: FakeSignalFlow) -> None:
    assert provider(signalflow.url).syntax_error("data(") is None
    assert signalflow.state.received == []
