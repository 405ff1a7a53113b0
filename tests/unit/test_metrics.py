"""Metric queries: builtin templates, placeholder rendering, and how Prometheus answers become values or errors."""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from serin import tls
from serin.metrics.builtin import query_for, render, template_variables
from serin.metrics.http import retrying_session
from serin.metrics.prometheus import PrometheusProvider
from serin.metrics.prometheus import build as build_prometheus
from serin.model import QUERY_VARIABLES, Canary, Metric, parse_canary
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig
from tests.unit.servers import serving


def make_canary(provider: str = "istio", metrics: list[dict[str, Any]] | None = None) -> Canary:
    return parse_canary(
        {
            "metadata": {"name": "podinfo-canary", "namespace": "shop"},
            "spec": {
                "provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"name": "podinfo-svc", "port": 80},
                "analysis": {
                    "interval": "1m",
                    "stepWeight": 10,
                    "metrics": metrics or [{"name": "request-success-rate", "interval": "2m"}],
                },
            },
        }
    )


def only_metric(raw: dict[str, Any]) -> tuple[Metric, Canary]:
    canary = make_canary(metrics=[raw])
    return canary.analysis.metrics[0], canary


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        pytest.param("up{ns='{{ namespace }}'}", {"namespace": "shop"}, "up{ns='shop'}", id="spaced"),
        pytest.param("up{ns='{{namespace}}'}", {"namespace": "shop"}, "up{ns='shop'}", id="unspaced"),
        pytest.param("{{  target }}-{{target  }}", {"target": "web"}, "web-web", id="repeated-uneven-spaces"),
        pytest.param("x{a='{{ variables.region }}'}", {"variables.region": "eu"}, "x{a='eu'}", id="template-variable"),
        pytest.param("sum(up)", {}, "sum(up)", id="no-placeholders"),
        pytest.param("up{a=~'x{1,2}'}", {}, "up{a=~'x{1,2}'}", id="single-braces-untouched"),
    ],
)
def test_render(template: str, variables: Mapping[str, str], expected: str) -> None:
    assert render(template, variables) == expected


@pytest.mark.parametrize(
    ("template", "variables", "named"),
    [
        pytest.param("{{ nmespace }}", {"namespace": "shop"}, ["nmespace"], id="misspelt"),
        pytest.param("{{ .Namespace }}", {"namespace": "shop"}, [".Namespace"], id="go-template-field"),
        pytest.param("{{ variables.zone }}", {"variables.region": "eu"}, ["variables.zone"], id="missing-variable"),
        pytest.param("{{ b }} {{ a }} {{ b }}", {}, ["a", "b"], id="all-named-once"),
    ],
)
def test_render_names_unknown_placeholders(template: str, variables: Mapping[str, str], named: list[str]) -> None:
    with pytest.raises(InvalidQuery, match="unknown placeholder") as caught:
        render(template, variables)
    assert f"placeholder(s) {', '.join(named)} in" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected_parts", "interval"),
    [
        pytest.param(
            {"name": "request-success-rate", "interval": "2m"},
            ["istio_requests_total{", 'response_code!~"5.*"', " * 100"],
            "2m",
            id="istio-success-rate",
        ),
        pytest.param(
            {"name": "request-duration", "interval": "30s"},
            ["histogram_quantile(0.99,", "istio_request_duration_milliseconds_bucket{", "by (le)"],
            "30s",
            id="istio-duration",
        ),
        pytest.param(
            {"name": "request-duration"},
            ["istio_request_duration_milliseconds_bucket{"],
            "1m",
            id="interval-defaults-to-analysis",
        ),
    ],
)
def test_builtin_istio_queries(raw: dict[str, Any], expected_parts: list[str], interval: str) -> None:
    metric, canary = only_metric(raw)
    query = query_for(metric, canary)
    for part in expected_parts:
        assert part in query
    selector = 'reporter="destination", destination_workload_namespace="shop", destination_workload=~"podinfo"'
    assert query.count(selector) == query.count("istio_request")
    assert query.count(f"[{interval}]") == query.count("istio_request") >= 1
    assert "{{" not in query


