"""A ``MetricsProvider`` over InfluxDB 2's Flux query API (``POST /api/v2/query``).

It sends the rendered Flux query as Flagger's InfluxDB client does: a JSON body ``{"query": ...,
"type": "flux", "dialect": {...}}`` asking for annotated CSV with the ``datatype``, ``group`` and
``default`` annotations and a header row, to ``spec.provider.address`` (required: Flagger has no
default address) with ``?org=<org>``. With a ``secretRef``, the Secret's ``token`` is sent as
``Authorization: Token <token>`` and its ``org`` names the organization; both are then required, as
in Flagger. Without a ``secretRef`` neither is sent (an InfluxDB 1.8+ with Flux and no auth).

The Flux query says its own time window (``range(start: -{{ interval }})``): nothing is added.

The answer is one number: the ``_value`` of the query's only row, of type ``double``, ``long`` or
``unsignedLong``. A query that returns no rows, or whose ``_value`` is empty or NaN, is
``NoValuesFound``. An error table in the answer (Flux reports errors met while running the query
that way, with status 200) is ``InvalidQuery``. Where Serin differs from Flagger:

* no rows at all is ``NoValuesFound``; Flagger answers 0;
* several rows (several tables, or a table of several rows) are ``InvalidQuery``: the query
  should reduce them to one (``last()``, ``mean()``, ``sum()``); Flagger takes the first row;
* ``long`` and ``unsignedLong`` values (from ``count()``, say) are numbers; Flagger refuses any
  value that is not a ``double``; a ``string``, ``boolean`` or time value is ``InvalidQuery``;
* a row without a ``_value`` column is ``InvalidQuery`` (Flagger reads it as no values).

``syntax_error`` asks InfluxDB's ``POST /api/v2/query/analyze``, which parses the query without
running it. Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials``
naming the Secret, another 4xx ``InvalidQuery``, 429/5xx/timeouts ``MetricsUnavailable``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential, redacted
from serin.metrics.http import DEFAULT_TIMEOUT, HttpBackend
from serin.ports import InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig, SerinError

QUERY_PATH = "/api/v2/query"
ANALYZE_PATH = "/api/v2/query/analyze"
TOKEN = "token"
ORG = "org"
# The dialect of InfluxDB's Go client, which Flagger uses: every annotation, a header, commas.
DIALECT = {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True}
NUMBER_TYPES = frozenset({"double", "long", "unsignedLong"})
# Admission waits for this at most: a webhook must answer within seconds whatever InfluxDB does.
PARSE_TIMEOUT = 1.0


def build(config: ProviderConfig, store: KubeStore) -> InfluxdbProvider:
    """The InfluxDB of a MetricTemplate: its address, and its Secret's ``token`` and ``org``."""
    if not config.address:
        raise InvalidQuery("influxdb needs spec.provider.address: the URL of the InfluxDB to query")
    token = org = ""
    if config.secret_name:
        token = header_credential(config, TOKEN)
        org = config.credential(ORG).strip()
    return InfluxdbProvider(config, token=token, org=org)


