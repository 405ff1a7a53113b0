"""Admission at the floor: Serin beside a bare webhook, on the review every Deployment update sends.

Every Deployment update of the cluster that the webhooks' selectors let through reaches Serin;
most are of Deployments no Canary targets, and Serin's answer to them costs the whole cluster.
This runs two servers with identical gunicorn settings (Serin's: ``gunicorn.conf.py``, its
threaded worker, 1 worker x 8 threads, TLS with one certificate, client certificates checked):

* the floor, ``benchmarks/floor_app.py``: Flask that parses the review and answers allowed, and
  writes no access log;
* Serin, as shipped (its defaults: logs at info, the access log as ``SERIN_ACCESS_LOG`` says).

Both get the same Deployment UPDATE review of a Deployment no Canary targets (about 5.5 KB, as
``kubectl apply`` sends it, managedFields included) over kept-alive HTTPS connections, from a
small Go load generator (``benchmarks/loadgen``, built once into the cache), in rounds that
alternate floor, Serin, Serin, floor, floor, Serin, ... (each pair's first is the other's last in
the next): each round measures the throughput at saturation
(8 connections, each sending its next review as soon as the last is answered) and then p50 and
p99 at a paced rate (200 reviews a second by default). Each pair of rounds gives the ratios of
Serin to the floor; a machine shared with other work moves both figures of a pair alike.

The generator is not the limit when the floor's throughput is well above Serin's: the same
generator, on the same machine, drove the floor that fast.

Both run as Serin runs in a Pod, with a service account (``benchmarks/pod.py``; with a kubeconfig
where the machine cannot). No cluster is needed: no API request is made for such a review (the API
server is a closed port).

Usage: ``python -m benchmarks.admission_floor [--pairs 3] [--seconds 3] [--rate 200]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from benchmarks import pod
from localcluster.build import build_loadgen
from localcluster.paths import REPO_ROOT
from localcluster.pki import ensure_pki, write_serving_pair
from localcluster.processes import child_environment, free_port, stop
from localcluster.serin_server import gunicorn_command

START_TIMEOUT = 30.0
# No API request is made for these reviews: an API server nobody listens on.
NO_API_SERVER = "https://127.0.0.1:9"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def deployment(generation: int, image: str) -> dict[str, Any]:
    """A Deployment as the API server hands it to a webhook after ``kubectl apply``."""
    labels = {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "team": "payments"}
    container = {
        "name": "checkout",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": f"FEATURE_{index}", "value": "enabled"} for index in range(3)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    spec = {
        "replicas": 3,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
        "template": {
            "metadata": {"labels": labels, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {
                "containers": [container],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "checkout",
                "securityContext": {"runAsNonRoot": True},
                "schedulerName": "default-scheduler",
            },
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "uid": "0b6f3d2e-8c1a-4f7e-9a55-2f1d3c4b5a69",
            "resourceVersion": str(41000 + generation),
            "generation": generation,
            "creationTimestamp": "2026-11-30T09:12:44Z",
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/revision": str(generation),
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2026-12-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {f"f:{key}": {} for key in labels}}},
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2026-12-01T10:00:09Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {f"f:{key}": {} for key in ("availableReplicas", "readyReplicas")}},
                    "subresource": "status",
                },
            ],
        },
        "spec": spec,
        "status": {"observedGeneration": generation - 1, "replicas": 3, "readyReplicas": 3, "availableReplicas": 3},
    }


def deployment_review() -> bytes:
    """An UPDATE review of a Deployment that no Canary targets (it has no serin.dev/canary label)."""
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "checkout",
        "namespace": "shop",
        "operation": "UPDATE",
        "userInfo": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"]},
        "object": deployment(8, "registry.example/shop/checkout:1.8.0"),
        "oldObject": deployment(7, "registry.example/shop/checkout:1.7.3"),
        "dryRun": False,
        "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"},
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class Round:
    server: str
    per_second: float
    p50_ms: float
    p99_ms: float


def start(name: str, app: str, work: Path, env: dict[str, str], root: Path = REPO_ROOT) -> Server:
    cert, key = work / "tls.crt", work / "tls.key"
    port = free_port()
    command = gunicorn_command(port, cert, key, app=app)
    if pod.available():
        # As in a Pod, with a service account (no API request is made: any token and CA will do).
        command, env = pod.command(command, work / "token", work / "ca.crt"), pod.environment(env, NO_API_SERVER)
    process = subprocess.Popen(
        command,
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=(work / f"{name}.log").open("w"),
        start_new_session=True,
    )
    return Server(name, process, f"https://127.0.0.1:{port}")


def wait_until_serving(server: Server, session: requests.Session, body: bytes, ca: Path, log: Path) -> None:
    """Until the server answers the review allowed, with no patch (what both must answer)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            answer = session.post(
                f"{server.url}/mutate",
                data=body,
                headers={"Content-Type": "application/json"},
                verify=str(ca),
                timeout=2,
            )
            response = answer.json()["response"]
            if response.get("allowed") is not True or "patch" in response:
                raise SystemExit(f"{server.name} did not answer allowed with no patch: {answer.text[:300]}")
            return
        except requests.RequestException:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{server.name} did not start; its log:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def load(
    loadgen: Path, server: Server, body_file: Path, work: Path, pki: Any, seconds: float, rate: float
) -> dict[str, Any]:
    command = [
        str(loadgen),
        f"-url={server.url}/mutate",
        f"-body={body_file}",
        f"-cacert={work / 'ca.crt'}",
        f"-cert={pki.webhook_client_cert}",
        f"-key={pki.webhook_client_key}",
        "-connections=8",
        f"-duration={seconds}s",
        f"-rate={rate}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 3 + 30)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed: {done.stderr.strip()}")
    measured: dict[str, Any] = json.loads(done.stdout)
    if measured["errors"]:
        raise SystemExit(f"{server.name}: {measured['errors']} requests failed, e.g. {measured['first_error']}")
    return measured


