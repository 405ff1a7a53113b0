"""Attacks on the server as installed (gunicorn, TLS, the API server's client certificate
required), one test per attack: what reaches the port without being the API server is refused
and writes nothing, and what is built to be slow or to hold the server is answered at once
while others are served. The README's "Security model" lists what each closes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from localcluster.testing import ClusterHandle, deployment, eventually, fresh_namespace
from serin.telemetry import GAUGE_SECONDS
from tests.integration.conftest import running_serin
from tests.integration.helpers import (
    WEBHOOK_NAMESPACE_LABEL,
    HookServer,
    SerinServer,
    analysis_started,
    canary,
    canary_exists,
    canary_status,
    events,
    initialized,
    podinfo,
    set_image,
    tick,
)

pytestmark = pytest.mark.integration

# What "at once" is for an answer here: the API server gives a webhook 5 s in all (timeoutSeconds).
PROMPT_SECONDS = 1.0
ONE_ITERATION = {"interval": "1m", "iterations": 1, "threshold": 1}


def api_server_identity(cluster: ClusterHandle) -> tuple[str, str]:
    pki = cluster.state_dir / "pki"
    return str(pki / "webhook-client.crt"), str(pki / "webhook-client.key")


def review(operation: str, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    kind = obj["kind"]
    group = "serin.dev" if kind == "Canary" else "apps"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged-1",
            "kind": {"group": group, "version": obj["apiVersion"].split("/")[-1], "kind": kind},
            "operation": operation,
            "namespace": namespace,
            "name": obj["metadata"]["name"],
            "object": obj if operation != "DELETE" else None,
            "oldObject": obj if operation != "CREATE" else None,
            "userInfo": {"username": "system:serviceaccount:tenant:default"},
        },
    }


def post(server: SerinServer, path: str, body: bytes, cert: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{server.url}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
        cert=cert,
        verify=str(server.ca_bundle),
        timeout=10,
    )


def user_service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ledger", "namespace": namespace},
        "spec": {"selector": {"app": "ledger"}, "ports": [{"port": 8080}]},
    }


def test_reviews_not_from_the_api_server_are_refused_and_write_nothing(
    local_cluster: ClusterHandle, serin_server: SerinServer, namespace: str
) -> None:
    """A pod that reaches Serin's port sends a Canary CREATE that would take over a user Service,
    and a DELETE that would scale a stopped workload up: 401, and nothing in the namespace moves."""
    stopped = podinfo(namespace)
    stopped["spec"]["replicas"] = 0
    local_cluster.apply([stopped, user_service(namespace)])
    takeover = canary(namespace, {"interval": "1m", "iterations": 1, "threshold": 1}, revertOnDeletion=True)
    takeover["metadata"]["uid"] = "f"
    takeover["spec"]["service"] = {"name": "ledger", "port": 8080}
    for path in ("/mutate", "/validate"):
        for operation in ("CREATE", "DELETE"):
            answer = post(serin_server, path, json.dumps(review(operation, takeover, namespace)).encode())
            assert answer.status_code == 401, (path, operation, answer.text)
            assert "client certificate" in answer.json()["error"]
    assert local_cluster.get_json("service", "ledger", "-n", namespace)["spec"]["selector"] == {"app": "ledger"}
    target = local_cluster.get_json("deployment", "podinfo", "-n", namespace)
    assert target["spec"]["replicas"] == 0
    assert "serin.dev/canary" not in target["metadata"].get("labels", {})
    listed = local_cluster.kubectl("get", "deployments,services", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == ["deployment.apps/podinfo", "service/ledger"]


def test_a_certificate_of_the_ca_issued_to_someone_else_is_refused(
    local_cluster: ClusterHandle, serin_kubeconfig: Path, tmp_path: Path
) -> None:
    """The CA may sign other clients' certificates too (a cluster CA signs kubelets'): only the
    one issued to SERIN_ADMISSION_CLIENT_SUBJECT is the API server."""
    deployment = podinfo("default")
    body = json.dumps(review("UPDATE", deployment, "default")).encode()
    with running_serin(
        local_cluster, serin_kubeconfig, tmp_path, env={"SERIN_ADMISSION_CLIENT_SUBJECT": "somebody-else"}
    ) as pinned:
        answer = post(pinned, "/validate", body, cert=api_server_identity(local_cluster))
    assert answer.status_code == 401, answer.text
    issued_to = "admission reviews need the client certificate issued to somebody-else"
    assert answer.json() == {"error": f"{issued_to} (SERIN_ADMISSION_CLIENT_SUBJECT)"}


def test_a_validated_canary_that_is_never_stored_creates_nothing(
    local_cluster: ClusterHandle, serin_server: SerinServer, namespace: str
) -> None:
    """The API server itself sends a CREATE that a later webhook (or the CRD's schema) refuses:
    neither webhook writes anything for a Canary the API server never stores."""
    local_cluster.apply([podinfo(namespace), user_service(namespace)])
    never_stored = canary(namespace, {"interval": "1m", "iterations": 1, "threshold": 1})
    never_stored["spec"]["service"] = {"name": "ledger", "port": 8080}
    identity = api_server_identity(local_cluster)
    for path in ("/mutate", "/validate"):
        answer = post(serin_server, path, json.dumps(review("CREATE", never_stored, namespace)).encode(), identity)
        assert answer.status_code == 200 and answer.json()["response"]["allowed"], answer.text
    # A bootstrap looks for the stored Canary every 0.2 s: past a few looks, it would have acted.
    time.sleep(1.5)
    assert local_cluster.get_json("service", "ledger", "-n", namespace)["spec"]["selector"] == {"app": "ledger"}
    listed = local_cluster.kubectl("get", "deployments,services", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == ["deployment.apps/podinfo", "service/ledger"]


def test_a_create_under_a_taken_name_acts_on_nothing_it_names(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A user creates a Canary under the name of one that exists, naming another target and a
    Service of someone else's. The API server calls the webhooks, then answers AlreadyExists:
    nothing is made for what that request named, and the existing Canary keeps its objects."""
    initialized(local_cluster, serin_server, tokens["ticker"], namespace, analysis=ONE_ITERATION)
    shell = podinfo(namespace)
    shell["metadata"] = {"name": "debug-shell", "namespace": namespace, "labels": {"app": "debug-shell"}}
    shell["spec"]["selector"] = {"matchLabels": {"app": "debug-shell"}}
    shell["spec"]["template"]["metadata"]["labels"] = {"app": "debug-shell"}
    local_cluster.apply([shell, user_service(namespace)])
    taken = canary(namespace, ONE_ITERATION)
    taken["spec"]["targetRef"]["name"] = "debug-shell"
    taken["spec"]["service"] = {"name": "ledger", "port": 8080}

    refused = local_cluster.kubectl("create", "-f", "-", input_text=json.dumps(taken), check=False)
    assert refused.returncode != 0 and "AlreadyExists" in refused.stderr, refused.stderr
    # The defaulting webhook decided while answering (the API server waited for it): nothing
    # was left to do later for that request.
    assert local_cluster.get_json("service", "ledger", "-n", namespace)["spec"]["selector"] == {"app": "ledger"}
    shell_labels = local_cluster.get_json("deployment", "debug-shell", "-n", namespace)["metadata"]["labels"]
    assert shell_labels == {"app": "debug-shell"}
    listed = local_cluster.kubectl("get", "deployments,services", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == [
        "deployment.apps/debug-shell",
        "deployment.apps/podinfo",
        "deployment.apps/podinfo-primary",
        "service/ledger",
        "service/podinfo",
        "service/podinfo-canary",
        "service/podinfo-primary",
    ]
    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)
    assert stored["spec"]["targetRef"]["name"] == "podinfo" and stored["status"]["phase"] == "Initialized"
    assert local_cluster.get_json("service", "podinfo", "-n", namespace)["spec"]["selector"] == {
        "app": "podinfo-primary"
    }


def test_a_create_under_the_name_of_a_canary_being_deleted_leaves_its_revert_alone(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A Canary with revertOnDeletion is deleted: its first tick gives the target its traffic back
    and waits for it to be ready. Created again meanwhile (AlreadyExists, it is still stored), it
    is not bootstrapped again, which would point the apex Service back at the primary the garbage
    collector is about to remove, owned by the Canary that goes."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=ONE_ITERATION, revertOnDeletion=True)
    local_cluster.kubectl("delete", "canaries.serin.dev", "podinfo", "-n", namespace, "--wait=false")
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert report["summary"] == "being deleted: waiting for podinfo to be ready before the primary goes"
    reverted = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert (reverted["spec"]["selector"], reverted["metadata"].get("ownerReferences")) == ({"app": "podinfo"}, None)

    again = canary(namespace, ONE_ITERATION, revertOnDeletion=True)
    refused = local_cluster.kubectl("create", "-f", "-", input_text=json.dumps(again), check=False)
    assert refused.returncode != 0 and "AlreadyExists" in refused.stderr, refused.stderr
    apex = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert (apex["spec"]["selector"], apex["metadata"].get("ownerReferences")) == ({"app": "podinfo"}, None)
    eventually(
        lambda: tick(serin_server, token, namespace)["canaries"][0]["summary"].startswith("deleted:"), timeout=60
    )
    eventually(lambda: not canary_exists(local_cluster, namespace))
    kept = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert (kept["spec"]["selector"], kept["metadata"].get("ownerReferences")) == ({"app": "podinfo"}, None)


@pytest.fixture
def healthz_while(serin_server: SerinServer) -> Iterator[list[float]]:
    """How long /healthz took, asked every 0.1 s while the test's attack runs."""
    took: list[float] = []
    stop = False

    def probe() -> None:
        while not stop:
            started = time.monotonic()
            requests.get(f"{serin_server.url}/healthz", verify=str(serin_server.ca_bundle), timeout=30)
            took.append(time.monotonic() - started)
            time.sleep(0.1)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(probe)
        try:
            # Probing before the attack starts: an attack answered at once may end before a probe.
            eventually(lambda: took, timeout=10, what="a first /healthz")
            yield took
        finally:
            stop = True
            running.result()


def timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param(b'"\\' * 40_000, 400, "body is not JSON", id="nested-check-80kb"),
        pytest.param(b"[" * 80_000, 400, "body nests deeper than 100 levels", id="brackets-80kb"),
    ],
)
def test_a_body_built_to_be_slow_is_answered_at_once(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    healthz_while: list[float],
    body: bytes,
    status: int,
    error: str,
) -> None:
    seconds, answer = timed(lambda: post(serin_server, "/validate", body, api_server_identity(local_cluster)))
    assert answer.status_code == status and answer.json()["error"].startswith(error), answer.text
    assert seconds < PROMPT_SECONDS, f"{seconds:.2f}s"
    assert healthz_while and max(healthz_while) < PROMPT_SECONDS, healthz_while


