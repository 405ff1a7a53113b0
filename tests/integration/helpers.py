"""Manifests and small readers shared by the integration tests."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from localcluster import prometheus
from localcluster.testing import ClusterHandle, eventually
from serin.decide import MIN_FORCED_STEP_SECONDS

# Short windows: the simulator sends 50 requests a second and Prometheus scrapes every second.
# Read over 5s (Prometheus scrapes every second here): a step after a change of the canary's
# traffic waits until its metrics' window holds only the new traffic.
METRICS = [
    {"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99}},
    {"name": "request-duration", "interval": "5s", "thresholdRange": {"max": 500}},
]
WEIGHTED = {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20, "metrics": METRICS}
# The longest the simulator may take to follow new routes and Prometheus to scrape what it sent.
TRAFFIC_TIMEOUT_SECONDS = 30.0
# The label of the namespaces the test server's webhooks act in: every test namespace but those
# of tests about what happens without them.
WEBHOOK_NAMESPACE_LABEL = {"serin.dev/test-webhooks": "enabled"}
# The phases in which the next step judges the canary's metrics.
ANALYSING_PHASES = ("Progressing", "WaitingPromotion")


@dataclass
class SerinServer:
    url: str
    ca_bundle: Path
    # gunicorn's output: its access log and any traceback.
    log: Path | None = None

    def tick(self, token: str | None, **params: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.url}/tick", params=params, headers=headers, verify=str(self.ca_bundle), timeout=60)

    def metrics(self, token: str | None) -> requests.Response:
        """GET /metrics, as a scraper with ``token`` (None: without one)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.url}/metrics", headers=headers, verify=str(self.ca_bundle), timeout=10)


def podinfo(namespace: str, image: str = "ghcr.io/stefanprodan/podinfo:6.0.0", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": namespace, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}, "annotations": annotations},
                "spec": {"containers": [{"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]}]},
            },
        },
    }


def canary(namespace: str, analysis: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": analysis,
            **spec,
        },
    }


def canary_exists(cluster: ClusterHandle, namespace: str) -> bool:
    """Whether Serin's Canary podinfo is stored (named in full: Flagger's Canary is `canary` too)."""
    return cluster.kubectl("get", "canaries.serin.dev", "podinfo", "-n", namespace, check=False).returncode == 0


def canary_status(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace).get("status", {})
    return status


def events(cluster: ClusterHandle, namespace: str) -> list[str]:
    listed = cluster.get_json("events", "-n", namespace, "--field-selector", "involvedObject.kind=Canary")
    return [item["message"] for item in sorted(listed["items"], key=lambda e: e["metadata"]["creationTimestamp"])]


def tick(server: SerinServer, token: str, namespace: str, **params: str) -> dict[str, Any]:
    """One forced step of the Canary ``podinfo``; it must answer 200 without an error.

    Forced steps are at least ``MIN_FORCED_STEP_SECONDS`` apart, and a step after a change of the
    canary's traffic waits for its metric window: a tick that comes sooner is answered with the
    reason and made again once that time has passed.
    """
    for _ in range(4):
        response = server.tick(token, namespace=namespace, name="podinfo", force="true", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        report = body["canaries"][0]
        assert report["error"] is None, body
        if "forced steps are at least" in report["summary"]:
            time.sleep(MIN_FORCED_STEP_SECONDS)
        elif "for the metric window" in report["summary"]:
            time.sleep(report["nextStepInSeconds"])
        else:
            return body
    raise AssertionError(f"forced tick refused four times: {body}")


def tick_until(
    cluster: ClusterHandle,
    server: SerinServer,
    token: str,
    namespace: str,
    done: Callable[[dict[str, Any]], bool],
    max_ticks: int = 25,
) -> dict[str, Any]:
    """Tick until ``done(status)``; fail with the step history if it never is. Returns the status.

    After a step that sends the canary traffic, the next waits until Prometheus holds some of it
    (when the Canary has metrics to judge it by): otherwise the step would find no data.
    """
    history = []
    for _ in range(max_ticks):
        ticked_at = time.time()
        report = tick(server, token, namespace)["canaries"][0]
        history.append(
            f"{report['phase']} w={report['weight']} i={report['iterations']} f={report['failedChecks']}: "
            f"{report['summary']}"
        )
        stored = cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)
        status: dict[str, Any] = stored.get("status", {})
        if done(status):
            return status
        analysed = bool(stored["spec"].get("analysis", {}).get("metrics"))
        analysing = report["phase"] in ANALYSING_PHASES and (report["weight"] or report["iterations"])
        if analysed and analysing:
            wait_for_canary_traffic(cluster, namespace, since=ticked_at)
    raise AssertionError("never reached the expected state:\n" + "\n".join(history))


