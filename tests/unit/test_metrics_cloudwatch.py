"""The CloudWatch provider against a local CloudWatch of the test's own, and its SigV4 signer
against AWS's published test vectors.

Why not moto, the PyPI package that serves AWS's APIs: moto needs botocore, which pins
``python-dateutil<3``, while Serin's ``kubernetes==37.0.2`` needs ``python-dateutil>=3``; pip
cannot install both into one environment, so moto cannot be a test dependency of this project.
(It was run once by hand in a separate environment: moto 5.2.5's server answered this provider's
signed ``GetMetricData`` with the values put into it, and botocore 1.44.8's ``SigV4Auth`` produced
the same ``Authorization`` headers as ``sigv4_authorization``, with and without a session token.)

So ``FakeCloudWatch`` serves CloudWatch's query API on 127.0.0.1 as the CloudWatch API Reference
documents ``GetMetricData`` (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html,
and "Common Errors"): ``POST /`` with ``Action=GetMetricData``, ``Version=2010-08-01``,
``StartTime``, ``EndTime``, ``MaxDatapoints`` and ``MetricDataQueries.member.N.*`` form-encoded; an
answer of ``<GetMetricDataResponse><GetMetricDataResult><MetricDataResults><member>`` with ``Id``,
``Label``, ``Timestamps``, ``Values`` (newest first) and ``StatusCode``; errors as
``<ErrorResponse><Error><Code>`` with 400 (``ValidationError``, ``Throttling``), 403
(``InvalidClientTokenId``, ``SignatureDoesNotMatch``) or 500 (``InternalFailure``). It keeps
datapoints put into it and answers ``MetricStat`` queries and simple ``Expression`` arithmetic
from them within the asked window. It checks each request's signature by signing what it received
with the key it knows; AWS's published test vectors check the signer itself (below).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import pytest

from serin.metrics.cloudwatch import (
    AwsCredentials,
    CloudWatchProvider,
    build,
    canonical_request,
    default_address,
    sigv4_authorization,
    sigv4_signature,
)
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
from tests.unit.servers import QuietHandler, RecordingApi, serving

ACCESS_KEY_ID = "AKIAIOSFODNN7SERIN01"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSERINKEY01"
TEMPORARY_KEY_ID = "ASIAIOSFODNN7SERIN02"
TEMPORARY_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbSERINKEY02"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//session+token/SERIN=="
SECRET = "test/aws"
REGION = "eu-west-1"
NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
NAMESPACE = "Shop"
XMLNS = "http://monitoring.amazonaws.com/doc/2010-08-01/"


def metric_stat(query_id: str, name: str, period: int = 60, return_data: bool = True) -> str:
    return (
        f'{{"Id": "{query_id}", "MetricStat": {{"Metric": {{"Namespace": "{NAMESPACE}", "MetricName": "{name}", '
        f'"Dimensions": [{{"Name": "App", "Value": "podinfo"}}]}}, "Period": {period}, "Stat": "Sum"}}, '
        f'"ReturnData": {"true" if return_data else "false"}}}'
    )


# Flagger's documented CloudWatch template: an error rate from two metrics, only the rate returned.
ERROR_RATE = (
    '[\n  {"Id": "e1", "Expression": "m1 / m2 * 100", "Label": "Error Rate"},\n'
    f"  {metric_stat('m1', 'Errors', return_data=False)},\n"
    f"  {metric_stat('m2', 'Requests', return_data=False)}\n]"
)
ERRORS = f"[{metric_stat('m1', 'Errors')}]"


def said(query: str) -> str:
    return " ".join(query.split())


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Point:
    name: str
    timestamp: int
    value: float
    dimensions: tuple[tuple[str, str], ...] = (("App", "podinfo"),)


class FakeCloudWatch(RecordingApi[Received]):
    """CloudWatch's ``GetMetricData`` over the datapoints put into it, for the keys it knows."""

    def __init__(self) -> None:
        super().__init__(CloudWatchHandler)
        self.points: list[Point] = []
        # access key id -> (its secret access key, the session token it needs or "")
        self.keys = {ACCESS_KEY_ID: (SECRET_ACCESS_KEY, ""), TEMPORARY_KEY_ID: (TEMPORARY_SECRET, SESSION_TOKEN)}
        # metric name -> (status, error code, message) answered instead of its data
        self.failing: dict[str, tuple[int, str, str]] = {}
        # metric name -> the StatusCode of its result, answered without values
        self.statuses: dict[str, str] = {}


AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


class CloudWatchHandler(QuietHandler):
    server: FakeCloudWatch

    def do_POST(self) -> None:
        body = self.read_body()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        self.server.record(Received(self.path, dict(self.headers), form))
        refused = self.refused_signature(body)
        if refused:
            return self.error(403, *refused)
        if (form.get("Action"), form.get("Version")) != ("GetMetricData", "2010-08-01"):
            return self.error(400, "InvalidAction", "Could not find operation GetMetricData for version 2010-08-01")
        queries = unflatten(form).get("MetricDataQueries", [])
        for index, query in enumerate(queries, 1):
            if "MetricStat" not in query and "Expression" not in query:
                return self.error(
                    400, "ValidationError", f"The parameter MetricDataQueries.member.{index}.MetricStat is required."
                )
            name = query.get("MetricStat", {}).get("Metric", {}).get("MetricName")
            if name == "Slow":
                self.server.release.wait(5)
                return None
            if name in self.server.failing:
                return self.error(*self.server.failing[name])
        start, end = (parse_time(form[name]) for name in ("StartTime", "EndTime"))
        series: dict[str, dict[int, float]] = {}
        for query in queries:
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dimensions = tuple((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
                series[query["Id"]] = {
                    p.timestamp: p.value
                    for p in self.server.points
                    if metric["Namespace"] == NAMESPACE
                    and (p.name, p.dimensions) == (metric["MetricName"], dimensions)
                    and start <= p.timestamp < end
                }
        for query in queries:
            if "Expression" in query:
                try:
                    series[query["Id"]] = evaluate(query["Expression"], series)
                except KeyError as unknown:
                    return self.error(
                        400, "ValidationError", f"Error in expression '{query['Id']}': Unrecognized token {unknown}"
                    )
        limit = int(form.get("MaxDatapoints", "100800"))
        members = "".join(
            result_member(query["Id"], query.get("Label", query["Id"]), series[query["Id"]], limit, status)
            for query in queries
            if query.get("ReturnData", "true") == "true"
            for status in [self.server.statuses.get(query.get("MetricStat", {}).get("Metric", {}).get("MetricName"))]
        )
        self.answer(
            200,
            f'<GetMetricDataResponse xmlns="{XMLNS}"><GetMetricDataResult><MetricDataResults>{members}'
            "</MetricDataResults><Messages/></GetMetricDataResult><ResponseMetadata><RequestId>"
            "5f3b7c1e-0000-4000-8000-000000000001</RequestId></ResponseMetadata></GetMetricDataResponse>",
        )

    def refused_signature(self, body: bytes) -> tuple[str, str] | None:
        """What AWS answers to a request whose signature it cannot accept, or None."""
        found = AUTHORIZATION.match(self.headers.get("Authorization", ""))
        if found is None:
            return (
                "IncompleteSignature",
                "Authorization header requires a valid Credential, SignedHeaders and Signature.",
            )
        known = self.server.keys.get(found["key"])
        token = self.headers.get("X-Amz-Security-Token", "")
        if known is None or token != known[1]:
            return ("InvalidClientTokenId", "The security token included in the request is invalid.")
        signed = found["signed"].split(";")
        amz_date = self.headers.get("X-Amz-Date", "")
        if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(found["day"]):
            return ("IncompleteSignature", "Host and X-Amz-Date must be signed.")
        expected, _, _ = sigv4_signature(
            method=self.command,
            path=self.path,
            query=(),
            headers={name: self.headers.get(name, "") for name in signed},
            payload=body,
            secret_access_key=known[0],
            region=found["region"],
            service=found["service"],
            amz_date=amz_date,
        )
        if (found["region"], found["service"]) != (REGION, "monitoring") or expected != found["signature"]:
            return (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return None

    def error(self, status: int, code: str, message: str) -> None:
        kind = "Sender" if status < 500 else "Receiver"
        self.answer(
            status,
            f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>5f3b7c1e-0000-4000-8000-000000000002"
            "</RequestId></ErrorResponse>",
        )

    def answer(self, status: int, xml: str) -> None:
        self.send(status, xml.encode(), "text/xml")


def unflatten(form: dict[str, str]) -> dict[str, Any]:
    """The query API's ``A.member.N.B`` form fields as nested dicts and lists."""
    tree: dict[str, Any] = {}
    for key, value in form.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if set(node) == {"member"}:
            return [lists(node["member"][index]) for index in sorted(node["member"], key=int)]
        return {key: lists(value) for key, value in node.items()}

    return lists(tree)  # type: ignore[no-any-return]


def parse_time(text: str) -> int:
    return int(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp())


def evaluate(expression: str, series: dict[str, dict[int, float]]) -> dict[int, float]:
    """``a / b * 100``-like arithmetic, left to right, over the timestamps every operand has."""
    tokens = expression.split()
    operands = [series[token] for token in tokens[::2] if not token.replace(".", "").isdigit()]
    times = set.intersection(*(set(operand) for operand in operands)) if operands else set()
    result: dict[int, float] = {}
    for moment in times:
        values = [float(t) if t.replace(".", "").isdigit() else series[t][moment] for t in tokens[::2]]
        total = values[0]
        for operator, value in zip(tokens[1::2], values[1:], strict=True):
            total = {"+": total + value, "-": total - value, "*": total * value, "/": total / value}[operator]
        result[moment] = total
    return result


def result_member(query_id: str, label: str, points: dict[int, float], limit: int, status: str | None) -> str:
    newest_first = [] if status else sorted(points.items(), reverse=True)[:limit]
    stamps = "".join(
        f"<member>{datetime.datetime.fromtimestamp(t, datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}</member>"
        for t, _ in newest_first
    )
    values = "".join(f"<member>{value!r}</member>" for _, value in newest_first)
    return (
        f"<member><Id>{query_id}</Id><Label>{escape(label)}</Label><Timestamps>{stamps}</Timestamps>"
        f"<Values>{values}</Values><StatusCode>{status or 'Complete'}</StatusCode></member>"
    )


@pytest.fixture
def cloudwatch() -> Iterator[FakeCloudWatch]:
    server = FakeCloudWatch()
    server.points = [
        # Two minutes ago, four minutes ago, and half an hour ago (outside ten one-minute intervals).
        Point("Errors", NOW - 120, 3.0),
        Point("Requests", NOW - 120, 200.0),
        Point("Errors", NOW - 240, 1.0),
        Point("Requests", NOW - 240, 50.0),
        Point("Errors", NOW - 1800, 40.0),
        Point("Requests", NOW - 1800, 40.0),
    ]
    with serving(server):
        yield server


def config(address: str, region: str = REGION, **secret: str) -> ProviderConfig:
    keys = {"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": SECRET_ACCESS_KEY}
    return ProviderConfig(
        type="cloudwatch",
        address=address,
        region=region,
        headers=(("X-Team", ("canary",)),),
        secret_name=SECRET,
        secret=tuple(sorted({**keys, **secret}.items())),
    )


def provider(cloudwatch: FakeCloudWatch, timeout: float = 5.0, **secret: str) -> CloudWatchProvider:
    built = build(config(cloudwatch.url, **secret), FakeStore())
    built.clock = lambda: NOW
    built.backend.timeout = timeout
    return built


# ---- the value, and what is sent ---------------------------------------------------------------


def test_the_value_is_the_newest_of_the_returned_expression_signed_with_flaggers_window(
    cloudwatch: FakeCloudWatch,
) -> None:
    # 3 errors in 200 requests two minutes ago is newer than 1 in 50: the rate is 1.5%.
    assert provider(cloudwatch).query(ERROR_RATE) == 1.5
    [sent] = cloudwatch.received
    assert sent.path == "/"
    assert sent.form == {
        "Action": "GetMetricData",
        "Version": "2010-08-01",
        # Ten times Flagger's default metric interval (1m), up to now; at most 20 datapoints, as Flagger.
        "StartTime": "2023-11-14T22:03:20Z",
        "EndTime": "2023-11-14T22:13:20Z",
        "MaxDatapoints": "20",
        "MetricDataQueries.member.1.Id": "e1",
        "MetricDataQueries.member.1.Expression": "m1 / m2 * 100",
        "MetricDataQueries.member.1.Label": "Error Rate",
        **{
            f"MetricDataQueries.member.{n}.{key}": value
            for n, name in ((2, "Errors"), (3, "Requests"))
            for key, value in {
                "Id": f"m{n - 1}",
                "MetricStat.Metric.Namespace": NAMESPACE,
                "MetricStat.Metric.MetricName": name,
                "MetricStat.Metric.Dimensions.member.1.Name": "App",
                "MetricStat.Metric.Dimensions.member.1.Value": "podinfo",
                "MetricStat.Period": "60",
                "MetricStat.Stat": "Sum",
                "ReturnData": "false",
            }.items()
        },
    }
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert sent.headers["Host"] == f"127.0.0.1:{cloudwatch.server_address[1]}"
    assert sent.headers["X-Amz-Date"] == "20231114T221320Z"
    assert sent.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20231114/{REGION}/monitoring/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature="
    )
    assert "X-Amz-Security-Token" not in sent.headers
    assert sent.headers["X-Team"] == "canary"


def test_a_metric_stat_gives_its_newest_datapoint(cloudwatch: FakeCloudWatch) -> None:
    assert provider(cloudwatch).query(ERRORS) == 3.0


def test_the_window_is_ten_intervals_or_ten_periods(cloudwatch: FakeCloudWatch) -> None:
    # The reconciler passes the metric's interval second.
    assert provider(cloudwatch).query(ERRORS, 300) == 3.0
    assert cloudwatch.received[-1].form["StartTime"] == "2023-11-14T21:23:20Z"  # 50 minutes
    # Statistics over 5-minute periods: ten periods back, whatever the interval.
    assert provider(cloudwatch).query(f"[{metric_stat('m1', 'Errors', period=300)}]") == 3.0
    assert cloudwatch.received[-1].form["StartTime"] == "2023-11-14T21:23:20Z"


def test_keys_are_matched_without_regard_to_case_and_sent_with_the_apis_names(cloudwatch: FakeCloudWatch) -> None:
    query = (
        '[{"id": "m1", "metricStat": {"metric": {"namespace": "Shop", "metricName": "Errors", '
        '"dimensions": [{"name": "App", "value": "podinfo"}]}, "period": 60, "stat": "Sum"}, "returnData": true}]'
    )
    assert provider(cloudwatch).query(query) == 3.0
    form = cloudwatch.received[0].form
    assert form["MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value"] == "podinfo"
    assert form["MetricDataQueries.member.1.ReturnData"] == "true"


def test_temporary_credentials_send_and_sign_their_session_token(cloudwatch: FakeCloudWatch) -> None:
    temporary = {
        "aws_access_key_id": TEMPORARY_KEY_ID,
        "aws_secret_access_key": TEMPORARY_SECRET,
        "aws_session_token": SESSION_TOKEN,
    }
    assert provider(cloudwatch, 5.0, **temporary).query(ERRORS) == 3.0
    headers = cloudwatch.received[0].headers
    assert headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, " in headers["Authorization"]


# ---- no data, and refusals ---------------------------------------------------------------------


def test_no_datapoints_in_the_window_is_no_values_found(cloudwatch: FakeCloudWatch) -> None:
    cloudwatch.points = [p for p in cloudwatch.points if p.timestamp < NOW - 600]
    with pytest.raises(NoValuesFound) as caught:
        provider(cloudwatch).query(ERROR_RATE)
    assert str(caught.value) == f"no values found for query {said(ERROR_RATE)} in the last 600s"


def test_a_result_cloudwatch_could_not_compute_is_unavailable_and_a_forbidden_one_is_about_credentials(
    cloudwatch: FakeCloudWatch,
) -> None:
    cloudwatch.statuses["Errors"] = "InternalError"
    with pytest.raises(MetricsUnavailable) as unavailable:
        provider(cloudwatch).query(ERRORS)
    assert str(unavailable.value) == f"cloudwatch failed on result m1 of query {said(ERRORS)}"
    cloudwatch.statuses["Errors"] = "Forbidden"
    with pytest.raises(InvalidCredentials) as forbidden:
        provider(cloudwatch).query(ERRORS)
    assert str(forbidden.value) == (
        f"cloudwatch may not read result m1 of query {said(ERRORS)} with the credentials of Secret {SECRET}"
    )


def test_a_query_cloudwatch_refuses_is_an_invalid_query(cloudwatch: FakeCloudWatch) -> None:
    with pytest.raises(InvalidQuery) as caught:
        provider(cloudwatch).query('[{"Id": "m1", "Label": "nothing to compute"}]')
    assert str(caught.value) == (
        f"cloudwatch at {cloudwatch.url} answered status 400 (ValidationError) for query "
        '[{"Id": "m1", "Label": "nothing to compute"}]: '
        "The parameter MetricDataQueries.member.1.MetricStat is required."
    )


def test_an_expression_cloudwatch_cannot_evaluate_is_an_invalid_query(cloudwatch: FakeCloudWatch) -> None:
    query = f'[{{"Id": "e1", "Expression": "m1 / m9"}}, {metric_stat("m1", "Errors", return_data=False)}]'
    with pytest.raises(InvalidQuery) as caught:
        provider(cloudwatch).query(query)
    assert str(caught.value).endswith(": Error in expression 'e1': Unrecognized token 'm9'")


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        pytest.param("{{ not json", "cloudwatch query is not JSON (a JSON array of MetricDataQuery): ", id="not-json"),
        pytest.param(
            '{"Id": "m1"}', "cloudwatch query must be a JSON array of MetricDataQuery, not an object", id="object"
        ),
        pytest.param("[]", "cloudwatch query is an empty array: it needs at least one MetricDataQuery", id="empty"),
        pytest.param(
            '[{"Id": "e1", "Expresion": "m1"}]',
            "cloudwatch query [0] has 'Expresion', which is not a field of MetricDataQuery "
            "(Id, MetricStat, Expression, Label, ReturnData, Period, AccountId)",
            id="misspelt-key",
        ),
        pytest.param(
            '[{"Id": "m1", "MetricStat": {"Period": "60"}}]',
            'cloudwatch query [0].MetricStat.Period must be an integer, not "60"',
            id="period-as-string",
        ),
        pytest.param(
            '[{"Id": "m1", "MetricStat": {"Metric": {"Dimensions": {"Name": "App"}}}}]',
            "cloudwatch query [0].MetricStat.Metric.Dimensions must be an array, not an object",
            id="dimensions-as-object",
        ),
    ],
)
def test_a_query_that_is_not_metric_data_queries_is_refused_before_sending(
    cloudwatch: FakeCloudWatch, query: str, problem: str
) -> None:
    built = provider(cloudwatch)
    with pytest.raises(InvalidQuery) as caught:
        built.query(query)
    assert str(caught.value).startswith(problem)
    assert (built.syntax_error(query) or "").startswith(problem)
    assert cloudwatch.received == []