def test_success_rate_is_non_5xx_over_all_requests() -> None:
    metric, canary = only_metric({"name": "request-success-rate", "interval": "1m"})
    numerator, denominator = query_for(metric, canary).split(" / ")
    assert 'response_code!~"5.*"' in numerator
    assert "response_code" not in denominator


@pytest.mark.parametrize(
    ("raw", "template_query", "expected"),
    [
        pytest.param(
            {"name": "errors", "interval": "5m", "query": 'sum(rate(errors{ns="{{ namespace }}"}[{{ interval }}]))'},
            None,
            'sum(rate(errors{ns="shop"}[5m]))',
            id="custom-query",
        ),
        pytest.param(
            {"name": "request-success-rate", "query": "my_rate{app='{{target}}'}"},
            None,
            "my_rate{app='podinfo'}",
            id="query-overrides-builtin-name",
        ),
        pytest.param(
            {
                "name": "latency",
                "templateRef": {"name": "latency", "namespace": "monitoring"},
                "templateVariables": {"quantile": "0.95", "route": "/api"},
            },
            'histogram_quantile({{ variables.quantile }}, x{svc="{{ service }}", path="{{ variables.route }}",'
            ' canary="{{ name }}"})',
            'histogram_quantile(0.95, x{svc="podinfo-svc", path="/api", canary="podinfo-canary"})',
            id="template-with-variables",
        ),
    ],
)
def test_custom_and_template_queries(raw: dict[str, Any], template_query: str | None, expected: str) -> None:
    metric, canary = only_metric(raw)
    assert query_for(metric, canary, template_query) == expected


@pytest.mark.parametrize(
    ("raw", "template_query", "provider", "message"),
    [
        pytest.param(
            {"name": "t", "templateRef": {"name": "t"}}, "x{a='{{ nope }}'}", "istio", "nope", id="unknown-placeholder"
        ),
        pytest.param(
            {"name": "t", "templateRef": {"name": "t"}},
            None,
            "istio",
            "MetricTemplate 't'",
            id="template-query-missing",
        ),
        pytest.param(
            {"name": "t", "templateRef": {"name": "t"}},
            "{{ variables.absent }}",
            "istio",
            "variables.absent",
            id="template-variable-missing",
        ),
        pytest.param({"name": "request-success-rate"}, None, "osm", "provider 'osm'", id="unknown-provider"),
    ],
)
def test_query_for_errors(raw: dict[str, Any], template_query: str | None, provider: str, message: str) -> None:
    # The model only admits known providers, so an unknown one is swapped in after parsing.
    metric, canary = only_metric(raw)
    canary = replace(canary, provider=provider)
    with pytest.raises(InvalidQuery, match=message):
        query_for(metric, canary, template_query)


# --- PrometheusProvider against canned answers from a local server ------------------------------


