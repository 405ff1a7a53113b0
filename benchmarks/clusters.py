"""The cluster a benchmark runs against (the one SERIN_KUBECONFIG names, or its own for the run),
and the apps benchmarks fill it with."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localcluster.cluster import LocalCluster


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


def app(namespace: str, index: int, canary_spec: dict[str, Any], image: str = "example/app:1") -> list[dict[str, Any]]:
    """Deployment ``app-<index>`` (one pod, which kwok runs for free) and its Canary, whose spec is
    ``canary_spec`` with the target and a Service port added."""
    name = f"app-{index}"
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        },
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
