"""``python -m localcluster.simulator``: watch the cluster, simulate, export, until stopped."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prometheus_client import start_http_server

from localcluster.backends import DATA_PLANE_LABEL
from localcluster.simulator import contour, gatewayapi, istio, linkerd, nginx, traefik
from localcluster.simulator.export import Metrics
from localcluster.simulator.traffic import Clients, simulate_tick
from localcluster.simulator.watching import WatchedKind

LOG = logging.getLogger("localcluster.simulator")

API_TIMEOUT_SECONDS = 10.0
# The routing objects the simulated data planes follow: (group, version, plural, kind).
ROUTING_APIS = (
    (istio.GROUP, istio.VERSION, istio.PLURAL, istio.KIND),
    (gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.PLURAL, gatewayapi.KIND),
    (nginx.GROUP, nginx.VERSION, nginx.PLURAL, nginx.KIND),
    (contour.GROUP, contour.VERSION, contour.PLURAL, contour.KIND),
    (traefik.GROUP, traefik.VERSION, traefik.PLURAL, traefik.KIND),
    (linkerd.GROUP, linkerd.VERSION, linkerd.PLURAL, linkerd.KIND),
)


class ClusterReader:
    """The kinds the data planes need, each kept current by a watch (one per kind and namespace)."""

    def __init__(self, kubeconfig: str, namespaces: Sequence[str], refresh: float = 1.0) -> None:
        from kubernetes import client, config

        self._client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._namespaces = list(namespaces)
        self._refresh = refresh
        self._stop = threading.Event()
        core, apps = client.CoreV1Api(self._client), client.AppsV1Api(self._client)
        custom = client.CustomObjectsApi(self._client)
        self._routing = [
            watched
            for group, version, plural, kind in ROUTING_APIS
            for watched in self._watch(
                kind, custom.list_cluster_custom_object, custom.list_namespaced_custom_object, group, version, plural
            )
        ]
        self._services = self._watch("Service", core.list_service_for_all_namespaces, core.list_namespaced_service)
        # Deployments, DaemonSets and StatefulSets: whatever runs the pods a Service selects.
        self._workloads = [
            *self._watch("Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment),
            *self._watch("DaemonSet", apps.list_daemon_set_for_all_namespaces, apps.list_namespaced_daemon_set),
            *self._watch("StatefulSet", apps.list_stateful_set_for_all_namespaces, apps.list_namespaced_stateful_set),
        ]
        # Namespaces whose traffic a real proxy carries (localcluster.dataplane) are left to it.
        self._namespaces_watch = (
            []
            if self._namespaces
            else [WatchedKind(core.list_namespace, (), "Namespace", self._stop, refresh, describe_error)]
        )
        self._every = [*self._routing, *self._services, *self._workloads, *self._namespaces_watch]
        for watched in self._every:
            watched.start()

    def _watch(self, kind: str, cluster_wide: Any, namespaced: Any, *args: str) -> list[WatchedKind]:
        def watched(call: Any, arguments: tuple[str, ...]) -> WatchedKind:
            return WatchedKind(call, arguments, kind, self._stop, self._refresh, describe_error)

        if not self._namespaces:
            return [watched(cluster_wide, args)]
        # Namespaced list calls take the namespace after the group and version, if any.
        return [watched(namespaced, (*args[:2], namespace, *args[2:])) for namespace in self._namespaces]

    def wait_synced(self, timeout: float) -> bool:
        """Until every kind was listed once (False if the API server did not answer in time)."""
        deadline = time.monotonic() + timeout
        return all(watched.synced.wait(max(0.0, deadline - time.monotonic())) for watched in self._every)

    @property
    def synced(self) -> bool:
        return all(watched.synced.is_set() for watched in self._every)

    def failure(self) -> str | None:
        """Why some kind could not be listed or watched just now; None when all are current."""
        return next((watched.failure for watched in self._every if watched.failure), None)

    def _real_data_plane_namespaces(self) -> set[str]:
        return {
            str(namespace.get("metadata", {}).get("name"))
            for namespace in self._objects(self._namespaces_watch, set())
            if DATA_PLANE_LABEL in (namespace.get("metadata", {}).get("labels") or {})
        }

    def _objects(self, watched: Sequence[WatchedKind], skipped: set[str] | None = None) -> list[Mapping[str, Any]]:
        skipped = self._real_data_plane_namespaces() if skipped is None else skipped
        return [
            item
            for one in watched
            for item in one.objects()
            if not skipped or item.get("metadata", {}).get("namespace") not in skipped
        ]

    def routing(self) -> list[Mapping[str, Any]]:
        """Every routing object, each with its ``kind``; an API the cluster does not serve has none."""
        return self._objects(self._routing)

    def services(self) -> list[Mapping[str, Any]]:
        return self._objects(self._services)

    def workloads(self) -> list[Mapping[str, Any]]:
        return self._objects(self._workloads)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def describe_error(err: BaseException) -> str:
    """One line, because the same failure repeats every refresh until it is fixed."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    if isinstance(status, int) and status:
        return f"{type(err).__name__}: HTTP {status} {reason or ''}".rstrip()
    if isinstance(reason, BaseException):
        # urllib3 wraps the useful part (e.g. connection refused) in a MaxRetryError.
        return describe_error(reason)
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[-1] if text else ''}"
    return line if len(line) <= 200 else line[:197] + "..."


