"""Full ticks over N Canaries, one process or P shards side by side: wall time, requests, memory.

N Canaries (each a Deployment with one pod; kwok runs pods for free) use the istio provider, so
every step has routing objects to keep, and analyse no metrics, so the figures are Serin's own.
Every tick is forced, so every Canary is due, as when each Canary's interval is the tick period.
For each shard count P, a tenth of the Canaries (a new tenth each round; ``--released`` sets
another share) gets a new revision, and
the round ticks until they are promoted: the tick that detects it, the weight step, promotion,
finalising, Succeeded. Each tick runs as P processes, process ``i`` ticking shard ``i`` of ``P`` as
the Indexed tick Job's pods ask the Serin replicas to.

Per tick: wall time (all P processes started together; the slowest one's time) and, per kind of
step, the API requests it cost (a list a step triggered counts for that step). Per process: RSS
before the tick and at its peak. The baseline in the same run is P = 1.

Usage: ``python -m benchmarks.scale [--sizes 100,1000] [--shards 1,2,4] [--concurrency 8]``
(starts its own cluster unless SERIN_KUBECONFIG points at a running one).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import multiprocessing
import multiprocessing.synchronize
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from benchmarks.clusters import app, benchmark_cluster, install_serin_crds
from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster

# Analysis of every Canary: one weight step, then promotion.
ANALYSIS = {"interval": "1m", "threshold": 2, "stepWeight": 10, "maxWeight": 10}
MAX_CANARIES = 3000
MAX_TICKS_PER_ROUND = 12
READY_TIMEOUT = 300.0


def manifests(namespace: str, index: int) -> list[dict[str, Any]]:
    return app(namespace, index, {"provider": "istio", "analysis": ANALYSIS})


def step_kind(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What a step did, from the status before and after it."""
    phase, weight = before.get("phase"), int(before.get("canaryWeight") or 0)
    new_phase, new_weight = after.get("phase"), int(after.get("weight") or 0)
    if phase == new_phase and weight == new_weight and phase in ("Succeeded", "Initialized"):
        return "idle"
    if new_weight > weight:
        return "weight step"
    if phase in ("Succeeded", "Initialized") and new_phase == "Progressing":
        return "new revision"
    if new_phase in ("Promoting", "Finalising", "Succeeded") and phase != new_phase:
        return f"to {new_phase}"
    return "other"


