"""Run Serin itself next to the local control plane, the way a cluster would, minus the Pod.

Installs the CRDs and the shipped RBAC (k8s/), gives Serin its own service-account identity,
issues its serving certificate with the same tool the cluster Job uses (serin-certs), starts
gunicorn serving TLS on 127.0.0.1, and registers the shipped webhook configurations by URL with
that certificate's caBundle. A second service account, allowed only to tick, gets a token for
people and scripts to call ``POST /tick``; a third, ``prometheus``, bound to the shipped
``serin-metrics-reader``, is who the local Prometheus scrapes Serin's ``/metrics`` as.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import yaml

from localcluster import processes, prometheus, webhooks
from localcluster.build import Binaries
from localcluster.paths import REPO_ROOT
from localcluster.processes import ClusterState
from serin import destinations
from serin.config import Settings

if TYPE_CHECKING:  # the cluster module imports this one when it starts Serin
    from localcluster.cluster import LocalCluster

NAMESPACE = "serin-system"
RBAC_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
TOKEN_DURATION = "24h"

# Who calls the local Serin must hold a token issued for its audience, as in a cluster.
TOKEN_AUDIENCE = Settings().token_audience
# Who the local Prometheus scrapes Serin as: an account of its own, holding the shipped ClusterRole
# serin-metrics-reader, with a token for the API server's audience, as a Prometheus Pod's own is.
PROMETHEUS_ACCOUNT = "prometheus"
METRICS_READER = "serin-metrics-reader"


def egress_denied(api_server_url: str) -> str:
    """SERIN_EGRESS_DENIED for a Serin on this machine: the install's defaults, but for loopback,
    where every local backend and hook listens; the API server's own port stays denied, as its
    Service is in a cluster."""
    port = urlsplit(api_server_url).port or 443
    return ",".join(
        [
            *(entry for entry in destinations.DEFAULT_DENIED if not ipaddress.ip_network(entry).is_loopback),
            f"127.0.0.1:{port}",
        ]
    )


def _rbac(kubectl: Any) -> list[dict[str, Any]]:
    """The shipped namespace, accounts, roles and bindings of Serin and of the ticker, the role a
    scraper of /metrics needs (bound to the local Prometheus's account), and the admission policy
    that holds Serin's own writes."""
    rendered = yaml.safe_load_all(kubectl("kustomize", str(REPO_ROOT / "k8s")))
    wanted = {"serin", "serin-ticker", "serin-tick", "serin-writes", METRICS_READER, NAMESPACE}
    shipped = [doc for doc in rendered if doc and doc["kind"] in RBAC_KINDS and doc["metadata"]["name"] in wanted]
    return [*shipped, *_prometheus_account()]


def _prometheus_account() -> list[dict[str, Any]]:
    """The local Prometheus's account, bound to the ClusterRole that lets it get /metrics (what a
    cluster's admin binds for theirs)."""
    account = {"name": PROMETHEUS_ACCOUNT, "namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{METRICS_READER}-{PROMETHEUS_ACCOUNT}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": METRICS_READER},
            "subjects": [{"kind": "ServiceAccount", **account}],
        },
    ]


