"""The keptn provider against a fake of the one store method it calls, and through Serin's real
``KubeStore`` over a stubbed API client.

Keptn's metrics live in the cluster as custom resources (``metrics.keptn.sh/v1beta1``), and the
provider reaches them through ``store.request`` with full API paths. ``FakeKeptn`` implements just
that method: it holds objects by API path as the API server does (GET, POST to a collection,
DELETE), raising Serin's store errors worded as ``KubeStore.request`` words them, and plays Keptn's
metrics operator by completing an Analysis after a few reads with the verdict the test chose. The
last tests run Serin's real ``KubeStore.request`` over an API client that answers with fixed
statuses, so the mapping of its actual 403/404/503 errors is checked too.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from kubernetes import client

from serin.kube.store import KubeRejected, KubeStore, KubeUnavailable, NotFound
from serin.metrics.keptn import KeptnProvider, build, parse_query
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig, SerinError

API = "/apis/metrics.keptn.sh/v1beta1"
METRIC_PATH = f"{API}/namespaces/shop/keptnmetrics/podinfo-errors"
ANALYSES = f"{API}/namespaces/shop/analyses"
FORBIDDEN = (
    'keptnmetrics.metrics.keptn.sh "podinfo-errors" is forbidden: User "system:serviceaccount:serin:serin" '
    'cannot get resource "keptnmetrics" in API group "metrics.keptn.sh" in the namespace "shop"'
)


@dataclass
class FakeKeptn:
    """``store.request`` over the metrics.keptn.sh objects of one cluster, with Keptn's operator."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    # An error to raise for a method instead of answering.
    errors: dict[str, SerinError] = field(default_factory=dict)
    # The verdict (status.pass) per AnalysisDefinition; None: completed without one; absent: never completes.
    verdicts: dict[str, bool | None] = field(default_factory=dict)
    reads_until_completed: int = 2
    reads: dict[str, int] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, what: str = ""
    ) -> dict[str, Any]:
        self.calls.append((method, path, what))
        if method in self.errors:
            raise self.errors[method]
        if not path.startswith(f"{API}/namespaces/"):
            raise NotFound(f"{what}: not found")
        if method == "POST":
            assert body is not None
            self.created.append(copy.deepcopy(dict(body)))
            self.objects[f"{path}/{body['metadata']['name']}"] = copy.deepcopy(dict(body))
            return dict(body)
        if path not in self.objects:
            raise NotFound(f"{what}: not found")
        if method == "DELETE":
            del self.objects[path]
            return {}
        found = self.objects[path]
        if path.startswith(f"{ANALYSES}/"):
            self.operate(path, found)
        return copy.deepcopy(found)

    def operate(self, path: str, analysis: dict[str, Any]) -> None:
        self.reads[path] = self.reads.get(path, 0) + 1
        definition = analysis["spec"]["analysisDefinition"]["name"]
        if self.reads[path] < self.reads_until_completed or definition not in self.verdicts:
            analysis["status"] = {"state": "Progressing"}
            return
        verdict = self.verdicts[definition]
        analysis["status"] = {"state": "Completed", "raw": "{}"}
        if verdict is not None:
            analysis["status"]["pass"] = verdict


def keptn(store: FakeKeptn) -> KeptnProvider:
    return KeptnProvider(store, analysis_timeout=0.2, poll_interval=0.01)


def keptn_metric(value: str | None, err: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"lastUpdated": "2026-11-28T06:00:00Z"}
    if value is not None:
        status["value"] = value
    if err:
        status["errMsg"] = err
    return {
        "apiVersion": "metrics.keptn.sh/v1beta1",
        "kind": "KeptnMetric",
        "metadata": {"name": "podinfo-errors", "namespace": "shop"},
        "spec": {"provider": {"name": "prometheus"}, "query": "sum(rate(errors[1m]))", "fetchIntervalSeconds": 10},
        "status": status,
    }