def test_a_well_formed_query_has_no_syntax_error_and_asks_nothing(cloudwatch: FakeCloudWatch) -> None:
    assert provider(cloudwatch).syntax_error(ERROR_RATE) is None
    assert cloudwatch.received == []


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        pytest.param(
            500, "InternalFailure", "The request processing has failed because of an unknown error.", id="500"
        ),
        # CloudWatch throttles with 400, not 429: the code says it is temporary.
        pytest.param(400, "Throttling", "Rate exceeded", id="throttling"),
    ],
)
def test_a_failing_or_throttling_cloudwatch_is_unavailable(
    cloudwatch: FakeCloudWatch, status: int, code: str, message: str
) -> None:
    cloudwatch.failing["Errors"] = (status, code, message)
    with pytest.raises(MetricsUnavailable) as caught:
        provider(cloudwatch).query(ERRORS)
    assert str(caught.value) == (
        f"cloudwatch at {cloudwatch.url} answered status {status} ({code}) for query {said(ERRORS)}: {message}"
    )


def test_a_slow_cloudwatch_is_unavailable(cloudwatch: FakeCloudWatch) -> None:
    query = f"[{metric_stat('m1', 'Slow')}]"
    with pytest.raises(MetricsUnavailable) as caught:
        provider(cloudwatch, timeout=0.3).query(query)
    assert str(caught.value) == (
        f"cloudwatch at {cloudwatch.url} did not answer query {said(query)} in time: no answer within 0.3s"
    )


