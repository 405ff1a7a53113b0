"""A ``MetricsProvider`` over Graphite's render API (``GET /render?...&format=json``).

A Graphite MetricTemplate's query is, as in Flagger, the query string of a render URL, for example
``target=summarize(sumSeries(app.{{ target }}.errors.*), '1min', 'avg')&from=-10min``. Runs of
whitespace in it become one space (so a query can span lines), each parameter's name and value are
stripped of the spaces around them (Flagger keeps them, so that a line break before ``from=`` makes
a parameter `` from`` that Graphite ignores), ``format`` is set to ``json``, and
the rest goes to ``<spec.provider.address>/render`` unchanged: the time window is the query's own
``from``/``until`` (Graphite's default without them: the last 24 hours), and Serin adds none, as
Flagger does not. Graphite's offsets are written ``1min``, ``1h``...: a bare ``m`` (``from=-1m``)
is refused by graphite-web with 400 ("Invalid offset unit 'm'"), which is ``InvalidQuery``.

Credentials: with a ``secretRef``, the Secret's ``username`` and ``password`` (both required, as
in Flagger) as HTTP basic auth; without one, no auth. There is no default address (Flagger has
none either): the template must name its Graphite.

The answer is a list of series ``{"target", "datapoints": [[value, timestamp], ...]}``; the value
is the last non-null datapoint, as in Flagger. No series, or only null (or NaN) datapoints, is
``NoValuesFound`` (graphite-web also answers ``[]`` to a target it cannot parse). Where Serin
differs from Flagger:

* when several series have values (several ``target=``, or a wildcard that matches more than one
  series), Flagger takes the last value of the last of them; Serin answers ``InvalidQuery`` naming
  them, since which one is last is an accident of the query: aggregate them into one instead;
* a query without any ``target=`` is ``InvalidQuery`` (Graphite would answer ``[]`` for ever,
  which would read as "no data"); ``syntax_error`` says so without asking Graphite, which has no
  endpoint that checks a target's syntax.

Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials`` naming
the Secret, another 4xx ``InvalidQuery``, 429/5xx/timeouts ``MetricsUnavailable``.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from requests.auth import HTTPBasicAuth

from serin.kube.store import KubeStore
from serin.metrics.http import DEFAULT_TIMEOUT, HttpBackend
from serin.ports import InvalidQuery, NoValuesFound, ProviderConfig

RENDER_PATH = "/render"
_WHITESPACE = re.compile(r"\s+")


def build(config: ProviderConfig, store: KubeStore) -> GraphiteProvider:
    """The Graphite of a MetricTemplate: its address, and basic auth from its Secret if it has one."""
    if not config.address:
        raise InvalidQuery("graphite needs spec.provider.address, the URL of its render API (such as http://graphite)")
    auth: tuple[str, str] | None = None
    if config.secret_name:
        auth = (config.credential("username"), config.credential("password"))
    return GraphiteProvider(config, auth=auth)


class GraphiteProvider:
    """Render queries against one Graphite (graphite-web, or any server of its render API)."""

    def __init__(self, config: ProviderConfig, auth: tuple[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.backend = HttpBackend(config, timeout=timeout)
        if auth is not None:
            # As bytes, so that a name or password outside latin-1 travels as UTF-8 (as Go's
            # SetBasicAuth sends it) rather than failing in requests with its character quoted.
            self.backend.session.auth = HTTPBasicAuth(auth[0].encode(), auth[1].encode())

    def __repr__(self) -> str:
        return f"GraphiteProvider({self.backend.shown!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """The last non-null datapoint of the query's only series with values."""
        params = render_params(query)
        if not any(key == "target" for key, _ in params):
            raise InvalidQuery(_no_target(query))
        # Encoded here: several target= cannot travel in the mapping request_json takes.
        body = self.backend.request_json("GET", f"{RENDER_PATH}?{urlencode(params)}", f"query {query}")
        return _last_value(body, query)

    def syntax_error(self, query: str) -> str | None:
        """That the query has no ``target=``, or None: Graphite cannot check a target without rendering it."""
        if any(key == "target" for key, _ in render_params(query)):
            return None
        return _no_target(query)


def render_params(query: str) -> list[tuple[str, str]]:
    """The query's parameters in order, its whitespace collapsed, with ``format=json`` in place of any format."""
    flat = _WHITESPACE.sub(" ", query).strip()
    # Stripped too, so that a line break next to "&" does not make " from" a parameter Graphite ignores.
    pairs = [(key.strip(), value.strip()) for key, value in parse_qsl(flat, keep_blank_values=True)]
    return [*((key, value) for key, value in pairs if key != "format"), ("format", "json")]


def _no_target(query: str) -> str:
    return f"graphite query {query} has no target=: it must be a render query string such as target=<series>&from=-5min"


def _last_value(body: Any, query: str) -> float:
    if not isinstance(body, list):
        raise InvalidQuery(f"graphite answered query {query} with something that is not a list of series")
    found: list[tuple[str, float]] = []
    for series in body:
        points = series.get("datapoints") if isinstance(series, dict) else None
        if not isinstance(points, list):
            raise InvalidQuery(f"graphite answer for query {query} has a series without datapoints")
        value = _last_point(points, query)
        if value is not None:
            found.append((str(series.get("target", "")), value))
    if not found:
        raise NoValuesFound(f"no values found for query {query}")
    if len(found) > 1:
        targets = ", ".join(target for target, _ in found)
        raise InvalidQuery(
            f"query {query} returned {len(found)} series with values ({targets}), not one: aggregate them into one"
        )
    return found[0][1]


def _last_point(points: list[Any], query: str) -> float | None:
    """The value of the last datapoint that has one (not null, not NaN); None when none has."""
    for point in reversed(points):
        if not (isinstance(point, list) and len(point) == 2):
            raise InvalidQuery(f"query {query} returned a malformed datapoint: {point!r}")
        raw = point[0]
        if raw is None:
            continue
        try:
            # graphite-web sends numbers; some compatible servers send them as strings (Flagger reads both).
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError(raw)
            value = float(raw)
        except ValueError:
            raise InvalidQuery(f"query {query} returned a malformed datapoint: {point!r}") from None
        if not math.isnan(value):
            return value
    return None
