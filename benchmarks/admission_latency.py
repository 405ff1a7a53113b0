"""Admission latency: how long one AdmissionReview takes, at Serin and through the API server.

Runs Serin under gunicorn (TLS, as shipped) against the local control plane and measures, with a
bounded number of requests each:

* straight to Serin over one keep-alive HTTPS connection: ``GET /healthz`` (the HTTP+TLS floor,
  the baseline), a Canary defaulting review, a Canary validation review (it asks for the Canaries
  that could share its target or Services), the same with ``--canaries`` (1,000) other Canaries in
  its namespace, with the API requests each review cost (the API server's own count of requests
  about Canaries), and a Deployment update review whose template did not change (answered without
  any API request);
* through the API server: a server-side dry-run create of a Canary (mutating + validating webhook
  calls included) against the same dry-run create of a ConfigMap, which no webhook sees.

Usage: ``python -m benchmarks.admission_latency [--requests 200] [--canaries 1000]`` (starts its own
cluster unless SERIN_KUBECONFIG points at a running one; ``--serin-root`` runs Serin from another
checkout, to compare with it).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client, config

from benchmarks.clusters import benchmark_cluster
from localcluster import webhooks
from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster, wait_for
from localcluster.paths import REPO_ROOT
from localcluster.pki import write_serving_pair
from localcluster.processes import child_environment, free_port
from localcluster.serin_server import gunicorn_command


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, statistics.mean(ordered) * 1000


def measure(name: str, count: int, call: Callable[[], object], rows: list[tuple[str, float, float, float]]) -> None:
    for _ in range(min(10, count)):
        call()  # warm-up: connections, caches
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    rows.append((name, *percentiles(samples)))


def review(
    kind: dict[str, str],
    operation: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    namespace: str = "bench",
) -> bytes:
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": kind,
        "operation": operation,
        "namespace": namespace,
        "object": obj,
        "dryRun": True,
        "userInfo": {"username": "bench"},
    }
    if old is not None:
        request["oldObject"] = old
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


CANARY: dict[str, Any] = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "bench"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"interval": "1m", "stepWeight": 10, "metrics": [{"name": "request-success-rate"}]},
    },
}
TARGET: dict[str, Any] = {
    "metadata": {"name": "podinfo", "namespace": "bench", "labels": {"app": "podinfo", "serin.dev/canary": "podinfo"}},
    "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
    },
}


def canary_requests(kubectl: list[str]) -> float:
    """The requests about Canaries the API server has answered so far, every client's."""
    metrics = subprocess.run([*kubectl, "get", "--raw", "/metrics"], check=True, capture_output=True, text=True)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.stdout.splitlines()
        if line.startswith("apiserver_request_total{") and 'resource="canaries"' in line
    )


def other_canaries(kubectl: list[str], namespace: str, count: int) -> None:
    """``count`` Canaries in ``namespace``, none of which the reviewed one clashes with."""
    subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
    items = []
    for index in range(count):
        other = json.loads(json.dumps(CANARY))
        other["metadata"] = {"name": f"app-{index}", "namespace": namespace}
        other["spec"]["targetRef"]["name"] = f"app-{index}"
        items.append(other)
    for start in range(0, count, 400):
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items[start : start + 400]})
        subprocess.run([*kubectl, "create", "-f", "-"], input=document, text=True, check=True, capture_output=True)


