"""A real Serin server (HTTPS, real certificate) against the local control plane, and tokens to call it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from localcluster import dataplane, processes, webhooks
from localcluster.cluster import LocalCluster
from localcluster.dataplane import DataPlane
from localcluster.pki import write_serving_pair
from localcluster.processes import free_port
from localcluster.serin_server import TOKEN_AUDIENCE, egress_denied, gunicorn_command
from localcluster.testing import ClusterHandle, binaries_or_skip, eventually, fresh_namespace, in_ci
from tests.integration.helpers import WEBHOOK_NAMESPACE_LABEL, SerinServer

REPO = Path(__file__).resolve().parents[2]
SERIN_CRDS = ("canaries", "metrictemplates", "alertproviders")
SERIN_POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.fixture(scope="session")
def serin_crds(local_cluster: ClusterHandle) -> None:
    local_cluster.kubectl("apply", "--server-side", "-k", str(REPO / "k8s" / "crds"))

    # Not `kubectl wait`: it fails at once on a CRD so new that it has no conditions yet.
    def established() -> bool:
        crds = [local_cluster.get_json("crd", f"{crd}.serin.dev") for crd in SERIN_CRDS]
        return all(
            any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
            for conditions in ((crd.get("status") or {}).get("conditions") or [] for crd in crds)
        )

    eventually(established, timeout=30, what="Serin's CRDs to be established")


def rendered(cluster: ClusterHandle, kind: str, name: str) -> dict[str, Any]:
    """One object of the shipped install manifests (k8s/), as kustomize renders it."""
    documents = yaml.safe_load_all(cluster.kubectl("kustomize", str(REPO / "k8s")).stdout)
    return next(d for d in documents if d and d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.fixture(scope="session")
def serin_kubeconfig(local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Serin runs as its own service account with the ClusterRole and the admission policy it
    ships, as in a cluster."""
    role = rendered(local_cluster, "ClusterRole", "serin")
    role["metadata"] = {"name": "serin-tests-server"}
    policy, binding = (rendered(local_cluster, kind, "serin-writes") for kind in SERIN_POLICY_KINDS)
    policy["metadata"] = {"name": "serin-tests-writes"}
    for condition in policy["spec"]["matchConditions"]:
        condition["expression"] = condition["expression"].replace(":serin-system:", ":serin-tests:")
    binding["metadata"] = {"name": "serin-tests-writes"}
    binding["spec"]["policyName"] = "serin-tests-writes"
    local_cluster.apply(
        [
            *TEST_ACCOUNTS,
            role,
            policy,
            binding,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "serin-tests-server"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "serin-tests-server",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "serin", "namespace": "serin-tests"}],
            },
        ]
    )
    token = local_cluster.kubectl("create", "token", "serin", "-n", "serin-tests", "--duration=2h").stdout.strip()
    admin = yaml.safe_load(local_cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "serin", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "serin"
    path = tmp_path_factory.mktemp("serin-identity") / "kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


@contextlib.contextmanager
def running_serin(
    cluster: ClusterHandle,
    kubeconfig: Path,
    folder: Path,
    env: Mapping[str, str] | None = None,
    source: Path = REPO,
) -> Iterator[SerinServer]:
    """One Serin server as production runs it: gunicorn, HTTPS with a real certificate, acting as
    ``kubeconfig``'s identity; ``env`` adds to its environment. Its files (certificate, log) go in
    ``folder``; it is stopped when the block ends. Two worker processes where the image runs one:
    what users who raise ``--workers`` rely on (one view of metrics, any worker answering) stays
    tested. ``source`` is the checkout it runs from (another release's, for upgrades)."""
    cert, key, ca = write_serving_pair(folder, ["127.0.0.1"])
    ca_bundle = cert.parent / "ca.crt"
    ca_bundle.write_bytes(ca)
    port = free_port()
    environment = {
        **processes.child_environment(),
        "KUBECONFIG": str(kubeconfig),
        "SERIN_METRICS_SERVER": cluster.urls["prometheus"],
        "SERIN_ADMISSION_CLIENT_CA": str(cluster.state_dir / "pki" / "webhook-client-ca.crt"),
        "SERIN_EGRESS_DENIED": egress_denied(cluster.urls["kube-apiserver"]),
        **(env or {}),
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(folder / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            gunicorn_command(port, cert, key, workers=2),
            cwd=source,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        eventually(
            lambda: requests.get(f"{url}/healthz", verify=str(ca_bundle), timeout=1).ok,
            timeout=30,
            what=f"gunicorn to serve (see {folder / 'gunicorn.log'})",
            errors=(requests.RequestException,),
        )
        yield SerinServer(url=url, ca_bundle=ca_bundle, log=folder / "gunicorn.log")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def serin_server(
    local_cluster: ClusterHandle,
    serin_crds: None,
    serin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SerinServer]:
    """Serin as production runs it (see ``running_serin``)."""
    with running_serin(local_cluster, serin_kubeconfig, tmp_path_factory.mktemp("serin-tls")) as server:
        yield server


@pytest.fixture(scope="session")
def second_serin_server(
    local_cluster: ClusterHandle,
    serin_crds: None,
    serin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SerinServer]:
    """Another replica beside ``serin_server``: its own processes, the same cluster and identity."""
    with running_serin(local_cluster, serin_kubeconfig, tmp_path_factory.mktemp("serin-tls-second")) as server:
        yield server


TEST_ACCOUNTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "serin-tests"}},
    *(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "serin-tests"}}
        for name in ("serin", "ticker", "stranger", "scraper")
    ),
]