# --- KeptnMetric -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["keptnmetric/shop/podinfo-errors", "KeptnMetrics/Shop/Podinfo-Errors\n", " keptnmetric/shop/podinfo-errors/x "],
)
def test_a_keptn_metric_is_its_status_value(query: str) -> None:
    store = FakeKeptn(objects={METRIC_PATH: keptn_metric("4.25")})
    assert keptn(store).query(query) == 4.25
    assert store.calls == [("GET", METRIC_PATH, "get KeptnMetric shop/podinfo-errors")]


def test_a_keptn_metric_without_a_value_yet_has_no_data() -> None:
    store = FakeKeptn(objects={METRIC_PATH: keptn_metric(None, err="prometheus: connection refused")})
    with pytest.raises(NoValuesFound) as caught:
        keptn(store).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == "KeptnMetric shop/podinfo-errors has no value yet: prometheus: connection refused"


def test_a_keptn_metric_value_that_is_no_number_is_invalid() -> None:
    store = FakeKeptn(objects={METRIC_PATH: keptn_metric("four")})
    with pytest.raises(InvalidQuery) as caught:
        keptn(store).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == "KeptnMetric shop/podinfo-errors has a value that is not a number: 'four'"


def test_a_missing_keptn_metric_is_invalid() -> None:
    with pytest.raises(InvalidQuery) as caught:
        keptn(FakeKeptn()).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == (
        "KeptnMetric shop/podinfo-errors does not exist (or Keptn's metrics.keptn.sh/v1beta1 is not installed)"
    )


def test_a_request_the_api_server_refuses_is_invalid() -> None:
    store = FakeKeptn(errors={"GET": KubeRejected("get KeptnMetric shop/podinfo-errors: 400 bad request")})
    with pytest.raises(InvalidQuery) as caught:
        keptn(store).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == "get KeptnMetric shop/podinfo-errors: 400 bad request"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param("get KeptnMetric shop/podinfo-errors: 503 etcdserver: leader changed", id="5xx"),
        pytest.param("get KeptnMetric shop/podinfo-errors: read timed out. (read timeout=10.0)", id="timeout"),
    ],
)
def test_an_api_server_that_fails_is_unavailable(error: str) -> None:
    store = FakeKeptn(errors={"GET": KubeUnavailable(error)})
    with pytest.raises(MetricsUnavailable) as caught:
        keptn(store).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == error


def test_rbac_refusing_serin_is_invalid_credentials() -> None:
    store = FakeKeptn(errors={"GET": KubeRejected(f"get KeptnMetric shop/podinfo-errors: 403 {FORBIDDEN}")})
    with pytest.raises(InvalidCredentials) as caught:
        keptn(store).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == (
        "the API server refused to get KeptnMetric shop/podinfo-errors (403): Serin's service account needs "
        "permission to get keptnmetrics in metrics.keptn.sh (Keptn needs no Secret)"
    )


def test_no_secret_is_read() -> None:
    # Keptn is read as Serin's service account: a template's secretRef (even one without keys) and
    # address play no part, so there is no missing key to report.
    config = ProviderConfig(type="keptn", address="http://ignored", secret_name="test/keptn")
    store = cast(KubeStore, FakeKeptn(objects={METRIC_PATH: keptn_metric("1")}))
    assert build(config, store).query("keptnmetric/shop/podinfo-errors") == 1.0


# --- Analysis ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("verdict", "value"), [(True, 1.0), (False, 0.0)])
def test_an_analysis_is_one_when_it_passed(verdict: bool, value: float) -> None:
    store = FakeKeptn(verdicts={"podinfo-slo": verdict})
    query = "analysis/shop/podinfo-slo/5m/service=PodInfo;path=/api/v1;empty="
    assert keptn(store).query(query) == value
    [created] = store.created
    name = created["metadata"]["name"]
    assert re.fullmatch(r"podinfo-slo-[0-9a-f]{6}", name)
    assert created == {
        "apiVersion": "metrics.keptn.sh/v1beta1",
        "kind": "Analysis",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "analysisDefinition": {"name": "podinfo-slo"},
            "timeframe": {"recent": "5m"},
            "args": {"service": "PodInfo", "path": "/api/v1", "empty": ""},
        },
    }
    where = f"Analysis shop/{name} of AnalysisDefinition shop/podinfo-slo"
    assert store.calls == [
        ("POST", ANALYSES, f"create {where}"),
        ("GET", f"{ANALYSES}/{name}", f"get {where}"),
        ("GET", f"{ANALYSES}/{name}", f"get {where}"),
        ("DELETE", f"{ANALYSES}/{name}", f"delete {where}"),
    ]
    assert store.objects == {}


