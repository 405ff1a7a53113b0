"""A ``MetricsProvider`` over Dynatrace's Metrics API v2 (``GET /api/v2/metrics/query``).

It sends the rendered query as the ``metricSelector``, with ``resolution=Inf`` (one data point for
the whole window) and ``from``/``to`` in milliseconds since the epoch, and the Secret's
``dynatrace_token`` as ``Authorization: Api-Token <token>`` (the token needs the
``metrics.read`` scope). The address is the environment's URL (``https://<id>.live.dynatrace.com``,
or ``https://<domain>/e/<id>`` for Managed): as in Flagger there is no default, and a template
without one is ``InvalidQuery``.

The time window is Flagger's: the last ten metric intervals, up to now. The metric's ``interval``
does not reach a provider (``MetricsProvider.query`` takes the query only), and a metric selector
cannot say its own window, so it is ten times Flagger's default metric interval (``1m``): the last
600 000 ms, unless a caller passes ``interval_seconds``.

The answer is one number as in Flagger: the value of the series of the selector's metric. No
metric, no series or no value is ``NoValuesFound``. Where Serin differs from Flagger:

* a null value (no data points in the window) is ``NoValuesFound``; Flagger reads it as 0;
* several metrics (a selector list), several series (one per dimension value: fold them, e.g.
  with ``:splitBy()``) or several values are ``InvalidQuery``; Flagger takes the last series'
  first value;
* the token is stripped of surrounding whitespace.

Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials`` naming
the Secret, another 4xx (a selector Dynatrace cannot parse is a 400) ``InvalidQuery``,
429/5xx/timeouts ``MetricsUnavailable``.
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

QUERY_PATH = "/api/v2/metrics/query"
TOKEN = "dynatrace_token"


def build(config: ProviderConfig, store: KubeStore) -> DynatraceProvider:
    """The Dynatrace environment of a MetricTemplate, with the API token from its Secret."""
    if not config.address:
        raise InvalidQuery(
            "dynatrace needs spec.provider.address, the environment's URL "
            "(such as https://<environment-id>.live.dynatrace.com): there is no default"
        )
    return DynatraceProvider(config, token=header_credential(config, TOKEN))


class DynatraceProvider:
    """Metric selector queries against one Dynatrace environment."""

    def __init__(
        self,
        config: ProviderConfig,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = HttpBackend(config, timeout=timeout)
        self.backend.session.headers["Authorization"] = f"Api-Token {token}"
        self._token = token
        self.clock = clock

    def __repr__(self) -> str:
        return f"DynatraceProvider({self.backend.shown!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> float:
        """The selector's one value over the last ten intervals."""
        window = int(WINDOW_INTERVALS * interval_seconds * 1000)
        now = int(self.clock()) * 1000
        params = {"metricSelector": query, "resolution": "Inf", "from": now - window, "to": now}
        try:
            body = self.backend.request_json("GET", QUERY_PATH, f"metric selector {query}", params=params)
        except SerinError as error:
            clean = redacted(error, (self._token,))
            if clean is error:
                raise
            raise clean from None
        return _only_value(body, query, window)

    def syntax_error(self, query: str) -> str | None:
        """None: the Metrics API has no endpoint that checks a selector without running it."""
        return None


def _only_value(body: Any, query: str, window: int) -> float:
    metrics = body.get("result") if isinstance(body, dict) else None
    if not isinstance(metrics, list):
        raise InvalidQuery(f"dynatrace answer for metric selector {query} has no result")
    if not metrics:
        raise NoValuesFound(f"no values found for metric selector {query} in the last {window}ms")
    if len(metrics) > 1:
        raise InvalidQuery(f"metric selector {query} selected {len(metrics)} metrics, not one")
    series = metrics[0].get("data") if isinstance(metrics[0], dict) else None
    if not isinstance(series, list):
        raise InvalidQuery(f"dynatrace answer for metric selector {query} has a metric without data")
    if not series:
        raise NoValuesFound(f"no values found for metric selector {query} in the last {window}ms")
    if len(series) > 1:
        raise InvalidQuery(
            f"metric selector {query} returned {len(series)} series, not one: fold them (e.g. with :splitBy())"
        )
    values = series[0].get("values") if isinstance(series[0], dict) else None
    if not isinstance(values, list):
        raise InvalidQuery(f"dynatrace answer for metric selector {query} has a series without values")
    if len(values) > 1:
        raise InvalidQuery(f"metric selector {query} returned {len(values)} values, not one")
    value = values[0] if values else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise NoValuesFound(f"no values found for metric selector {query} in the last {window}ms")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidQuery(f"metric selector {query} returned {repr(value)[:100]}, not a number")
    return float(value)
