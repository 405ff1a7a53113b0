"""One tick that has every Canary to step, one Canary after another against side by side.

For N new Canaries (each with its Deployment) in the local control plane, a single forced tick
initializes them all: primary Deployment, Services, target scaled down, status written. Run once
with ``SERIN_TICK_CONCURRENCY=1`` (the baseline: one after another, as before) and once per other
width, each on N Canaries of its own, printing the tick's wall time, the time per Canary and the
API requests per Canary.

Usage: ``python -m benchmarks.tick_concurrency [--canaries 50] [--widths 1,8]`` (starts its own
cluster unless SERIN_KUBECONFIG points at a running one).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks.clusters import app, benchmark_cluster, install_serin_crds
from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster
from serin.config import Settings
from serin.engine import Engine, build_engine


def workload(namespace: str, index: int) -> list[dict[str, Any]]:
    """A Deployment and its Canary; no mesh (the kubernetes provider writes Services only)."""
    return app(namespace, index, {"provider": "kubernetes", "analysis": {"interval": "1m", "iterations": 2}})


def counted_engine(cluster: LocalCluster, width: int) -> tuple[Engine, list[str]]:
    """Serin's engine with the given tick concurrency, and the list its API requests go into."""
    engine = build_engine(Settings(kubeconfig=str(cluster.kubeconfig), tick_concurrency=width))
    made: list[str] = []
    send = engine.store.request

    def counting(method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(method)
        return send(method, path, *args, **kwargs)

    engine.store.request = counting  # type: ignore[method-assign]
    return engine, made


def run(cluster: LocalCluster, canaries: int, widths: list[int]) -> list[tuple[int, float, float]]:
    binaries = ensure_binaries()
    kubectl = [str(binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}"]
    install_serin_crds(cluster)
    rows = []
    for width in widths:
        engine, made = counted_engine(cluster, width)
        namespace = f"bench-width-{width}-{uuid.uuid4().hex[:6]}"
        subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
        try:
            items = [item for index in range(canaries) for item in workload(namespace, index)]
            document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
            subprocess.run([*kubectl, "apply", "-f", "-"], input=document, text=True, check=True, capture_output=True)
            started = time.perf_counter()
            reports = engine.reconciler.tick(namespace=namespace, force=True)
            elapsed = time.perf_counter() - started
            errors = [report.error for report in reports if report.error]
            if errors:
                raise SystemExit(f"tick failed for {len(errors)} Canaries, e.g. {errors[0]}")
            rows.append((width, elapsed, len(made) / canaries))
        finally:
            subprocess.run([*kubectl, "delete", "namespace", namespace, "--wait=false"], capture_output=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=50, help="Canaries per width (at most 500)")
    parser.add_argument("--widths", default="1,8", help="tick concurrencies to compare; 1 is always the baseline")
    args = parser.parse_args()
    canaries = max(1, min(args.canaries, 500))
    widths = sorted({1, *(max(1, min(int(width), 64)) for width in args.widths.split(","))})
    with benchmark_cluster() as cluster:
        rows = run(cluster, canaries, widths)
    baseline = rows[0][1]
    print(f"\none forced tick initializing {canaries} new Canaries (baseline: concurrency 1)")
    print(f"{'concurrency':>11} {'tick s':>8} {'ms/canary':>10} {'requests/canary':>16} {'speed-up':>9}")
    for width, elapsed, per_canary in rows:
        print(
            f"{width:11} {elapsed:8.2f} {elapsed / canaries * 1000:10.1f} {per_canary:16.1f} {baseline / elapsed:8.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