class InfluxdbProvider:
    """Flux queries against one InfluxDB 2 (or a 1.8+ with Flux enabled)."""

    def __init__(
        self, config: ProviderConfig, token: str = "", org: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.backend = HttpBackend(config, "", timeout)
        self.org = org
        self._token = token
        if token:
            self.backend.session.headers["Authorization"] = f"Token {token}"

    def __repr__(self) -> str:
        return f"InfluxdbProvider({self.backend.shown!r}, org={self.org!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """The ``_value`` of the query's only row; the query says its own window (``range()``), so
        ``interval_seconds`` is not needed."""
        body = {"query": query, "type": "flux", "dialect": DIALECT}
        params = {"org": self.org} if self.org else None
        headers = {"Accept": "application/csv", "Content-Type": "application/json"}
        text = self._post(QUERY_PATH, f"query {query}", self.backend.timeout, params=params, body=body, headers=headers)
        return _only_value(text, query)

    def syntax_error(self, query: str) -> str | None:
        """InfluxDB's parse errors for the query (``/api/v2/query/analyze``), or None."""
        timeout = min(self.backend.timeout, PARSE_TIMEOUT)
        body = {"query": query, "type": "flux"}
        try:
            text = self._post(ANALYZE_PATH, f"the analysis of query {query}", timeout, body=body)
        except (InvalidQuery, MetricsUnavailable) as error:
            # Not an answer about the query: this InfluxDB could not be asked (or has no analyze).
            raise MetricsUnavailable(f"influxdb could not check the query: {error}") from None
        try:
            answer = json.loads(text)
        except ValueError:
            raise MetricsUnavailable(
                f"influxdb answered the analysis of query {query} with something that is not JSON"
            ) from None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if not isinstance(errors, list) or not errors:
            return None
        return "; ".join(_analysis_error(error) for error in errors)

    def _post(
        self,
        path: str,
        what: str,
        timeout: float,
        params: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        try:
            answer = self.backend.fetch(
                "POST", f"{self.backend.address}{path}", what, timeout, params=params, json=body, headers=headers
            )
            self.backend.check(answer, what)
        except SerinError as error:
            clean = redacted(error, (self._token,))
            if clean is error:
                raise
            raise clean from None
        return answer.text


@dataclass
class _Table:
    """One table of an annotated CSV answer: its columns' types and defaults, then its header."""

    types: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)
    header: list[str] | None = None


def records(text: str, query: str) -> Iterator[dict[str, tuple[str, str]]]:
    """The rows of an annotated CSV answer, each column's ``(datatype, text)`` by name, the column's
    default applied to an empty cell; InvalidQuery for an error table."""
    table = _Table()
    for row in csv.reader(io.StringIO(text)):
        if not any(row):
            # A blank line ends a table; the next one starts with its own annotations.
            table = _Table()
            continue
        first = row[0]
        if first.startswith("#"):
            if table.header is not None:
                table = _Table()
            if first == "#datatype":
                table.types = row[1:]
            elif first == "#default":
                table.defaults = row[1:]
            continue
        if table.header is None:
            table.header = row[1:]
            continue
        if table.header[:1] == ["error"]:
            message = row[1] if len(row) > 1 and row[1] else "unknown query error"
            reference = f" (reference {row[2]})" if len(row) > 2 and row[2] else ""
            raise InvalidQuery(f"influxdb could not run query {query}: {message}{reference}")
        cells = row[1:]
        if len(cells) != len(table.header):
            raise InvalidQuery(
                f"influxdb answered query {query} with a row of {len(cells)} columns under a header of "
                f"{len(table.header)}"
            )
        yield {
            name: (_at(table.types, index), cells[index] or _at(table.defaults, index))
            for index, name in enumerate(table.header)
        }


def _at(values: Sequence[str], index: int) -> str:
    return values[index] if index < len(values) else ""


def _only_value(text: str, query: str) -> float:
    rows = list(records(text, query))
    if not rows:
        raise NoValuesFound(f"no values found for query {query}")
    if len(rows) > 1:
        raise InvalidQuery(
            f"query {query} returned {len(rows)} rows, not one: reduce them to one (last(), mean(), sum())"
        )
    if "_value" not in rows[0]:
        raise InvalidQuery(f"query {query} returned a row without a _value column: {', '.join(rows[0])}")
    kind, cell = rows[0]["_value"]
    if not cell:
        raise NoValuesFound(f"no values found for query {query} (its _value is empty)")
    if kind and kind not in NUMBER_TYPES:
        raise InvalidQuery(f"query {query} returned a {kind} _value, not a number: {cell!r}")
    try:
        value = float(cell)
    except ValueError:
        raise InvalidQuery(f"query {query} returned a malformed _value: {cell!r}") from None
    if math.isnan(value):
        raise NoValuesFound(f"no values found for query {query} (NaN)")
    return value


def _analysis_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    where = f"line {error.get('line', '?')}, column {error.get('column', '?')}: " if "line" in error else ""
    return f"{where}{error.get('message') or 'error'}"
