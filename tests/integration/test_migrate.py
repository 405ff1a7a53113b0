"""`serin migrate` with the real Flagger v1.36.1: Flagger takes a release to Succeeded and is
stopped; the migration hands its objects to Serin without restarting a pod or changing a route;
the next release goes through Serin to Succeeded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from localcluster import processes
from localcluster.build import BuildError, build_flagger
from localcluster.processes import free_port
from localcluster.testing import ClusterHandle, eventually, in_ci
from serin.kube.store import KubeStore
from serin.migrate import Migration
from tests.integration.helpers import METRICS, SerinServer, canary, deployment, drive, podinfo, routes, set_image

# One worker runs the whole module: Flagger built and its CRDs installed once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("migrate")]

FLAGGER_CANARY = "canaries.flagger.app"
# What the migration printed, for people to read (artifacts/ is not committed).
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "migrate"
ANALYSIS = {"interval": "10s", "threshold": 2, "maxWeight": 50, "stepWeight": 50, "metrics": METRICS}


@pytest.fixture(scope="module")
def flagger_binary(local_cluster: ClusterHandle) -> Iterator[Path]:
    cached = sorted(Path.home().glob(".cache/serin/bin/flagger-*-loopback/flagger"))
    try:
        binary = build_flagger() if in_ci() or cached else None
    except BuildError as error:
        pytest.fail(f"could not build Flagger: {error}")
    if binary is None:
        pytest.skip("Flagger is not built: python -c 'from localcluster.build import build_flagger; build_flagger()'")
    crds = str(binary.parent / "crd.yaml")
    local_cluster.kubectl("apply", "--server-side", "-f", crds)
    local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{FLAGGER_CANARY}", "--timeout=60s")
    try:
        yield binary
    finally:
        # Flagger's Canary has the short name `canary` too: the rest of the session must not
        # meet it, nor kubectl's cached discovery of it.
        local_cluster.kubectl("delete", "-f", crds, "--ignore-not-found", "--wait=true", timeout=120)
        server = yaml.safe_load(local_cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        shutil.rmtree(Path.home() / ".kube" / "cache" / "discovery" / urlsplit(server).netloc.replace(":", "_"), True)


@pytest.fixture
def flagger(
    local_cluster: ClusterHandle, flagger_binary: Path, namespace: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Flagger out of cluster, as an administrator, watching this test's namespace only."""
    with open(tmp_path / "flagger.log", "wb") as log:
        running = subprocess.Popen(
            [
                str(flagger_binary),
                f"-kubeconfig={local_cluster.kubeconfig}",
                f"-namespace={namespace}",
                "-mesh-provider=istio",
                f"-metrics-server={local_cluster.urls['prometheus']}",
                "-enable-leader-election=false",
                f"-port={free_port()}",
                "-log-level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=processes.child_environment(),
        )
    try:
        yield running
    finally:
        running.terminate()
        running.wait(timeout=30)


def flagger_phase(cluster: ClusterHandle, namespace: str) -> str:
    status = cluster.get_json(FLAGGER_CANARY, "podinfo", "-n", namespace).get("status") or {}
    return str(status.get("phase", ""))


def pod_uids(cluster: ClusterHandle, namespace: str, app: str) -> set[str]:
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return {pod["metadata"]["uid"] for pod in pods if not pod["metadata"].get("deletionTimestamp")}


def migrate(cluster: ClusterHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serin.cli", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**processes.child_environment(), "KUBECONFIG": str(cluster.kubeconfig)},
    )


def test_migrate_reads_only_the_metadata_of_what_it_looks_through(local_cluster: ClusterHandle, namespace: str) -> None:
    """Finding what Flagger owns means looking through every Secret and ConfigMap of the
    namespace: their data must not travel to whoever runs ``serin migrate``."""
    owner = json.loads(local_cluster.kubectl("create", "configmap", "owner", "-n", namespace, "-o", "json").stdout)[
        "metadata"
    ]
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["uid"]}
    for name, owners_ in (("owned", [reference]), ("unrelated", [])):
        local_cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners_},
                "stringData": {"password": "hunter2"},
            }
        )
    found = list(Migration(KubeStore(local_cluster.api)).owned_objects(namespace, owner["uid"]))
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in found] == [("Secret", "owned")]
    assert "data" not in found[0] and "type" not in found[0], found[0]


