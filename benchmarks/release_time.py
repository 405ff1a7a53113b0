"""Time from `kubectl set image` to Succeeded for a 5-step Canary at ``interval: 10s``.

Three runs side by side on one local control plane (real API server, Prometheus, simulated mesh),
each in its own namespace with the same Deployment and Canary (stepWeight 20 up to 100, the
builtin success rate over 30s):

* **serin**: Serin under gunicorn with its webhooks, ticked the way Kubernetes runs the shipped
  ``serin-tick`` CronJob: a Job at every minute of the clock (never two at once, as with
  ``concurrencyPolicy: Forbid``), each running the CronJob container's exact command with its
  environment, so its Pod ticks whenever a Canary is next due until its minute is over;
* **serin, one tick a minute** (the baseline): the same Jobs with ``SERIN_TICK_PERIOD_SECONDS=0``,
  so each Pod ticks once and exits, as the CronJob did before;
* **flagger**: Flagger v1.36.1, built from the Go module proxy and run out of cluster.

Prints, per run, the seconds from `kubectl set image` to Succeeded and the time of each weight.

Usage: ``python -m benchmarks.release_time [--no-flagger] [--no-baseline]`` (starts its own cluster).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcluster import processes
from localcluster.build import build_flagger, ensure_binaries
from localcluster.cluster import LocalCluster
from localcluster.paths import REPO_ROOT

STEPS_TIMEOUT_SECONDS = 900
ANALYSIS: dict[str, Any] = {
    "interval": "10s",
    "threshold": 2,
    "stepWeight": 20,
    "maxWeight": 100,
    "metrics": [{"name": "request-success-rate", "interval": "30s", "thresholdRange": {"min": 99}}],
}


def deployment(namespace: str, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": namespace, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": f"ghcr.io/stefanprodan/podinfo:{tag}"}]},
            },
        },
    }


def canary(namespace: str, api_version: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": copy.deepcopy(ANALYSIS),
        },
    }


@dataclass
class Run:
    name: str
    namespace: str
    api_version: str
    started: float = 0.0
    finished: float | None = None
    weights: list[tuple[float, int]] = field(default_factory=list)
    phases: list[tuple[float, str]] = field(default_factory=list)


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.base = [str(binary), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, input_text: str | None = None) -> str:
        done = subprocess.run([*self.base, *args], input=input_text, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def canary_status(self, run: Run) -> dict[str, Any]:
        resource = "canaries.flagger.app" if run.api_version.startswith("flagger") else "canaries.serin.dev"
        status: dict[str, Any] = json.loads(self("get", resource, "podinfo", "-n", run.namespace, "-o", "json")).get(
            "status", {}
        )
        return status


class CronJobClock:
    """Starts the tick CronJob's command at every minute of the clock, never two at once (Forbid)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.stop = threading.Event()
        self.jobs = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        running: subprocess.Popen[bytes] | None = None
        with open(self.log, "ab") as log:
            while not self.stop.wait(60 - time.time() % 60):
                if running is not None and running.poll() is None:
                    continue  # the previous Job still runs: this one is skipped
                running = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log)
                self.jobs += 1
        if running is not None and running.poll() is None:
            running.terminate()


