"""A ``MetricsProvider`` over Splunk Observability Cloud (SignalFx): SignalFlow programs run by the
SignalFlow API's ``POST /v2/signalflow/execute``, whose answer is a Server-Sent Events stream.

Flagger (its ``splunk`` provider, newer than v1.36) runs the query as a SignalFlow program through
SignalFx's Go client over a WebSocket (``wss://stream.<realm>.signalfx.com/v2/signalflow``), with
``start`` ten metric intervals ago, ``stop`` now and ``immediate``. The same computation is offered
over plain HTTP: Splunk's SignalFlow API documents ``POST /v2/signalflow/execute`` on the same
stream host, the program as a ``text/plain`` body, ``start``/``stop`` (milliseconds since the epoch)
and ``immediate`` as URL parameters, and the stream messages (``control-message``, ``metadata``,
``data``, ``message``, ``error``...) as SSE events carrying the JSON a WebSocket would carry
(SignalFx's own Python client offers this as its SSE transport). So Serin asks exactly what Flagger
asks, over HTTP with ``requests``, and needs no WebSocket client.

Address: ``spec.provider.address`` is required (Flagger has no default): the realm's API URL
(``https://api.us1.signalfx.com``) or stream URL (``wss://stream.us1.signalfx.com``); as in Flagger,
a host ``api.<realm>...`` becomes ``stream.<realm>...``, and ``ws``/``wss`` become ``http``/``https``.
Credentials: the Secret's ``sf_token_key`` (Flagger's key), sent as ``X-SF-Token``.

The time window is Flagger's: the last ten metric intervals, up to now. The metric's ``interval``
does not reach a provider (``MetricsProvider.query`` takes the query only), so it is ten times
Flagger's default metric interval (``1m``), 600 seconds, unless a caller passes ``interval_seconds``.

The answer is one number as in Flagger: the value of the last datapoint that has one, of the
program's only output time series. No datapoint with a value is ``NoValuesFound``; datapoints of
two or more time series (tsIds) are ``InvalidQuery``, as in Flagger. Where Serin differs:

* an ``error`` message in the stream is ``InvalidQuery`` (Flagger: an error too), and a
  ``CHANNEL_ABORT``, or a stream that ends before ``END_OF_CHANNEL``, is ``MetricsUnavailable``
  (Flagger reads whatever arrived before the abort as the answer);
* the whole computation must finish within the provider's timeout (Flagger's: 5 seconds too).

Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials`` naming
the Secret, another 4xx (a program that does not compile) ``InvalidQuery``, 429/5xx/timeouts
``MetricsUnavailable``. ``syntax_error`` is None: the API has no endpoint that only compiles a
program.
"""

from __future__ import annotations

import codecs
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from serin import egress
from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential, redacted
from serin.metrics.http import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT,
    WINDOW_INTERVALS,
    HttpBackend,
    unanswered,
)
from serin.ports import InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig, SerinError

EXECUTE_PATH = "/v2/signalflow/execute"
TOKEN_KEY = "sf_token_key"
TOKEN_HEADER = "X-SF-Token"


def build(config: ProviderConfig, store: KubeStore) -> SplunkProvider:
    """The Splunk Observability realm of a MetricTemplate, with the access token of its Secret."""
    if not config.address:
        raise InvalidQuery(
            "splunk needs spec.provider.address, the API or stream URL of its realm "
            "(such as https://api.us1.signalfx.com)"
        )
    return SplunkProvider(config, token=header_credential(config, TOKEN_KEY))