@pytest.fixture(scope="session")
def tokens(local_cluster: ClusterHandle) -> dict[str, str]:
    """Tokens of an account with the shipped tick role, and of one without any role."""
    role = rendered(local_cluster, "ClusterRole", "serin-tick")
    role["metadata"] = {"name": "serin-tests-tick"}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "serin-tests-tick"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "serin-tests-tick"},
        "subjects": [{"kind": "ServiceAccount", "name": "ticker", "namespace": "serin-tests"}],
    }
    local_cluster.apply([*TEST_ACCOUNTS, role, binding])
    return {
        account: local_cluster.kubectl(
            "create", "token", account, "-n", "serin-tests", "--duration=2h", f"--audience={TOKEN_AUDIENCE}"
        ).stdout.strip()
        for account in ("ticker", "stranger")
    }


@pytest.fixture(scope="session")
def metrics_token(local_cluster: ClusterHandle) -> str:
    """A token of an account with the shipped ClusterRole serin-metrics-reader, for the API
    server's audience: what a Prometheus scrapes /metrics with when it sends its Pod's own token."""
    role = rendered(local_cluster, "ClusterRole", "serin-metrics-reader")
    role["metadata"] = {"name": "serin-tests-metrics-reader"}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "serin-tests-metrics-reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "serin-tests-metrics-reader",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": "serin-tests"}],
    }
    local_cluster.apply([*TEST_ACCOUNTS, role, binding])
    return local_cluster.kubectl("create", "token", "scraper", "-n", "serin-tests", "--duration=2h").stdout.strip()


@contextlib.contextmanager
def webhooks_to(
    cluster: ClusterHandle, server: SerinServer, name: str, namespace_labels: Mapping[str, str]
) -> Iterator[None]:
    """The shipped webhook configurations, named ``name``, pointed at ``server``, for namespaces
    labelled ``namespace_labels`` only; deleted when the block ends."""
    configurations = webhooks.for_url(
        webhooks.load_manifest(), server.url, server.ca_bundle.read_bytes(), name, namespace_labels
    )
    cluster.apply(configurations)
    try:
        yield
    finally:
        for kind in webhooks.WEBHOOK_KINDS:
            cluster.kubectl("delete", kind.lower(), name, "--ignore-not-found")


@pytest.fixture(scope="session")
def serin_webhooks(local_cluster: ClusterHandle, serin_server: SerinServer) -> Iterator[None]:
    """The shipped webhook configurations, pointed at the test server, for labelled namespaces only;
    yielded once the API server is seen calling them."""
    with webhooks_to(local_cluster, serin_server, "serin-tests", WEBHOOK_NAMESPACE_LABEL):
        probe_namespace = "serin-tests-webhook-probe"
        local_cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": probe_namespace, "labels": WEBHOOK_NAMESPACE_LABEL},
            }
        )
        probe = {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "probe", "namespace": probe_namespace},
            "spec": {"targetRef": {"kind": "Deployment", "name": "probe"}, "service": {"port": 80}, "analysis": {}},
        }
        # Configurations take effect asynchronously: wait until an invalid Canary is denied by us.
        eventually(
            lambda: (
                "set exactly one strategy"
                in local_cluster.kubectl(
                    "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(probe), check=False
                ).stderr
            ),
            timeout=30,
            what="the webhooks to be called",
        )
        yield


@pytest.fixture
def namespace(local_cluster: ClusterHandle, serin_webhooks: None, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace as Serin is installed: the shipped webhooks act in it from its first
    request on (it carries their label from its creation). For a test about what happens
    without them, ``namespace_without_webhooks``."""
    with fresh_namespace(local_cluster, request, WEBHOOK_NAMESPACE_LABEL) as name:
        yield name


@pytest.fixture(scope="session")
def data_plane(local_cluster: ClusterHandle) -> DataPlane:
    cluster = LocalCluster(local_cluster.state_dir)
    reason = dataplane.unavailable_reason(cluster.state())
    if reason:
        if in_ci():
            pytest.fail(f"the real data plane must run in CI: {reason}")
        pytest.skip(reason)
    return dataplane.ensure_dataplane(cluster, binaries_or_skip(), cluster.state())


@pytest.fixture
def proxied_namespace(
    local_cluster: ClusterHandle, serin_webhooks: None, data_plane: DataPlane, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace as Serin is installed whose traffic the real Traefik carries."""
    labels = {**WEBHOOK_NAMESPACE_LABEL, **dataplane.namespace_labels()}
    with fresh_namespace(local_cluster, request, labels) as name:
        yield name