def test_a_placeholder_bomb_is_denied_at_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, healthz_while: list[float], namespace: str
) -> None:
    bomb = canary(namespace, {"interval": "1m", "iterations": 1, "threshold": 1})
    bomb["spec"]["analysis"]["metrics"] = [{"name": "bomb", "query": "{{" * 45_000, "thresholdRange": {"max": 1}}]
    body = json.dumps(review("CREATE", bomb, namespace)).encode()
    seconds, answer = timed(lambda: post(serin_server, "/validate", body, api_server_identity(local_cluster)))
    verdict = answer.json()["response"]
    assert not verdict["allowed"], verdict
    assert "spec.analysis.metrics[0].query: is 90000 characters long" in verdict["status"]["message"]
    assert seconds < PROMPT_SECONDS, f"{seconds:.2f}s"
    assert healthz_while and max(healthz_while) < PROMPT_SECONDS, healthz_while


def test_the_body_of_a_replay_is_not_read_before_its_caller_is_known(serin_server: SerinServer) -> None:
    seconds, answer = timed(lambda: post(serin_server, "/replay?namespace=a&name=b&from=0", b'"\\' * 30_000))
    assert answer.status_code == 401, answer.text
    assert seconds < PROMPT_SECONDS, f"{seconds:.2f}s"


