"""A ``MetricsProvider`` over New Relic's Insights query API (``GET /v1/accounts/<id>/query?nrql=``).

It sends the rendered NRQL with the Secret's ``newrelic_query_key`` in the ``X-Query-Key`` header,
to the account of the Secret's ``newrelic_account_id`` (a number), at ``spec.provider.address`` or
``https://insights-api.newrelic.com`` (an EU account's address is
``https://insights-api.eu.newrelic.com``).

The time window is Flagger's: it appends ``SINCE <metric interval in seconds> seconds ago`` to
the query. The metric's ``interval`` does not reach a provider (``MetricsProvider.query`` takes
the query only), so the interval is Flagger's default metric interval (``1m``):
``SINCE 60 seconds ago``, unless a caller passes ``interval_seconds``. Unlike Flagger, a query
that has its own ``SINCE`` clause is sent as it is: its window is the one the user wrote (Flagger
appends a second one).

The answer is one number: the query must give one result (``{"results": [{...}]}``). Flagger
reads only the ``result`` field, which NRQL names an arithmetic expression's value; Serin also
takes the one value of a single function (``count``, ``average``, ``latest``, or the one
percentile of ``percentile(x, 99)``). No result, or a null value (no data in the window), is
``NoValuesFound``, as in Flagger; several results or several values (``FACET``, ``TIMESERIES``,
several items in ``SELECT``), or a value that is not a number, are ``InvalidQuery`` (Flagger says
no values). The query key and account id are stripped of surrounding whitespace.

Errors as every HTTP provider's (``serin.metrics.http``): 401/403 ``InvalidCredentials`` naming
the Secret, another 4xx (a NRQL syntax error is a 400) ``InvalidQuery``, 429/5xx/timeouts
``MetricsUnavailable``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential, redacted
from serin.metrics.http import DEFAULT_INTERVAL_SECONDS, DEFAULT_TIMEOUT, HttpBackend
from serin.ports import InvalidCredentials, InvalidQuery, NoValuesFound, ProviderConfig, SerinError

DEFAULT_ADDRESS = "https://insights-api.newrelic.com"
ACCOUNT_ID = "newrelic_account_id"
QUERY_KEY = "newrelic_query_key"

# Quoted strings ('...', with '' or \' inside) and backquoted names, whose words are not clauses.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'|`[^`]*`")
_SINCE = re.compile(r"\bSINCE\b", re.IGNORECASE)


def build(config: ProviderConfig, store: KubeStore) -> NewRelicProvider:
    """The New Relic account of a MetricTemplate's Secret, with its query key."""
    account_id = config.credential(ACCOUNT_ID).strip()
    if not account_id.isdigit():
        where = f"Secret {config.secret_name}" if config.secret_name else "no secretRef"
        raise InvalidCredentials(f"newrelic: {ACCOUNT_ID} in {where} is not an account number")
    return NewRelicProvider(config, account_id=account_id, query_key=header_credential(config, QUERY_KEY))


def with_window(query: str, interval_seconds: float) -> str:
    """The NRQL to send: ``query`` as it is when it has a SINCE clause, else with Flagger's."""
    if _SINCE.search(_QUOTED.sub("''", query)):
        return query
    return f"{query.rstrip()} SINCE {int(interval_seconds)} seconds ago"


class NewRelicProvider:
    """NRQL queries against one New Relic account."""

    def __init__(
        self, config: ProviderConfig, account_id: str, query_key: str, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.backend = HttpBackend(config, DEFAULT_ADDRESS, timeout)
        self.backend.session.headers.update({"X-Query-Key": query_key, "Accept": "application/json"})
        self.path = f"/v1/accounts/{account_id}/query"
        self._key = query_key

    def __repr__(self) -> str:
        return f"NewRelicProvider({self.backend.shown!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> float:
        """The one value of the query's one result, over the last interval unless it says SINCE."""
        nrql = with_window(query, interval_seconds)
        try:
            body = self.backend.request_json("GET", self.path, f"query {nrql}", params={"nrql": nrql})
        except SerinError as error:
            clean = redacted(error, (self._key,))
            if clean is error:
                raise
            raise clean from None
        return _only_value(body, nrql)

    def syntax_error(self, query: str) -> str | None:
        """None: the Insights API has no endpoint that checks NRQL without running it."""
        return None


def _only_value(body: Any, nrql: str) -> float:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise InvalidQuery(
            f"query {nrql} did not give results of one value (FACET and TIMESERIES queries give several)"
        )
    if not results:
        raise NoValuesFound(f"no values found for query {nrql}")
    if len(results) > 1 or not isinstance(results[0], dict):
        raise InvalidQuery(f"query {nrql} gave {len(results)} results, not one: select one value")
    fields = results[0]
    # An arithmetic expression's value is ``result``; a single function's is named after it.
    value = fields["result"] if "result" in fields else _single(fields, nrql)
    if isinstance(value, dict):
        value = _single(value, nrql)
    if value is None:
        raise NoValuesFound(f"no values found for query {nrql}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidQuery(f"query {nrql} gave {repr(value)[:100]}, not a number")
    if math.isnan(value):
        raise NoValuesFound(f"no values found for query {nrql} (NaN)")
    return float(value)


def _single(fields: dict[str, Any], nrql: str) -> Any:
    if len(fields) != 1:
        names = ", ".join(sorted(fields)) or "none"
        raise InvalidQuery(f"query {nrql} gave {len(fields)} values ({names}), not one")
    return next(iter(fields.values()))