@dataclasses.dataclass
class ShardResult:
    elapsed: float
    rss_before_kb: int
    rss_peak_kb: int
    # step kind -> (steps, requests, writes)
    steps: dict[str, list[int]]
    tick_requests: int
    errors: list[str]


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tick_shard(
    kubeconfig: str,
    namespace: str,
    index: int,
    count: int,
    concurrency: int,
    start: multiprocessing.synchronize.Barrier,
) -> ShardResult:
    """One process's tick of shard ``index`` of ``count`` (run in a fresh process)."""
    from serin.config import Settings
    from serin.engine import build_engine
    from serin.reconcile import Shard

    engine = build_engine(Settings(kubeconfig=kubeconfig, tick_concurrency=concurrency))
    current = threading.local()
    counted: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    lock = threading.Lock()
    send = engine.store.request

    def counting(method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = getattr(current, "canary", "") or "tick"
        with lock:
            counted[key][0] += 1
            counted[key][1] += method != "GET"
        return send(method, path, *args, **kwargs)

    engine.store.request = counting  # type: ignore[method-assign]
    reconciler = engine.reconciler
    step = reconciler.step_isolated
    statuses: dict[str, dict[str, Any]] = {}

    def attributed(raw: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        name = raw["metadata"]["name"]
        statuses[name] = dict(raw.get("status") or {})
        current.canary = name
        try:
            return step(raw, *args, **kwargs)
        finally:
            current.canary = ""

    reconciler.step_isolated = attributed  # type: ignore[method-assign]
    rss_before = rss_kb()
    start.wait()
    started = time.perf_counter()
    reports = reconciler.tick(namespace=namespace, force=True, shard=Shard(index, count))
    elapsed = time.perf_counter() - started
    steps: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for report in reports:
        kind = step_kind(statuses.get(report.name, {}), report.to_dict())
        requests, writes = counted.get(report.name, [0, 0])
        steps[kind][0] += 1
        steps[kind][1] += requests
        steps[kind][2] += writes
    return ShardResult(
        elapsed=elapsed,
        rss_before_kb=rss_before,
        rss_peak_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        steps=dict(steps),
        tick_requests=counted.get("tick", [0, 0])[0],
        errors=[f"{report.name}: {report.error}" for report in reports if report.error],
    )


def _run_shard(arguments: tuple[Any, ...]) -> ShardResult:
    return tick_shard(*arguments)


@dataclasses.dataclass
class TickResult:
    canaries: int
    shards: int
    wall: float
    steps: dict[str, list[int]]
    rss_before_mb: float
    rss_peak_mb: float


def full_tick(kubeconfig: str, namespace: str, canaries: int, shards: int, concurrency: int) -> TickResult:
    """One forced tick of every Canary, as ``shards`` processes started together."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(shards)
        with context.Pool(shards) as pool:
            results = pool.map(
                _run_shard, [(kubeconfig, namespace, index, shards, concurrency, barrier) for index in range(shards)]
            )
    errors = [error for result in results for error in result.errors]
    if errors:
        raise SystemExit(f"{len(errors)} steps failed, e.g. {errors[0]}")
    steps: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for result in results:
        for kind, (count, requests, writes) in result.steps.items():
            steps[kind][0] += count
            steps[kind][1] += requests
            steps[kind][2] += writes
        steps["tick (list)"][0] += 1
        steps["tick (list)"][1] += result.tick_requests
    return TickResult(
        canaries=canaries,
        shards=shards,
        wall=max(result.elapsed for result in results),
        steps=dict(steps),
        rss_before_mb=max(result.rss_before_kb for result in results) / 1024,
        rss_peak_mb=max(result.rss_peak_kb for result in results) / 1024,
    )


class Cluster:
    def __init__(self, cluster: LocalCluster) -> None:
        binaries = ensure_binaries()
        self.kubeconfig = str(cluster.kubeconfig)
        self.kubectl = [str(binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}"]

    def run(self, *args: str, document: str | None = None) -> str:
        return subprocess.run([*self.kubectl, *args], input=document, text=True, check=True, capture_output=True).stdout

    def canaries(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.run("get", "canaries", "-n", namespace, "-o", "json"))["items"]
        return items

    def unready(self, namespace: str) -> int:
        """Deployments whose pods are not all updated and available yet."""
        listed = json.loads(self.run("get", "deployments", "-n", namespace, "-o", "json"))["items"]
        return sum(
            1
            for item in listed
            if (item["status"].get("updatedReplicas") or 0) < (item["spec"].get("replicas") or 0)
            or (item["status"].get("availableReplicas") or 0) < (item["spec"].get("replicas") or 0)
            or item["status"].get("observedGeneration") != item["metadata"]["generation"]
        )

    def wait_ready(self, namespace: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while (unready := self.unready(namespace)) and time.monotonic() < deadline:
            time.sleep(1)
        if unready:
            raise SystemExit(f"{unready} Deployments in {namespace} still not ready after {READY_TIMEOUT:.0f}s")


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def settle(cluster: Cluster, namespace: str, canaries: int, concurrency: int, want: set[str]) -> list[TickResult]:
    """Forced whole ticks (one process) until every Canary is in a phase of ``want``."""
    ticks: list[TickResult] = []
    for _ in range(MAX_TICKS_PER_ROUND):
        phases = collections.Counter(item.get("status", {}).get("phase") for item in cluster.canaries(namespace))
        if set(phases) <= want:
            return ticks
        cluster.wait_ready(namespace)
        ticks.append(full_tick(cluster.kubeconfig, namespace, canaries, 1, concurrency))
    raise SystemExit(f"Canaries in {namespace} did not settle in {MAX_TICKS_PER_ROUND} ticks: {dict(phases)}")


def run_size(
    cluster: Cluster, canaries: int, shard_counts: list[int], concurrency: int, released: int
) -> list[TickResult]:
    """``released``: percent of the Canaries given a new revision in each round."""
    namespace = f"scale-{canaries}-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", namespace)
    results: list[TickResult] = []
    try:
        items = [item for index in range(canaries) for item in manifests(namespace, index)]
        for part in chunks(items, 400):
            cluster.run("create", "-f", "-", document=json.dumps({"apiVersion": "v1", "kind": "List", "items": part}))
        started = time.perf_counter()
        settle(cluster, namespace, canaries, concurrency, {"Initialized", "Succeeded"})
        print(f"  {canaries} Canaries initialized in {time.perf_counter() - started:.0f}s", flush=True)
        for round_index, shards in enumerate(shard_counts):
            # Spread over the list a tick takes, as releases are: the first steps of a tick read
            # one by one until their namespace is listed, whatever kind of step they are.
            chosen = [index for index in range(canaries) if (index + round_index * released) % 100 < released]
            image = f"example/app:{round_index + 2}"
            for part in chunks(chosen, 200):
                cluster.run(
                    "set", "image", "-n", namespace, *(f"deployment/app-{index}" for index in part), f"app={image}"
                )
            for tick_index in range(MAX_TICKS_PER_ROUND):
                cluster.wait_ready(namespace)
                tick = full_tick(cluster.kubeconfig, namespace, canaries, shards, concurrency)
                results.append(tick)
                kinds = ", ".join(f"{kind} {count}" for kind, (count, *_rest) in sorted(tick.steps.items()))
                print(f"  P={shards} tick {tick_index + 1}: {tick.wall:.1f}s ({kinds})", flush=True)
                if set(tick.steps) <= {"idle", "tick (list)"}:
                    break
    finally:
        cluster.run("delete", "namespace", namespace, "--wait=false")
    return results


def tick_kind(tick: TickResult) -> str | None:
    if "weight step" in tick.steps:
        return "weight step"
    if set(tick.steps) <= {"idle", "tick (list)"}:
        return "all idle"
    return None


def report(results: list[TickResult]) -> None:
    print("\nfull ticks, every Canary due: a tenth taking a weight step, or all idle (baseline: P = 1)")
    print(
        f"{'canaries':>8} {'P':>2} {'tick':>12} {'seconds':>8} {'speed-up':>9} {'requests':>9} "
        f"{'per canary':>11} {'writes':>7} {'RSS MB idle/peak':>17}"
    )
    # The weight-step tick and the all-idle tick of each round.
    shown = {(tick.canaries, tick.shards, kind): tick for tick in reversed(results) if (kind := tick_kind(tick))}
    for (canaries, shards, kind), tick in sorted(shown.items()):
        baseline = shown[(canaries, 1, kind)]
        requests = sum(requests for _, requests, _ in tick.steps.values())
        writes = sum(writes for _, _, writes in tick.steps.values())
        print(
            f"{canaries:8} {shards:2} {kind:>12} {tick.wall:8.1f} {baseline.wall / tick.wall:8.1f}x {requests:9} "
            f"{requests / canaries:11.2f} {writes:7} {tick.rss_before_mb:8.0f}/{tick.rss_peak_mb:.0f}"
        )
    print("\nAPI requests per step, by kind of step (all ticks of the run; a list counts for the step that")
    print("asked for it, so the first steps of a tick carry the reads made one by one before it)")
    print(f"{'canaries':>8} {'step':>14} {'steps':>7} {'requests/step':>14} {'writes/step':>12}")
    for canaries in sorted({tick.canaries for tick in results}):
        totals: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for tick in results:
            if tick.canaries != canaries:
                continue
            for kind, (count, requests, writes) in tick.steps.items():
                totals[kind][0] += count
                totals[kind][1] += requests
                totals[kind][2] += writes
        for kind, (count, requests, writes) in sorted(totals.items()):
            print(f"{canaries:8} {kind:>14} {count:7} {requests / count:14.2f} {writes / count:12.2f}")
        idle = shown.get((canaries, 1, "all idle"))
        if idle is not None:
            # Idle at interval 1m with the CronJob every minute, every Canary is checked every tick.
            hourly = 60 * sum(requests for _, requests, _ in idle.steps.values()) / canaries
            print(f"{canaries:8} API requests per idle Canary-hour (interval 1m, a tick a minute, P = 1): {hourly:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help=f"numbers of Canaries (at most {MAX_CANARIES})")
    parser.add_argument("--shards", default="1,2,4", help="shard counts to compare; 1 is always the baseline")
    parser.add_argument("--concurrency", type=int, default=8, help="Canaries a process steps side by side")
    parser.add_argument("--released", type=int, default=10, help="percent of the Canaries released each round")
    args = parser.parse_args()
    sizes = [max(10, min(int(size), MAX_CANARIES)) for size in args.sizes.split(",")]
    shard_counts = sorted({1, *(max(1, min(int(count), 8)) for count in args.shards.split(","))})
    results: list[TickResult] = []
    with benchmark_cluster() as local:
        cluster = Cluster(local)
        install_serin_crds(local)
        for canaries in sizes:
            print(f"{canaries} Canaries:", flush=True)
            results.extend(run_size(cluster, canaries, shard_counts, args.concurrency, max(1, min(args.released, 100))))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