@pytest.mark.parametrize("sends", [pytest.param(b"", id="nothing"), pytest.param(b"\x16", id="one-byte")])
def test_idle_connections_hold_no_thread(local_cluster: ClusterHandle, serin_server: SerinServer, sends: bytes) -> None:
    """64 connections that send nothing, or the first byte of a TLS handshake and no more, are
    more than the server's threads: a review comes through beside them at once."""
    address = urlsplit(serin_server.url)
    idle = [socket.create_connection((address.hostname, address.port), timeout=5) for _ in range(64)]
    try:
        for connection in idle:
            connection.sendall(sends)
        time.sleep(0.5)  # every idle connection accepted (and, on gunicorn's own worker, given a thread)
        body = json.dumps(review("UPDATE", podinfo("default"), "default")).encode()
        seconds, answer = timed(lambda: post(serin_server, "/validate", body, api_server_identity(local_cluster)))
        assert answer.status_code == 200, answer.text
        assert seconds < PROMPT_SECONDS, f"{seconds:.2f}s"
    finally:
        for connection in idle:
            connection.close()


# ---- requests to tenants' addresses --------------------------------------------------------------

SECRET_PAGE = b"<html>admin console: root token s3cr3t-0f-the-platform</html>"


class LeakyServer(http.server.ThreadingHTTPServer):
    """A service inside the cluster that answers anyone with what it should not: every request
    gets a 400 whose body holds a secret."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _LeakyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"


class _LeakyHandler(http.server.BaseHTTPRequestHandler):
    server: LeakyServer

    def do_POST(self) -> None:
        self.server.requests += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(400)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(SECRET_PAGE)))
        self.end_headers()
        self.wfile.write(SECRET_PAGE)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(server: http.server.ThreadingHTTPServer) -> Iterator[None]:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_internal_addresses_are_denied_and_answers_are_not_repeated(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A tenant points its metrics at the cloud's metadata service and its hooks at the API server
    and at an internal service that answers with a secret: the first two are never asked, and
    nothing the third said reaches the tenant's Events, status or tick answer."""
    api_server = urlsplit(local_cluster.urls["kube-apiserver"])
    local_cluster.apply(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "metadata-service", "namespace": namespace},
            "spec": {"provider": {"type": "prometheus", "address": "http://169.254.169.254"}, "query": "up"},
        }
    )
    with LeakyServer() as leaky, serving(leaky):
        hooks = [
            {"name": "api-server", "url": f"https://127.0.0.1:{api_server.port}/api/v1/secrets", "disableTLS": True},
            {"name": "console", "url": leaky.url},
        ]
        analysis = {
            "interval": "10s",
            "threshold": 5,
            "stepWeights": [50],
            "metrics": [
                {
                    "name": "meta",
                    "templateRef": {"name": "metadata-service"},
                    "thresholdRange": {"max": 1},
                    "interval": "5s",
                }
            ],
            "webhooks": hooks,
        }
        analysis_started(local_cluster, serin_server, tokens["ticker"], namespace, analysis)
        report = tick(serin_server, tokens["ticker"], namespace)["canaries"][0]
        said = [
            *events(local_cluster, namespace),
            json.dumps(canary_status(local_cluster, namespace)),
            json.dumps(report),
        ]
        assert leaky.requests == 1
    assert report["summary"] == (
        f"Halt podinfo.{namespace} advancement external check api-server failed cannot reach "
        f"https://127.0.0.1:{api_server.port}/api/v1/secrets: 127.0.0.1:{api_server.port} is an address the "
        f"install does not let Serin reach; Halt podinfo.{namespace} advancement external check console failed "
        f"status 400: {len(SECRET_PAGE)} bytes of text/html; "
        f"Metric query failed for meta: prometheus at http://169.254.169.254 cannot be asked query up: "
        f"169.254.169.254:80 is an address the install does not let Serin reach"
    )
    assert not [text for text in said if "s3cr3t" in text or "admin console" in text]