def stream_address(address: str) -> str:
    """The SignalFlow stream host's HTTP URL for an API or stream URL, as Flagger maps it:
    ``https://api.us1.signalfx.com`` and ``wss://stream.us1.signalfx.com`` are both
    ``https://stream.us1.signalfx.com``; any other host is kept."""
    parts = urlsplit(address.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    host = parts.netloc
    if host.startswith("api."):
        host = "stream." + host.removeprefix("api.")
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


class SplunkProvider:
    """SignalFlow programs run on one Splunk Observability realm."""

    def __init__(
        self,
        config: ProviderConfig,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = HttpBackend(config, timeout=timeout)
        self.backend.address = stream_address(self.backend.address)
        self.backend.session.headers[TOKEN_HEADER] = token
        self._token = token
        self.clock = clock

    def __repr__(self) -> str:
        return f"SplunkProvider({self.backend.shown!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> float:
        """The last value of the program's only output time series over the last ten intervals."""
        window_ms = int(WINDOW_INTERVALS * interval_seconds * 1000)
        stop = int(self.clock() * 1000)
        params = {"start": stop - window_ms, "stop": stop, "immediate": "true"}
        try:
            points = self._execute(query, params)
        except SerinError as error:
            clean = redacted(error, (self._token,))
            if clean is error:
                raise
            raise clean from None
        return _only_value(points, query, window_ms // 1000)

    def syntax_error(self, query: str) -> str | None:
        """None: the SignalFlow API has no endpoint that compiles a program without running it."""
        return None

    def _execute(self, program: str, params: dict[str, Any]) -> list[tuple[str, float]]:
        """The (tsId, value) of every datapoint with a value, in the order the stream sent them."""
        where = f"splunk at {self.backend.shown}"
        timeout = self.backend.timeout
        what = f"query {program}"
        try:
            with egress.streamed(
                self.backend.session,
                "POST",
                f"{self.backend.address}{EXECUTE_PATH}",
                timeout,
                params=params,
                data=program.encode(),
                headers={"Content-Type": "text/plain", "Accept": "text/event-stream"},
            ) as stream:
                if not 200 <= stream.status < 300:
                    self.backend.check(stream.whole(), what)
                points: list[tuple[str, float]] = []
                for event, data in sse_events(stream.chunks()):
                    if _read_message(event, data, program, points):
                        return points
        except egress.EgressError as error:
            raise unanswered(where, what, error) from None
        raise MetricsUnavailable(f"{where} ended the answer to query {program} before the computation finished")


def sse_events(chunks: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """(event type, data) of each Server-Sent Event in a stream of bytes (the WHATWG format: lines
    ending in LF or CRLF, ``field: value``, several ``data`` lines joined by LF, a blank line ends
    an event, ``:`` starts a comment; an event without a type is a ``message``)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending, event = "", ""
    data: list[str] = []
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        for line in lines:
            line = line.removesuffix("\r")
            if not line:
                if data:
                    yield event or "message", "\n".join(data)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _read_message(event: str, data: str, program: str, points: list[tuple[str, float]]) -> bool:
    """Take one stream message into ``points``; True once the computation has ended."""
    try:
        message = json.loads(data)
    except ValueError:
        raise InvalidQuery(f"splunk answered query {program} with a {event} message that is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidQuery(f"splunk answered query {program} with a malformed {event} message")
    if event == "data":
        for datum in message.get("data") or []:
            point = _datapoint(datum, program)
            if point is not None:
                points.append(point)
    elif event == "error":
        # As SignalFx's clients put it: "<code> (<errorType>): <message>".
        code, kind = str(message.get("error") or ""), str(message.get("errorType") or "")
        label = f"{code} ({kind})" if code and kind else code or kind
        detail = message.get("message") or message.get("errors") or "no explanation"
        raise InvalidQuery(f"splunk refused query {program}: {f'{label}: ' if label else ''}{detail}")
    elif event == "control-message":
        if message.get("event") == "END_OF_CHANNEL":
            return True
        if message.get("event") == "CHANNEL_ABORT":
            info = message.get("abortInfo") or {}
            why = info.get("sf_job_abortReason") or info.get("sf_job_abortState") or "no reason given"
            raise MetricsUnavailable(f"splunk aborted query {program}: {why}")
    # metadata, message (job information), event and expired-tsid messages carry no values.
    return False


def _datapoint(datum: Any, program: str) -> tuple[str, float] | None:
    if not isinstance(datum, dict) or not isinstance(datum.get("tsId"), str):
        raise InvalidQuery(f"query {program} returned a malformed datapoint: {datum!r}")
    value = datum.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidQuery(f"query {program} returned a malformed datapoint: {datum!r}")
    if math.isnan(value):
        return None
    return datum["tsId"], float(value)


def _only_value(points: list[tuple[str, float]], program: str, window: int) -> float:
    if not points:
        raise NoValuesFound(f"no values found for query {program} in the last {window}s")
    series = sorted({tsid for tsid, _ in points})
    if len(series) > 1:
        raise InvalidQuery(
            f"query {program} returned {len(series)} time series ({', '.join(series)}), not one: "
            "aggregate them into one (such as .sum() or .mean())"
        )
    return points[-1][1]
