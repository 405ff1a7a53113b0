"""A ``MetricsProvider`` over Amazon CloudWatch's ``GetMetricData`` action, without an AWS SDK.

The MetricTemplate's query is, as in Flagger, a JSON array of ``MetricDataQuery`` objects
(``Id``, ``MetricStat`` or ``Expression``, ``Label``, ``ReturnData``, ``Period``, ``AccountId``).
It is sent through CloudWatch's query API (``POST /`` with ``Action=GetMetricData&Version=2010-08-01``
form-encoded, an XML answer), with ``MaxDatapoints=20`` like Flagger, to ``spec.provider.address`` or
``https://monitoring.<region>.amazonaws.com`` (``.amazonaws.com.cn`` in the China regions), in the
region ``spec.provider.region`` (required, as in Flagger). The request is signed with AWS Signature
Version 4 (``hashlib``/``hmac``) by the Secret's keys, named as in AWS's credentials file:
``aws_access_key_id`` and ``aws_secret_access_key``, and ``aws_session_token`` for temporary
credentials (sent as ``X-Amz-Security-Token``, and signed).

The time window is Flagger's: the last ten metric intervals up to now (``interval_seconds``, the
metric's interval, which the reconciler passes), widened to ten times the longest ``Period`` in
the query when that is longer: a query of hourly statistics could find no datapoint in ten
one-minute intervals. With ``Period`` equal to the interval, as Flagger's examples have it, the
window is exactly Flagger's.

The answer is one number as in Flagger: the newest value (CloudWatch's default ``ScanBy`` is
``TimestampDescending``) of the first result. Where Serin differs from Flagger:

* the first result is the one of the first query that returns data (``ReturnData`` not false),
  matched by ``Id``, rather than whichever result CloudWatch lists first;
* keys of the query are matched without regard to case (as Go's JSON decoding does), but a key
  that is not part of ``MetricDataQuery`` is ``InvalidQuery`` (Flagger drops it silently, so a
  misspelt ``Expresion`` would be sent as a query without its expression);
* the window may be longer than Flagger's, as said above;
* a result without values is ``NoValuesFound``, ``MetricsUnavailable`` when its ``StatusCode`` is
  ``InternalError`` and ``InvalidCredentials`` when it is ``Forbidden``; NaN is ``NoValuesFound``;
* Flagger takes the credentials from its own pod's environment (an IAM role for its service
  account); Serin takes them only from the MetricTemplate's Secret.

Errors: CloudWatch answers most refusals with 400 and an error code, so the code decides:
credential codes (``InvalidClientTokenId``, ``SignatureDoesNotMatch``, ``ExpiredToken``,
``AccessDenied``...) and any 401/403 are ``InvalidCredentials`` naming the Secret; throttling and
service codes (``Throttling``, ``ServiceUnavailable``...), 429 and 5xx, timeouts and an unreachable
address are ``MetricsUnavailable``; anything else (``ValidationError``, ``InvalidParameterValue``...)
is ``InvalidQuery``. No message carries a credential: the secret key never leaves this process, and
the key id and session token are removed from any text the server sent back.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from serin import egress
from serin.kube.store import KubeStore
from serin.metrics.apikeys import header_credential, redacted
from serin.metrics.http import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT,
    WINDOW_INTERVALS,
    HttpBackend,
)
from serin.ports import (
    InvalidCredentials,
    InvalidQuery,
    MetricsUnavailable,
    NoValuesFound,
    ProviderConfig,
    SerinError,
)

SERVICE = "monitoring"
API_VERSION = "2010-08-01"
ALGORITHM = "AWS4-HMAC-SHA256"
# Flagger asks for at most 20 datapoints per result, over the last ten metric intervals.
MAX_DATAPOINTS = 20

ACCESS_KEY_ID = "aws_access_key_id"
SECRET_ACCESS_KEY = "aws_secret_access_key"
SESSION_TOKEN = "aws_session_token"

# Error codes of AWS's query APIs (most come with status 400) that are about the credentials...
CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "NotAuthorized",
        "OptInRequired",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
# ...and that say CloudWatch could not answer now (a clock out of step is not the query's fault either).
UNAVAILABLE_CODES = frozenset(
    {
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceFault",
        "RequestExpired",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)

# The fields of a MetricDataQuery, as CloudWatch's API reference names them, and their kinds:
# "string", "integer", "boolean", another shape's name, or a shape's name followed by "[]" (a list).
SHAPES: Mapping[str, Mapping[str, str]] = {
    "MetricDataQuery": {
        "Id": "string",
        "MetricStat": "MetricStat",
        "Expression": "string",
        "Label": "string",
        "ReturnData": "boolean",
        "Period": "integer",
        "AccountId": "string",
    },
    "MetricStat": {"Metric": "Metric", "Period": "integer", "Stat": "string", "Unit": "string"},
    "Metric": {"Namespace": "string", "MetricName": "string", "Dimensions": "Dimension[]"},
    "Dimension": {"Name": "string", "Value": "string"},
}


@dataclass(frozen=True)
class AwsCredentials:
    """An access key (and a session token for temporary credentials); never printed."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def build(config: ProviderConfig, store: KubeStore) -> CloudWatchProvider:
    """The CloudWatch of a MetricTemplate: its region, and an access key from its Secret."""
    if not config.region:
        raise InvalidQuery("cloudwatch needs spec.provider.region: the AWS region to ask CloudWatch in")
    token = header_credential(config, SESSION_TOKEN) if config.credential(SESSION_TOKEN, required=False) else ""
    credentials = AwsCredentials(
        access_key_id=header_credential(config, ACCESS_KEY_ID),
        secret_access_key=config.credential(SECRET_ACCESS_KEY).strip(),
        session_token=token,
    )
    return CloudWatchProvider(config, credentials)