def owners(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(ref["apiVersion"], ref["name"]) for ref in obj["metadata"].get("ownerReferences") or []]


def test_a_flagger_canary_moves_to_serin_without_a_restart(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    flagger: subprocess.Popen[bytes],
) -> None:
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    flagger_canary = canary(namespace, ANALYSIS)
    flagger_canary["apiVersion"] = "flagger.app/v1beta1"
    local_cluster.apply(flagger_canary)
    eventually(
        lambda: flagger_phase(local_cluster, namespace) == "Initialized", timeout=90, what="Flagger to initialize"
    )
    set_image(local_cluster, namespace, "6.0.1")
    eventually(lambda: flagger_phase(local_cluster, namespace) == "Progressing", timeout=60, what="Flagger's release")
    eventually(lambda: flagger_phase(local_cluster, namespace) == "Succeeded", timeout=150, what="Flagger to promote")
    flagger.terminate()
    flagger.wait(timeout=30)

    primary_before = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary_before["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.1")
    pods_before = pod_uids(local_cluster, namespace, "podinfo-primary")
    assert len(pods_before) == 2
    routes_before = routes(local_cluster, namespace)
    assert routes_before == [("podinfo-primary", 100), ("podinfo-canary", 0)]

    planned = migrate(local_cluster, "-n", namespace, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert f"would adopt Deployment {namespace}/podinfo-primary" in planned.stdout
    assert local_cluster.get_json(FLAGGER_CANARY, "podinfo", "-n", namespace)["metadata"]["name"] == "podinfo"

    done = migrate(local_cluster, "-n", namespace)
    assert done.returncode == 0, done.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "migrate.txt").write_text(planned.stdout + done.stdout)
    adopted = {line.removeprefix("adopted ") for line in done.stdout.splitlines() if line.startswith("adopted ")}
    assert adopted == {
        f"Deployment {namespace}/podinfo-primary",
        f"Service {namespace}/podinfo",
        f"Service {namespace}/podinfo-primary",
        f"Service {namespace}/podinfo-canary",
        f"VirtualService {namespace}/podinfo",
        f"DestinationRule {namespace}/podinfo-primary",
        f"DestinationRule {namespace}/podinfo-canary",
    }, done.stdout
    assert f"deleted Flagger's canary {namespace}/podinfo" in done.stdout
    gone = local_cluster.kubectl("get", FLAGGER_CANARY, "podinfo", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    # Serin takes it from there: initialized on the objects Flagger made, nothing restarted.
    status = drive(local_cluster, serin_server, tokens["ticker"], namespace, "Initialized")
    time.sleep(2)  # the garbage collector has had time to act on anything still owned by Flagger's
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["metadata"]["uid"] == primary_before["metadata"]["uid"]
    # Its pod template was never written (its generation moved once: a Deployment counts annotation
    # changes too, and the handover records the revision it runs in one).
    assert primary["spec"] == primary_before["spec"]
    assert pod_uids(local_cluster, namespace, "podinfo-primary") == pods_before
    assert routes(local_cluster, namespace) == routes_before
    serin_canary = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)
    assert owners(primary) == [("serin.dev/v1beta1", "podinfo")]
    assert primary["metadata"]["ownerReferences"][0]["uid"] == serin_canary["metadata"]["uid"]
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]

    # The next release, through Serin.
    set_image(local_cluster, namespace, "6.0.2")
    drive(local_cluster, serin_server, tokens["ticker"], namespace, "Succeeded")
    promoted = deployment(local_cluster, namespace, "podinfo-primary")
    assert promoted["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.2")
    assert promoted["metadata"]["uid"] == primary_before["metadata"]["uid"]
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert json.loads(local_cluster.kubectl("get", FLAGGER_CANARY, "-A", "-o", "json").stdout)["items"] == []
