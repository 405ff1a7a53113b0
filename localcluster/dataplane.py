"""The real data plane of a local cluster: Traefik routing real requests to real backends.

``ensure_dataplane`` starts, beside a running cluster:

* the pods' servers (``localcluster.backends``) in the cluster's pod network namespace
  (``localcluster.podnet``), at the addresses of the EndpointSlices of every namespace labelled
  ``localcluster.serin.dev/data-plane: traefik``;
* Traefik, built from its module (``build_traefik``), on 127.0.0.1, with its Kubernetes CRD
  provider (IngressRoute, TraefikService) and its Gateway API provider (HTTPRoute), each reading
  the API server as an account bound to a ClusterRole like the one Traefik's chart installs, and one Gateway,
  ``traefik/web``, whose listener is Traefik's ``web`` entry point;
* Prometheus scraping Traefik's ``/metrics`` and the backends' application series.

The traffic simulator leaves the labelled namespaces to this data plane (it neither routes nor
reports for them). Requests go to ``DataPlane.url`` with the Host the route answers for; who
answered each is in its body (``localcluster.realtraffic`` counts them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from localcluster import processes, prometheus
from localcluster.backends import DATA_PLANE_LABEL
from localcluster.build import TRAEFIK_VERSION, Binaries
from localcluster.processes import ClusterState

if TYPE_CHECKING:
    from localcluster.cluster import LocalCluster

# The value of DATA_PLANE_LABEL that hands a namespace to this data plane.
TRAEFIK = "traefik"
GATEWAY_NAMESPACE = "traefik"
GATEWAY_NAME = "web"
GATEWAY_CLASS = "traefik"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
ACCOUNT = "traefik"
STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class DataPlane:
    url: str
    """Traefik's web entry point, where users' requests go."""
    metrics_url: str
    backends_url: str
    """The backends' control address: /metrics, /served."""
    gateway: dict[str, str]
    """The parentRef of an HTTPRoute served by Traefik."""

    def served(self) -> list[dict[str, Any]]:
        """Requests the backends answered: namespace, pod, status, count (mirrored copies included)."""
        answer = requests.get(f"{self.backends_url}/served", timeout=5)
        answer.raise_for_status()
        served: list[dict[str, Any]] = answer.json()
        return served


def namespace_labels() -> dict[str, str]:
    """Labels of a namespace whose traffic the real Traefik carries."""
    return {DATA_PLANE_LABEL: TRAEFIK}


def unavailable_reason(state: ClusterState) -> str | None:
    if not state.paths.get("pod_netns"):
        return state.paths.get("pod_netns_error") or "the cluster has no pod network namespace"
    return None


