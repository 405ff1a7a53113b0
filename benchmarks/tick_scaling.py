"""Tick cost as the number of Canaries grows, when none of them is due.

For N Canaries (idle, analysed a moment ago) in the local control plane, a tick should cost one API
request and little more time than listing them. Measures, per N: API requests per tick, and the
median and p99 time of a tick against the time of the bare list request (the baseline).

Usage: ``python -m benchmarks.tick_scaling [--sizes 10,100,500] [--rounds 20]`` (starts its own
cluster unless SERIN_KUBECONFIG points at a running one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.clusters import benchmark_cluster, install_serin_crds
from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster
from serin.config import Settings
from serin.engine import build_engine
from serin.status import format_time


def timed(rounds: int, call: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def canary(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": f"app-{index}", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"app-{index}"},
            "service": {"port": 80},
            "analysis": {"interval": "1h", "stepWeight": 10},
        },
    }


def run(cluster: LocalCluster, sizes: list[int], rounds: int) -> list[tuple[int, float, float, float, float]]:
    binaries = ensure_binaries()
    kubectl = [str(binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}"]
    install_serin_crds(cluster)
    engine = build_engine(Settings(kubeconfig=str(cluster.kubeconfig)))
    requests_made: list[str] = []
    send = engine.store.request

    def counting(method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        requests_made.append(f"{method} {path}")
        return send(method, path, *args, **kwargs)

    engine.store.request = counting  # type: ignore[method-assign]
    status = {
        "status": {
            "phase": "Succeeded",
            "lastAnalysisTime": format_time(datetime.datetime.now(datetime.UTC)),
            "lastAppliedSpec": "x",
            "lastPromotedSpec": "x",
        }
    }
    rows = []
    created = 0
    namespace = f"bench-tick-{uuid.uuid4().hex[:6]}"
    subprocess.run([*kubectl, "create", "namespace", namespace], check=True, capture_output=True)
    try:
        for size in sorted(sizes):
            items = [canary(namespace, index) for index in range(created, size)]
            if items:
                document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
                subprocess.run(
                    [*kubectl, "apply", "-f", "-"], input=document, text=True, check=True, capture_output=True
                )
                for item in items:
                    path = f"/apis/serin.dev/v1beta1/namespaces/{namespace}/canaries/{item['metadata']['name']}/status"
                    send("PATCH", path, status, "application/merge-patch+json")
            created = size
            list_p50, _ = timed(rounds, lambda: engine.store.list_canaries(namespace))
            requests_made.clear()
            tick_p50, tick_p99 = timed(rounds, lambda: engine.reconciler.tick(namespace=namespace))
            per_tick = len(requests_made) / rounds
            rows.append((size, per_tick, list_p50, tick_p50, tick_p99))
    finally:
        subprocess.run([*kubectl, "delete", "namespace", namespace, "--wait=false"], capture_output=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500", help="numbers of Canaries (at most 2000 each)")
    parser.add_argument("--rounds", type=int, default=20, help="ticks per size (at most 200)")
    args = parser.parse_args()
    sizes = [max(1, min(int(size), 2000)) for size in args.sizes.split(",")]
    rounds = max(3, min(args.rounds, 200))
    with benchmark_cluster() as cluster:
        rows = run(cluster, sizes, rounds)
    print(f"\ntick with no Canary due, {rounds} ticks per size (ms; baseline: the bare list request)")
    print(
        f"{'canaries':>9} {'requests/tick':>14} {'list p50':>9} {'tick p50':>9} {'tick p99':>9} {'p50 over list':>14}"
    )
    for size, per_tick, list_p50, tick_p50, tick_p99 in rows:
        print(f"{size:9} {per_tick:14.1f} {list_p50:9.2f} {tick_p50:9.2f} {tick_p99:9.2f} {tick_p50 - list_p50:+14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
