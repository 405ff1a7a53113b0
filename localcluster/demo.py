"""``make demo``: Serin's main job on the local default, live in the terminal.

Builds what is missing, starts the local control plane with Prometheus, the traffic simulator and
Serin, deploys podinfo with a Canary, then releases a good version until it is promoted and a bad
one (half of its requests fail) until it is rolled back, printing every analysis step: phase,
canary weight, failed checks, the canary's success rate and p99 latency as Prometheus measures
them. Tears everything down at the end (``--keep`` leaves it running).

``--traefik`` (``make demo-traefik``) runs the same two releases through the real Traefik: real
requests from users on this machine, routed by the TraefikService Serin writes to servers at the
pods' addresses, judged on Traefik's own metrics; every step also prints which versions answered
the users since the step before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

from localcluster import dataplane
from localcluster.build import ensure_binaries
from localcluster.cluster import LocalCluster
from localcluster.paths import REPO_ROOT
from localcluster.prometheus import query_scalar
from localcluster.realtraffic import Load

NAMESPACE = "demo"
STEP_SECONDS = 3.0
MAX_STEPS = 40

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": NAMESPACE, "labels": {"app": "podinfo"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}, "annotations": {"simulator.serin.dev/latency-ms": "40"}},
            "spec": {"containers": [{"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]},
        },
    },
}
CANARY = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": NAMESPACE},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {
            "interval": "10s",
            "threshold": 2,
            "maxWeight": 60,
            "stepWeight": 20,
            "metrics": [
                {"name": "request-success-rate", "interval": "15s", "thresholdRange": {"min": 99}},
                {"name": "request-duration", "interval": "15s", "thresholdRange": {"max": 500}},
            ],
        },
    },
}

SELECTOR = f'reporter="destination", destination_workload_namespace="{NAMESPACE}", destination_workload="podinfo"'
SUCCESS_RATE = (
    f'100 * sum(rate(istio_requests_total{{{SELECTOR}, response_code!~"5.*"}}[10s])) '
    f"/ sum(rate(istio_requests_total{{{SELECTOR}}}[10s]))"
)
P99 = f"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{SELECTOR}}}[10s])) by (le))"
# Through the real Traefik: its own series for the canary's Service, and the user's IngressRoute.
TRAEFIK_HOST = "podinfo.demo.example"
TRAEFIK_SELECTOR = f'service=~"{NAMESPACE}-podinfo-canary-[0-9]+@kubernetescrd"'
TRAEFIK_BUCKETS = "traefik_service_request_duration_seconds_bucket"
TRAEFIK_SUCCESS_RATE = (
    f'100 * sum(rate({TRAEFIK_BUCKETS}{{{TRAEFIK_SELECTOR}, code!~"5..", le="+Inf"}}[10s])) '
    f'/ sum(rate({TRAEFIK_BUCKETS}{{{TRAEFIK_SELECTOR}, le="+Inf"}}[10s]))'
)
TRAEFIK_P99 = f"1000 * histogram_quantile(0.99, sum(rate({TRAEFIK_BUCKETS}{{{TRAEFIK_SELECTOR}}}[10s])) by (le))"
INGRESS_ROUTE = {
    "apiVersion": "traefik.io/v1alpha1",
    "kind": "IngressRoute",
    "metadata": {"name": "podinfo", "namespace": NAMESPACE},
    "spec": {
        "entryPoints": ["web"],
        "routes": [
            {
                "match": f"Host(`{TRAEFIK_HOST}`)",
                "kind": "Rule",
                "services": [{"name": "podinfo", "kind": "TraefikService"}],
            }
        ],
    },
}
USERS_RPS = 20.0


class Demo:
    def __init__(self, cluster: LocalCluster, traefik: bool = False) -> None:
        self.cluster = cluster
        self.binaries = ensure_binaries()
        self.load: Load | None = None
        self.queries = (SUCCESS_RATE, P99)
        if traefik:
            plane = dataplane.ensure_dataplane(cluster, self.binaries, cluster.state())
            self.load = Load(plane.url, TRAEFIK_HOST, rps=USERS_RPS)
            self.queries = (TRAEFIK_SUCCESS_RATE, TRAEFIK_P99)
        state = cluster.state()
        self.url = state.urls["serin"]
        self.prometheus = state.urls["prometheus"]
        self.ca = state.paths["serin_ca"]
        self.token = Path(state.paths["serin_token"]).read_text().strip()

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self.cluster.kubectl(self.binaries, *args, input_text=input_text)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))

    def tick(self) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/tick",
            params={"namespace": NAMESPACE, "name": "podinfo", "force": "true"},
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.ca,
            timeout=30,
        )
        response.raise_for_status()
        report: dict[str, Any] = response.json()["canaries"][0]
        return report

    def measured(self) -> str:
        rate, p99 = (query_scalar(self.prometheus, promql) for promql in self.queries)
        if rate is None or rate != rate:  # no canary traffic (NaN) yet
            return f"{'-':>8} {'-':>8}"
        return f"{rate:7.1f}% {p99 or 0:6.0f}ms"

    def answered(self) -> str:
        """What the users were answered since the step before: per version, and the errors."""
        if self.load is None:
            return ""
        tally = self.load.reset()
        versions = " ".join(f"{version}:{count}" for version, count in sorted(tally.versions().items()))
        errors = sum(count for (_, status), count in tally.answers.items() if status >= 500)
        return f"  [users: {versions or 'none'}, {errors} errors]"

    def run_until(self, phases: set[str]) -> str:
        print(f"  {'time':8} {'phase':17} {'weight':>6} {'failed':>6} {'success':>8} {'p99':>8}  what happened")
        for _ in range(MAX_STEPS):
            report = self.tick()
            events = "; ".join(report["events"]) or report["summary"]
            print(
                f"  {time.strftime('%H:%M:%S')} {report['phase'] or '-':17} {report['weight']:6} "
                f"{report['failedChecks']:6} {self.measured()}  {events}{self.answered()}",
                flush=True,
            )
            if report["phase"] in phases:
                return str(report["phase"])
            time.sleep(STEP_SECONDS)
        raise SystemExit(f"the canary did not reach {' or '.join(sorted(phases))} in {MAX_STEPS} steps")

    def main(self) -> None:
        self.kubectl("create", "namespace", NAMESPACE)
        canary = json.loads(json.dumps(CANARY))
        if self.load is not None:
            labels = ",".join(f"{key}={value}" for key, value in dataplane.namespace_labels().items())
            self.kubectl("label", "namespace", NAMESPACE, labels)
            canary["spec"]["provider"] = "traefik"
            self.apply(INGRESS_ROUTE)
        self.apply(DEPLOYMENT)
        self.kubectl("rollout", "status", "deployment/podinfo", "-n", NAMESPACE, "--timeout=60s")
        self.apply(canary)
        if self.load is not None:
            print(f"\n== Users send {USERS_RPS:.0f} requests a second to http://{TRAEFIK_HOST} through Traefik")
            self.load.__enter__()
        print("\n== Canary podinfo created: Serin bootstrapped podinfo-primary and the routes on apply")
        self.run_until({"Initialized"})

        print("\n== Release 1: podinfo 6.0.1, a good version")
        self.kubectl(
            "set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1", "-n", NAMESPACE
        )
        outcome = self.run_until({"Succeeded", "Failed"})
        print(f"   -> {outcome}: podinfo-primary now runs {self.primary_image()}")

        print("\n== Release 2: podinfo 6.0.2, a bad version (half of its requests fail)")
        bad = json.loads(json.dumps(DEPLOYMENT))
        bad["spec"]["replicas"] = 0
        bad["spec"]["template"]["metadata"]["annotations"]["simulator.serin.dev/error-rate"] = "0.5"
        bad["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/stefanprodan/podinfo:6.0.2"
        self.apply(bad)
        outcome = self.run_until({"Succeeded", "Failed"})
        print(f"   -> {outcome}: podinfo-primary still runs {self.primary_image()}")
        print("\n" + self.kubectl("get", "canary", "-n", NAMESPACE))
        if self.load is not None:
            self.load.stop()

    def primary_image(self) -> str:
        primary = json.loads(self.kubectl("get", "deployment", "podinfo-primary", "-n", NAMESPACE, "-o", "json"))
        return str(primary["spec"]["template"]["spec"]["containers"][0]["image"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=REPO_ROOT / ".localcluster-demo")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--traefik", action="store_true", help="release through the real Traefik, with real requests")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.state.resolve())
    print("== Building what is missing and starting the local cluster, Prometheus, the simulator and Serin")
    cluster.down()
    try:
        cluster.up(with_serin=True)
        Demo(cluster, traefik=args.traefik).main()
    finally:
        if args.keep:
            print("\n".join(["\nStill running; to use it:", *cluster.env_lines()]))
        else:
            cluster.down()
            print("\n== Torn down: no process left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