def run(
    cluster: LocalCluster, count: int, canaries: int, serin_root: Path, requests_per_review: dict[str, float]
) -> list[tuple[str, float, float, float]]:
    binaries = ensure_binaries()
    kubectl = [str(binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}"]
    subprocess.run(
        [*kubectl, "apply", "--server-side", "-k", str(REPO_ROOT / "k8s" / "crds")], check=True, capture_output=True
    )
    work = Path(tempfile.mkdtemp(prefix="serin-bench-"))
    cert, key, ca = write_serving_pair(work, ["127.0.0.1"])
    ca_file = work / "ca.crt"
    ca_file.write_bytes(ca)
    port = free_port()
    env = {
        **child_environment(),
        "KUBECONFIG": str(cluster.kubeconfig),
        "PYTHONPATH": str(REPO_ROOT),
        # As installed: reviews only with the API server's client certificate, which posts here present.
        "SERIN_ADMISSION_CLIENT_CA": str(cluster.pki.webhook_client_ca),
    }
    server = subprocess.Popen(
        gunicorn_command(port, cert, key),
        cwd=serin_root,
        env={**env, "PYTHONPATH": str(serin_root)},
        stdout=subprocess.DEVNULL,
        stderr=(work / "gunicorn.log").open("w"),
    )
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for("serin", lambda: requests.get(f"{url}/healthz", verify=str(ca_file), timeout=1).ok, 30)
        rows: list[tuple[str, float, float, float]] = []
        session = requests.Session()
        session.cert = (str(cluster.pki.webhook_client_cert), str(cluster.pki.webhook_client_key))
        # Not session.verify: REQUESTS_CA_BUNDLE in the environment would override it.
        verify = str(ca_file)
        headers = {"Content-Type": "application/json"}

        def post(path: str, body: bytes) -> Callable[[], None]:
            def call() -> None:
                response = session.post(url + path, data=body, headers=headers, timeout=10, verify=verify)
                assert response.status_code == 200, response.text

            return call

        measure(
            "baseline: GET /healthz",
            count,
            lambda: session.get(url + "/healthz", timeout=10, verify=verify).raise_for_status(),
            rows,
        )
        canary_kind = {"group": "serin.dev", "version": "v1beta1", "kind": "Canary"}
        deployment_kind = {"group": "apps", "version": "v1", "kind": "Deployment"}
        measure("/mutate Canary (defaults)", count, post("/mutate", review(canary_kind, "CREATE", CANARY)), rows)

        def counted(name: str, call: Callable[[], object]) -> None:
            before = canary_requests(kubectl)
            measure(name, count, call, rows)
            # The warm-up's reviews count too.
            requests_per_review[name] = (canary_requests(kubectl) - before) / (count + min(10, count))

        counted("/validate Canary (no other Canary)", post("/validate", review(canary_kind, "CREATE", CANARY)))
        crowded = f"bench-{uuid.uuid4().hex[:6]}"
        other_canaries(kubectl, crowded, canaries)
        counted(
            f"/validate Canary ({canaries:,} others in its namespace)",
            post("/validate", review(canary_kind, "CREATE", CANARY, namespace=crowded)),
        )
        subprocess.run([*kubectl, "delete", "namespace", crowded, "--wait=false"], capture_output=True)
        unchanged = {**TARGET, "spec": {**TARGET["spec"], "replicas": 2}}
        measure(
            "/mutate Deployment, same template",
            count,
            post("/mutate", review(deployment_kind, "UPDATE", unchanged, TARGET)),
            rows,
        )

        # Through the API server, with the shipped webhook configurations pointed at this server.
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
        configurations = webhooks.for_url(
            webhooks.load_manifest(),
            url,
            ca,
            name=f"bench-{namespace}",
            namespace_labels={"kubernetes.io/metadata.name": namespace},
        )
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump_all(configurations),
            text=True,
            check=True,
            capture_output=True,
        )
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        body = {**CANARY, "metadata": {"name": "podinfo", "namespace": namespace}}
        wait_for("webhooks", lambda: _denied_invalid(custom, namespace), 30)
        measure(
            "API server: dry-run create ConfigMap (no webhook)",
            count,
            lambda: core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")), dry_run="All"
            ),
            rows,
        )
        measure(
            "API server: dry-run create Canary (2 webhooks)",
            count,
            lambda: custom.create_namespaced_custom_object(
                "serin.dev", "v1beta1", namespace, "canaries", body, dry_run="All"
            ),
            rows,
        )
        for kind in webhooks.WEBHOOK_KINDS:
            subprocess.run([*kubectl, "delete", kind.lower(), f"bench-{namespace}"], capture_output=True)
        subprocess.run([*kubectl, "delete", "namespace", namespace, "--wait=false"], capture_output=True)
        return rows
    finally:
        server.terminate()
        server.wait(timeout=10)


def _denied_invalid(custom: client.CustomObjectsApi, namespace: str) -> bool:
    invalid = {
        **CANARY,
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {**CANARY["spec"], "analysis": {}},
    }
    try:
        custom.create_namespaced_custom_object("serin.dev", "v1beta1", namespace, "canaries", invalid, dry_run="All")
    except client.ApiException as error:
        return "set exactly one strategy" in str(error.body)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per case (bounded: at most 2000)")
    parser.add_argument("--canaries", type=int, default=1000, help="other Canaries in a namespace (at most 3000)")
    parser.add_argument(
        "--serin-root", type=Path, default=REPO_ROOT, help="run Serin from this checkout (to compare with another)"
    )
    args = parser.parse_args()
    count = max(20, min(args.requests, 2000))
    canaries = max(1, min(args.canaries, 3000))
    requests_per_review: dict[str, float] = {}
    with benchmark_cluster() as cluster:
        rows = run(cluster, count, canaries, args.serin_root.resolve(), requests_per_review)
    # Each case against the baseline of its path: Serin's HTTP floor, or the API server without webhooks.
    direct_baseline = rows[0][1]
    api_baseline = next(p50 for name, p50, _, _ in rows if "no webhook" in name)
    print(f"\nadmission latency, {count} requests per case (ms)")
    print(f"{'case':52} {'p50':>8} {'p99':>8} {'mean':>8} {'p50 over baseline':>18} {'API requests':>13}")
    for name, p50, p99, mean in rows:
        baseline = api_baseline if name.startswith("API server") else direct_baseline
        spent = f"{requests_per_review[name]:13.1f}" if name in requests_per_review else ""
        print(f"{name:52} {p50:8.2f} {p99:8.2f} {mean:8.2f} {p50 - baseline:+17.2f} {spent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