def canary_traffic_scraped(cluster: ClusterHandle, namespace: str, since: float, target: str = "podinfo") -> bool:
    """Whether Prometheus scraped requests the canary (not the primary) served after ``since``: two
    scrapes since then that differ, the least a ``rate()`` of the step's window needs. Counted on the
    application's own histogram, which the simulator records for every request, whatever the router."""
    seconds = max(1, int(time.time() - since))
    pods = (
        f'kubernetes_namespace="{namespace}",'
        f'kubernetes_pod_name=~"{target}-.+",kubernetes_pod_name!~"{target}-primary-.+"'
    )
    served = prometheus.query_scalar(
        cluster.urls["prometheus"], f"sum(increase(http_request_duration_seconds_count{{{pods}}}[{seconds}s]))"
    )
    return served is not None and served > 0


def wait_for_canary_traffic(cluster: ClusterHandle, namespace: str, since: float, target: str = "podinfo") -> None:
    eventually(
        lambda: canary_traffic_scraped(cluster, namespace, since, target),
        timeout=TRAFFIC_TIMEOUT_SECONDS,
        what=f"Prometheus to scrape requests to the canary {namespace}/{target}",
    )


def drive(
    cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, phase: str, max_ticks: int = 25
) -> dict[str, Any]:
    """Tick until the Canary reaches ``phase``."""
    return tick_until(cluster, server, token, namespace, lambda status: status.get("phase") == phase, max_ticks)


def deployment(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get_json("deployment", name, "-n", namespace)


def routes(cluster: ClusterHandle, namespace: str, route: int = -1) -> list[tuple[str, int]]:
    """(host, weight) of one http route of the VirtualService (the last, the default route, unless told)."""
    vs = cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    http = vs["spec"]["http"][route]
    return [(entry["destination"]["host"], entry.get("weight", 100)) for entry in http["route"]]


def initialized(cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, **spec: Any) -> None:
    cluster.apply(podinfo(namespace))
    cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    cluster.apply(canary(namespace, spec.pop("analysis", WEIGHTED), **spec))
    drive(cluster, server, token, namespace, "Initialized")


def analysis_started(
    cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, analysis: dict[str, Any]
) -> dict[str, Any]:
    """An initialized Canary given a new revision, its canary pods ready, and the analysis started
    by a forced tick (its first weight, iteration or mirror): the schedule runs from that tick.
    As installed the Deployment webhook saw the revision; without it a first forced tick does."""
    initialized(cluster, server, token, namespace, analysis=analysis)
    set_image(cluster, namespace, "6.0.1")
    if canary_status(cluster, namespace).get("phase") != "Progressing":
        assert tick(server, token, namespace)["canaries"][0]["phase"] == "Progressing"
    cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    report: dict[str, Any] = tick(server, token, namespace)["canaries"][0]
    assert report["applied"] and any(event.startswith("Starting canary analysis") for event in report["events"])
    return report


def release_errors(cluster: ClusterHandle, namespace: str, tag: str = "6.0.2") -> None:
    """A new revision whose pods fail half their requests (as the simulator plays them)."""
    bad = podinfo(namespace, f"ghcr.io/stefanprodan/podinfo:{tag}", **{"simulator.serin.dev/error-rate": "0.5"})
    bad["spec"]["replicas"] = 0
    cluster.apply(bad)


def set_image(cluster: ClusterHandle, namespace: str, tag: str) -> None:
    cluster.kubectl(
        "set", "image", "deployment/podinfo", f"podinfod=ghcr.io/stefanprodan/podinfo:{tag}", "-n", namespace
    )


# The longest a gated receiver keeps a request waiting.
HELD_SECONDS = 5.0


class HookServer(http.server.ThreadingHTTPServer):
    """A webhook gate of the test's own on 127.0.0.1: each path answers the status set for it (200 by
    default), and every payload received is kept."""

    daemon_threads = True

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.received: list[tuple[str, dict[str, Any]]] = []
        # The Idempotency-Key header of each request, by path (None: it had none).
        self.idempotency_keys: list[tuple[str, str | None]] = []
        # Open: every request is answered at once. Cleared, requests are kept waiting (a few seconds
        # at most) after being recorded: a slow receiver, for what happens while one is being sent.
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(("127.0.0.1", 0), _HookHandler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{path}"

    def __enter__(self) -> HookServer:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _HookHandler(http.server.BaseHTTPRequestHandler):
    server: HookServer

    def do_POST(self) -> None:
        path = self.path.strip("/")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((path, json.loads(body or b"{}")))
        self.server.idempotency_keys.append((path, self.headers.get("Idempotency-Key")))
        self.server.gate.wait(timeout=HELD_SECONDS)
        status = self.server.statuses.get(path, 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass
