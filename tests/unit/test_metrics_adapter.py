"""The local cluster's external metrics adapter: what it answers, over HTTPS with the certificate
the aggregator checks, and the objects that register it."""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from localcluster import metrics_adapter
from localcluster.metrics_adapter import SERVICE_HOST, AdapterServer, SourceError, answer, is_quantity
from localcluster.pki import ensure_serving_pair

NOW = datetime.datetime(2030, 1, 15, 12, 0, tzinfo=datetime.UTC)
BASE = "/apis/external.metrics.k8s.io/v1beta1"
CONFIGMAPS: dict[str, dict[str, str]] = {"shop": {"queue_depth": "3", "load": "500m", "broken": "lots"}}


def read(namespace: str) -> Mapping[str, str] | None:
    return CONFIGMAPS.get(namespace)


def test_discovery_lists_one_namespaced_resource() -> None:
    code, document = answer(BASE, read, NOW)
    assert code == 200
    assert document["kind"] == "APIResourceList"
    assert document["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    assert [(r["name"], r["namespaced"], r["kind"]) for r in document["resources"]] == [
        ("externalmetrics", True, "ExternalMetricValueList")
    ]


def test_group_list_and_group_name_the_version() -> None:
    code, groups = answer("/apis", read, NOW)
    assert code == 200
    assert groups["kind"] == "APIGroupList"
    assert [g["preferredVersion"]["groupVersion"] for g in groups["groups"]] == ["external.metrics.k8s.io/v1beta1"]
    code, group = answer("/apis/external.metrics.k8s.io", read, NOW)
    assert (code, group["kind"], group["name"]) == (200, "APIGroup", "external.metrics.k8s.io")


def test_openapi_v2_is_an_empty_valid_document() -> None:
    code, document = answer("/openapi/v2", read, NOW)
    assert (code, document["swagger"], document["paths"]) == (200, "2.0", {})


def test_a_metric_is_one_item_with_the_configmap_value() -> None:
    code, document = answer(f"{BASE}/namespaces/shop/load", read, NOW)
    assert code == 200
    assert document == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {"metricName": "load", "metricLabels": {}, "timestamp": "2030-01-15T12:00:00Z", "value": "500m"},
        ],
    }


@pytest.mark.parametrize(
    ("path", "code", "reason", "words"),
    [
        (f"{BASE}/namespaces/elsewhere/load", 404, "NotFound", "no ConfigMap elsewhere/external-metrics"),
        (f"{BASE}/namespaces/shop/missing", 404, "NotFound", "has no key 'missing'"),
        (f"{BASE}/namespaces/shop/broken", 500, "InternalError", "'lots' is not a Kubernetes quantity"),
        (f"{BASE}/namespaces/shop", 404, "NotFound", "could not find"),
        ("/apis/metrics.k8s.io/v1beta1", 404, "NotFound", "could not find"),
    ],
)
def test_failures_are_statuses_that_say_why(path: str, code: int, reason: str, words: str) -> None:
    got, document = answer(path, read, NOW)
    assert got == code
    assert (document["kind"], document["status"], document["code"], document["reason"]) == (
        "Status",
        "Failure",
        code,
        reason,
    )
    assert words in document["message"]


def test_an_unreachable_api_server_is_a_503() -> None:
    def failing(namespace: str) -> Mapping[str, str] | None:
        raise SourceError("connection refused")

    code, document = answer(f"{BASE}/namespaces/shop/load", failing, NOW)
    assert (code, document["reason"]) == (503, "ServiceUnavailable")
    assert "connection refused" in document["message"]


@pytest.mark.parametrize("text", ["3", "0", "-2", "+1", "500m", "1.5", ".5", "2.", "1Ki", "4Gi", "2k", "1e3", "3E-2"])
def test_kubernetes_quantities_are_accepted(text: str) -> None:
    assert is_quantity(text)


@pytest.mark.parametrize("text", ["", "lots", "1.2.3", "5 m", "1KB", "m", "1e", "0x10", "1mi"])
def test_other_text_is_no_quantity(text: str) -> None:
    assert not is_quantity(text)


def test_manifests_route_the_group_to_loopback_with_the_ca() -> None:
    service, apiservice = metrics_adapter.manifests(40123, b"PEM")
    assert service["spec"] == {"type": "ExternalName", "externalName": "127.0.0.1"}
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" == SERVICE_HOST
    assert apiservice["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    spec = apiservice["spec"]
    assert spec["service"] == {"namespace": "kube-system", "name": "serin-external-metrics", "port": 40123}
    assert base64.b64decode(spec["caBundle"]) == b"PEM"
    assert (spec["group"], spec["version"]) == ("external.metrics.k8s.io", "v1beta1")


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "10.0.0.1:8443", "localhost:8443", "127.0.0.1"])
def test_it_listens_on_loopback_only(listen: str) -> None:
    with pytest.raises(SystemExit):
        metrics_adapter.main(["--kubeconfig=k", f"--listen={listen}", "--cert=c", "--key=k"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key, ca = ensure_serving_pair(tmp_path / "tls", "serin-external-metrics", [SERVICE_HOST], ["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = AdapterServer(("127.0.0.1", 0), read, context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def test_it_serves_json_over_https_as_the_aggregator_checks_it(served: tuple[str, Path]) -> None:
    url, ca = served
    # The aggregator dials the ExternalName's address but verifies the Service's host name.
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_HOST) as tls_socket,
    ):
        assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")

    with requests.Session() as session:
        response = session.get(f"{url}{BASE}/namespaces/shop/queue_depth?labelSelector=a%3Db", verify=str(ca))
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["items"][0]["value"] == "3"
        # The same connection again: answers carry their length, so HTTP/1.1 keeps it open.
        missing = session.get(f"{url}{BASE}/namespaces/shop/missing", verify=str(ca))
        assert missing.status_code == 404
        assert missing.json()["kind"] == "Status"
        assert session.get(f"{url}/healthz", verify=str(ca)).text == "ok"


def test_the_serving_pair_is_kept_while_it_fits_and_replaced_when_not(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    cert, _, ca = ensure_serving_pair(folder, "adapter", [SERVICE_HOST], ["127.0.0.1"])
    first = (cert.read_bytes(), ca.read_bytes())
    ensure_serving_pair(folder, "adapter", [SERVICE_HOST], ["127.0.0.1"])
    assert (cert.read_bytes(), ca.read_bytes()) == first
    ensure_serving_pair(folder, "adapter", ["other.kube-system.svc"], ["127.0.0.1"])
    assert cert.read_bytes() != first[0]
    assert ca.read_bytes() != first[1]