class DripServer(http.server.ThreadingHTTPServer):
    """A hook that answers a byte every quarter of a second, for as long as it is listened to (at
    most 30 s): a read timeout alone never ends it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _DripHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"


class _DripHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(OSError):
            for _ in range(120):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.25)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_dripping_hook_delays_only_its_own_canary(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """Two tenants, ticked together as the CronJob does: one's confirm-rollout hook drips its
    answer; its step ends at the hook's timeout, the whole answer counted, and the other
    tenant's step is not held up by it."""
    token = tokens["ticker"]
    with (
        DripServer() as drip,
        serving(drip),
        HookServer() as quick,
        fresh_namespace(local_cluster, request, WEBHOOK_NAMESPACE_LABEL) as slow,
        fresh_namespace(local_cluster, request, WEBHOOK_NAMESPACE_LABEL) as other,
    ):
        for namespace, url in ((slow, drip.url), (other, quick.url("gate"))):
            gate = {"name": "gate", "type": "confirm-rollout", "url": url, "timeout": "2s"}
            analysis = {"interval": "10s", "threshold": 2, "stepWeights": [50], "webhooks": [gate]}
            initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
            set_image(local_cluster, namespace, "6.0.1")
        answer = serin_server.tick(token, force="true")
        assert answer.status_code == 200, answer.text
        steps = {report["namespace"]: report for report in answer.json()["canaries"]}
    # Cut off at the hook's 2 s (its own writes around it take a moment on a loaded machine), far
    # from the 30 s the hook would drip for.
    assert 2.0 <= steps[slow]["durationSeconds"] < 4.0, steps[slow]
    assert (steps[slow]["summary"], steps[slow]["events"]) == (
        "waiting for confirm-rollout approval",
        [f"Halt podinfo.{slow} advancement waiting for approval gate"],
    ), steps[slow]
    # Held up by the dripping hook, it would have taken at least the hook's 2 s; its own step
    # (reads, its quick hook, two writes) takes about a second on the loaded 2-core machine.
    assert steps[other]["durationSeconds"] < 2.0, steps[other]
    assert [path for path, _ in quick.received] == ["gate"]


