"""The local control plane behaves like a real cluster in the ways Serin relies on."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from localcluster.cluster import LocalCluster
from localcluster.pki import write_serving_pair
from localcluster.processes import free_port
from localcluster.testing import ClusterHandle, deployment, eventually

pytestmark = [pytest.mark.integration, pytest.mark.compat]


@pytest.fixture
def namespace(namespace_without_webhooks: str) -> str:
    """The control plane's own tests need no Serin: a namespace none of its webhooks acts in."""
    return namespace_without_webhooks


def test_crd_schema_rejects_an_invalid_object(local_cluster: ClusterHandle, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.test.serin.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    local_cluster.apply(crd)
    try:
        local_cluster.kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=30s")
        gadget: dict[str, Any] = {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g", "namespace": namespace},
            "spec": {"size": 0},
        }
        rejected = eventually(
            lambda: (
                (r := local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(gadget), check=False))
                and r.returncode != 0
                and "spec.size" in r.stderr
                and r
            ),
            what="the schema to reject spec.size=0",
        )
        assert "should be greater than or equal to 1" in rejected.stderr

        gadget["spec"]["size"] = 3
        local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(gadget))
        stored = local_cluster.get_json(f"gadgets.{group}", "g", "-n", namespace)
        assert stored["spec"]["size"] == 3
    finally:
        local_cluster.kubectl("delete", "crd", f"gadgets.{group}", "--wait=false")


def test_deployment_reaches_its_available_replicas(local_cluster: ClusterHandle, namespace: str) -> None:
    local_cluster.apply(deployment("web", namespace, replicas=2))
    local_cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    status = local_cluster.get_json("deployment", "web", "-n", namespace)["status"]
    assert status["availableReplicas"] == 2
    assert status["readyReplicas"] == 2
    pods = local_cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods)


def test_hundreds_of_services_get_cluster_ips(local_cluster: ClusterHandle, namespace: str) -> None:
    """Three Services per Canary: the Service range must hold far more than a /24 (254 addresses)."""
    local_cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{index}", "namespace": namespace},
                "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]},
            }
            for index in range(300)
        ]
    )
    addresses = {item["spec"]["clusterIP"] for item in local_cluster.get_json("services", "-n", namespace)["items"]}
    assert len(addresses) == 300
    assert all(address.startswith("10.0.") for address in addresses)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_one_component_stops_and_starts_again_on_the_same_url(local_cluster: ClusterHandle) -> None:
    """Fault tests stop Prometheus (or Serin) and start it again without any URL changing."""
    cluster = LocalCluster(local_cluster.state_dir)
    ready = f"{local_cluster.urls['prometheus']}/-/ready"
    assert _answers(ready)
    try:
        assert cluster.stop("prometheus")
        assert not cluster.status()["prometheus"]
        assert not _answers(ready)
    finally:
        cluster.start("prometheus")
    eventually(lambda: _answers(ready), timeout=60, what="Prometheus to answer on its old URL")
    assert cluster.status()["prometheus"]
    assert LocalCluster(local_cluster.state_dir).state().urls["prometheus"] == local_cluster.urls["prometheus"]


def test_deleting_an_owner_garbage_collects_its_dependents(local_cluster: ClusterHandle, namespace: str) -> None:
    core = client.CoreV1Api(local_cluster.api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    assert owner.metadata and owner.metadata.uid
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        names = [item.metadata.name for item in core.list_namespaced_config_map(namespace).items if item.metadata]
        return "dependent" not in names

    eventually(dependent_gone, timeout=60, what="garbage collection of the dependent")


def test_stale_resource_version_is_rejected_with_409(local_cluster: ClusterHandle, namespace: str) -> None:
    core = client.CoreV1Api(local_cluster.api)
    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"})
    )
    assert created.metadata
    stale_version = created.metadata.resource_version
    created.data = {"a": "2"}
    core.replace_namespaced_config_map("settings", namespace, created)

    stale = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", resource_version=stale_version), data={"a": "3"}
    )
    with pytest.raises(client.ApiException) as raised:
        core.replace_namespaced_config_map("settings", namespace, stale)
    assert raised.value.status == 409
    assert core.read_namespaced_config_map("settings", namespace).data == {"a": "2"}


class DenyingWebhook(http.server.BaseHTTPRequestHandler):
    """Denies ConfigMaps labelled deny=yes; records every review it is sent."""

    reviews: list[dict[str, Any]]

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reviews.append(review)
        request = review["request"]
        labels = (request.get("object") or {}).get("metadata", {}).get("labels", {})
        allowed = labels.get("deny") != "yes"
        response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {"code": 403, "message": "ConfigMaps labelled deny=yes are not welcome here"}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_webhook(tmp_path: Path) -> Iterator[tuple[str, bytes, list[dict[str, Any]]]]:
    cert, key, ca_bundle = write_serving_pair(tmp_path / "tls", ["127.0.0.1"])
    reviews: list[dict[str, Any]] = []
    handler = type("Handler", (DenyingWebhook,), {"reviews": reviews})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/validate", ca_bundle, reviews
    finally:
        server.shutdown()
        server.server_close()