def ensure_serin(cluster: LocalCluster, binaries: Binaries, state: ClusterState) -> str:
    """Start Serin unless it runs; return its URL."""
    from localcluster.cluster import wait_for

    state_dir = cluster.state_dir

    def kubectl(*args: str, input_text: str | None = None) -> str:
        return cluster.kubectl(binaries, *args, input_text=input_text)

    pid, begun = state.processes.get("serin", (0, 0))
    if pid and processes.is_alive(pid, begun) and "serin" in state.urls:
        return state.urls["serin"]

    kubectl("apply", "--server-side", "-k", str(REPO_ROOT / "k8s" / "crds"))
    cluster.wait_crds_established(binaries)
    kubectl("apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(_rbac(kubectl)))

    # Serin acts as its own service account, so the shipped ClusterRole is what it really has.
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "serin", "user": {"token": _token(kubectl, "serin")}}]
    admin["contexts"][0]["context"]["user"] = "serin"
    serin_kubeconfig = state_dir / "serin.kubeconfig"
    serin_kubeconfig.write_text(yaml.safe_dump(admin))
    serin_kubeconfig.chmod(0o600)
    token_file = state_dir / "serin-ticker.token"
    token_file.write_text(_token(kubectl, "serin-ticker", audience=TOKEN_AUDIENCE))
    token_file.chmod(0o600)
    metrics_token_file = state_dir / "serin-metrics.token"
    metrics_token_file.write_text(_token(kubectl, PROMETHEUS_ACCOUNT))
    metrics_token_file.chmod(0o600)

    tls_dir = state_dir / "serin-tls"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "serin.certs",
            "write",
            "--dir",
            str(tls_dir),
            "--ip",
            "127.0.0.1",
            "--dns",
            "localhost",
        ],
        check=True,
        capture_output=True,
        env=processes.child_environment(),
    )
    port = processes.free_port()
    url = f"https://127.0.0.1:{port}"
    processes.start(
        "serin",
        gunicorn_command(port, tls_dir / "tls.crt", tls_dir / "tls.key"),
        state_dir,
        state,
        env={
            "KUBECONFIG": str(serin_kubeconfig),
            "SERIN_METRICS_SERVER": state.urls["prometheus"],
            # Admission reviews only from the API server, which presents its webhook client certificate.
            "SERIN_ADMISSION_CLIENT_CA": str(cluster.pki.webhook_client_ca),
            "SERIN_EGRESS_DENIED": egress_denied(state.urls["kube-apiserver"]),
        },
    )
    ca = tls_dir / "ca.crt"
    wait_for(
        "serin",
        lambda: requests.get(f"{url}/healthz", verify=str(ca), timeout=1).ok,
        30,
        state_dir / "logs" / "serin.log",
    )
    # Serin's own metrics beside the mesh's, as a cluster's Prometheus would have them (the
    # Grafana dashboard, charts/serin/dashboards/serin.json, reads both).
    if "prometheus" in state.urls:
        prometheus.scrape_serin(state_dir, [url], ca.read_bytes(), metrics_token_file.read_text())
    configurations = webhooks.for_url(webhooks.load_manifest(), url, ca.read_bytes())
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(configurations))
    state.ports["serin"] = port
    state.urls["serin"] = url
    state.paths["serin_ca"] = str(ca)
    state.paths["serin_token"] = str(token_file)
    state.paths["serin_metrics_token"] = str(metrics_token_file)
    state.save(state_dir)
    return url


def gunicorn_command(port: int, cert: Path, key: Path, workers: int = 1, app: str = "wsgi:app") -> list[str]:
    """Serin as the image runs it (see the Dockerfile), on loopback; ``workers`` processes of
    8 threads. ``app``: another WSGI app served the same way (a benchmark's)."""
    return [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "serin.worker.GuardedThreadWorker", "--workers", str(workers), "--threads", "8",
        "--bind", f"127.0.0.1:{port}",
        "--certfile", str(cert), "--keyfile", str(key),
        # gunicorn's control socket would be created under $HOME; nothing here uses it.
        "--no-control-socket",
        app,
    ]  # fmt: skip


def _token(kubectl: Any, account: str, audience: str = "") -> str:
    """A token of ``account``: for the API server, or for ``audience`` (Serin's, to call it)."""
    flags = [f"--audience={audience}"] if audience else []
    token: str = kubectl("create", "token", account, "-n", NAMESPACE, f"--duration={TOKEN_DURATION}", *flags).strip()
    return token


def env_lines(state: ClusterState) -> list[str]:
    if "serin" not in state.urls:
        return []
    token = Path(state.paths["serin_token"]).read_text().strip()
    # The local Prometheus's token, which may read /metrics (a Serin started before it had one: none).
    metrics_token = state.paths.get("serin_metrics_token")
    return [
        f"export SERIN_URL={state.urls['serin']}",
        f"export SERIN_TOKEN={token}",
        *([f"export SERIN_METRICS_TOKEN={Path(metrics_token).read_text().strip()}"] if metrics_token else []),
        f"export SERIN_CA={state.paths['serin_ca']}",
        # So that plain `curl $SERIN_URL/...` trusts Serin's local certificate.
        "export CURL_CA_BUNDLE=$SERIN_CA",
    ]
