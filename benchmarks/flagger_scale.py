"""Flagger v1.36.1 at N Canaries: API requests per idle Canary, memory, and time to initialize them.

The figures to set beside Serin's. For each N, in a fresh namespace and with a fresh Flagger process,
on the local control plane: N Deployments (1 replica; kwok's fake nodes run the pods) and N
``flagger.app/v1beta1`` Canaries with no metrics and ``analysis.iterations`` (blue/green), run by
Flagger out of cluster with ``-mesh-provider=kubernetes`` (plain Services: no mesh CRDs, no
Prometheus needed) as a service account bound to cluster-admin. Measures, per N:

* **init**: seconds from creating the Canaries (Flagger running, Deployments ready) until every
  one is Initialized; this includes the control plane's own work on the N primary Deployments;
* **idle**, over ``--intervals`` analysis intervals once every Canary is Initialized (one interval
  later, so that the last ones have settled): Flagger's API requests per Canary per interval and per
  Canary-hour, its whole request rate, its CPU, and its RSS (``VmRSS`` sampled twice a second: the
  median over the idle window, and the maximum since it started, initialization included); requests
  refused with 429 by Priority and Fairness are shown as ``rejected``;
* **release** (unless ``--release-share 0``): the image of 10% of the Deployments changed at once;
  the seconds (and analysis intervals) until every released Canary is Succeeded again, and the
  requests per released Canary above what the N Canaries cost when idle, counted over whole
  intervals from the change (at most 20 intervals; a release not finished by then is shown with its
  Canaries' phases instead).

When Flagger's client limits are the bottleneck (about 110 requests/s in all), its per-Canary jobs
run less often than every interval, and the idle requests per Canary per interval fall below the
9 GETs that one idle job run costs.

Requests are counted by API Priority and Fairness FlowSchemas matching Flagger's service account,
one per verb (``benchmarks.apicount``), from the API server's
``apiserver_flowcontrol_dispatched_requests_total``. Flagger is started with its default client
limits (``-kubeconfig-qps=100 -kubeconfig-burst=250`` per client set) unless ``--flagger-qps`` is given.

Usage: ``python -m benchmarks.flagger_scale [--sizes 100,1000] [--interval 30s] [--intervals 3]
[--release-share 0.1] [--max-minutes 120]`` (starts its own cluster unless SERIN_KUBECONFIG points at
a running one).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks import apicount
from benchmarks.clusters import benchmark_cluster, deployment
from localcluster import processes
from localcluster.build import FLAGGER_VERSION, build_flagger, ensure_binaries
from localcluster.cluster import LocalCluster
from localcluster.processes import ClusterState

MAX_CANARIES = 3000
CHUNK = 250  # objects per kubectl call
DEPLOYMENTS_TIMEOUT_SECONDS = 120.0  # plus one second per Deployment
INIT_TIMEOUT_SECONDS = 300.0  # plus one second per Canary
RELEASE_TIMEOUT_INTERVALS = 20
FLAGGER_START_TIMEOUT_SECONDS = 60.0
NAMESPACE_DELETE_TIMEOUT_SECONDS = 600
RSS_SAMPLE_SECONDS = 0.5
INITIALIZED = ("Initialized", "Succeeded")
RELEASE_LABEL = "bench.serin.dev/release"


class BenchmarkError(RuntimeError):
    """A step did not finish in its time; the message says which and where to look."""


class Deadline:
    """The whole run's time limit: every wait takes at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def bound(self, seconds: float) -> float:
        return max(0.0, min(seconds, self.end - time.monotonic()))


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.base = [str(binary), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, input_text: str | None = None, timeout: float = 180) -> str:
        try:
            done = subprocess.run(
                [*self.base, *args],
                input=input_text,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=processes.child_environment(),
            )
        except subprocess.TimeoutExpired as error:
            raise BenchmarkError(f"kubectl {' '.join(args)}: no answer in {timeout:.0f}s") from error
        if done.returncode != 0:
            raise BenchmarkError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def create(self, objects: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(objects), CHUNK):
            items = list(objects[start : start + CHUNK])
            self("create", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def column(self, resource: str, namespace: str, jsonpath: str) -> list[str]:
        """One line per object: ``jsonpath`` applied to each item."""
        template = f"{{range .items[*]}}{jsonpath}{{'\\n'}}{{end}}"
        return self("get", resource, "-n", namespace, "-o", f"jsonpath={template}").splitlines()


# ---- objects ---------------------------------------------------------------------------------


def app_deployment(namespace: str, index: int, released: bool) -> dict[str, Any]:
    labels = {RELEASE_LABEL: "yes" if released else "no"}
    return deployment(namespace, f"app-{index}", "registry.invalid/app:1", labels)


def canary(namespace: str, index: int, interval: str) -> dict[str, Any]:
    name = f"app-{index}"
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 80},
            # No metrics: nothing to ask Prometheus; the kubernetes provider runs blue/green iterations.
            "analysis": {"interval": interval, "threshold": 2, "iterations": 2},
        },
    }


