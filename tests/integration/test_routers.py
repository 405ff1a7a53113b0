"""Each router through its real objects: releases promoted and rolled back on the local control plane.

The routing CRDs are the projects' own (Istio's, Gateway API's standard channel) with their
schemas, and Serin writes with strict field validation, so every object here passed the schema a
real cluster has. The simulator plays each data plane and Prometheus scrapes what it reports; the
builtin metrics are each provider's own queries. Traefik's two providers (``traefik`` and
``gatewayapi:v1``) also run through the real Traefik, in ``test_real_proxy.py``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.build import EXPERIMENTAL_HTTPROUTES_FILE, crds_dir
from localcluster.paths import cache_dir
from localcluster.prometheus import query
from localcluster.testing import ClusterHandle, eventually
from serin.model import parse_canary
from serin.routers.gatewayapi import desired_http_route
from tests.integration.helpers import (
    METRICS,
    WEIGHTED,
    SerinServer,
    canary,
    canary_exists,
    deployment,
    drive,
    events,
    podinfo,
    tick_until,
)

pytestmark = pytest.mark.integration

GATEWAY = {"name": "public", "namespace": "edge"}
STICKY_SECONDS = 4
AB_MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}, {"queryParams": {"canary": {"exact": "true"}}}]
# The simulator calls a Service with this annotation directly, as a load tester would.
LOAD = {"simulator.serin.dev/rps": "40"}


def http_route_weights(cluster: ClusterHandle, namespace: str, rule: int = 0) -> list[tuple[str, int]]:
    route = cluster.get_json("httproute", "podinfo", "-n", namespace)
    return [(ref["name"], ref["weight"]) for ref in route["spec"]["rules"][rule]["backendRefs"]]


def start(cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.apply(podinfo(namespace))
    cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    cluster.apply(manifest)
    drive(cluster, server, token, namespace, "Initialized")


def release(cluster: ClusterHandle, namespace: str, tag: str, **behaviour: str) -> None:
    """A new image, and how the simulator makes that version behave."""
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": behaviour},
                "spec": {"containers": [{"name": "podinfod", "image": f"ghcr.io/stefanprodan/podinfo:{tag}"}]},
            }
        }
    }
    cluster.kubectl("patch", "deployment", "podinfo", "-n", namespace, "--type=strategic", "-p", json.dumps(patch))


def primary_image(cluster: ClusterHandle, namespace: str) -> str:
    image: str = deployment(cluster, namespace, "podinfo-primary")["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.rsplit(":", 1)[1]


@pytest.mark.compat
@pytest.mark.parametrize("provider", ["gatewayapi:v1", "gatewayapi:v1beta1"])
def test_gateway_api_promotes_a_good_release_and_rolls_back_a_bad_one(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str, provider: str
) -> None:
    token = tokens["ticker"]
    manifest = canary(namespace, WEIGHTED, provider=provider)
    manifest["spec"]["service"] = {
        "port": 9898,
        "gatewayRefs": [GATEWAY],
        "hosts": ["podinfo.example.com"],
        "mirror": [{"backendRef": {"name": "podinfo-shadow", "port": 9898}}],
    }
    start(local_cluster, serin_server, token, namespace, manifest)
    route = local_cluster.get_json("httproute", "podinfo", "-n", namespace, "--show-managed-fields")
    written = {(field["manager"], field["apiVersion"]) for field in route["metadata"]["managedFields"]}
    assert ("serin", f"gateway.networking.k8s.io/{provider.split(':')[1]}") in written
    # The schema's defaults (group and kind of the parent) are filled in by the API server.
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY}]
    assert route["spec"]["hostnames"] == ["podinfo.example.com"]
    mirror = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "podinfo-shadow", "port": 9898}},
    }
    assert route["spec"]["rules"][0]["filters"] == [mirror]
    assert http_route_weights(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]

    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    assert http_route_weights(local_cluster, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert http_route_weights(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]

    release(local_cluster, namespace, "6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert http_route_weights(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


def test_istio_routes_a_tcp_service_by_its_tcp_route(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    manifest = canary(namespace, {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20})
    manifest["spec"]["service"] = {"port": 9898, "appProtocol": "tcp", "match": [{"port": 9898}]}
    start(local_cluster, serin_server, token, namespace, manifest)
    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    spec = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]
    assert "http" not in spec
    assert [(entry["destination"]["host"], entry["weight"]) for entry in spec["tcp"][0]["route"]] == [
        ("podinfo-primary", 80),
        ("podinfo-canary", 20),
    ]
    assert spec["tcp"][0]["match"] == [{"port": 9898}]
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert local_cluster.get_json("service", "podinfo", "-n", namespace)["spec"]["ports"][0]["appProtocol"] == "tcp"


def test_session_affinity_keeps_the_users_the_canary_served(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """On Istio's routing model (Gateway API's is in test_real_proxy.py, through the real Traefik)."""
    token = tokens["ticker"]
    analysis = {**WEIGHTED, "sessionAffinity": {"cookieName": "canary-session", "maxAge": 600}}
    start(local_cluster, serin_server, token, namespace, canary(namespace, analysis, provider="istio"))
    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    # Let each simulated user come back several times (50 of them, 50 requests a second), then
    # count who served the last few seconds.
    time.sleep(2 * STICKY_SECONDS)
    selector = f'kubernetes_namespace="{namespace}"'
    window = f"[{STICKY_SECONDS}s]"
    counts = f"sum by (kubernetes_pod_name) (increase(http_request_duration_seconds_count{{{selector}}}{window}))"
    served = query(local_cluster.urls["prometheus"], counts)
    by_pod = {sample["metric"]["kubernetes_pod_name"]: float(sample["value"][1]) for sample in served}
    canary_requests = sum(count for pod, count in by_pod.items() if not pod.startswith("podinfo-primary-"))
    # A fifth would reach the canary by weight alone; those it served stay on it.
    assert canary_requests / sum(by_pod.values()) > 0.5, by_pod
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    sticky = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]["http"][0]
    assert sticky["name"] == "sticky" and "Max-Age=-1" in json.dumps(sticky)


def test_a_mirrored_blue_green_catches_the_canarys_errors_while_users_see_none(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 4, "mirror": True, "metrics": METRICS}
    start(local_cluster, serin_server, token, namespace, canary(namespace, analysis))
    release(local_cluster, namespace, "6.0.1", **{"simulator.serin.dev/error-rate": "0.5"})
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
    route = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]["http"][0]
    assert route["mirror"] == {"host": "podinfo-canary"}
    assert [(entry["destination"]["host"], entry["weight"]) for entry in route["route"]] == [
        ("podinfo-primary", 100),
        ("podinfo-canary", 0),
    ]
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert primary_image(local_cluster, namespace) == "6.0.0"
    assert "mirror" not in local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]["http"][0]
    messages = events(local_cluster, namespace)
    assert any("advancement success rate" in message for message in messages), messages
    # The canary's pods are gone after the rollback, and with them its series from an instant
    # query: its last value, over the release, counts.
    errors = query(
        local_cluster.urls["prometheus"],
        "sum by (destination_workload) (last_over_time(istio_requests_total"
        f'{{destination_workload_namespace="{namespace}", response_code=~"5.."}}[5m]))',
    )
    failed = {sample["metric"]["destination_workload"]: float(sample["value"][1]) for sample in errors}
    # The canary failed the copies; every answer users got came from the primary, without an error.
    assert failed.get("podinfo", 0) > 0 and "podinfo-primary" not in failed, failed


def test_port_discovery_puts_every_container_port_on_the_services(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    target = podinfo(namespace)
    container = target["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999}]
    local_cluster.apply(target)
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    manifest = canary(namespace, {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20})
    manifest["spec"]["service"] = {"port": 80, "targetPort": "http", "portDiscovery": True}
    local_cluster.apply(manifest)
    drive(local_cluster, serin_server, token, namespace, "Initialized")
    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        ports = local_cluster.get_json("service", name, "-n", namespace)["spec"]["ports"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [("http", 80, "http"), ("grpc", 9999, 9999)]


def test_generated_services_and_routes_carry_the_metadata_and_headers_the_canary_gives(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "podinfo-services.yaml"
    manifest = yaml.safe_load(example.read_text())
    manifest["metadata"]["namespace"] = namespace
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    local_cluster.apply(manifest)
    drive(local_cluster, serin_server, tokens["ticker"], namespace, "Initialized")

    def metadata(kind: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
        found = local_cluster.get_json(kind, name, "-n", namespace)["metadata"]
        return found.get("labels") or {}, found.get("annotations") or {}

    apex_labels, apex_annotations = metadata("service", "podinfo")
    assert (apex_labels["team"], apex_annotations["prometheus.io/probe"]) == ("checkout", "true")
    assert metadata("service", "podinfo-primary")[0]["version"] == "stable"
    assert metadata("service", "podinfo-canary")[0]["version"] == "canary"
    vs_labels, vs_annotations = metadata("virtualservice", "podinfo")
    assert (vs_labels["team"], vs_annotations["prometheus.io/probe"]) == ("checkout", "true")
    route = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]["http"][-1]
    assert route["headers"] == {
        "request": {"add": {"x-served-by-mesh": "true"}},
        "response": {"remove": ["x-internal-trace"]},
    }


def users_ingress(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "podinfo",
            "namespace": namespace,
            "annotations": {"kubernetes.io/ingress.class": "nginx"},
        },
        "spec": {
            "rules": [
                {
                    "host": "podinfo.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}},
                            }
                        ]
                    },
                }
            ]
        },
    }


def nginx_canary_annotations(cluster: ClusterHandle, namespace: str) -> dict[str, str]:
    annotations = cluster.get_json("ingress", "podinfo-canary", "-n", namespace)["metadata"]["annotations"]
    return {key: value for key, value in annotations.items() if key.startswith("nginx.ingress.kubernetes.io/")}


@pytest.mark.compat
def test_nginx_promotes_a_good_release_and_rolls_back_a_bad_one(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    local_cluster.apply(users_ingress(namespace))
    manifest = canary(namespace, WEIGHTED, provider="nginx")
    manifest["spec"]["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}
    start(local_cluster, serin_server, token, namespace, manifest)
    backend = local_cluster.get_json("ingress", "podinfo-canary", "-n", namespace)["spec"]["rules"][0]["http"]
    assert backend["paths"][0]["backend"]["service"]["name"] == "podinfo-canary"
    assert nginx_canary_annotations(local_cluster, namespace) == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "0",
    }

    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    assert nginx_canary_annotations(local_cluster, namespace)["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert nginx_canary_annotations(local_cluster, namespace)["nginx.ingress.kubernetes.io/canary-weight"] == "0"

    release(local_cluster, namespace, "6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))
    # The user's Ingress was only read.
    assert local_cluster.get_json("ingress", "podinfo", "-n", namespace)["spec"] == users_ingress(namespace)["spec"]


def test_nginx_ab_testing_routes_the_header_and_the_cookie(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    local_cluster.apply(users_ingress(namespace))
    match = [{"headers": {"x-canary": {"exact": "insider"}}}, {"headers": {"cookie": {"exact": "canary"}}}]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 3, "match": match, "metrics": METRICS}
    manifest = canary(namespace, analysis, provider="nginx")
    manifest["spec"]["ingressRef"] = {"name": "podinfo"}
    start(local_cluster, serin_server, token, namespace, manifest)

    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
    assert nginx_canary_annotations(local_cluster, namespace) == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "0",
        "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
        "nginx.ingress.kubernetes.io/canary-by-header-value": "insider",
        "nginx.ingress.kubernetes.io/canary-by-cookie": "canary",
    }
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    served = query(
        local_cluster.urls["prometheus"],
        # Over the release: once promoted, the canary's series is gone and an instant query misses it.
        f"sum by (canary) (last_over_time(nginx_ingress_controller_requests"
        f'{{namespace="{namespace}", ingress="podinfo"}}[10m]))',
    )
    by_upstream = {sample["metric"].get("canary", ""): float(sample["value"][1]) for sample in served}
    assert 0 < by_upstream[f"{namespace}-podinfo-canary-9898"] < by_upstream[""]


def weights_of(cluster: ClusterHandle, kind: str, namespace: str) -> list[tuple[str, int]]:
    """(service, weight) of the primary then the canary: in the Contour HTTPProxy's first route,
    the TraefikService or the TrafficSplit."""
    spec = cluster.get_json(kind, "podinfo", "-n", namespace)["spec"]
    if kind == "trafficsplit":
        weights = {backend["service"]: int(backend["weight"]) for backend in spec["backends"]}
    else:
        services = spec["routes"][0]["services"] if kind == "httpproxy" else spec["weighted"]["services"]
        weights = {service["name"]: service.get("weight", 0) for service in services}
    return [(name, weights[name]) for name in ("podinfo-primary", "podinfo-canary")]


@pytest.mark.compat
@pytest.mark.parametrize(("provider", "kind"), [("contour", "httpproxy"), ("linkerd", "trafficsplit")])
def test_contour_and_linkerd_promote_a_good_release_and_roll_back_a_bad_one(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    provider: str,
    kind: str,
) -> None:
    token = tokens["ticker"]
    start(local_cluster, serin_server, token, namespace, canary(namespace, WEIGHTED, provider=provider))
    assert weights_of(local_cluster, kind, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]

    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
    assert weights_of(local_cluster, kind, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"

    release(local_cluster, namespace, "6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert weights_of(local_cluster, kind, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


def test_contour_ab_testing_routes_each_match(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 3, "match": AB_MATCH, "metrics": METRICS}
    start(local_cluster, serin_server, token, namespace, canary(namespace, analysis, provider="contour"))
    release(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
    routes = local_cluster.get_json("httpproxy", "podinfo", "-n", namespace)["spec"]["routes"]
    assert [route["conditions"][1:] for route in routes] == [
        [{"header": {"name": "x-canary", "exact": "insider"}}],
        [{"queryParameter": {"name": "canary", "exact": "true"}}],
        [],
    ]
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    served = query(
        local_cluster.urls["prometheus"],
        f'sum by (envoy_cluster_name) (envoy_cluster_upstream_rq{{envoy_cluster_name=~"{namespace}_.*"}})',
    )
    by_cluster = {sample["metric"]["envoy_cluster_name"]: float(sample["value"][1]) for sample in served}
    assert 0 < by_cluster[f"{namespace}_podinfo-canary_9898"] < by_cluster[f"{namespace}_podinfo-primary_9898"]


@pytest.mark.compat
def test_without_a_mesh_blue_green_analyses_the_canary_through_its_own_service(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 3, "metrics": METRICS}
    manifest = canary(namespace, analysis, provider="kubernetes")
    manifest["spec"]["service"] = {"port": 9898, "canary": {"annotations": LOAD}}
    start(local_cluster, serin_server, token, namespace, manifest)
    for kind in ("virtualservice", "httproute"):
        assert local_cluster.kubectl("get", kind, "-n", namespace, "-o", "name").stdout == ""

    release(local_cluster, namespace, "6.0.1")
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert local_cluster.get_json("service", "podinfo", "-n", namespace)["spec"]["selector"] == {
        "app": "podinfo-primary"
    }

    release(local_cluster, namespace, "6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


@pytest.mark.compat
def test_what_a_provider_cannot_do_is_denied_on_apply(local_cluster: ClusterHandle, namespace: str) -> None:
    weighted = canary(namespace, WEIGHTED, provider="kubernetes")
    denied = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(weighted), check=False)
    assert denied.returncode != 0
    assert (
        "spec.analysis.stepWeight: provider kubernetes has no mesh to shift traffic with: only blue/green "
        "(iterations) is possible" in denied.stderr
    )
    no_gateway = canary(namespace, WEIGHTED, provider="gatewayapi:v1")
    denied = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(no_gateway), check=False)
    assert denied.returncode != 0
    assert "spec.service.gatewayRefs: provider gatewayapi:v1 needs at least one gateway" in denied.stderr
    assert not canary_exists(local_cluster, namespace)


@pytest.mark.compat
def test_http_routes_fit_gateway_api_experimental_channel_too(local_cluster: ClusterHandle, namespace: str) -> None:
    """The local cluster runs Gateway API's standard channel; a cluster may run the experimental
    one instead. Serin's HTTPRoutes must fit both: the experimental CRD is put in its place for
    this test, every shape of route is applied to it as a server-side dry run, then the standard
    CRD is put back."""
    crds = crds_dir(cache_dir())
    standard = next(
        document
        for document in yaml.safe_load_all((crds / "crds.yaml").read_text())
        if document and document["metadata"]["name"] == "httproutes.gateway.networking.k8s.io"
    )
    shapes = {
        "weighted": desired_http_route(gateway_canary({}), 90, 10),
        "ab": desired_http_route(gateway_canary({"stepWeight": None, "iterations": 3, "match": AB_MATCH}), 0, 100),
        "sticky": desired_http_route(gateway_canary({"sessionAffinity": {"cookieName": "c"}}), 90, 10, "c=0123"),
        "expiring": desired_http_route(gateway_canary({"sessionAffinity": {"cookieName": "c"}}), 100, 0, "c=0123"),
        "mirrored": desired_http_route(
            gateway_canary({"stepWeight": None, "iterations": 3, "mirror": True}), 100, 0, mirror=True
        ),
    }
    # Only the experimental schema knows rules[].retry: its dry run says which schema is live.
    probe = {**shapes["weighted"], "metadata": {"name": "probe", "namespace": namespace}}
    probe = json.loads(json.dumps(probe))
    probe["spec"]["rules"][0]["retry"] = {"attempts": 1}

    def dry_run(route: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        route = {**route, "metadata": {**route["metadata"], "namespace": namespace, "ownerReferences": []}}
        return local_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(route), check=False)

    try:
        local_cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(crds / EXPERIMENTAL_HTTPROUTES_FILE)
        )
        eventually(lambda: dry_run(probe).returncode == 0, what="the experimental HTTPRoute schema")
        for shape, route in shapes.items():
            result = dry_run(route)
            assert result.returncode == 0, (shape, result.stderr)
    finally:
        local_cluster.apply(standard, "--server-side", "--force-conflicts")
        eventually(lambda: dry_run(probe).returncode != 0, what="the standard HTTPRoute schema back")


def gateway_canary(analysis: dict[str, Any]) -> Any:
    analysis = {k: v for k, v in {**WEIGHTED, **analysis}.items() if v is not None}
    manifest = canary("test", analysis, provider="gatewayapi:v1")
    manifest["spec"]["service"] = {"port": 9898, "gatewayRefs": [GATEWAY], "timeout": "15s"}
    manifest["metadata"]["uid"] = "u1"
    return parse_canary(manifest)


@pytest.mark.compat
@pytest.mark.parametrize(
    ("manifest", "refusal"),
    [
        pytest.param(
            {
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "VirtualService",
                "metadata": {"name": "bad"},
                "spec": {"hosts": ["bad"], "http": [{"route": [{"destination": {"host": "bad"}, "weight": "half"}]}]},
            },
            "spec.http[0].route[0].weight",
            id="istio-virtual-service",
        ),
        pytest.param(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "bad"},
                "spec": {"rules": [{"backendRefs": [{"name": "bad", "weight": 1}]}]},
            },
            "Must have port for Service reference",
            id="gateway-api-http-route",
        ),
    ],
)
def test_routing_apis_have_their_real_schemas(
    local_cluster: ClusterHandle, namespace: str, manifest: dict[str, Any], refusal: str
) -> None:
    manifest["metadata"]["namespace"] = namespace
    refused = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(manifest), check=False)
    assert refused.returncode != 0 and refusal in refused.stderr, refused.stderr


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
# What each provider writes to route, as `kubectl get` names it (nothing for no mesh).
ROUTING_OBJECTS = {
    "istio": ["virtualservice.networking.istio.io/podinfo"],
    "gatewayapi:v1": ["httproute.gateway.networking.k8s.io/podinfo"],
    "nginx": ["ingress.networking.k8s.io/podinfo", "ingress.networking.k8s.io/podinfo-canary"],
    "contour": ["httpproxy.projectcontour.io/podinfo", "httpproxy.projectcontour.io/podinfo-root"],
    "traefik": ["traefikservice.traefik.io/podinfo"],
    "linkerd": ["trafficsplit.split.smi-spec.io/podinfo"],
    "kubernetes": [],
}


@pytest.mark.compat
@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_is_admitted_and_initialized(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    example: Path,
) -> None:
    documents = [doc for doc in yaml.safe_load_all(example.read_text()) if doc and doc["kind"] != "Namespace"]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        for ref in document.get("spec", {}).get("service", {}).get("gatewayRefs", []):
            ref["namespace"] = namespace
    # The examples of DaemonSet and StatefulSet targets bring their own; the others use podinfo's.
    own = next((doc for doc in documents if doc["kind"] in ("DaemonSet", "StatefulSet")), None)
    if own is None:
        local_cluster.apply(podinfo(namespace))
    else:
        local_cluster.apply(own)
    kind = (own or {"kind": "Deployment"})["kind"].lower()
    local_cluster.kubectl("rollout", "status", f"{kind}/podinfo", "-n", namespace, "--timeout=60s")
    local_cluster.apply(documents)
    drive(local_cluster, serin_server, tokens["ticker"], namespace, "Initialized")
    provider = next(doc for doc in documents if doc["kind"] == "Canary")["spec"].get("provider", "istio")
    kinds = "virtualservices,httproutes,ingresses,httpproxies,traefikservices,trafficsplits"
    routing = local_cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout
    assert routing.split() == ROUTING_OBJECTS[provider]
