"""The cluster a benchmark runs against: the one SERIN_KUBECONFIG names, or its own for the run."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
