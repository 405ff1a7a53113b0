"""A ``MetricsProvider`` over Datadog's "query timeseries points" API (``GET /api/v1/query``).

It sends the rendered query with ``from``/``to`` (seconds since the epoch) and the Secret's
``datadog_api_key`` and ``datadog_application_key`` in the ``DD-API-KEY`` and
``DD-APPLICATION-KEY`` headers, to ``spec.provider.address`` or ``https://api.datadoghq.com``
(another Datadog site, such as ``https://api.datadoghq.eu``, is an address).

The time window is Flagger's: the points of the last ten metric intervals, up to now. The
metric's ``interval`` does not reach a provider (``MetricsProvider.query`` takes the query only),
and a Datadog query cannot say its own window, so it is ten times Flagger's default metric
interval (``1m``): the last 600 seconds, unless a caller passes ``interval_seconds``.

The answer is one number as in Flagger: the last point of the series. A query that returns no
series, or a series without points, is ``NoValuesFound``. Where Serin differs from Flagger:

* points whose value is null (Datadog's "no data in this bucket", common for the newest one) or
  NaN are skipped, so the value is the last point that has one; Flagger reads a null as 0;
* a query that returns several series (a ``by {...}`` clause, several queries) is
  ``InvalidQuery``, not answered by whichever series came first;
* an answer of status ``error`` is ``InvalidQuery``; keys are stripped of surrounding whitespace.

Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials`` naming
the Secret, another 4xx ``InvalidQuery``, 429/5xx/timeouts ``MetricsUnavailable``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential, redacted
from serin.metrics.http import DEFAULT_INTERVAL_SECONDS, DEFAULT_TIMEOUT, WINDOW_INTERVALS, HttpBackend
from serin.ports import InvalidQuery, NoValuesFound, ProviderConfig, SerinError

DEFAULT_ADDRESS = "https://api.datadoghq.com"
QUERY_PATH = "/api/v1/query"
API_KEY = "datadog_api_key"
APPLICATION_KEY = "datadog_application_key"
# Flagger asks for the points of the last ten metric intervals.


def build(config: ProviderConfig, store: KubeStore) -> DatadogProvider:
    """The Datadog of a MetricTemplate, with both keys from its Secret."""
    return DatadogProvider(
        config,
        api_key=header_credential(config, API_KEY),
        application_key=header_credential(config, APPLICATION_KEY),
    )


class DatadogProvider:
    """Timeseries queries against one Datadog site."""

    def __init__(
        self,
        config: ProviderConfig,
        api_key: str,
        application_key: str,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = HttpBackend(config, DEFAULT_ADDRESS, timeout)
        self.backend.session.headers.update({"DD-API-KEY": api_key, "DD-APPLICATION-KEY": application_key})
        self._keys = (api_key, application_key)
        self.clock = clock

    def __repr__(self) -> str:
        return f"DatadogProvider({self.backend.shown!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> float:
        """The last point of the query's only series over the last ten intervals."""
        window = int(WINDOW_INTERVALS * interval_seconds)
        now = int(self.clock())
        params = {"query": query, "from": now - window, "to": now}
        try:
            body = self.backend.request_json("GET", QUERY_PATH, f"query {query}", params=params)
        except SerinError as error:
            clean = redacted(error, self._keys)
            if clean is error:
                raise
            raise clean from None
        return _last_value(body, query, window)

    def syntax_error(self, query: str) -> str | None:
        """None: Datadog has no endpoint that checks a query without running it."""
        return None


def _last_value(body: Any, query: str, window: int) -> float:
    if not isinstance(body, dict):
        raise InvalidQuery(f"datadog answered query {query} with something that is not a timeseries answer")
    if body.get("status") == "error":
        raise InvalidQuery(f"datadog refused query {query}: {body.get('error') or 'no explanation'}")
    series = body.get("series")
    if not isinstance(series, list):
        raise InvalidQuery(f"datadog answer for query {query} has no series")
    if not series:
        raise NoValuesFound(f"no values found for query {query} in the last {window}s")
    if len(series) > 1:
        raise InvalidQuery(f"query {query} returned {len(series)} series, not one: aggregate them into one")
    points = series[0].get("pointlist") if isinstance(series[0], dict) else None
    if not isinstance(points, list):
        raise InvalidQuery(f"datadog answer for query {query} has a series without a pointlist")
    # Each point is [<ms since the epoch>, <value or null>]; the newest comes last.
    for point in reversed(points):
        if not (isinstance(point, list) and len(point) == 2):
            raise InvalidQuery(f"query {query} returned a malformed point: {repr(point)[:100]}")
        value = point[1]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidQuery(f"query {query} returned a malformed point: {repr(point)[:100]}")
        if not math.isnan(value):
            return float(value)
    raise NoValuesFound(f"no values found for query {query} in the last {window}s")