def test_another_namespaces_template_and_alert_provider_are_refused_unless_shared(
    local_cluster: ClusterHandle, namespace: str, request: pytest.FixtureRequest
) -> None:
    """A tenant names the platform team's MetricTemplate (and its credentials) and AlertProvider
    (and its Slack webhook): denied, with both field paths, until their annotation names it."""
    with fresh_namespace(local_cluster, request) as platform:

        def shared(annotations: dict[str, str]) -> list[dict[str, Any]]:
            metadata = {"namespace": platform, "annotations": annotations}
            return [
                {
                    "apiVersion": "serin.dev/v1beta1",
                    "kind": "MetricTemplate",
                    "metadata": {"name": "errors", **metadata},
                    "spec": {"provider": {"type": "prometheus", "secretRef": {"name": "prometheus"}}, "query": "up"},
                },
                {
                    "apiVersion": "serin.dev/v1beta1",
                    "kind": "AlertProvider",
                    "metadata": {"name": "chat", **metadata},
                    "spec": {"type": "slack", "secretRef": {"name": "slack"}},
                },
            ]

        local_cluster.apply(shared({}))
        analysis = {
            "interval": "10s",
            "stepWeights": [50],
            "metrics": [
                {
                    "name": "errors",
                    "templateRef": {"name": "errors", "namespace": platform},
                    "thresholdRange": {"max": 1},
                }
            ],
            "alerts": [{"name": "chat", "providerRef": {"name": "chat", "namespace": platform}}],
        }
        tenant = canary(namespace, analysis)
        refused = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(tenant), check=False)
        assert refused.returncode != 0
        for problem in (
            f"spec.analysis.metrics[0].templateRef: MetricTemplate {platform}/errors is not shared with namespace "
            f"{namespace}: its annotation serin.dev/allowed-namespaces must name {namespace} (or be *)",
            f"spec.analysis.alerts[0].providerRef: AlertProvider {platform}/chat is not shared with namespace "
            f"{namespace}: its annotation serin.dev/allowed-namespaces must name {namespace} (or be *)",
        ):
            assert problem in refused.stderr, refused.stderr
        local_cluster.apply(shared({"serin.dev/allowed-namespaces": f"team-x,{namespace}"}))
        local_cluster.apply(tenant)
        assert canary_exists(local_cluster, namespace)


