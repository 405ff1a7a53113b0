"""Memory of one Serin replica, master and workers together, idle and during a tick of N Canaries.

A replica is gunicorn with Serin's app, as the image runs it, with a service account as in a Pod
(``benchmarks/pod.py``; a kubeconfig where the machine cannot give a process mounts of its own).
Several ways to run it are compared, each started afresh against the same cluster of N
initialized Canaries:

* ``2 workers x 4 threads`` (the baseline: the image's default before it had one worker);
* the same with ``--preload`` (the app imported once, in the master, and shared copy-on-write);
* ``1 worker x 8 threads`` (the image's default), with and without ``--preload``;
* ``1 worker x 8 threads`` with a kubeconfig instead of a service account (out of a cluster, as
  ``make up`` runs it), which loads and imports the kubeconfig loader too.

For each: RSS and PSS (proportional set size: a page shared by k processes counts 1/k in each, so
the sum over processes is what the replica really costs the node) of all its processes, summed,
idle after start and at the peak of a forced ``POST /tick`` over all N Canaries (sampled every
100 ms), and the tick's wall time. Also the memory that importing each runtime dependency adds
to a bare interpreter, the cost lazy imports could save.

Usage: ``python -m benchmarks.memory [--canaries 1000]`` (starts its own cluster unless
SERIN_KUBECONFIG points at a running one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from benchmarks import pod
from benchmarks.clusters import benchmark_cluster, install_serin_crds
from benchmarks.scale import Cluster, chunks, manifests, settle
from localcluster import processes
from localcluster.cluster import LocalCluster
from localcluster.paths import REPO_ROOT

# (name, gunicorn's options, whether with a service account as in a Pod)
CONFIGURATIONS = [
    ("2 workers x 4 threads", ["--workers", "2", "--threads", "4"], True),
    ("2 workers x 4 threads, --preload", ["--workers", "2", "--threads", "4", "--preload"], True),
    ("1 worker x 8 threads", ["--workers", "1", "--threads", "8"], True),
    ("1 worker x 8 threads, --preload", ["--workers", "1", "--threads", "8", "--preload"], True),
    ("1 worker x 8 threads, a kubeconfig", ["--workers", "1", "--threads", "8"], False),
]
# The kubernetes package as it imports itself, and the parts of it the server imports.
IMPORTS = ["flask", "kubernetes.client", "serin.kube.client", "requests", "prometheus_client", "wsgi"]
START_TIMEOUT = 60.0
TICK_TIMEOUT = 600.0


def memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process, in kB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def family(pid: int) -> list[int]:
    """The master and its workers."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def replica_memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of the whole replica, in MB."""
    rss = pss = 0
    for member in family(pid):
        try:
            member_rss, member_pss = memory_kb(member)
        except FileNotFoundError:
            continue
        rss, pss = rss + member_rss, pss + member_pss
    return rss / 1024, pss / 1024


@dataclass
class Measured:
    name: str
    processes: int
    idle_rss: float
    idle_pss: float
    peak_rss: float
    peak_pss: float
    tick_seconds: float


@dataclass(frozen=True)
class ServiceAccount:
    """What a Pod of Serin's would have: its service account's token, the cluster's CA, the API server."""

    token: Path
    ca: Path
    api_server: str