def test_an_analysis_defaults_to_the_last_minute_without_arguments() -> None:
    store = FakeKeptn(verdicts={"podinfo-slo": True}, reads_until_completed=1)
    assert keptn(store).query("analyses/shop/podinfo-slo") == 1.0
    assert store.created[0]["spec"]["timeframe"] == {"recent": "1m"}
    assert store.created[0]["spec"]["args"] == {}


def test_an_analysis_keptn_does_not_complete_in_time_is_unavailable() -> None:
    store = FakeKeptn()
    with pytest.raises(MetricsUnavailable) as caught:
        keptn(store).query("analysis/shop/podinfo-slo")
    name = store.created[0]["metadata"]["name"]
    assert str(caught.value) == (
        f"Keptn did not complete Analysis shop/{name} of AnalysisDefinition shop/podinfo-slo within 0.2s "
        "(it is Progressing)"
    )
    assert store.calls[-1][0] == "DELETE"
    assert store.objects == {}


def test_an_analysis_completed_without_a_verdict_has_no_data() -> None:
    store = FakeKeptn(verdicts={"podinfo-slo": None})
    with pytest.raises(NoValuesFound) as caught:
        keptn(store).query("analysis/shop/podinfo-slo")
    name = store.created[0]["metadata"]["name"]
    assert str(caught.value) == (
        f"Keptn completed Analysis shop/{name} of AnalysisDefinition shop/podinfo-slo without a verdict (status.pass)"
    )
    assert store.objects == {}


def test_analyses_keptn_does_not_serve_are_invalid() -> None:
    store = FakeKeptn(errors={"POST": NotFound("create Analysis: not found")})
    with pytest.raises(InvalidQuery) as caught:
        keptn(store).query("analysis/shop/podinfo-slo")
    assert str(caught.value) == "cannot create Analyses in shop: Keptn's metrics.keptn.sh/v1beta1 is not installed"
    assert [method for method, _, _ in store.calls] == ["POST"]


def test_rbac_refusing_to_create_analyses_is_invalid_credentials() -> None:
    class Refusing(FakeKeptn):
        def request(
            self, method: str, path: str, body: Mapping[str, Any] | None = None, *, what: str = ""
        ) -> dict[str, Any]:
            if method == "POST":
                self.calls.append((method, path, what))
                raise KubeRejected(f'{what}: 403 analyses.metrics.keptn.sh is forbidden: User "x" cannot create')
            return super().request(method, path, body, what=what)

    store = Refusing()
    with pytest.raises(InvalidCredentials) as caught:
        keptn(store).query("analysis/shop/podinfo-slo")
    assert re.fullmatch(
        r"the API server refused to create Analysis shop/podinfo-slo-[0-9a-f]{6} of AnalysisDefinition "
        r"shop/podinfo-slo \(403\): Serin's service account needs permission to create analyses in "
        r"metrics.keptn.sh \(Keptn needs no Secret\)",
        str(caught.value),
    )


def test_an_analysis_that_cannot_be_deleted_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeKeptn(verdicts={"podinfo-slo": True}, errors={"DELETE": KubeUnavailable("delete: connection refused")})
    with caplog.at_level(logging.WARNING, logger="serin.metrics.keptn"):
        assert keptn(store).query("analysis/shop/podinfo-slo") == 1.0
    name = store.created[0]["metadata"]["name"]
    assert caplog.messages == [
        f"could not delete the Analysis shop/{name} of AnalysisDefinition shop/podinfo-slo: delete: connection refused"
    ]