def test_an_unreachable_cloudwatch_is_unavailable() -> None:
    built = build(config("http://127.0.0.1:9"), FakeStore())
    with pytest.raises(MetricsUnavailable) as caught:
        built.query(ERRORS)
    assert str(caught.value).startswith("cloudwatch at http://127.0.0.1:9 unreachable: ")


# ---- credentials -------------------------------------------------------------------------------


def test_a_wrong_secret_key_names_the_secret_not_the_keys(cloudwatch: FakeCloudWatch) -> None:
    wrong = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY99"
    with pytest.raises(InvalidCredentials) as caught:
        provider(cloudwatch, aws_secret_access_key=wrong).query(ERRORS)
    message = str(caught.value)
    assert message == (
        f"cloudwatch at {cloudwatch.url} refused the credentials (403 SignatureDoesNotMatch; they come from "
        f"Secret {SECRET}): The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )
    assert wrong not in message and ACCESS_KEY_ID not in message


def test_an_unknown_key_id_is_refused_credentials(cloudwatch: FakeCloudWatch) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        provider(cloudwatch, aws_access_key_id="AKIAIOSFODNN7UNKNOWN").query(ERRORS)
    assert str(caught.value) == (
        f"cloudwatch at {cloudwatch.url} refused the credentials (403 InvalidClientTokenId; they come from "
        f"Secret {SECRET}): The security token included in the request is invalid."
    )


def test_a_credential_error_code_with_status_400_is_still_about_the_credentials(cloudwatch: FakeCloudWatch) -> None:
    # The key id and session token are taken out of anything the server says back.
    cloudwatch.failing["Errors"] = (400, "ExpiredToken", f"The security token of {ACCESS_KEY_ID} is expired")
    with pytest.raises(InvalidCredentials) as caught:
        provider(cloudwatch).query(ERRORS)
    assert str(caught.value) == (
        f"cloudwatch at {cloudwatch.url} refused the credentials (400 ExpiredToken; they come from "
        f"Secret {SECRET}): The security token of <redacted> is expired"
    )


@pytest.mark.parametrize("missing", ["aws_access_key_id", "aws_secret_access_key"])
def test_a_missing_key_names_the_key_and_the_secret(missing: str) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config("", **{missing: ""}), FakeStore())
    assert str(caught.value) == f"cloudwatch needs {missing} in its credentials: Secret {SECRET} has none"