def test_api_server_calls_a_local_https_webhook_on_apply(
    local_cluster: ClusterHandle, namespace: str, https_webhook: tuple[str, bytes, list[dict[str, Any]]]
) -> None:
    url, ca_bundle, reviews = https_webhook
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"deny-{namespace}"},
        "webhooks": [
            {
                "name": "deny.test.serin.dev",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    local_cluster.apply(configuration)
    try:
        denied = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "unwelcome", "namespace": namespace, "labels": {"deny": "yes"}},
        }
        # Webhook configurations take effect asynchronously: probe with dry runs first.
        eventually(
            lambda: (
                local_cluster.kubectl(
                    "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(denied), check=False
                ).returncode
                != 0
            ),
            what="the webhook configuration to take effect",
        )
        result = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(denied), check=False)
        assert result.returncode != 0
        assert "ConfigMaps labelled deny=yes are not welcome here" in result.stderr
        assert 'admission webhook "deny.test.serin.dev" denied the request' in result.stderr

        welcome = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "welcome", "namespace": namespace}}
        local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(welcome))

        seen = [(r["request"]["name"], r["request"]["operation"], r["request"]["dryRun"]) for r in reviews]
        assert ("unwelcome", "CREATE", False) in seen
        assert ("welcome", "CREATE", False) in seen
        assert local_cluster.kubectl("get", "configmap", "unwelcome", "-n", namespace, check=False).returncode != 0
    finally:
        local_cluster.kubectl("delete", "validatingwebhookconfiguration", f"deny-{namespace}")


def _condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = hpa.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def test_hpa_scales_a_deployment_on_an_external_metric(local_cluster: ClusterHandle, namespace: str) -> None:
    """kube-controller-manager's HPA controller reads external.metrics.k8s.io, served by the local
    cluster's adapter from the ConfigMap ``external-metrics``: desired = ceil(value / averageValue)."""
    local_cluster.apply(deployment("web", namespace, replicas=1))
    local_cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    local_cluster.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {"name": "serin_test_load"},
                            "target": {"type": "AverageValue", "averageValue": "1"},
                        },
                    }
                ],
                # Scaling down waits 5 minutes by default; this test scales down too.
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        }
    )

    def hpa() -> dict[str, Any]:
        return local_cluster.get_json("horizontalpodautoscalers.v2.autoscaling", "web", "-n", namespace)

    def replicas() -> int:
        spec_replicas: int = local_cluster.get_json("deployment", "web", "-n", namespace)["spec"]["replicas"]
        return spec_replicas

    # No value yet: the adapter answers 404, and the HPA says so instead of scaling.
    failing = eventually(
        lambda: (c := _condition(hpa(), "ScalingActive")).get("reason") == "FailedGetExternalMetric" and c,
        timeout=30,
        what="the HPA to report the missing metric",
    )
    assert "no ConfigMap" in failing["message"]
    assert replicas() == 1

    core = client.CoreV1Api(local_cluster.api)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="external-metrics"), data={"serin_test_load": "3"}),
    )
    eventually(lambda: replicas() == 3, timeout=60, what="the HPA to scale the Deployment to 3 replicas")

    def metric_status(average: str) -> dict[str, Any] | None:
        status: dict[str, Any] = hpa()["status"]
        metrics = status.get("currentMetrics") or [{}]
        current = metrics[0].get("external", {})
        if current.get("metric", {}).get("name") != "serin_test_load":
            return None
        return status if current.get("current", {}).get("averageValue") == average else None

    # 3 over 3 replicas: 1 per pod.
    status = eventually(lambda: metric_status("1"), timeout=60, what="the HPA status to show the metric")
    assert status["currentReplicas"] == 3
    assert status["desiredReplicas"] == 3
    assert _condition(hpa(), "ScalingActive")["status"] == "True"

    # Quantities as Kubernetes writes them: 1500m makes ceil(1.5) = 2 replicas.
    core.patch_namespaced_config_map("external-metrics", namespace, {"data": {"serin_test_load": "1500m"}})
    eventually(lambda: replicas() == 2, timeout=60, what="the HPA to scale the Deployment down to 2 replicas")
    eventually(lambda: metric_status("750m"), timeout=60, what="the HPA status to show 1500m over 2 replicas")

    # The same API, as any client of the API server sees it.
    raw = local_cluster.kubectl(
        "get", "--raw", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/serin_test_load"
    ).stdout
    items = json.loads(raw)["items"]
    assert [(item["metricName"], item["value"]) for item in items] == [("serin_test_load", "1500m")]


def test_the_tests_reader_prints_what_kubectl_prints(local_cluster: ClusterHandle, namespace: str) -> None:
    """ClusterHandle.get_json answers common forms through the API client: the same JSON as kubectl."""
    local_cluster.apply(deployment("web", namespace, 1))
    eventually(lambda: local_cluster.get_json("deployment", "web", "-n", namespace)["status"].get("readyReplicas") == 1)
    forms = [
        ("deployment", "web", "-n", namespace),
        ("deployments.apps", "web", "-n", namespace),
        ("deployment", "web", "-n", namespace, "--show-managed-fields"),
        ("pods", "-n", namespace, "-l", "app=web"),
        ("services", "-n", namespace),
        ("namespace", namespace),
        ("events", "-n", namespace, "--field-selector", "involvedObject.kind=Deployment"),
    ]
    for form in forms:
        answered = local_cluster.reader.get(form)
        assert answered is not None, form
        printed = json.loads(local_cluster.kubectl("get", *form, "-o", "json").stdout)
        for each in (answered, printed):
            each.get("metadata", {}).pop("resourceVersion", None)  # a list's own is its read's
        assert answered == printed, form
    assert local_cluster.reader.get(("deploy,svc", "-n", namespace)) is None
    with pytest.raises(AssertionError, match="404"):
        local_cluster.get_json("deployment", "ghost", "-n", namespace)
