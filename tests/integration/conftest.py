"""A real Serin server (HTTPS, real certificate) against the local control plane, and tokens to call it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from handlers import create_app
from localcluster.pki import write_serving_pair
from localcluster.processes import free_port
from localcluster.testing import ClusterHandle
from serin.config import Settings
from tests.integration.helpers import SerinServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def serin_crds(local_cluster: ClusterHandle) -> None:
    local_cluster.kubectl("apply", "--server-side", "-k", str(REPO / "k8s" / "crds"))
    for crd in ("canaries", "metrictemplates", "alertproviders"):
        local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.serin.dev", "--timeout=30s")


@pytest.fixture(scope="session")
def serin_server(
    local_cluster: ClusterHandle, serin_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SerinServer]:
    cert, key, ca = write_serving_pair(tmp_path_factory.mktemp("serin-tls"), ["127.0.0.1"])
    ca_bundle = cert.parent / "ca.crt"
    ca_bundle.write_bytes(ca)
    settings = Settings(metrics_server=local_cluster.urls["prometheus"], kubeconfig=str(local_cluster.kubeconfig))
    app = create_app(settings)
    server = make_server("127.0.0.1", free_port(), app, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SerinServer(url=f"https://127.0.0.1:{server.server_port}", ca_bundle=ca_bundle)
    finally:
        server.shutdown()


TICKER_RBAC: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "serin-tests"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ticker", "namespace": "serin-tests"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stranger", "namespace": "serin-tests"}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "serin-tests-tick"},
        "rules": [{"apiGroups": ["serin.dev"], "resources": ["canaries"], "verbs": ["get", "list", "update"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "serin-tests-tick"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "serin-tests-tick"},
        "subjects": [{"kind": "ServiceAccount", "name": "ticker", "namespace": "serin-tests"}],
    },
]


@pytest.fixture(scope="session")
def tokens(local_cluster: ClusterHandle) -> dict[str, str]:
    """Tokens of a service account allowed to tick and of one that is not."""
    local_cluster.apply(TICKER_RBAC)
    return {
        account: local_cluster.kubectl("create", "token", account, "-n", "serin-tests", "--duration=2h").stdout.strip()
        for account in ("ticker", "stranger")
    }