def measure(
    name: str, options: list[str], kubeconfig: str, token: str, namespace: str, account: ServiceAccount | None
) -> Measured:
    port = processes.free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--worker-class", "serin.worker.GuardedThreadWorker", *options,
        "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--timeout", str(int(TICK_TIMEOUT)), "wsgi:app",
    ]  # fmt: skip
    env = {
        **processes.child_environment(),
        "KUBECONFIG": kubeconfig,
        "SERIN_METRICS_SERVER": "http://127.0.0.1:9",
        # Plain HTTP on loopback: no API server's certificate to check (nor any review sent).
        "SERIN_ADMISSION_AUTHENTICATION": "none",
    }
    if account is not None:
        command = pod.command(command, account.token, account.ca)
        env = pod.environment(env, account.api_server)
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass  # not listening yet, or still loading the app
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the server did not start in {START_TIMEOUT:.0f}s")
            time.sleep(0.2)
        # Every worker has served a request and settled.
        for _ in range(8):
            requests.get(f"{url}/healthz", timeout=5)
        time.sleep(1)
        idle_rss, idle_pss = replica_memory(server.pid)
        members = len(family(server.pid))
        peak = [idle_rss, idle_pss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                rss, pss = replica_memory(server.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        try:
            answer = requests.post(
                f"{url}/tick",
                params={"namespace": namespace, "force": "true"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=TICK_TIMEOUT,
            )
        finally:
            done.set()
            sampler.join()
        elapsed = time.perf_counter() - started
        if not answer.ok:
            raise SystemExit(f"{name}: tick answered {answer.status_code}: {answer.text[:300]}")
        errors = [canary for canary in answer.json()["canaries"] if canary.get("error")]
        if errors:
            raise SystemExit(f"{name}: {len(errors)} steps failed, e.g. {errors[0]}")
        return Measured(name, members, idle_rss, idle_pss, peak[0], peak[1], elapsed)
    finally:
        processes.stop(server.pid)


def import_costs(kubeconfig: str) -> list[tuple[str, float]]:
    """MB of RSS each import adds to a bare interpreter (in a fresh process each)."""
    # What the app reads at start; no review is sent.
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "PYTHONPATH": str(REPO_ROOT),
        "SERIN_ADMISSION_AUTHENTICATION": "none",
    }
    # VmRSS, not ru_maxrss: Linux keeps the forking parent's peak in a child's ru_maxrss across exec.
    probe = "import {0}; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    bare = int(subprocess.run([sys.executable, "-c", probe.format("sys")], env=env, capture_output=True, text=True,
                              check=True, cwd=REPO_ROOT).stdout)  # fmt: skip
    costs = [("python (the baseline)", bare / 1024)]
    for module in IMPORTS:
        after = subprocess.run(
            [sys.executable, "-c", probe.format(module)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        costs.append((f"import {module}", (int(after.stdout) - bare) / 1024))
    return costs


def ticker_token(cluster: Cluster, audience: str = "serin") -> str:
    """A token allowed to tick every namespace (``audience`` empty: the API server's, which Serin's
    own service account has)."""
    account = f"bench-ticker-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "serviceaccount", account, "-n", "default")
    cluster.run(
        "create", "clusterrolebinding", account, "--clusterrole=cluster-admin", f"--serviceaccount=default:{account}"
    )  # fmt: skip
    flags = [f"--audience={audience}"] if audience else []
    return cluster.run("create", "token", account, "-n", "default", "--duration=1h", *flags).strip()


def service_account(local: LocalCluster, cluster: Cluster, directory: Path) -> ServiceAccount | None:
    """Serin's identity as in a Pod, or None where this machine cannot run a process as in one."""
    if not pod.available():
        print("memory: no mount namespace for a process here: every row runs with a kubeconfig", file=sys.stderr)
        return None
    token = directory / "token"
    token.write_text(ticker_token(cluster, audience=""))
    server = yaml.safe_load(local.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return ServiceAccount(token, local.pki.ca_cert, str(server))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=1000, help="Canaries in the tick (at most 3000)")
    args = parser.parse_args()
    canaries = max(1, min(args.canaries, 3000))
    with benchmark_cluster() as local:
        cluster = Cluster(local)
        install_serin_crds(local)
        namespace = f"memory-{uuid.uuid4().hex[:6]}"
        cluster.run("create", "namespace", namespace)
        try:
            items = [item for index in range(canaries) for item in manifests(namespace, index)]
            for part in chunks(items, 400):
                document = json.dumps({"apiVersion": "v1", "kind": "List", "items": part})
                cluster.run("create", "-f", "-", document=document)
            settle(cluster, namespace, canaries, 8, {"Initialized", "Succeeded"})
            token = ticker_token(cluster)
            account = service_account(local, cluster, Path(tempfile.mkdtemp(prefix="serin-memory-")))
            rows = [
                measure(name, options, cluster.kubeconfig, token, namespace, account if in_pod else None)
                for name, options, in_pod in CONFIGURATIONS
            ]
        finally:
            cluster.run("delete", "namespace", namespace, "--wait=false")
        report(rows, canaries)
        print("\nmemory an import adds to a bare interpreter (RSS, MB)")
        for name, megabytes in import_costs(cluster.kubeconfig):
            print(f"{name:<36} {megabytes:8.1f}")
    return 0


def report(rows: list[Measured], canaries: int) -> None:
    baseline = rows[0]
    print(
        f"\none replica (master + workers), idle and during a forced tick of {canaries} Canaries (baseline: first row)"
    )
    print(f"{'configuration':<36} {'procs':>5} {'RSS idle':>9} {'PSS idle':>9} {'RSS peak':>9} {'PSS peak':>9} "
          f"{'PSS vs base':>11} {'tick s':>7}")  # fmt: skip
    for row in rows:
        print(
            f"{row.name:<36} {row.processes:5} {row.idle_rss:8.1f}M {row.idle_pss:8.1f}M {row.peak_rss:8.0f}M "
            f"{row.peak_pss:8.0f}M {row.peak_pss / baseline.peak_pss:10.2f}x {row.tick_seconds:7.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