def test_without_a_secret_ref_there_are_no_credentials() -> None:
    bare = ProviderConfig(type="cloudwatch", region=REGION)
    with pytest.raises(InvalidCredentials) as caught:
        build(bare, FakeStore())
    assert str(caught.value) == "cloudwatch needs aws_access_key_id in its credentials: no secretRef has none"


def test_a_region_is_required() -> None:
    with pytest.raises(InvalidQuery) as caught:
        build(config("", region=""), FakeStore())
    assert str(caught.value) == "cloudwatch needs spec.provider.region: the AWS region to ask CloudWatch in"


def test_the_default_address_is_the_regions_endpoint_and_credentials_stay_out_of_its_repr() -> None:
    built = build(config(""), FakeStore())
    assert built.backend.address == "https://monitoring.eu-west-1.amazonaws.com"
    assert default_address("cn-north-1") == "https://monitoring.cn-north-1.amazonaws.com.cn"
    assert repr(built) == "CloudWatchProvider('https://monitoring.eu-west-1.amazonaws.com', region='eu-west-1')"
    assert SECRET_ACCESS_KEY not in repr(built.credentials) and ACCESS_KEY_ID not in repr(built.credentials)


def test_it_is_the_provider_of_its_type() -> None:
    port: MetricsProvider = build(config(""), FakeStore())
    assert type(provider_for(config(""), FakeStore())) is type(port) is CloudWatchProvider