def default_address(region: str) -> str:
    """CloudWatch's regional endpoint, as the AWS SDKs build it."""
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{SERVICE}.{region}.{domain}"


class CloudWatchProvider:
    """``GetMetricData`` against one region's CloudWatch (or the endpoint given as its address)."""

    def __init__(
        self,
        config: ProviderConfig,
        credentials: AwsCredentials,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region = config.region
        self.backend = HttpBackend(config, default_address(config.region), timeout)
        self.credentials = credentials
        self.clock = clock

    def __repr__(self) -> str:
        return f"CloudWatchProvider({self.backend.shown!r}, region={self.region!r})"

    def close(self) -> None:
        self.backend.close()

    def query(self, query: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> float:
        """The newest value of the first result over the last ten intervals."""
        queries = parse_queries(query)
        window = int(WINDOW_INTERVALS * max(interval_seconds, _longest_period(queries)))
        now = self.clock()
        form = [
            ("Action", "GetMetricData"),
            ("Version", API_VERSION),
            ("StartTime", _iso8601(now - window)),
            ("EndTime", _iso8601(now)),
            ("MaxDatapoints", str(MAX_DATAPOINTS)),
            *_flatten("MetricDataQueries", queries),
        ]
        said = " ".join(query.split())
        try:
            root = self._call(urlencode(form, quote_via=quote).encode(), now, f"query {said}")
            return _first_value(root, queries, said, window, self.backend.config)
        except SerinError as error:
            clean = redacted(error, astuple(self.credentials))
            if clean is error:
                raise
            raise clean from None

    def syntax_error(self, query: str) -> str | None:
        """What is wrong with the query as a JSON array of MetricDataQuery, checked here: CloudWatch
        has no action that checks a query without running it."""
        try:
            parse_queries(query)
        except InvalidQuery as error:
            return str(error)
        return None

    def _call(self, body: bytes, now: float, what: str) -> ElementTree.Element:
        address = self.backend.address
        parts = urlsplit(address)
        host = _host_header(parts.scheme, parts.netloc)
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": host,
            "X-Amz-Date": amz_date,
        }
        if self.credentials.session_token:
            headers["X-Amz-Security-Token"] = self.credentials.session_token
        headers["Authorization"] = sigv4_authorization(
            method="POST",
            path=parts.path or "/",
            query=(),
            headers=headers,
            payload=body,
            credentials=self.credentials,
            region=self.region,
            service=SERVICE,
            amz_date=amz_date,
        )
        url = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
        answer = self.backend.fetch("POST", url, what, data=body, headers=headers)
        try:
            root = ElementTree.fromstring(answer.body)
        except ElementTree.ParseError:
            root = None
        if not answer.ok:
            raise _refusal(answer, root, what, self.backend.config, self.backend.shown)
        if root is None:
            kind = answer.content_type.split(";", 1)[0].strip() or "no content type"
            raise InvalidQuery(
                f"cloudwatch at {self.backend.shown} answered {what} with {len(answer.body)} bytes of {kind}, "
                "not CloudWatch's XML"
            )
        return root


# ---- the query ---------------------------------------------------------------------------------


def parse_queries(query: str) -> list[dict[str, Any]]:
    """The query as a list of MetricDataQuery with the API's names; InvalidQuery saying what is wrong."""
    try:
        raw = json.loads(query)
    except ValueError as error:
        raise InvalidQuery(f"cloudwatch query is not JSON (a JSON array of MetricDataQuery): {error}") from None
    if not isinstance(raw, list):
        raise InvalidQuery(f"cloudwatch query must be a JSON array of MetricDataQuery, not {_json_kind(raw)}")
    if not raw:
        raise InvalidQuery("cloudwatch query is an empty array: it needs at least one MetricDataQuery")
    return [_shaped(item, "MetricDataQuery", f"[{index}]") for index, item in enumerate(raw)]


def _shaped(value: Any, shape: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidQuery(f"cloudwatch query {path} must be a {shape} object, not {_json_kind(value)}")
    fields = SHAPES[shape]
    by_lower = {name.lower(): name for name in fields}
    shaped: dict[str, Any] = {}
    for key, item in value.items():
        name = by_lower.get(str(key).lower())
        if name is None:
            raise InvalidQuery(
                f"cloudwatch query {path} has {key!r}, which is not a field of {shape} ({', '.join(fields)})"
            )
        if item is None:
            continue
        shaped[name] = _typed(item, fields[name], f"{path}.{name}")
    return shaped


def _typed(value: Any, kind: str, path: str) -> Any:
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind.endswith("[]"):
        if not isinstance(value, list):
            raise InvalidQuery(f"cloudwatch query {path} must be an array, not {_json_kind(value)}")
        return [_shaped(item, kind[:-2], f"{path}[{index}]") for index, item in enumerate(value)]
    if kind in SHAPES:
        return _shaped(value, kind, path)
    article = "an" if kind[0] in "aeiou" else "a"
    raise InvalidQuery(f"cloudwatch query {path} must be {article} {kind}, not {json.dumps(value)}")


def _json_kind(value: Any) -> str:
    kinds = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """The query API's form fields for a value: ``A.B`` for nested fields, ``A.member.N`` for lists."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flatten(f"{prefix}.{key}", item)]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value, 1) for pair in _flatten(f"{prefix}.member.{index}", item)]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def _longest_period(queries: Sequence[Mapping[str, Any]]) -> int:
    periods = [query.get("Period", 0) for query in queries]
    periods += [query.get("MetricStat", {}).get("Period", 0) for query in queries]
    return max(periods, default=0)


def _iso8601(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the answer --------------------------------------------------------------------------------


def _first_value(
    root: ElementTree.Element, queries: Sequence[Mapping[str, Any]], query: str, window: int, config: ProviderConfig
) -> float:
    result = _child(root, "GetMetricDataResult")
    if result is None:
        raise InvalidQuery(f"cloudwatch answer for query {query} has no GetMetricDataResult")
    results = {_text(member, "Id"): member for member in _members(result, "MetricDataResults")}
    wanted = [str(q.get("Id", "")) for q in queries if q.get("ReturnData", True) is not False]
    first = next((results[query_id] for query_id in wanted if query_id in results), None)
    if first is None:
        first = next(iter(results.values()), None)
    messages = [f"{_text(m, 'Code')}: {_text(m, 'Value')}" for m in _members(result, "Messages")]
    if first is not None:
        messages += [f"{_text(m, 'Code')}: {_text(m, 'Value')}" for m in _members(first, "Messages")]
    said = f" (CloudWatch says {'; '.join(messages)})" if messages else ""
    if first is None:
        raise NoValuesFound(f"no values found for query {query} in the last {window}s: no results{said}")
    values = [(member.text or "").strip() for member in _members(first, "Values")]
    result_id = _text(first, "Id")
    if not values:
        status = _text(first, "StatusCode")
        if status == "InternalError":
            raise MetricsUnavailable(f"cloudwatch failed on result {result_id} of query {query}{said}")
        if status == "Forbidden":
            secret = f"Secret {config.secret_name}" if config.secret_name else "no secretRef"
            raise InvalidCredentials(
                f"cloudwatch may not read result {result_id} of query {query} with the credentials of {secret}{said}"
            )
        raise NoValuesFound(f"no values found for query {query} in the last {window}s{said}")
    try:
        value = float(values[0])
    except ValueError:
        raise InvalidQuery(f"query {query} returned a malformed value: {values[0]!r}") from None
    if math.isnan(value):
        raise NoValuesFound(f"no values found for query {query} in the last {window}s (NaN)")
    return value


def _refusal(
    answer: egress.Answer, root: ElementTree.Element | None, what: str, config: ProviderConfig, address: str
) -> SerinError:
    """The engine's error for an answer that is not a success, decided by CloudWatch's error code."""
    status = answer.status
    # CloudWatch's errors are <ErrorResponse><Error>; some AWS endpoints wrap them in <Errors>.
    error = next((e for e in root.iter() if _local(e.tag) == "Error"), None) if root is not None else None
    code = egress.shortened(_text(error, "Code"))[:64] if error is not None else ""
    message_text = _text(error, "Message") if error is not None else ""
    detail = egress.shortened(message_text) if message_text else egress.excerpt(answer)
    if code in CREDENTIAL_CODES or status in (401, 403):
        secret = f"Secret {config.secret_name}" if config.secret_name else "no secretRef"
        return InvalidCredentials(
            f"cloudwatch at {address} refused the credentials ({status} {code or 'error'}; they come from "
            f"{secret}): {detail}"
        )
    message = f"cloudwatch at {address} answered status {status}{f' ({code})' if code else ''} for {what}: {detail}"
    if code in UNAVAILABLE_CODES or status == 429 or status >= 500:
        return MetricsUnavailable(message)
    return InvalidQuery(message)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    if _local(element.tag) == name:
        return element
    return next((child for child in element if _local(child.tag) == name), None)


def _text(element: ElementTree.Element, name: str) -> str:
    child = next((child for child in element if _local(child.tag) == name), None)
    return (child.text or "").strip() if child is not None else ""


def _members(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    container = next((child for child in element if _local(child.tag) == name), None)
    return [] if container is None else [member for member in container if _local(member.tag) == "member"]


# ---- Signature Version 4 -----------------------------------------------------------------------


def _host_header(scheme: str, netloc: str) -> str:
    # The Host header a client sends leaves out the scheme's default port; the signature covers it.
    default = {"https": ":443", "http": ":80"}.get(scheme, "")
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], payload: bytes
) -> tuple[str, str]:
    """SigV4's canonical request and its signed headers: every header in ``headers`` is signed."""
    canonical_headers = sorted((name.lower().strip(), " ".join(value.split())) for name, value in headers.items())
    signed_headers = ";".join(name for name, _ in canonical_headers)
    query_string = "&".join(f"{key}={value}" for key, value in sorted((_encode(k), _encode(v)) for k, v in query))
    lines = [
        method,
        quote(path or "/", safe="/-_.~"),
        query_string,
        *(f"{name}:{value}" for name, value in canonical_headers),
        "",
        signed_headers,
        hashlib.sha256(payload).hexdigest(),
    ]
    return "\n".join(lines), signed_headers


def sigv4_signature(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload: bytes,
    secret_access_key: str,
    region: str,
    service: str,
    amz_date: str,
) -> tuple[str, str, str]:
    """The signature of a request as AWS Signature Version 4 defines it, with its credential scope
    and signed headers. ``amz_date`` is the request's time, ``YYYYMMDDTHHMMSSZ``."""
    request, signed_headers = canonical_request(method, path, query, headers, payload)
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = f"AWS4{secret_access_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return signature, scope, signed_headers


def sigv4_authorization(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The ``Authorization`` header of a request signed with Signature Version 4."""
    signature, scope, signed_headers = sigv4_signature(
        method=method,
        path=path,
        query=query,
        headers=headers,
        payload=payload,
        secret_access_key=credentials.secret_access_key,
        region=region,
        service=service,
        amz_date=amz_date,
    )
    return (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
