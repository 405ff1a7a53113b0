"""A ``MetricsProvider`` over the Prometheus HTTP API (``/api/v1/query``), for Prometheus and compatibles.

It sends one instant query and turns the answer into one number, or into the engine's errors:
``NoValuesFound`` when Prometheus answered without data (an empty vector, or NaN from a 0/0 rate when
there is no traffic); ``InvalidQuery`` when the query is the problem (Prometheus refuses it with a
4xx, or it does not give one number): retrying cannot help; ``MetricsUnavailable`` when Prometheus
could not be asked or failed on its side (unreachable, a timeout, a 5xx): later it may answer.

It must not judge values against thresholds or build queries (see ``serin.metrics.builtin``), and it
never lets a ``requests`` error escape.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

import requests

from serin import egress
from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential
from serin.metrics.http import DEFAULT_TIMEOUT, configured_session, not_json, retrying_session, unanswered
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig

ERROR_TYPE = re.compile(r"[a-z_]{1,32}")
# Admission waits for this at most: a webhook must answer within seconds whatever Prometheus does.
PARSE_TIMEOUT = 1.0


def build(config: ProviderConfig, store: KubeStore) -> PrometheusProvider:
    """A Prometheus of a MetricTemplate: basic auth (``username``/``password``) or a bearer
    ``token`` from its Secret, its headers, and its TLS verification choice."""
    session = configured_session(config)
    if config.credential("token", required=False):
        session.headers["Authorization"] = f"Bearer {header_credential(config, 'token')}"
    elif config.credential("username", required=False):
        session.auth = (config.credential("username"), config.credential("password"))
    return PrometheusProvider(config.address, session=session, secret_name=config.secret_name)


class PrometheusProvider:
    """Instant queries against one Prometheus; ``session`` is used as given (retries, auth, TLS are its own)."""

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        secret_name: str = "",
    ) -> None:
        self.address = address.rstrip("/")
        # What messages name: the address without user info, which may hold a password.
        self.shown = egress.shown(self.address)
        self.secret_name = secret_name
        self.timeout = timeout
        self._owns_session = session is None
        self.session = session if session is not None else retrying_session()

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.shown!r})"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """The query's value: the first sample of a vector, or a scalar (PromQL says its own
        window: ``interval_seconds`` is not needed)."""
        return self._value(query, self._get_data("query", {"query": query}))

    def query_at(self, query: str, at: datetime.datetime) -> float:
        """The query's value as Prometheus evaluates it at a past time."""
        return self._value(query, self._get_data("query", {"query": query, "time": f"{at.timestamp():.3f}"}))

    def series(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[float, ...]:
        """The first series of a range query (as ``query`` answers with the first sample), without
        its NaN samples (0/0 when nothing was requested)."""
        return tuple(value for _, value in self.points(query, start, end, step_seconds))

    def points(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[tuple[float, float], ...]:
        """``series`` with each value's time (seconds since the epoch)."""
        params = {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step_seconds:g}",
        }
        data = self._get_data("query_range", params)
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise InvalidQuery(f"query {query} returned a {data.get('resultType') or 'malformed'} range result")
        values = result[0].get("values") if result and isinstance(result[0], dict) else []
        if not isinstance(values, list):
            raise InvalidQuery(f"query {query} returned a malformed series: {values!r}"[:300])
        points = tuple(
            (_sample_time(sample, query), value)
            for sample in values
            if not math.isnan(value := _sample_value(sample, query))
        )
        if not points:
            raise NoValuesFound(f"no values found for query {query} from {start:%H:%M:%S} to {end:%H:%M:%S}")
        return points

    def _value(self, query: str, data: dict[str, Any]) -> float:
        result_type = data.get("resultType")
        result = data.get("result")
        if result_type == "vector" and isinstance(result, list):
            if not result:
                raise NoValuesFound(f"no values found for query {query}")
            # Like Flagger, a query returning several series is answered by its first one.
            sample = result[0].get("value") if isinstance(result[0], dict) else None
        elif result_type == "scalar":
            sample = result
        else:
            raise InvalidQuery(f"query {query} returned a {result_type or 'malformed'} result, not a single value")
        value = _sample_value(sample, query)
        if math.isnan(value):
            # 0/0 when nothing was requested during the interval: no data, not a measurement.
            raise NoValuesFound(f"no values found for query {query} (NaN)")
        return value

    def syntax_error(self, query: str) -> str | None:
        """Prometheus's parse error for the query, or None: it is asked to format it (``/api/v1/format_query``,
        Prometheus 2.38+), which parses without evaluating anything."""
        answer = self._fetch("format_query", {"query": query}, f"to format query {query}", PARSE_TIMEOUT)
        if answer.status == 400:
            return egress.excerpt(answer)
        if answer.status != 200:
            raise MetricsUnavailable(f"prometheus at {self.shown} answered {answer.status} to format_query")
        return None

    def is_online(self) -> bool:
        """Whether Prometheus answers ``vector(1)`` with 1 (works behind a path prefix, unlike ``/-/healthy``)."""
        try:
            return self.query("vector(1)") == 1.0
        except (NoValuesFound, InvalidQuery, MetricsUnavailable):
            return False

    def _fetch(self, endpoint: str, params: dict[str, str], what: str, timeout: float | None = None) -> egress.Answer:
        seconds = self.timeout if timeout is None else min(self.timeout, timeout)
        try:
            return egress.fetch(self.session, "GET", f"{self.address}/api/v1/{endpoint}", seconds, params=params)
        except egress.EgressError as error:
            raise unanswered(f"prometheus at {self.shown}", what, error) from None

    def _get_data(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        query = params["query"]
        answer = self._fetch(endpoint, params, f"query {query}")
        try:
            body: Any = answer.json()
        except ValueError:
            body = None
        # Prometheus explains 400 (bad_data: parse errors), 422 (execution) and 503 (timeout) in `error`.
        failed = answer.status != 200 or not isinstance(body, dict) or body.get("status") != "success"
        if failed:
            error_type = body.get("errorType") if isinstance(body, dict) else None
            # Prometheus's types are short words (bad_data, execution, timeout); nothing else is repeated.
            kind = f" ({error_type})" if isinstance(error_type, str) and ERROR_TYPE.fullmatch(error_type) else ""
            detail = egress.excerpt(answer) if isinstance(body, dict) else not_json(answer)
            message = f"prometheus at {self.shown} answered status {answer.status}{kind} for query {query}: {detail}"
            if answer.status in (401, 403):
                secret = f"Secret {self.secret_name}" if self.secret_name else "no secretRef"
                raise InvalidCredentials(
                    f"prometheus at {self.shown} refused the credentials ({answer.status}; they come from {secret})"
                )
            if answer.status >= 500 or answer.status == 429:
                raise MetricsUnavailable(message)
            # A 4xx, or a 200 that is not Prometheus's JSON (the address is not a Prometheus API):
            # the same request will get the same answer.
            raise InvalidQuery(message)
        data = body.get("data")
        if not isinstance(data, dict):
            raise InvalidQuery(f"prometheus answer for query {query} has no data")
        return data


def _sample_time(sample: Any, query: str) -> float:
    try:
        return float(sample[0])
    except (TypeError, ValueError, IndexError, KeyError):
        raise InvalidQuery(f"query {query} returned a sample without a time: {sample!r}"[:300]) from None


def _sample_value(sample: Any, query: str) -> float:
    # A sample is [unix_time, "value"]; the value is a string so that NaN and ±Inf survive JSON.
    if isinstance(sample, list) and len(sample) == 2:
        try:
            return float(sample[1])
        except (TypeError, ValueError):
            pass
    raise InvalidQuery(f"query {query} returned a malformed sample: {sample!r}")
