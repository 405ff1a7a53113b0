"""Serin's image, built from the Dockerfile (buildah, no Docker) and run by podman as the cluster
runs it: its own entry point, a non-root user, a read-only root filesystem, the serving
certificate mounted. The local API server calls it for admission and it ticks a Canary, reaching
the API server from inside its container."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from localcluster import image, sbom
from localcluster.pki import CONTAINER_HOST_ADDRESS, write_serving_pair
from localcluster.processes import free_port
from localcluster.testing import ClusterHandle, eventually, in_ci
from tests.integration.conftest import webhooks_to
from tests.integration.helpers import SerinServer, canary, drive, podinfo

# One worker runs the whole module: the image built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("image")]

REPO = Path(__file__).resolve().parents[2]
IMAGE_TEST_LABEL = {"serin.dev/image-test": "enabled"}
# The user the Dockerfile and the manifests' securityContext name.
SERVER_UID = 10001
# Every distribution the image's Python sees (its venv's), name and version, as JSON.
DISTRIBUTIONS = (
    "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"
)


@pytest.fixture(scope="module")
def built() -> str:
    # buildah's chroot isolation and podman with runc need root; CI has it, a laptop may not.
    if os.geteuid() != 0 and not in_ci():
        pytest.skip("building and running the image needs root (buildah, podman): run as root, or see `make image`")
    return image.build()


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*image.podman_command(), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result


def in_container(built: str, *command: str) -> str:
    """Run one command in the image (its entry point replaced), as the image's user."""
    return podman("run", "--rm", *image.ULIMITS, "--read-only", "--entrypoint", command[0], built, *command[1:]).stdout


def test_the_image_runs_as_its_user_with_its_commands(built: str) -> None:
    assert in_container(built, "id", "-u").strip() == str(SERVER_UID)
    for script, usage in (("serin", "usage: serin"), ("serin-certs", "usage: serin-certs")):
        assert in_container(built, script, "--help").startswith(usage)
    # The code is the installed package, compiled at build time; nothing is written at run time.
    where = in_container(built, "python", "-c", "import serin, handlers; print(serin.__file__, handlers.__file__)")
    assert all(path.startswith("/opt/venv/lib/python3.11/site-packages/") for path in where.split()), where


def test_the_sbom_lists_every_package_in_the_image_with_its_locked_hash(built: str) -> None:
    listed = in_container(built, "python", "-c", DISTRIBUTIONS)
    present = {sbom.normalize(name): version for name, version in json.loads(listed).items()}
    document = json.loads(image.sbom_path().read_text())
    assert json.loads(in_container(built, "cat", image.SBOM_IN_IMAGE)) == document, "make image copies the image's own"
    described = {component["name"]: component["version"] for component in document["components"]}
    subject = document["metadata"]["component"]
    assert {**described, subject["name"]: subject["version"]} == present
    # The venv holds the lock's packages and Serin, nothing else (no pip of its own), each file one
    # the lock names by hash.
    locked = sbom.read_lock((REPO / "requirements.lock").read_text())
    assert described == {name: entry.version for name, entry in locked.items()}
    for component in document["components"]:
        (digest,) = [h["content"] for h in component["hashes"] if h["alg"] == "SHA-256"]
        assert digest in locked[component["name"]].hashes, component["name"]


@pytest.fixture
def container(
    built: str, local_cluster: ClusterHandle, serin_crds: None, serin_kubeconfig: Path, tmp_path: Path
) -> Iterator[tuple[SerinServer, str]]:
    """The image's entry point as a Pod runs it: HTTPS on 8443 (published on 127.0.0.1 only),
    acting as Serin's service account against the local API server; and the container's name."""
    tls_dir, kube_dir = tmp_path / "tls", tmp_path / "kube"
    _, key, ca = write_serving_pair(tls_dir, ["127.0.0.1"])
    # What the Secret volume's fsGroup gives the server in a cluster: its files are readable.
    os.chown(key, SERVER_UID, SERVER_UID)
    ca_bundle = tls_dir / "ca.crt"
    ca_bundle.write_bytes(ca)
    # As installed: reviews only with the API server's client certificate (the local one's CA).
    (tls_dir / "client-ca.crt").write_bytes(
        local_cluster.state_dir.joinpath("pki", "webhook-client-ca.crt").read_bytes()
    )
    config = yaml.safe_load(serin_kubeconfig.read_text())
    api_port = config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    config["clusters"][0]["cluster"]["server"] = f"https://{CONTAINER_HOST_ADDRESS}:{api_port}"
    kube_dir.mkdir()
    (kube_dir / "config").write_text(yaml.safe_dump(config))
    prometheus_port = local_cluster.urls["prometheus"].rsplit(":", 1)[1]
    port = free_port()
    name = f"serin-image-test-{uuid.uuid4().hex[:8]}"
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "slirp4netns:allow_host_loopback=true",
        "--publish",
        f"127.0.0.1:{port}:8443",
        *image.ULIMITS,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--volume",
        f"{tls_dir}:/etc/serin/tls:ro",
        "--volume",
        f"{kube_dir}:/kube:ro",
        "--env",
        "KUBECONFIG=/kube/config",
        "--env",
        f"SERIN_METRICS_SERVER=http://{CONTAINER_HOST_ADDRESS}:{prometheus_port}",
        "--env",
        "SERIN_ADMISSION_CLIENT_CA=/etc/serin/tls/client-ca.crt",
        built,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        eventually(
            lambda: requests.get(f"{url}/readyz", verify=str(ca_bundle), timeout=2).ok,
            timeout=60,
            what="the container to be ready",
            errors=(requests.RequestException,),
        )
        yield SerinServer(url=url, ca_bundle=ca_bundle), name
    finally:
        logs = podman("logs", name, check=False)
        (tmp_path / "container.log").write_text(logs.stdout + logs.stderr)
        podman("rm", "--force", name, check=False)


def test_the_api_server_calls_the_image_and_it_ticks(
    container: tuple[SerinServer, str], local_cluster: ClusterHandle, tokens: dict[str, str], namespace: str
) -> None:
    server, name = container
    with webhooks_to(local_cluster, server, "serin-image-test", IMAGE_TEST_LABEL):
        local_cluster.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in IMAGE_TEST_LABEL.items()))
        invalid = canary(namespace, {"interval": "5s", "stepWeight": 10, "maxWeight": 50, "threshold": 1})

        def denied_by_the_image() -> bool:
            applied = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(invalid), check=False)
            assert "spec.analysis.interval: must be at least 10s (got 5s)" in applied.stderr, applied
            return True

        eventually(denied_by_the_image, timeout=30, what="the API server to call the container")

        local_cluster.apply(podinfo(namespace))
        local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
        local_cluster.apply(canary(namespace, {"interval": "10s", "stepWeight": 20, "maxWeight": 40, "threshold": 2}))
        status = drive(local_cluster, server, tokens["ticker"], namespace, "Initialized")
        assert status["canaryWeight"] == 0
        assert local_cluster.get_json("deployment", "podinfo-primary", "-n", namespace)["status"]["readyReplicas"] == 2

    # The container's log: JSON lines, the admission reviews among them.
    lines = [json.loads(line) for line in podman("logs", name).stderr.splitlines()]
    reviews = [
        line for line in lines if line["logger"] == "serin.handlers.admission" and line.get("namespace") == namespace
    ]
    assert any("denied" in line["msg"] and line.get("request_id") for line in reviews), reviews
