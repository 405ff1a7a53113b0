"""Serin's HTTP server as production runs it (gunicorn, two worker processes, TLS): whatever a client
sends, the answer is JSON, and a body is read whole or refused."""

from __future__ import annotations

import datetime
import functools
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from localcluster.testing import ClusterHandle
from serin import tls
from tests.integration.helpers import SerinServer

pytestmark = pytest.mark.integration


def review(namespace: str) -> dict[str, object]:
    """A Deployment update that is no revision: answered from the request alone."""
    deployment = {"metadata": {"name": "web", "namespace": namespace}, "spec": {"replicas": 1, "template": {}}}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "UPDATE",
            "namespace": namespace,
            "object": deployment,
            "oldObject": deployment,
        },
    }


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("headers", "path", "status", "says"),
    [
        pytest.param({}, "/healthz?q=" + "x" * 5000, 414, "URI Too Long", id="request-line-too-long"),
        pytest.param(
            {f"x-h{i}": "1" for i in range(120)}, "/healthz", 431, "Request Header Fields Too Large", id="headers"
        ),
    ],
)
def test_requests_gunicorn_refuses_are_answered_in_json(
    serin_server: SerinServer, headers: dict[str, str], path: str, status: int, says: str
) -> None:
    response = requests.get(
        f"{serin_server.url}{path}", headers=headers, verify=str(serin_server.ca_bundle), timeout=10
    )
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"].startswith(says)


def api_server_identity(cluster: ClusterHandle) -> tuple[str, str]:
    """The client certificate the API server presents to webhooks (Serin requires it here)."""
    pki = cluster.state_dir / "pki"
    return str(pki / "webhook-client.crt"), str(pki / "webhook-client.key")


def test_admission_reviews_come_from_the_api_server_only(
    local_cluster: ClusterHandle, serin_server: SerinServer, tmp_path: Path
) -> None:
    body = json.dumps(review("default")).encode()
    post = functools.partial(
        requests.post,
        f"{serin_server.url}/validate",
        data=body,
        headers={"Content-Type": "application/json"},
        verify=str(serin_server.ca_bundle),
        timeout=10,
    )
    anonymous = post()
    assert anonymous.status_code == 401
    assert "client certificate signed by the CA in SERIN_ADMISSION_CLIENT_CA" in anonymous.json()["error"]
    # A certificate another CA signed does not get through the TLS handshake.
    ca, ca_key = tls.new_ca("somebody-else", datetime.timedelta(days=1))
    cert, key = tls.issue_client(ca, ca_key, "kube-apiserver", None, datetime.timedelta(days=1))
    (tmp_path / "c.crt").write_bytes(tls.cert_pem(cert))
    (tmp_path / "c.key").write_bytes(tls.key_pem(key))
    with pytest.raises(requests.exceptions.SSLError):
        post(cert=(str(tmp_path / "c.crt"), str(tmp_path / "c.key")))
    assert post(cert=api_server_identity(local_cluster)).status_code == 200
    # The tick and the probes ask for no certificate.
    assert requests.get(f"{serin_server.url}/healthz", verify=str(serin_server.ca_bundle), timeout=10).ok


def test_a_chunked_review_is_read_whole(local_cluster: ClusterHandle, serin_server: SerinServer) -> None:
    body = json.dumps(review("default")).encode()
    response = requests.post(
        f"{serin_server.url}/validate",
        data=chunks(body, 7),
        headers={"Content-Type": "application/json"},
        cert=api_server_identity(local_cluster),
        verify=str(serin_server.ca_bundle),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["response"] == {"uid": "u-1", "allowed": True}


def test_a_chunked_body_over_the_limit_is_refused(local_cluster: ClusterHandle, serin_server: SerinServer) -> None:
    body = b'{"padding": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = requests.post(
        f"{serin_server.url}/validate",
        data=chunks(body, 64 * 1024),
        headers={"Content-Type": "application/json"},
        cert=api_server_identity(local_cluster),
        verify=str(serin_server.ca_bundle),
        timeout=30,
    )
    assert response.status_code == 413, response.text[:300]
    assert "error" in response.json()


def test_metrics_are_one_view_of_every_worker(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], metrics_token: str
) -> None:
    """Ticks land on either worker; a scrape, on either, counts them all."""
    before = tick_count(serin_server, metrics_token)
    for _ in range(6):
        assert serin_server.tick(tokens["ticker"], namespace="serin-tests").status_code == 200
    assert tick_count(serin_server, metrics_token) == before + 6


def tick_count(server: SerinServer, metrics_token: str) -> float:
    scraped = server.metrics(metrics_token)
    assert scraped.status_code == 200, scraped.text
    exposed = scraped.text
    line = next(line for line in exposed.splitlines() if line.startswith("serin_tick_duration_seconds_count"))
    return float(line.split()[-1])


# The API server keeps a connection to a webhook idle for up to Go's default 90 s before it closes
# it; this long a pause is one a connection must survive.
API_SERVER_IDLE_PAUSE_SECONDS = 3.0


def test_a_connection_the_api_server_keeps_idle_is_still_served(
    local_cluster: ClusterHandle, serin_server: SerinServer
) -> None:
    """A connection the server closes while the client still counts it idle breaks the client's
    next request on it ("write: broken pipe"): the API server does not retry a review, and a
    Deployment's webhook fails open. The server must keep it open longer than the API server does."""
    context = ssl.create_default_context(cafile=str(serin_server.ca_bundle))
    context.load_cert_chain(*api_server_identity(local_cluster))
    host, port = urlsplit(serin_server.url).hostname or "", urlsplit(serin_server.url).port
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    body = json.dumps(review("default"))
    try:
        for _ in range(2):
            connection.request("POST", "/validate", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            assert json.loads(answer.read())["response"]["allowed"] is True
            time.sleep(API_SERVER_IDLE_PAUSE_SECONDS)
        # Both requests went over one connection: it was never closed and reopened.
        assert connection.sock is not None
    finally:
        connection.close()