class CannedPrometheus(http.server.ThreadingHTTPServer):
    """Answers each request with the next (status, body) from ``answers``, repeating the last one."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CannedHandler)
        self.answers: list[tuple[int, Any]] = [(200, success("vector", []))]
        self.queries: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_answer(self) -> tuple[int, Any]:
        with self.lock:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class CannedHandler(http.server.BaseHTTPRequestHandler):
    server: CannedPrometheus

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.queries.extend(parse_qs(parts.query).get("query", []))
        self.server.headers.append(dict(self.headers))
        status, body = self.server.next_answer()
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def success(result_type: str, result: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


def sample(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, value]}


@pytest.fixture
def prometheus() -> Iterator[CannedPrometheus]:
    with serving(CannedPrometheus()) as running:
        yield running


def fast_provider(url: str) -> PrometheusProvider:
    return PrometheusProvider(url, timeout=2.0, session=retrying_session(backoff_factor=0.01))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(success("vector", [sample("99.5")]), 99.5, id="vector"),
        pytest.param(success("vector", [sample("1", pod="a"), sample("2", pod="b")]), 1.0, id="first-of-several"),
        pytest.param(success("scalar", [1700000000.0, "7"]), 7.0, id="scalar"),
        pytest.param(success("vector", [sample("+Inf")]), float("inf"), id="infinity-is-a-value"),
    ],
)
def test_query_values(prometheus: CannedPrometheus, answer: dict[str, Any], expected: float) -> None:
    prometheus.answers = [(200, answer)]
    assert fast_provider(prometheus.url).query('sum(up{job="x"})') == expected
    assert prometheus.queries == ['sum(up{job="x"})']


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        pytest.param((200, success("vector", [])), NoValuesFound, "no values found for query q", id="empty"),
        pytest.param((200, success("vector", [sample("NaN")])), NoValuesFound, "NaN", id="nan"),
        pytest.param((200, success("scalar", [0, "NaN"])), NoValuesFound, "NaN", id="nan-scalar"),
        # The query is wrong: a failed check at once, however healthy Prometheus is.
        pytest.param((200, success("matrix", [])), InvalidQuery, "matrix result", id="matrix"),
        pytest.param((200, success("vector", [{"metric": {}}])), InvalidQuery, "malformed", id="no-value"),
        pytest.param(
            (400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected end"}),
            InvalidQuery,
            r"status 400 \(bad_data\) for query q: 1:5: parse error",
            id="bad-data",
        ),
        pytest.param(
            (422, {"status": "error", "errorType": "execution", "error": "many-to-many matching not allowed"}),
            InvalidQuery,
            r"status 422 \(execution\) for query q: many-to-many",
            id="execution",
        ),
        pytest.param(
            (200, {"status": "error", "error": "boom"}), InvalidQuery, "status 200 for query q: boom", id="error"
        ),
        pytest.param(
            (404, "<html>no such page</html>"),
            InvalidQuery,
            "status 404 for query q: 25 bytes of application/json, not a JSON object$",
            id="not-prometheus",
        ),
        # Prometheus could not answer: later it may.
        pytest.param(
            (500, "<html>oops</html>"),
            MetricsUnavailable,
            "status 500 for query q: 17 bytes of application/json, not a JSON object$",
            id="server-error",
        ),
    ],
)
def test_query_errors(
    prometheus: CannedPrometheus, answer: tuple[int, Any], error: type[Exception], message: str
) -> None:
    prometheus.answers = [answer]
    with pytest.raises(error, match=message):
        fast_provider(prometheus.url).query("q")


def test_gateway_errors_are_retried(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(503, "busy"), (502, "bad gateway"), (200, success("vector", [sample("3")]))]
    assert fast_provider(prometheus.url).query("q") == 3.0
    assert len(prometheus.queries) == 3


def test_gateway_errors_give_up_with_the_last_answer(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(503, {"status": "error", "errorType": "timeout", "error": "query timed out"})]
    with pytest.raises(MetricsUnavailable, match=r"status 503 .*query timed out"):
        fast_provider(prometheus.url).query("q")
    assert len(prometheus.queries) == 3


def test_is_online(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(200, success("vector", [sample("1")]))]
    assert fast_provider(prometheus.url).is_online()
    prometheus.answers = [(500, "down")]
    assert not fast_provider(prometheus.url).is_online()


def test_address_may_end_with_a_slash(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(200, success("scalar", [0, "5"]))]
    assert fast_provider(prometheus.url + "/").query("5") == 5.0


def test_the_model_admits_exactly_the_placeholders_queries_get() -> None:
    """What admission lets through as a placeholder is what a query is filled in with."""
    metric, canary = only_metric({"name": "x", "query": "up", "templateVariables": {"zone": "eu"}})
    assert set(template_variables(metric, canary)) == {*QUERY_VARIABLES, "variables.zone"}


# --- a Prometheus of a MetricTemplate: credentials from its Secret -------------------------------


def template_config(url: str, **secret: str) -> ProviderConfig:
    return ProviderConfig(
        type="prometheus",
        address=url,
        headers=(("X-Scope-OrgID", ("tenant-a",)),),
        secret_name="test/prometheus-auth" if secret else "",
        secret=tuple(sorted(secret.items())),
    )


@pytest.mark.parametrize(
    ("secret", "authorization"),
    [
        pytest.param({"token": "t0ken"}, "Bearer t0ken", id="bearer"),
        pytest.param({"token": "t0ken\n"}, "Bearer t0ken", id="bearer-made-with-echo"),
        pytest.param({"username": "u", "password": "p"}, "Basic dTpw", id="basic"),
        pytest.param({}, None, id="none"),
    ],
)
def test_a_template_prometheus_sends_the_credentials_of_its_secret(
    prometheus: CannedPrometheus, secret: dict[str, str], authorization: str | None
) -> None:
    prometheus.answers = [(200, success("vector", [sample("3")]))]
    assert build_prometheus(template_config(prometheus.url, **secret), None).query("up") == 3.0  # type: ignore[arg-type]
    sent = prometheus.headers[0]
    assert (sent.get("Authorization"), sent["X-Scope-OrgID"]) == (authorization, "tenant-a")


def test_refused_credentials_name_the_secret_not_its_values(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(401, "Unauthorized")]
    provider = build_prometheus(template_config(prometheus.url, token="s3cr3t-value"), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidCredentials) as raised:
        provider.query("up")
    assert str(raised.value) == (
        f"prometheus at {prometheus.url} refused the credentials (401; they come from Secret test/prometheus-auth)"
    )


def test_a_password_without_a_username_is_named() -> None:
    with pytest.raises(InvalidCredentials) as raised:
        build_prometheus(template_config("http://p", username="u"), None)  # type: ignore[arg-type]
    assert str(raised.value) == "prometheus needs password in its credentials: Secret test/prometheus-auth has none"


@pytest.fixture
def https_prometheus(tmp_path: Path) -> Iterator[CannedPrometheus]:
    """The canned Prometheus behind a certificate of a CA nobody trusts."""
    ca, ca_key = tls.new_ca("untrusted", datetime.timedelta(days=1))
    cert, key = tls.issue_serving(ca, ca_key, "prometheus", [], ["127.0.0.1"], datetime.timedelta(days=1))
    (tmp_path / "tls.crt").write_bytes(tls.cert_pem(cert))
    (tmp_path / "tls.key").write_bytes(tls.key_pem(key))
    server = CannedPrometheus()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as running:
        yield running


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_accepts_a_certificate_nobody_trusts(https_prometheus: CannedPrometheus) -> None:
    https_prometheus.answers = [(200, success("vector", [sample("4")]))]
    url = https_prometheus.url.replace("http://", "https://")
    checked = ProviderConfig(type="prometheus", address=url)
    with pytest.raises(MetricsUnavailable, match=r"unreachable: its TLS certificate is not trusted$"):
        build_prometheus(checked, None).query("up")  # type: ignore[arg-type]
    trusting = dataclasses.replace(checked, insecure_skip_verify=True)
    assert build_prometheus(trusting, None).query("up") == 4.0  # type: ignore[arg-type]


def test_a_token_no_header_can_carry_is_named_not_shown() -> None:
    with pytest.raises(InvalidCredentials) as raised:
        build_prometheus(template_config("http://127.0.0.1:9", token="s3cr3t\r\nX-Evil: 1"), None)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "prometheus: token in Secret test/prometheus-auth has characters an HTTP header cannot carry"
    )


def test_an_address_with_user_info_is_shown_without_it(prometheus: CannedPrometheus) -> None:
    prometheus.answers = [(500, {"status": "error", "error": "overloaded"})]
    address = prometheus.url.replace("http://", "http://ops:hunter2@") + "/prom"
    with pytest.raises(MetricsUnavailable) as raised:
        fast_provider(address).query("up")
    shown = prometheus.url + "/prom"
    assert str(raised.value) == f"prometheus at {shown} answered status 500 for query up: overloaded"
    assert repr(fast_provider(address)) == f"PrometheusProvider({shown!r})"