def released_indices(size: int, share: float) -> set[int]:
    """``share`` of ``range(size)``, spread evenly (none for a share of 0)."""
    count = min(size, math.ceil(size * share)) if share > 0 else 0
    return {index * size // count for index in range(count)} if count else set()


# ---- Flagger -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    namespace: str
    account: str
    binding: str


def flagger_identity(kubectl: Kubectl, cluster: LocalCluster, identity: Identity, workdir: Path) -> Path:
    """A service account bound to cluster-admin and a kubeconfig with its token; returns the kubeconfig."""
    kubectl("create", "namespace", identity.namespace)
    kubectl("create", "serviceaccount", identity.account, "-n", identity.namespace)
    kubectl(
        "create",
        "clusterrolebinding",
        identity.binding,
        "--clusterrole=cluster-admin",
        f"--serviceaccount={identity.namespace}:{identity.account}",
    )
    token = kubectl(
        "create", "token", identity.account, "-n", identity.namespace, "--duration=24h", "--audience=serin"
    ).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    if "certificate-authority-data" not in server:
        server = dict(server)
        server["certificate-authority-data"] = base64.b64encode(
            Path(server.pop("certificate-authority")).read_bytes()
        ).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": identity.account, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": identity.account}}],
        "current-context": "local",
    }
    path = workdir / "flagger.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class Flagger:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_flagger(binary: Path, kubeconfig: Path, workdir: Path, qps: int | None, deadline: Deadline) -> Flagger:
    """Flagger out of cluster; returns once its HTTP server answers.

    Its HTTP server (/healthz, /metrics) listens on ``:port``, every interface: Flagger has no flag for
    the address. The metrics server is a loopback port nobody listens on (no Canary has metrics).
    """
    port = processes.free_port()
    command = [
        str(binary),
        f"-kubeconfig={kubeconfig}",
        "-mesh-provider=kubernetes",
        f"-metrics-server=http://127.0.0.1:{processes.free_port()}",
        "-enable-leader-election=false",
        f"-port={port}",
        "-log-level=error",
    ]
    if qps:
        command += [f"-kubeconfig-qps={qps}", f"-kubeconfig-burst={max(qps, int(qps * 2.5))}"]
    # Its own state folder: the cluster's state.json (perhaps somebody else's cluster) is left alone.
    process = processes.start("flagger", command, workdir, ClusterState())
    flagger = Flagger(process, port, workdir / "logs" / "flagger.log")
    end = time.monotonic() + deadline.bound(FLAGGER_START_TIMEOUT_SECONDS)
    while time.monotonic() < end and flagger.alive():
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return flagger
        time.sleep(0.2)
    stop_flagger(flagger)
    raise BenchmarkError(f"Flagger did not start (see {flagger.log}):\n{flagger.log_tail()}")