def measure_round(
    loadgen: Path, server: Server, body_file: Path, work: Path, pki: Any, seconds: float, rate: float
) -> Round:
    saturated = load(loadgen, server, body_file, work, pki, seconds, 0)
    paced = load(loadgen, server, body_file, work, pki, seconds, rate)
    return Round(server.name, saturated["per_second"], paced["p50_ms"], paced["p99_ms"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="rounds of each server, alternating (at most 10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (at most 20)")
    parser.add_argument("--rate", type=float, default=200.0, help="paced reviews per second")
    parser.add_argument(
        "--serin-root", type=Path, default=REPO_ROOT, help="run Serin from this checkout (to compare with another)"
    )
    args = parser.parse_args()
    pairs, seconds = max(1, min(args.pairs, 10)), max(1.0, min(args.seconds, 20.0))

    loadgen = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="serin-admission-floor-"))
    (work / "ca.crt").write_bytes(write_serving_pair(work, ["127.0.0.1"])[2])
    pki = ensure_pki(work / "pki")
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    (work / "token").write_text("not-a-token")
    body = deployment_review()
    body_file = work / "review.json"
    body_file.write_bytes(body)
    env = {
        **child_environment(),
        "PYTHONDONTWRITEBYTECODE": "1",
        # Where the machine cannot run a process as in a Pod (benchmarks/pod.py).
        "KUBECONFIG": str(kubeconfig),
        # As installed: reviews only with the API server's client certificate, which the generator presents.
        "SERIN_ADMISSION_CLIENT_CA": str(pki.webhook_client_ca),
    }
    env.pop("SERIN_LOG_LEVEL", None)
    env.pop("SERIN_ACCESS_LOG", None)
    servers = [
        start("floor", "benchmarks.floor_app:app", work, {**env, "SERIN_ACCESS_LOG": "none"}),
        start("serin", "wsgi:app", work, env, args.serin_root.resolve()),
    ]
    rounds: list[tuple[Round, Round]] = []
    try:
        session = requests.Session()
        session.cert = (str(pki.webhook_client_cert), str(pki.webhook_client_key))
        for server in servers:
            wait_until_serving(server, session, body, work / "ca.crt", work / f"{server.name}.log")
        for pair in range(pairs):
            # Floor first in one pair, Serin first in the next: neither always gets the machine
            # as the other left it.
            order = servers if pair % 2 == 0 else servers[::-1]
            measured = {s.name: measure_round(loadgen, s, body_file, work, pki, seconds, args.rate) for s in order}
            rounds.append((measured["floor"], measured["serin"]))
    finally:
        for server in servers:
            stop(server.process.pid)
    serin_log = (work / "serin.log").read_text().splitlines()

    print(f"\nadmission at the floor: a {len(body) / 1000:.1f} KB Deployment UPDATE review no Canary targets")
    print(f"saturation: 8 connections, {seconds:.0f} s; paced: {args.rate:.0f} reviews/s, {seconds:.0f} s; same run")
    print(f"{'pair':>4} {'server':>6} {'reviews/s':>10} {'p50 ms':>7} {'p99 ms':>7}   Serin / floor")
    ratios = []
    for index, (floor, serin) in enumerate(rounds, 1):
        ratio = (serin.per_second / floor.per_second, serin.p50_ms / floor.p50_ms, serin.p99_ms / floor.p99_ms)
        ratios.append(ratio)
        print(f"{index:4} {'floor':>6} {floor.per_second:10.0f} {floor.p50_ms:7.2f} {floor.p99_ms:7.2f}")
        print(
            f"{index:4} {'serin':>6} {serin.per_second:10.0f} {serin.p50_ms:7.2f} {serin.p99_ms:7.2f}   "
            f"throughput {ratio[0]:.2f}x, p50 {ratio[1]:.2f}x, p99 {ratio[2]:.2f}x"
        )
    medians = [statistics.median(ratio[i] for ratio in ratios) for i in range(3)]
    print(f"median of the pairs: throughput {medians[0]:.2f}x, p50 {medians[1]:.2f}x, p99 {medians[2]:.2f}x")
    print(f"Serin's log: {len(serin_log)} lines for {sum(s.per_second for _, s in rounds) * seconds:.0f}+ reviews")
    return 0


if __name__ == "__main__":
    sys.exit(main())