def test_tokens_for_the_api_server_are_refused(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str]
) -> None:
    """A token Serin accepted would otherwise be one its receiver could replay against the API server.
    The same account's token for Serin's audience ticks."""
    assert serin_server.tick(tokens["ticker"], namespace="default").status_code == 200
    for_the_api_server = local_cluster.kubectl(
        "create", "token", "ticker", "-n", "serin-tests", "--duration=10m"
    ).stdout.strip()
    answer = serin_server.tick(for_the_api_server, namespace="default")
    assert (answer.status_code, answer.json()["error"]) == (
        401,
        "the API server did not accept this token for audience serin "
        "(for example from `kubectl create token ACCOUNT --audience serin`)",
    )


def test_metrics_are_served_only_to_an_account_that_may_get_them(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    metrics_token: str,
    namespace: str,
) -> None:
    """/metrics names every tenant's Canaries: as kube-rbac-proxy would have it, a scraper shows a
    token the API server vouches for (its Pod's own, for the API server's audience), and RBAC must
    grant its account get on the non-resource URL /metrics (the shipped serin-metrics-reader)."""
    local_cluster.apply(podinfo(namespace))
    local_cluster.apply(canary(namespace, {"interval": "1m", "threshold": 2, "maxWeight": 40, "stepWeight": 20}))
    stranger = local_cluster.kubectl("create", "token", "stranger", "-n", "serin-tests", "--duration=10m")
    refusals = {
        "no token": (None, 401),
        "a token nobody issued": ("forged", 401),
        # For Serin's audience: by default /metrics takes what a Prometheus Pod sends, the API server's.
        "the role's holder, for Serin's audience": (tokens["ticker"], 401),
        "an account without the role": (stranger.stdout.strip(), 403),
    }
    answers = {case: serin_server.metrics(token) for case, (token, _) in refusals.items()}
    assert {case: answer.status_code for case, answer in answers.items()} == {
        case: status for case, (_, status) in refusals.items()
    }
    assert answers["no token"].json() == {
        "error": "missing bearer token: send 'Authorization: Bearer <token>' "
        "(for example from `kubectl create token ACCOUNT`)"
    }
    assert answers["an account without the role"].json() == {
        "error": "system:serviceaccount:serin-tests:stranger may not get /metrics; "
        "the ClusterRole serin-metrics-reader grants it"
    }
    assert not any("serin_canary" in answer.text for answer in answers.values())

    gauge = f'serin_canary_status{{name="podinfo",namespace="{namespace}"}} 0.0'

    def scraped() -> str:
        answer = serin_server.metrics(metrics_token)
        assert answer.status_code == 200, answer.text
        return answer.text

    # Each server process lists the Canaries at most every GAUGE_SECONDS.
    eventually(lambda: gauge in scraped(), timeout=GAUGE_SECONDS * 3, what="the new Canary's gauge")
    assert f'serin_canary_total{{namespace="{namespace}"}} 1.0' in scraped()


def test_serins_own_account_cannot_write_other_teams_secrets_or_in_kube_system(
    local_cluster: ClusterHandle, serin_kubeconfig: Path, namespace: str
) -> None:
    """The shipped admission policy, enforced by the API server whatever made Serin act."""

    def as_serin(manifest: dict[str, Any], *args: str) -> Any:
        return local_cluster.kubectl(
            "--kubeconfig", str(serin_kubeconfig), *args, "-f", "-", input_text=json.dumps(manifest), check=False
        )

    def secret(where: str, labels: dict[str, str]) -> dict[str, Any]:
        metadata = {"name": "planted", "namespace": where, "labels": labels}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {"k": "v"}}

    ours = {"app.kubernetes.io/managed-by": "serin"}
    refused = "ValidatingAdmissionPolicy 'serin-tests-writes'"
    planted = as_serin(secret(namespace, {}), "create")
    assert planted.returncode != 0 and refused in planted.stderr, planted.stderr
    assert "writes only the ConfigMaps and Secrets it made" in planted.stderr
    in_kube_system = as_serin(secret("kube-system", ours), "create")
    assert in_kube_system.returncode != 0 and "writes nothing in kube-system" in in_kube_system.stderr
    made = as_serin(secret(namespace, ours), "create")
    assert made.returncode == 0, made.stderr
    # A Secret of its own cannot be handed to the team either: the label must stay.
    handed_over = as_serin(secret(namespace, {}), "replace")
    assert handed_over.returncode != 0 and refused in handed_over.stderr, handed_over.stderr


def test_serins_own_account_writes_only_objects_marked_as_serins(
    local_cluster: ClusterHandle, serin_kubeconfig: Path, namespace: str
) -> None:
    """Beyond ConfigMaps and Secrets: a workload, Service or route that carries none of Serin's
    labels (what it made, what it took over, the target it releases) is not Serin's to write."""

    def as_serin(manifest: dict[str, Any], *args: str) -> Any:
        return local_cluster.kubectl(
            "--kubeconfig", str(serin_kubeconfig), *args, "-f", "-", input_text=json.dumps(manifest), check=False
        )

    def service(name: str, labels: dict[str, str]) -> dict[str, Any]:
        metadata = {"name": name, "namespace": namespace, "labels": labels}
        return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"ports": [{"port": 80}]}}

    refused = "ValidatingAdmissionPolicy 'serin-tests-writes'"
    unmarked = as_serin(deployment("planted", namespace, 1), "create")
    assert unmarked.returncode != 0 and refused in unmarked.stderr, unmarked.stderr
    assert "writes only objects labelled as Serin's" in unmarked.stderr
    # A team's own Service: Serin may take it over (the write labels it), but not change it unmarked
    # or delete it.
    local_cluster.apply(service("teams", {"team": "a"}))
    changed = as_serin({**service("teams", {"team": "b"})}, "apply", "--server-side", "--force-conflicts")
    assert changed.returncode != 0 and refused in changed.stderr, changed.stderr
    deleted = local_cluster.kubectl(
        "--kubeconfig", str(serin_kubeconfig), "delete", "service", "teams", "-n", namespace, check=False
    )
    assert deleted.returncode != 0 and refused in deleted.stderr, deleted.stderr
    taken = as_serin(
        service("teams", {"team": "a", "serin.dev/managed-for": "podinfo"}),
        "apply",
        "--server-side",
        "--force-conflicts",
    )
    assert taken.returncode == 0, taken.stderr
    # What Serin made it may write and delete.
    made = as_serin(service("made", {"app.kubernetes.io/managed-by": "serin"}), "create")
    assert made.returncode == 0, made.stderr
    gone = local_cluster.kubectl("--kubeconfig", str(serin_kubeconfig), "delete", "service", "made", "-n", namespace)
    assert gone.returncode == 0, gone.stderr
