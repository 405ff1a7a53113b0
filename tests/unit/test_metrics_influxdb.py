"""The InfluxDB provider against a local InfluxDB 2 query API of the test's own.

No InfluxDB with Flux can be run here: Debian's ``influxdb`` is 1.x without Flux, and PyPI has
clients only. So ``FakeInfluxDB`` serves, on 127.0.0.1, the two endpoints of the InfluxDB OSS v2
API reference (https://docs.influxdata.com/influxdb/v2/api/query-data/) that the provider uses:

* ``POST /api/v2/query?org=<org>`` with ``Authorization: Token <token>`` and a JSON body
  ``{"query", "type": "flux", "dialect"}``, answered in annotated CSV as the "Annotated CSV"
  reference (https://docs.influxdata.com/influxdb/v2/reference/syntax/annotated-csv/) describes it:
  ``#group``/``#datatype``/``#default`` annotation rows, a header row whose first column is the
  annotation column, record rows, a blank line between tables, CRLF line ends; an empty body when
  the query finds nothing; errors met while running as an ``error,reference`` table with status
  200. Refusals are JSON ``{"code", "message"}``: 401 ``unauthorized``, 404 for an unknown
  organization, 400 ``invalid`` for a query that does not compile, 500 ``internal error``;
* ``POST /api/v2/query/analyze`` with ``{"query", "type": "flux"}``, answered
  ``{"errors": [{"line", "column", "character", "message"}]}``.

It answers the Flux queries it knows with their tables (it does not evaluate Flux). Flagger's
``pkg/metrics/providers/influxdb.go`` and the InfluxDB Go client it uses are the reference for the
request (body, dialect, headers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from serin.metrics.influxdb import InfluxdbProvider, build
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

TOKEN = "influx-token-Zx9_0123456789abcdef=="
ORG = "shop-org"
SECRET = "test/influxdb"
ERROR_RATE = """from(bucket: "istio")
  |> range(start: -1m)
  |> filter(fn: (r) => r._measurement == "istio_requests_total" and r.destination_workload == "podinfo")
  |> filter(fn: (r) => r._field == "error_rate")
  |> mean()"""
REQUESTS = 'from(bucket: "istio") |> range(start: -1m) |> filter(fn: (r) => r._field == "requests") |> count()'
BY_HOST = 'from(bucket: "telegraf") |> range(start: -1m) |> filter(fn: (r) => r._field == "usage") |> last()'
NOTHING = 'from(bucket: "istio") |> range(start: -1m) |> filter(fn: (r) => r.destination_workload == "gone")'
SLOW = 'from(bucket: "slow") |> range(start: -1m)'
BROKEN = 'frm(bucket: "istio")'

TIME_COLUMNS = ["dateTime:RFC3339", "dateTime:RFC3339"]
START_STOP = ["2023-11-14T22:12:20Z", "2023-11-14T22:13:20Z"]


def table(
    types: Sequence[str], header: Sequence[str], rows: Sequence[Sequence[str]], defaults: Sequence[str] = ()
) -> str:
    """One annotated CSV table as InfluxDB writes it (the ``result`` column's default ``_result``)."""
    group = ",".join(["#group", *("true" if name in ("table", "_start", "_stop") else "false" for name in header)])
    lines = [
        group,
        ",".join(["#datatype", *types]),
        ",".join(["#default", *(defaults or ["_result", *[""] * (len(header) - 1)])]),
        ",".join(["", *header]),
        *(",".join(["", *row]) for row in rows),
    ]
    return "\r\n".join(lines) + "\r\n"


def value_table(kind: str, values: Sequence[str], tables: Sequence[int] = ()) -> str:
    header = ["result", "table", "_start", "_stop", "_value", "_field", "_measurement"]
    types = ["string", "long", *TIME_COLUMNS, kind, "string", "string"]
    numbers = tables or [0] * len(values)
    rows = [["", str(n), *START_STOP, value, "error_rate", "istio"] for n, value in zip(numbers, values, strict=True)]
    return table(types, header, rows)


ANSWERS = {
    ERROR_RATE: value_table("double", ["1.25"]),
    REQUESTS: value_table("long", ["42"]),
    # last() per host: one table per host, in one CSV table (same schema).
    BY_HOST: value_table("double", ["17.5", "3.25"], tables=[0, 1]),
    NOTHING: "\r\n",
}
SYNTAX_ERRORS = {BROKEN: [{"line": 1, "column": 1, "character": 0, "message": "undefined identifier frm"}]}


class FakeInfluxDB(RecordingApi[Received]):
    """``/api/v2/query`` answering the queries it knows, and ``/api/v2/query/analyze``."""

    def __init__(self) -> None:
        super().__init__(InfluxHandler)
        self.answers = dict(ANSWERS)
        # query -> (status, JSON body) answered instead
        self.canned: dict[str, tuple[int, Any]] = {}


class InfluxHandler(JsonHandler):
    server: FakeInfluxDB
    json_type = "application/json; charset=utf-8"

    def do_POST(self) -> None:
        raw = self.read_body()
        body = json.loads(raw) if raw else None
        sent = self.server.record(Received.of(self, body))
        params = sent.params
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            return self.answer(401, {"code": "unauthorized", "message": "unauthorized access"})
        query = body.get("query", "") if isinstance(body, dict) else ""
        if sent.path == "/api/v2/query/analyze":
            return self.answer(200, {"errors": SYNTAX_ERRORS.get(query, [])})
        if sent.path != "/api/v2/query":
            return self.answer(404, {"code": "not found", "message": "path not found"})
        if params.get("org") != ORG:
            return self.answer(
                404, {"code": "not found", "message": f'organization name "{params.get("org")}" not found'}
            )
        if query == SLOW:
            self.server.release.wait(5)
            return None
        if query in self.server.canned:
            return self.answer(*self.server.canned[query])
        if query in SYNTAX_ERRORS:
            return self.answer(
                400, {"code": "invalid", "message": "compilation failed: error @1:1-1:4: undefined identifier frm"}
            )
        if query not in self.server.answers:
            return self.answer(400, {"code": "invalid", "message": f"unknown query {query}"})
        self.send(200, self.server.answers[query].encode(), "text/csv; charset=utf-8")


@pytest.fixture
def influxdb() -> Iterator[FakeInfluxDB]:
    with serving(FakeInfluxDB()) as server:
        yield server


def config(address: str, **secret: str) -> ProviderConfig:
    return ProviderConfig(
        type="influxdb",
        address=address,
        headers=(("X-Team", ("canary",)),),
        secret_name=SECRET,
        secret=tuple(sorted({"token": TOKEN, "org": ORG, **secret}.items())),
    )


def provider(influxdb: FakeInfluxDB, timeout: float = 5.0, **secret: str) -> InfluxdbProvider:
    built = build(config(influxdb.url, **secret), FakeStore())
    built.backend.timeout = timeout
    return built


# ---- the value, and what is sent ---------------------------------------------------------------


def test_the_value_is_the_only_rows_value_asked_as_flaggers_client_does(influxdb: FakeInfluxDB) -> None:
    assert provider(influxdb).query(ERROR_RATE) == 1.25
    [sent] = influxdb.received
    assert (sent.path, sent.params) == ("/api/v2/query", {"org": ORG})
    # The query as rendered (its window is its own range()), annotated CSV with a header.
    assert sent.body == {
        "query": ERROR_RATE,
        "type": "flux",
        "dialect": {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True},
    }
    assert sent.headers["Authorization"] == f"Token {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/csv"
    assert sent.headers["X-Team"] == "canary"


def test_a_long_value_is_a_number(influxdb: FakeInfluxDB) -> None:
    assert provider(influxdb).query(REQUESTS) == 42.0


def test_an_empty_cell_takes_its_columns_default(influxdb: FakeInfluxDB) -> None:
    header = ["result", "table", "_value"]
    influxdb.answers[ERROR_RATE] = table(["string", "long", "double"], header, [["", "0", ""]], ["_result", "", "7.5"])
    assert provider(influxdb).query(ERROR_RATE) == 7.5


def test_without_a_secret_ref_no_token_or_org_is_sent(influxdb: FakeInfluxDB) -> None:
    built = build(ProviderConfig(type="influxdb", address=influxdb.url), FakeStore())
    with pytest.raises(InvalidCredentials):
        built.query(ERROR_RATE)
    [sent] = influxdb.received
    assert "Authorization" not in sent.headers
    assert sent.params == {}


# ---- no data, and refusals ---------------------------------------------------------------------


def test_no_rows_is_no_values_found(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(NoValuesFound) as caught:
        provider(influxdb).query(NOTHING)
    assert str(caught.value) == f"no values found for query {NOTHING}"


@pytest.mark.parametrize(
    ("cell", "message"), [pytest.param("", "its _value is empty", id="empty"), pytest.param("NaN", "NaN", id="nan")]
)
def test_an_empty_or_nan_value_is_no_values_found(influxdb: FakeInfluxDB, cell: str, message: str) -> None:
    influxdb.answers[ERROR_RATE] = value_table("double", [cell])
    with pytest.raises(NoValuesFound) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert str(caught.value) == f"no values found for query {ERROR_RATE} ({message})"


def test_several_rows_are_an_invalid_query(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb).query(BY_HOST)
    assert str(caught.value) == (
        f"query {BY_HOST} returned 2 rows, not one: reduce them to one (last(), mean(), sum())"
    )


def test_rows_of_several_csv_tables_are_counted_together(influxdb: FakeInfluxDB) -> None:
    influxdb.answers[ERROR_RATE] = value_table("double", ["1.0"]) + "\r\n" + value_table("long", ["2"])
    with pytest.raises(InvalidQuery, match=r"returned 2 rows, not one"):
        provider(influxdb).query(ERROR_RATE)


@pytest.mark.parametrize(
    ("kind", "cell"),
    [pytest.param("string", "high", id="string"), pytest.param("boolean", "true", id="boolean")],
)
def test_a_value_that_is_not_a_number_is_an_invalid_query(influxdb: FakeInfluxDB, kind: str, cell: str) -> None:
    influxdb.answers[ERROR_RATE] = value_table(kind, [cell])
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert str(caught.value) == f"query {ERROR_RATE} returned a {kind} _value, not a number: {cell!r}"


def test_a_row_without_a_value_column_is_an_invalid_query(influxdb: FakeInfluxDB) -> None:
    influxdb.answers[ERROR_RATE] = table(["string", "long", "double"], ["result", "table", "rate"], [["", "0", "1"]])
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert str(caught.value) == f"query {ERROR_RATE} returned a row without a _value column: result, table, rate"


def test_an_error_table_is_an_invalid_query(influxdb: FakeInfluxDB) -> None:
    # Flux reports an error met while running the query as a table, with status 200.
    influxdb.answers[ERROR_RATE] = table(
        ["string", "string"], ["error", "reference"], [["unsupported input type for mean aggregate: string", "897"]]
    )
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert str(caught.value) == (
        f"influxdb could not run query {ERROR_RATE}: unsupported input type for mean aggregate: string (reference 897)"
    )


def test_a_query_that_does_not_compile_is_an_invalid_query(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb).query(BROKEN)
    # InfluxDB says why in a "message", which is not quoted: any service answers with one.
    assert str(caught.value) == (
        f"influxdb at {influxdb.url} answered status 400 for query {BROKEN}: 94 bytes of application/json"
    )


def test_an_unknown_organization_is_an_invalid_query(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(influxdb, org="other-org").query(ERROR_RATE)
    assert str(caught.value) == (
        f"influxdb at {influxdb.url} answered status 404 for query {ERROR_RATE}: 77 bytes of application/json"
    )


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_or_overloaded_influxdb_is_unavailable(influxdb: FakeInfluxDB, status: int) -> None:
    influxdb.canned[ERROR_RATE] = (status, {"code": "internal error", "message": "engine: shard is closed"})
    with pytest.raises(MetricsUnavailable) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert str(caught.value) == (
        f"influxdb at {influxdb.url} answered status {status} for query {ERROR_RATE}: 64 bytes of application/json"
    )


def test_a_slow_influxdb_is_unavailable(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        provider(influxdb, timeout=0.3).query(SLOW)
    assert str(caught.value) == f"influxdb at {influxdb.url} did not answer query {SLOW} in time: no answer within 0.3s"


# ---- credentials -------------------------------------------------------------------------------


def test_a_refused_token_names_the_secret_not_the_token(influxdb: FakeInfluxDB) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        provider(influxdb, token="revoked-token-0000").query(ERROR_RATE)
    assert (
        str(caught.value) == f"influxdb at {influxdb.url} refused the credentials (401; they come from Secret {SECRET})"
    )
    assert "revoked-token-0000" not in str(caught.value)


def test_a_refusal_quotes_nothing_the_server_said(influxdb: FakeInfluxDB) -> None:
    influxdb.canned[ERROR_RATE] = (403, {"code": "forbidden", "message": f"token {TOKEN} may not read bucket istio"})
    with pytest.raises(InvalidCredentials) as caught:
        provider(influxdb).query(ERROR_RATE)
    assert (
        str(caught.value) == f"influxdb at {influxdb.url} refused the credentials (403; they come from Secret {SECRET})"
    )


@pytest.mark.parametrize("missing", ["token", "org"])
def test_a_missing_key_names_the_key_and_the_secret(missing: str) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config("http://influxdb.monitoring:8086", **{missing: ""}), FakeStore())
    assert str(caught.value) == f"influxdb needs {missing} in its credentials: Secret {SECRET} has none"


def test_an_address_is_required() -> None:
    with pytest.raises(InvalidQuery) as caught:
        build(config(""), FakeStore())
    assert str(caught.value) == "influxdb needs spec.provider.address: the URL of the InfluxDB to query"


def test_the_token_stays_out_of_its_repr() -> None:
    built = build(config("http://influxdb.monitoring:8086/"), FakeStore())
    assert repr(built) == "InfluxdbProvider('http://influxdb.monitoring:8086', org='shop-org')"


def test_it_is_the_provider_of_its_type() -> None:
    port: MetricsProvider = build(config("http://influxdb.monitoring:8086"), FakeStore())
    assert type(provider_for(config("http://influxdb.monitoring:8086"), FakeStore())) is type(port) is InfluxdbProvider


# ---- syntax --------------------------------------------------------------------------------------


def test_syntax_errors_come_from_the_analyze_endpoint(influxdb: FakeInfluxDB) -> None:
    built = provider(influxdb)
    assert built.syntax_error(ERROR_RATE) is None
    assert built.syntax_error(BROKEN) == "line 1, column 1: undefined identifier frm"
    sent = influxdb.received[-1]
    assert (sent.path, sent.body) == ("/api/v2/query/analyze", {"query": BROKEN, "type": "flux"})
    assert sent.headers["Authorization"] == f"Token {TOKEN}"


def test_an_influxdb_that_cannot_analyze_leaves_the_syntax_unchecked() -> None:
    built = build(config("http://127.0.0.1:9"), FakeStore())
    with pytest.raises(MetricsUnavailable) as caught:
        built.syntax_error(ERROR_RATE)
    assert str(caught.value).startswith(
        "influxdb could not check the query: influxdb at http://127.0.0.1:9 unreachable"
    )