@dataclass
class RunOptions:
    rps: float = 20.0
    refresh: float = 1.0
    match_share: float = 0.3
    max_duration: float = 3600.0
    max_requests: int = 10_000_000
    seed: int | None = None


def run(reader: ClusterReader, metrics: Metrics, options: RunOptions, stop: threading.Event) -> int:
    """Read, simulate and record until stopped, out of time, or (for traffic) out of budget."""
    rng = random.Random(options.seed)
    clients = Clients()
    started = last = time.monotonic()
    carry = 0.0
    sent = 0
    snapshot: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]] | None = None
    last_error: str | None = None
    logged_warnings: set[str] = set()
    while not stop.is_set():
        now = time.monotonic()
        if now - started >= options.max_duration:
            LOG.info("max duration of %.0fs reached; exiting", options.max_duration)
            break
        # Like Envoy when istiod is away, the watches keep the last configuration they read.
        # Before any configuration arrived there is no traffic to catch up on.
        if reader.synced:
            snapshot = (reader.routing(), reader.services(), reader.workloads())
        message = reader.failure()
        if message != last_error:
            if message is None:
                LOG.info("API reachable again")
            else:
                LOG.warning("watching the API failed (%s); retrying every %.1fs", message, options.refresh)
            last_error = message
        elapsed = now - last if snapshot is not None else 0.0
        carry = carry + options.rps * elapsed
        last = now
        requests_per_table = int(carry)
        carry -= requests_per_table
        if snapshot is not None and elapsed > 0 and sent < options.max_requests:
            try:
                result = simulate_tick(
                    *snapshot,
                    requests_per_table,
                    rng,
                    options.match_share,
                    budget=options.max_requests - sent,
                    seconds=elapsed,
                    clients=clients,
                )
            except Exception:  # one odd object must not end the simulation
                LOG.exception("simulation tick failed")
            else:
                metrics.record(result)
                sent += result.total
                for warning in result.warnings:
                    if warning not in logged_warnings:
                        logged_warnings.add(warning)
                        LOG.warning("%s", warning)
                if sent >= options.max_requests:
                    LOG.info("max requests (%d) sent; serving metrics until stopped", options.max_requests)
        stop.wait(max(0.0, options.refresh - (time.monotonic() - now)))
    return 0


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.removeprefix("[").removesuffix("]")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.simulator",
        description="Play the local cluster's data planes (Istio, Linkerd, Gateway API, NGINX, Contour, Traefik).",
    )
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the local cluster")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT for /metrics (port 0 picks a free one)")
    parser.add_argument("--allow-non-loopback", action="store_true", help="allow --listen on a non-loopback address")
    parser.add_argument("--namespace", action="append", default=[], help="only this namespace (repeatable)")
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second through each routing object")
    parser.add_argument(
        "--refresh", type=float, default=1.0, help="seconds between simulated ticks (and retries of a failed watch)"
    )
    parser.add_argument("--match-share", type=float, default=0.3, help="share of requests carrying match headers")
    parser.add_argument("--max-duration", type=float, default=3600.0, help="exit after this many seconds")
    parser.add_argument("--max-requests", type=int, default=10_000_000, help="stop sending after this many requests")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for reproducible runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as err:
        parser.error(f"--listen: {err}")
    if not is_loopback(host) and not args.allow_non_loopback:
        parser.error(f"--listen host {host!r} is not loopback; pass --allow-non-loopback to expose it")
    if args.rps < 0 or args.refresh <= 0 or not 0.0 <= args.match_share <= 1.0:
        parser.error("--rps must be >= 0, --refresh > 0 and --match-share within 0..1")
    if args.max_duration < 0 or args.max_requests < 0:
        parser.error("--max-duration and --max-requests must be >= 0")

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="simulator: %(levelname)s %(message)s")
    # The loop retries on every refresh and says so once; urllib3's per-attempt warnings would repeat it.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received signal %d; exiting", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    metrics = Metrics()
    try:
        reader = ClusterReader(args.kubeconfig, args.namespace, args.refresh)
    except Exception as err:
        print(f"simulator: cannot load kubeconfig {args.kubeconfig!r}: {describe_error(err)}", file=sys.stderr)
        return 2
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    bound_port = server.server_port
    shown_host = f"[{host}]" if ":" in host else host
    print(f"simulator listening on http://{shown_host}:{bound_port}/metrics", flush=True)
    options = RunOptions(
        rps=args.rps,
        refresh=args.refresh,
        match_share=args.match_share,
        max_duration=args.max_duration,
        max_requests=args.max_requests,
        seed=args.seed,
    )
    try:
        return run(reader, metrics, options, stop)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        reader.close()