# --- The query's form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "keptnmetric/podinfo-errors",
            "keptn query 'keptnmetric/podinfo-errors' has too few parts: a keptn query is "
            "keptnmetric/<namespace>/<name> or analysis/<namespace>/<analysis definition>[/<timeframe>"
            "[/<key>=<value>;...]]",
        ),
        ("metric/shop/podinfo", "keptn query 'metric/shop/podinfo' names kind 'metric', not keptnmetric or analysis"),
        (
            "keptnmetric//podinfo",
            "keptn query 'keptnmetric//podinfo' lacks a namespace or a name: a keptn query is "
            "keptnmetric/<namespace>/<name> or analysis/<namespace>/<analysis definition>[/<timeframe>"
            "[/<key>=<value>;...]]",
        ),
        (
            "analysis/shop/slo/five",
            "keptn query 'analysis/shop/slo/five' has timeframe 'five': 'five' is not a duration such as 30s, 1m or "
            "1m30s",
        ),
        ("analysis/shop/slo/5m/a=1;b", "keptn query 'analysis/shop/slo/5m/a=1;b' has argument 'b', not <key>=<value>"),
    ],
)
def test_malformed_queries_are_invalid_before_asking(query: str, message: str) -> None:
    store = FakeKeptn()
    provider = keptn(store)
    assert provider.syntax_error(query) == message
    with pytest.raises(InvalidQuery) as caught:
        provider.query(query)
    assert str(caught.value) == message
    assert store.calls == []


def test_parse_query() -> None:
    parsed = parse_query("Analysis/Shop/SLO/2M/Region=EU-West;ids=a=b")
    assert (parsed.kind, parsed.namespace, parsed.name, parsed.timeframe) == ("analysis", "shop", "slo", "2m")
    assert parsed.args == (("Region", "EU-West"), ("ids", "a=b"))
    assert keptn(FakeKeptn()).syntax_error("keptnmetric/shop/podinfo-errors") is None


# --- Through Serin's KubeStore -------------------------------------------------------------------


class StubResponse:
    def __init__(self, status: int, body: Any, reason: str) -> None:
        self.status = status
        self.data = json.dumps(body).encode()
        self.reason = reason

    def read(self) -> bytes:
        return self.data


@dataclass
class StubApi:
    """The two ApiClient methods KubeStore.request uses, answering one status to everything."""

    status: int
    body: Any
    reason: str = ""
    urls: list[str] = field(default_factory=list)

    def param_serialize(
        self, method: str, resource_path: str, **_: Any
    ) -> tuple[str, str, dict[str, str], Any, list[Any]]:
        return method, f"https://kubernetes.default.svc{resource_path}", {}, None, []

    def call_api(self, method: str, url: str, *_: Any, **__: Any) -> StubResponse:
        self.urls.append(f"{method} {url}")
        return StubResponse(self.status, self.body, self.reason)


def through_kube_store(api: StubApi) -> KeptnProvider:
    return build(ProviderConfig(type="keptn"), KubeStore(cast(client.ApiClient, api)))


def test_kube_store_value() -> None:
    api = StubApi(200, keptn_metric("0.5"))
    assert through_kube_store(api).query("keptnmetric/shop/podinfo-errors") == 0.5
    assert api.urls == [f"GET https://kubernetes.default.svc{METRIC_PATH}"]


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            403,
            {"kind": "Status", "message": FORBIDDEN, "reason": "Forbidden", "code": 403},
            InvalidCredentials,
            "the API server refused to get KeptnMetric shop/podinfo-errors (403): Serin's service account needs "
            "permission to get keptnmetrics in metrics.keptn.sh (Keptn needs no Secret)",
        ),
        (
            404,
            {"kind": "Status", "message": "the server could not find the requested resource", "code": 404},
            InvalidQuery,
            "KeptnMetric shop/podinfo-errors does not exist (or Keptn's metrics.keptn.sh/v1beta1 is not installed)",
        ),
        (
            503,
            {"kind": "Status", "message": "the server is currently unable to handle the request", "code": 503},
            MetricsUnavailable,
            "get KeptnMetric shop/podinfo-errors: 503 the server is currently unable to handle the request",
        ),
    ],
)
def test_kube_store_errors(status: int, body: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        through_kube_store(StubApi(status, body)).query("keptnmetric/shop/podinfo-errors")
    assert str(caught.value) == message
