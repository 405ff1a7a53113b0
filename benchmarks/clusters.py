"""The cluster a benchmark runs against (the one SERIN_KUBECONFIG names, or its own for the run),
and the apps benchmarks fill it with."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster
from localcluster.paths import REPO_ROOT


@contextlib.contextmanager
def benchmark_cluster() -> Iterator[LocalCluster]:
    reuse = os.environ.get("SERIN_KUBECONFIG")
    if reuse:
        yield LocalCluster(Path(reuse).resolve().parent)
        return
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="serin-bench-cluster-")))
    cluster.up(with_extras=False)
    try:
        yield cluster
    finally:
        cluster.down()


def install_serin_crds(cluster: LocalCluster) -> None:
    """Serin's CRDs, applied and established."""
    kubectl = [str(ensure_binaries().kubectl), f"--kubeconfig={cluster.kubeconfig}"]
    for command in (
        ["apply", "--server-side", "-k", str(REPO_ROOT / "k8s" / "crds")],
        ["wait", "--for=condition=Established", "crd/canaries.serin.dev"],
    ):
        subprocess.run([*kubectl, *command], check=True, capture_output=True)


def deployment(namespace: str, name: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Deployment ``name`` of one pod (which kwok runs for free), selected by ``app: <name>``."""
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {**selector, **(labels or {})}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def app(namespace: str, index: int, canary_spec: dict[str, Any], image: str = "example/app:1") -> list[dict[str, Any]]:
    """Deployment ``app-<index>`` and its Canary, whose spec is ``canary_spec`` with the target and
    a Service port added."""
    name = f"app-{index}"
    return [
        deployment(namespace, name, image),
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 80},
                **canary_spec,
            },
        },
    ]