def _rbac() -> list[dict[str, Any]]:
    """Traefik's account and what its chart grants it: read routing objects, Services and
    EndpointSlices (and Secrets, for TLS and auth), write the status of Gateway API objects."""
    rules = [
        {
            "apiGroups": [""],
            "resources": ["services", "secrets", "nodes", "configmaps"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["traefik.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": [
                "gatewayclasses/status",
                "gateways/status",
                "httproutes/status",
                "grpcroutes/status",
                "tcproutes/status",
                "tlsroutes/status",
                "listenersets/status",
            ],
            "verbs": ["update", "patch"],
        },
    ]
    meta = {"name": ACCOUNT}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {**meta, "namespace": GATEWAY_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": GATEWAY_NAMESPACE}],
        },
    ]


def _gateway(web_port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "web",
                        "protocol": "HTTP",
                        "port": web_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def _kubeconfig(cluster: LocalCluster, kubectl: Any) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    token = kubectl("create", "token", ACCOUNT, "-n", GATEWAY_NAMESPACE, "--duration=24h").strip()
    config["users"] = [{"name": ACCOUNT, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = ACCOUNT
    path = cluster.state_dir / "traefik.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def traefik_command(binary: Path, web_port: int, metrics_port: int) -> list[str]:
    return [
        str(binary),
        f"--entryPoints.web.address=127.0.0.1:{web_port}",
        f"--entryPoints.traefik.address=127.0.0.1:{metrics_port}",
        "--ping=true",
        "--ping.entryPoint=traefik",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entryPoint=traefik",
        "--metrics.prometheus.addServicesLabels=true",
        "--metrics.prometheus.addRoutersLabels=true",
        "--providers.kubernetesCRD=true",
        # The legacy names (<namespace>-<service>-<port>@kubernetescrd) that Flagger's and
        # Serin's builtin queries select.
        "--providers.kubernetesCRD.safeNaming=false",
        # A Service without endpoints (the canary's, between releases) answers 503 instead of
        # taking the whole TraefikService down with it, as it does by default.
        "--providers.kubernetesCRD.allowEmptyServices=true",
        "--providers.kubernetesGateway=true",
        # Changes apply within a fifth of a second (by default they wait two), and a burst of
        # them (another test's hundreds of Services) makes one new configuration, not hundreds.
        "--providers.providersThrottleDuration=200ms",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--log.noColor=true",
        "--accessLog=false",
    ]


def ensure_dataplane(cluster: LocalCluster, binaries: Binaries, state: ClusterState) -> DataPlane:
    """Start the backends and Traefik unless they run; return where they listen."""
    from localcluster.cluster import ClusterError, wait_for

    reason = unavailable_reason(state)
    if reason:
        raise ClusterError(f"the real data plane cannot run here: {reason}")

    def kubectl(*args: str, input_text: str | None = None) -> str:
        return cluster.kubectl(binaries, *args, input_text=input_text)

    if not _running(state, "traefik") or not _running(state, "backends"):
        kubectl("apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(_rbac()))
        if not _running(state, "backends"):
            port = processes.free_port()
            state.urls["backends"] = f"http://127.0.0.1:{port}"
            command = [
                sys.executable,
                "-m",
                "localcluster.backends",
                f"--kubeconfig={cluster.kubeconfig}",
                f"--netns=/run/netns/{state.paths['pod_netns']}",
                f"--listen=127.0.0.1:{port}",
            ]
            processes.start("backends", command, cluster.state_dir, state, measured=False)
        if not _running(state, "traefik"):
            web, metrics = processes.free_port(), processes.free_port()
            state.ports.update(traefik_web=web, traefik_metrics=metrics)
            state.urls["traefik"] = f"http://127.0.0.1:{web}"
            state.urls["traefik_metrics"] = f"http://127.0.0.1:{metrics}"
            kubeconfig = _kubeconfig(cluster, kubectl)
            processes.start(
                "traefik",
                traefik_command(binaries.traefik, web, metrics),
                cluster.state_dir,
                state,
                # Out of cluster: its providers read the API server through this kubeconfig.
                env={"KUBECONFIG": str(kubeconfig), "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""},
                measured=False,
            )
            kubectl("apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(_gateway(web)))
        state.save(cluster.state_dir)
    backends, metrics_url = state.urls["backends"], state.urls["traefik_metrics"]
    wait_for(
        "backends", lambda: requests.get(f"{backends}/healthz", timeout=1).ok, STARTUP_TIMEOUT, cluster.log("backends")
    )
    wait_for(
        f"traefik {TRAEFIK_VERSION}",
        lambda: requests.get(f"{metrics_url}/ping", timeout=1).ok,
        STARTUP_TIMEOUT,
        cluster.log("traefik"),
    )
    wait_for("the Gateway accepted", lambda: _gateway_accepted(kubectl), STARTUP_TIMEOUT, cluster.log("traefik"))
    targets = [url for url in (state.urls.get("simulator"), metrics_url, backends) if url]
    prometheus.set_targets(cluster.state_dir, targets)
    return DataPlane(
        url=state.urls["traefik"],
        metrics_url=metrics_url,
        backends_url=backends,
        gateway={"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
    )


def _running(state: ClusterState, name: str) -> bool:
    pid, begun = state.processes.get(name, (0, 0))
    return bool(pid) and processes.is_alive(pid, begun)


def _gateway_accepted(kubectl: Any) -> bool:
    from localcluster.cluster import ClusterError

    try:
        gateway = yaml.safe_load(kubectl("get", "gateway", GATEWAY_NAME, "-n", GATEWAY_NAMESPACE, "-o", "yaml"))
    except ClusterError:
        return False
    conditions = (gateway.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Programmed" and c.get("status") == "True" for c in conditions)