def stop_flagger(flagger: Flagger) -> None:
    if flagger.alive():
        processes.stop(flagger.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        flagger.process.wait(timeout=1)


class Sampler:
    """VmRSS (kB) and CPU time (s) of one process, sampled in the background."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []  # (monotonic time, RSS kB, CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._ticks = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> tuple[float, int, float] | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            return None
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if not match:
            return None
        cpu = (int(stat[11]) + int(stat[12])) / self._ticks  # utime + stime
        return time.monotonic(), int(match.group(1)), cpu

    def _loop(self) -> None:
        while not self._stop.is_set():
            taken = self.sample()
            if taken:
                self.samples.append(taken)
            self._stop.wait(RSS_SAMPLE_SECONDS)

    def rss_mb(self, start: float = 0.0, end: float = math.inf) -> list[float]:
        return [rss / 1024 for at, rss, _ in self.samples if start <= at <= end]


# ---- one size ------------------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    init_seconds: float
    idle: apicount.Counts
    idle_seconds: float
    interval: float
    cpu_percent: float
    rss_idle_mb: float
    rss_max_mb: float
    released: int = 0
    release_seconds: float = math.nan
    release_extra: apicount.Counts = field(default_factory=apicount.Counts)
    release_failed: int = 0
    release_pending: str = ""  # the released Canaries' phases when the release did not finish in time

    @property
    def intervals(self) -> float:
        return self.idle_seconds / self.interval

    def per_canary_interval(self, value: float) -> float:
        return value / self.size / self.intervals


def wait_until(what: str, check: Callable[[], tuple[bool, str]], seconds: float, poll: float, hint: str) -> float:
    """Poll ``check()`` (True when done) for at most ``seconds``; return the seconds it took."""
    started = time.monotonic()
    last = ""
    while True:
        done, last = check()
        if done:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise BenchmarkError(f"{what}: not done after {seconds:.0f}s ({last}){hint}")
        time.sleep(poll)


def measure(
    kubectl: Kubectl,
    size: int,
    namespace: str,
    args: argparse.Namespace,
    binary: Path,
    kubeconfig: Path,
    schemas: apicount.FlowSchemaSet,
    workdir: Path,
    deadline: Deadline,
) -> Row:
    interval = parse_interval(args.interval)
    release = released_indices(size, args.release_share)
    kubectl("create", "namespace", namespace)
    kubectl.create([app_deployment(namespace, index, index in release) for index in range(size)])

    def deployments_ready() -> tuple[bool, str]:
        available = Counter(kubectl.column("deployments", namespace, "{.status.availableReplicas}"))
        return available["1"] >= size, f"{available['1']}/{size} available"

    log(f"{size}: waiting for {size} Deployments")
    wait_until(f"{size} Deployments", deployments_ready, deadline.bound(DEPLOYMENTS_TIMEOUT_SECONDS + size), 2, "")
    flagger = start_flagger(binary, kubeconfig, workdir / f"n{size}", args.flagger_qps, deadline)
    hint = f"; see {flagger.log}"
    try:
        with Sampler(flagger.pid) as sampler:
            log(f"{size}: Flagger pid {flagger.pid} up; creating {size} Canaries")
            started = time.monotonic()
            kubectl.create([canary(namespace, index, args.interval) for index in range(size)])

            def initialized() -> tuple[bool, str]:
                if not flagger.alive():
                    raise BenchmarkError(f"Flagger exited{hint}:\n{flagger.log_tail()}")
                phases = Counter(kubectl.column("canaries.flagger.app", namespace, "{.status.phase}"))
                done = sum(phases[phase] for phase in INITIALIZED)
                return done >= size, ", ".join(f"{phase or 'no phase'}: {n}" for phase, n in sorted(phases.items()))

            bound = deadline.bound(INIT_TIMEOUT_SECONDS + size)
            wait_until(f"{size} Canaries Initialized", initialized, bound, 2, hint)
            init_seconds = time.monotonic() - started
            log(f"{size}: all Initialized in {init_seconds:.0f}s; idle for {1 + args.intervals} intervals")

            needed = interval * (1 + args.intervals) + 60
            if deadline.bound(needed) < needed:
                raise BenchmarkError("not enough of --max-minutes left to measure the idle Canaries")
            time.sleep(interval)
            before, idle_from = apicount.read_counts(kubectl.base, schemas), time.monotonic()
            first = sampler.sample()
            time.sleep(interval * args.intervals)
            idle, idle_to = apicount.read_counts(kubectl.base, schemas) - before, time.monotonic()
            last = sampler.sample()
            if not (first and last and flagger.alive()):
                raise BenchmarkError(f"Flagger exited while idle{hint}:\n{flagger.log_tail()}")
            row = Row(
                size=size,
                init_seconds=init_seconds,
                idle=idle,
                idle_seconds=idle_to - idle_from,
                interval=interval,
                cpu_percent=(last[2] - first[2]) / (last[0] - first[0]) * 100,
                rss_idle_mb=statistics.median(sampler.rss_mb(idle_from, idle_to) or [last[1] / 1024]),
                rss_max_mb=max(sampler.rss_mb()),
            )
            if release:
                release_step(kubectl, row, namespace, release, schemas, flagger, deadline)
            row.rss_max_mb = max(sampler.rss_mb())
            return row
    finally:
        stop_flagger(flagger)


def release_step(
    kubectl: Kubectl,
    row: Row,
    namespace: str,
    release: set[int],
    schemas: apicount.FlowSchemaSet,
    flagger: Flagger,
    deadline: Deadline,
) -> None:
    """A new image for the released Deployments at once; requests above idle until they are Succeeded."""
    names = {f"app-{index}" for index in release}
    bound = deadline.bound(RELEASE_TIMEOUT_INTERVALS * row.interval)
    if bound < 3 * row.interval:
        log(f"{row.size}: skipping the release: not enough of --max-minutes left")
        return
    log(f"{row.size}: new image for {len(names)} Deployments")
    before, started = apicount.read_counts(kubectl.base, schemas), time.monotonic()
    kubectl("set", "image", "deployments", "-n", namespace, "-l", f"{RELEASE_LABEL}=yes", "app=registry.invalid/app:2")
    seen_progress: set[str] = set()
    failed: set[str] = set()
    phases_now: list[str] = []

    def finished() -> tuple[bool, str]:
        if not flagger.alive():
            raise BenchmarkError(f"Flagger exited; see {flagger.log}:\n{flagger.log_tail()}")
        lines = kubectl.column("canaries.flagger.app", namespace, "{.metadata.name}={.status.phase}")
        phases = dict(line.split("=", 1) for line in lines if "=" in line)
        mine = {name: phases.get(name, "") for name in names}
        seen_progress.update(name for name, phase in mine.items() if phase not in INITIALIZED)
        failed.update(name for name, phase in mine.items() if phase == "Failed")
        done = [name for name, phase in mine.items() if name in seen_progress and phase in ("Succeeded", "Failed")]
        phases_now[:] = [f"{phase}: {n}" for phase, n in sorted(Counter(mine.values()).items())]
        return len(done) == len(names), ", ".join(phases_now)

    row.released = len(names)
    try:
        row.release_seconds = wait_until(
            f"release of {len(names)} Canaries", finished, bound, 1, f"; see {flagger.log}"
        )
    except BenchmarkError as error:
        log(f"{row.size}: {error}")
        row.release_seconds, row.release_pending = time.monotonic() - started, ", ".join(phases_now) or "?"
        return
    row.release_failed = len(failed)
    # Count over whole intervals, so that every idle Canary's job ran as often as in the idle window.
    whole = math.ceil((time.monotonic() - started) / row.interval) * row.interval
    time.sleep(deadline.bound(max(0.0, started + whole - time.monotonic())))
    spent, seconds = apicount.read_counts(kubectl.base, schemas) - before, time.monotonic() - started
    # What the N Canaries cost when idle over the same time, per verb, is not Flagger's cost of the release.
    idle_share = seconds / row.idle_seconds
    extra = {
        verb: spent.by_verb.get(verb, 0.0) - row.idle.by_verb.get(verb, 0.0) * idle_share for verb in spent.by_verb
    }
    row.release_extra = apicount.Counts(extra, spent.rejected)


# ---- main ----------------------------------------------------------------------------------------


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"interval {text!r}: want seconds or minutes, like 30s or 1m")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def log(message: str) -> None:
    print(f"[flagger_scale] {message}", file=sys.stderr, flush=True)


def delete_namespace(kubectl: Kubectl, namespace: str, wait: bool) -> None:
    try:
        if wait:
            timeout = f"--timeout={NAMESPACE_DELETE_TIMEOUT_SECONDS}s"
            kubectl(
                "delete",
                "namespace",
                namespace,
                "--ignore-not-found",
                timeout,
                timeout=NAMESPACE_DELETE_TIMEOUT_SECONDS + 30,
            )
        else:
            kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
    except BenchmarkError as error:
        log(f"could not delete namespace {namespace}: {error}")


def run(cluster: LocalCluster, sizes: list[int], args: argparse.Namespace, deadline: Deadline) -> list[Row]:
    binaries = ensure_binaries()
    binary = build_flagger()
    kubectl = Kubectl(binaries.kubectl, cluster.kubeconfig)
    suffix = uuid.uuid4().hex[:5]
    identity = Identity(f"bench-flagger-{suffix}", "flagger", f"bench-flagger-{suffix}")
    schemas = apicount.FlowSchemaSet(f"bench-flagger-{suffix}", apicount.service_account(identity.namespace, "flagger"))
    workdir = Path(tempfile.mkdtemp(prefix="serin-bench-flagger-"))
    reused = bool(os.environ.get("SERIN_KUBECONFIG"))
    namespaces: list[str] = []
    rows: list[Row] = []
    log(f"Flagger logs under {workdir}")
    try:
        kubectl("apply", "--server-side", "-f", str(binary.parent / "crd.yaml"))
        kubectl("wait", "--for=condition=Established", "crd/canaries.flagger.app", "--timeout=60s")
        kubeconfig = flagger_identity(kubectl, cluster, identity, workdir)
        apicount.create_flow_schemas(kubectl.base, schemas)
        for size in sizes:
            if namespaces:
                delete_namespace(kubectl, namespaces[-1], wait=True)
            namespaces.append(f"bench-flagger-{suffix}-n{size}")
            try:
                rows.append(
                    measure(kubectl, size, namespaces[-1], args, binary, kubeconfig, schemas, workdir, deadline)
                )
            except BenchmarkError as error:
                log(f"{size} Canaries: {error}")
                break
    finally:
        if reused:
            apicount.delete_flow_schemas(kubectl.base, schemas)
            for namespace in [*namespaces, identity.namespace]:
                delete_namespace(kubectl, namespace, wait=False)
            with contextlib.suppress(BenchmarkError):
                kubectl("delete", "clusterrolebinding", identity.binding, "--ignore-not-found")
    return rows


def print_tables(rows: list[Row], args: argparse.Namespace) -> None:
    if not rows:
        return
    limits = (
        f"-kubeconfig-qps={args.flagger_qps}" if args.flagger_qps else "Flagger's client limits (qps 100, burst 250)"
    )
    print(
        f"\nFlagger {FLAGGER_VERSION} (-mesh-provider=kubernetes, no metrics), analysis interval {args.interval}, "
        f"idle Canaries over {args.intervals} intervals, {limits}"
    )
    print(
        f"{'canaries':>9} {'init s':>7} {'req/canary/interval':>20} {'req/canary/hour':>16} {'req/s':>7} "
        f"{'cpu %':>6} {'RSS idle MB':>12} {'RSS max MB':>11} {'rejected':>9}"
    )
    for row in rows:
        per_interval = row.per_canary_interval(row.idle.total)
        per_hour = row.idle.total / row.size / row.idle_seconds * 3600
        print(
            f"{row.size:9} {row.init_seconds:7.0f} {per_interval:20.2f} {per_hour:16.0f} "
            f"{row.idle.total / row.idle_seconds:7.1f} {row.cpu_percent:6.1f} {row.rss_idle_mb:12.1f} "
            f"{row.rss_max_mb:11.1f} {row.idle.rejected:9.0f}"
        )
    verbs = [*apicount.VERBS, apicount.OTHER]
    print("\nidle requests per Canary per interval, by verb")
    print(f"{'canaries':>9} " + " ".join(f"{verb:>7}" for verb in verbs))
    for row in rows:
        values = " ".join(f"{row.per_canary_interval(row.idle.by_verb.get(verb, 0.0)):7.2f}" for verb in verbs)
        print(f"{row.size:9} {values}")
    released = [row for row in rows if row.released]
    if not released:
        return
    print(
        f"\nrelease: a new image for {args.release_share:.0%} of the Deployments at once, until Succeeded "
        "(requests above the idle rate, per released Canary)"
    )
    print(
        f"{'canaries':>9} {'released':>9} {'seconds':>8} {'intervals':>10} {'failed':>7} {'requests':>9} "
        + " ".join(f"{verb:>7}" for verb in verbs)
    )
    for row in released:
        head = f"{row.size:9} {row.released:9} {row.release_seconds:8.0f} {row.release_seconds / row.interval:10.1f}"
        if row.release_pending:
            print(f"{head} {'-':>7} {'-':>9}  not all Succeeded in time: {row.release_pending}")
            continue
        per = {verb: row.release_extra.by_verb.get(verb, 0.0) / row.released for verb in verbs}
        print(
            f"{head} {row.release_failed:7} {sum(per.values()):9.1f} " + " ".join(f"{per[verb]:7.1f}" for verb in verbs)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help=f"numbers of Canaries (at most {MAX_CANARIES} each)")
    parser.add_argument("--interval", default="30s", help="the Canaries' analysis interval (5s to 10m)")
    parser.add_argument("--intervals", type=int, default=3, help="analysis intervals to measure idle (1 to 20)")
    parser.add_argument(
        "--release-share", type=float, default=0.1, help="share of the Deployments given a new image (0: none)"
    )
    parser.add_argument("--flagger-qps", type=int, default=None, help="Flagger's -kubeconfig-qps (default: its own)")
    parser.add_argument("--max-minutes", type=float, default=120, help="bound on the whole run")
    args = parser.parse_args()
    sizes = sorted({max(1, min(int(size), MAX_CANARIES)) for size in args.sizes.split(",")})
    if not 5 <= parse_interval(args.interval) <= 600:
        parser.error("--interval must be between 5s and 10m")
    args.intervals = max(1, min(args.intervals, 20))
    args.release_share = max(0.0, min(args.release_share, 1.0))
    deadline = Deadline(args.max_minutes * 60)
    with benchmark_cluster() as cluster:
        rows = run(cluster, sizes, args, deadline)
    print_tables(rows, args)
    return 0 if len(rows) == len(sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