def tick_job(cluster: LocalCluster, namespace: str, period: str, token_file: Path) -> CronJobClock:
    """The shipped CronJob's container command and environment, pointed at the local Serin."""
    state = cluster.state()
    rendered = yaml.safe_load_all(
        subprocess.run(
            [str(Path(state.paths["kubectl_dir"]) / "kubectl"), "kustomize", str(REPO_ROOT / "k8s")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    cronjob = next(
        doc for doc in rendered if doc and doc["kind"] == "CronJob" and doc["metadata"]["name"] == "serin-tick"
    )
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    env |= {
        "SERIN_TICK_URL": f"{state.urls['serin']}/tick?namespace={namespace}",
        "SERIN_TICK_TOKEN_FILE": str(token_file),
        "SERIN_TICK_CA_FILE": state.paths["serin_ca"],
        "SERIN_TICK_PERIOD_SECONDS": period,
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, *container["command"][1:], *container.get("args", [])]
    return CronJobClock(command, {**processes.child_environment(), **env}, cluster.log(f"tick-{namespace}"))


def start_flagger(cluster: LocalCluster, kubectl: Kubectl) -> None:
    binary = build_flagger()
    kubectl("apply", "--server-side", "-f", str(binary.parent / "crd.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/canaries.flagger.app", "--timeout=60s")
    state = cluster.state()
    processes.start(
        "flagger",
        [
            str(binary),
            f"-kubeconfig={cluster.kubeconfig}",
            "-mesh-provider=istio",
            f"-metrics-server={state.urls['prometheus']}",
            "-enable-leader-election=false",
            f"-port={processes.free_port()}",
            "-log-level=info",
        ],
        cluster.state_dir,
        state,
    )


def watch(kubectl: Kubectl, runs: list[Run], done: Callable[[], bool]) -> None:
    """Record each run's weights and phases until every run finished or the time is up."""
    deadline = time.monotonic() + STEPS_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not done():
        for run in runs:
            if run.finished is not None:
                continue
            status = kubectl.canary_status(run)
            at = time.monotonic() - run.started
            weight, phase = int(status.get("canaryWeight") or 0), str(status.get("phase"))
            if not run.weights or run.weights[-1][1] != weight:
                run.weights.append((at, weight))
            if not run.phases or run.phases[-1][1] != phase:
                run.phases.append((at, phase))
            if phase == "Succeeded" and any(p == "Progressing" for _, p in run.phases):
                run.finished = at
            if phase == "Failed":
                run.finished = float("nan")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-flagger", action="store_true", help="skip Flagger (no Go build)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-tick-a-minute run (about 9 min)")
    args = parser.parse_args()

    binaries = ensure_binaries()
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="serin-bench-release-")))
    cluster.up(binaries, with_extras=True, with_serin=True)
    kubectl = Kubectl(binaries.kubectl, cluster.kubeconfig)
    clocks: list[CronJobClock] = []
    suffix = uuid.uuid4().hex[:5]
    runs = [Run("serin (shipped CronJob)", f"bench-serin-{suffix}", "serin.dev/v1beta1")]
    if not args.no_baseline:
        runs.append(Run("serin, one tick a minute (before)", f"bench-minute-{suffix}", "serin.dev/v1beta1"))
    if not args.no_flagger:
        runs.append(Run("flagger v1.36.1", f"bench-flagger-{suffix}", "flagger.app/v1beta1"))
    try:
        token_file = Path(cluster.state().paths["serin_token"])
        for run in runs:
            kubectl("create", "namespace", run.namespace)
            kubectl.apply(deployment(run.namespace, "6.0.0"))
            kubectl("rollout", "status", "deployment/podinfo", "-n", run.namespace, "--timeout=120s")
        if not args.no_flagger:
            start_flagger(cluster, kubectl)
        for run in runs:
            kubectl.apply(canary(run.namespace, run.api_version))
            if run.api_version.startswith("serin"):
                period = "0" if "minute" in run.name else "60"
                clock = tick_job(cluster, run.namespace, period, token_file)
                clocks.append(clock)
                clock.thread.start()
        print("waiting for every Canary to be Initialized ...", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if all(kubectl.canary_status(run).get("phase") == "Initialized" for run in runs):
                break
            time.sleep(1)
        else:
            raise RuntimeError("not every Canary was Initialized within 180s")
        for run in runs:
            image = "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1"
            kubectl("set", "image", "deployment/podinfo", image, "-n", run.namespace)
            run.started = time.monotonic()
        print("released 6.0.1 everywhere; waiting for Succeeded ...", file=sys.stderr, flush=True)
        watch(kubectl, runs, lambda: all(run.finished is not None for run in runs))
    finally:
        for clock in clocks:
            clock.stop.set()
        cluster.down()

    print(f"\nkubectl set image -> Succeeded, a 5-step Canary at interval 10s ({ANALYSIS['metrics'][0]['name']})")
    print(f"{'run':36} {'seconds':>8}  weights (seconds after set image: weight)")
    for run in runs:
        took = "timeout" if run.finished is None else f"{run.finished:8.1f}"
        steps = ", ".join(f"{at:.0f}s:{weight}" for at, weight in run.weights)
        print(f"{run.name:36} {took:>8}  {steps}")
    return 0 if all(run.finished is not None and run.finished == run.finished for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