# ---- Signature Version 4 against AWS's test suite ----------------------------------------------

# The example credentials of AWS's Signature Version 4 test suite.
SUITE_KEY = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSE"
    "I/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0r"
    "KwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)


@pytest.mark.parametrize(
    ("headers", "payload", "service", "amz_date", "authorization"),
    [
        pytest.param(
            {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
            b"",
            "service",
            "20150830T123600Z",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            id="post-vanilla",
        ),
        pytest.param(
            {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z", "X-Amz-Security-Token": SUITE_TOKEN},
            b"",
            "service",
            "20150830T123600Z",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date;x-amz-security-token, "
            "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
            id="post-sts-header-before",
        ),
        pytest.param(
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Date": "Mon, 09 Sep 2011 23:36:00 GMT",
                "Host": "host.foo.com",
            },
            b"foo=bar",
            "host",
            "20110909T233600Z",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, "
            "SignedHeaders=content-type;date;host, "
            "Signature=5a15b22cf462f047318703b92e6f4f38884e4a7ab7b1d6426ca46a8bd1c26cbc",
            id="post-x-www-form-urlencoded",
        ),
    ],
)
def test_the_signer_matches_aws_test_suite(
    headers: dict[str, str], payload: bytes, service: str, amz_date: str, authorization: str
) -> None:
    signed = sigv4_authorization(
        method="POST",
        path="/",
        query=(),
        headers=headers,
        payload=payload,
        credentials=SUITE_KEY,
        region="us-east-1",
        service=service,
        amz_date=amz_date,
    )
    assert signed == authorization


def test_the_canonical_request_matches_aws_test_suite() -> None:
    # post-x-www-form-urlencoded.creq of the 2011 suite.
    request, signed_headers = canonical_request(
        "POST",
        "/",
        (),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Date": "Mon, 09 Sep 2011 23:36:00 GMT",
            "Host": "host.foo.com",
        },
        b"foo=bar",
    )
    assert request == (
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\ndate:Mon, 09 Sep 2011 23:36:00 GMT\n"
        "host:host.foo.com\n\ncontent-type;date;host\n3ba8907e7a252327488df390ed517c45b96dead033600219bdca7107d1d3f88a"
    )
    assert signed_headers == "content-type;date;host"
