"""``python -m localcluster.backends``: real HTTP servers at the addresses the EndpointSlices name.

kwok runs no containers, so nothing answers at a pod's address. This process reads the
EndpointSlices that the real endpoint-slice controller writes for the namespaces of the real data
plane (labelled ``localcluster.serin.dev/data-plane``), and for every ready endpoint binds its
address and port inside the cluster's pod network namespace (``localcluster.podnet``), where every
pod address is local. Each server answers as its pod's template says, with the simulator's
annotations: ``simulator.serin.dev/error-rate`` of its answers are 500s, each takes about
``simulator.serin.dev/latency-ms``. A body names the pod and its version (the image's tag), as
podinfo does, so a client can count who answered it.

What the application would export itself is on the control address (``--listen``, loopback):
``http_request_duration_seconds`` labelled as Prometheus's pod discovery labels a pod's series
(``kubernetes_namespace``, ``kubernetes_pod_name``), the series Flagger's and Serin's builtin
queries read for Gateway API and the kubernetes provider; ``/served`` has the same counts as JSON,
so a test can count the copies a mirror sent, whose answers no client sees.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from localcluster.simulator.cluster import Behaviour, parse_behaviour
from localcluster.simulator.traffic import draw_latency_ms

LOG = logging.getLogger("localcluster.backends")

DATA_PLANE_LABEL = "localcluster.serin.dev/data-plane"
CLONE_NEWNET = 0x40000000
REFRESH_SECONDS = 1.0
MIN_READ_GAP_SECONDS = 0.05
# How long a server outlives its endpoint (a terminating pod's graceful shutdown).
GRACE_SECONDS = 3.0
# podinfo's buckets for http_request_duration_seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The largest request body a backend reads; the rest of a bigger one is left unread and the
# connection closed.
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    version: str
    behaviour: Behaviour


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    pod: Pod


def listener_in_namespace(namespace_path: str, address: str, port: int) -> socket.socket:
    """A listening socket bound to ``address:port`` inside the network namespace at ``namespace_path``.

    A socket keeps the namespace it was made in, so a thread that enters the namespace makes it
    and ends; the process and its other threads stay on the host."""
    made: dict[str, Any] = {}

    def inside() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            with open(namespace_path, "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns({namespace_path}): {os.strerror(error)}")
            made["socket"] = socket.create_server((address, port), backlog=128)
        except OSError as error:
            made["error"] = error

    thread = threading.Thread(target=inside, name=f"bind {address}:{port}")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    listener: socket.socket = made["socket"]
    return listener


class Served:
    """Requests answered, per (namespace, pod, status), and the histogram Prometheus scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.histogram = Histogram(
            "http_request_duration_seconds",
            "Duration of the requests the pods' servers answered.",
            ["kubernetes_namespace", "kubernetes_pod_name", "method", "path", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, int]] = Counter()

    def record(self, pod: Pod, method: str, status: int, seconds: float) -> None:
        self.histogram.labels(pod.namespace, pod.name, method, "/", str(status)).observe(seconds)
        with self._lock:
            self._counts[(pod.namespace, pod.name, status)] += 1

    def as_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"namespace": ns, "pod": pod, "status": status, "count": count}
                for (ns, pod, status), count in sorted(self._counts.items())
            ]


def pod_handler(endpoint_of: Any, served: Served, rng: random.Random) -> type[BaseHTTPRequestHandler]:
    class PodHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # The head and the body go out in two writes: without this, Nagle's algorithm holds
            # the body until the proxy's delayed ACK, 40 ms on every answer of a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self) -> None:
            started = time.monotonic()
            pod: Pod = endpoint_of(self.server)
            length = self.headers.get("Content-Length", "0")
            size = int(length) if length.isdigit() else 0
            if size > MAX_BODY:
                self.close_connection = True
            else:
                self.rfile.read(size)
            time.sleep(draw_latency_ms(pod.behaviour.latency_ms, rng) / 1000)
            status = 500 if rng.random() < pod.behaviour.error_rate else 200
            body = json.dumps({"hostname": pod.name, "namespace": pod.namespace, "version": pod.version}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Pod", pod.name)
            self.end_headers()
            self.wfile.write(body)
            served.record(pod, self.command, status, time.monotonic() - started)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    return PodHandler


class PodServers:
    """One server per (address, port) the ready endpoints name, kept in step with them."""

    def __init__(self, namespace_path: str, served: Served, rng: random.Random) -> None:
        self._namespace_path = namespace_path
        self._served = served
        self._rng = rng
        self._servers: dict[tuple[str, int], ThreadingHTTPServer] = {}
        self._pods: dict[tuple[str, int], Pod] = {}
        self._gone_since: dict[tuple[str, int], float] = {}
        self._handler = pod_handler(self._pod_of, served, rng)

    def _pod_of(self, server: ThreadingHTTPServer) -> Pod:
        return self._pods[(str(server.server_address[0]), int(server.server_address[1]))]

    def sync(self, endpoints: list[Endpoint], now: float | None = None) -> None:
        """Serve every endpoint; one no longer listed is served for ``GRACE_SECONDS`` more, as a
        terminating pod answers what a proxy still sends it while it learns of the change."""
        now = time.monotonic() if now is None else now
        wanted = {(e.address, e.port): e.pod for e in endpoints}
        for key in self._servers:
            if key in wanted:
                self._gone_since.pop(key, None)
            else:
                self._gone_since.setdefault(key, now)
        for key in [key for key, since in self._gone_since.items() if now - since >= GRACE_SECONDS]:
            del self._gone_since[key]
            server = self._servers.pop(key)
            server.shutdown()
            server.server_close()
            LOG.info("stopped %s:%d", *key)
        for key, pod in wanted.items():
            self._pods[key] = pod
            if key in self._servers:
                continue
            try:
                listener = listener_in_namespace(self._namespace_path, *key)
            except OSError as error:
                LOG.warning("cannot serve %s:%d for %s/%s: %s", *key, pod.namespace, pod.name, error)
                continue
            server = ThreadingHTTPServer(key, self._handler, bind_and_activate=False)
            server.socket.close()
            server.socket = listener
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name=f"serve {key[0]}:{key[1]}", daemon=True).start()
            self._servers[key] = server
            LOG.info("serving %s:%d as %s/%s", *key, pod.namespace, pod.name)

    def serving(self) -> list[tuple[str, int]]:
        return sorted(self._servers)

    def close(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()


def _image_tag(pod: Mapping[str, Any]) -> str:
    containers = pod.get("spec", {}).get("containers") or [{}]
    image = str(containers[0].get("image", ""))
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else image


def ready_endpoints(
    slices: Sequence[Mapping[str, Any]], pods: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[Endpoint]:
    """Every (address, port) of a ready endpoint backed by a known pod, once."""
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in slices:
        namespace = str(endpoint_slice.get("metadata", {}).get("namespace", ""))
        ports = [p.get("port") for p in endpoint_slice.get("ports") or [] if isinstance(p.get("port"), int)]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            target = endpoint.get("targetRef") or {}
            pod = pods.get((namespace, str(target.get("name", ""))))
            if target.get("kind") != "Pod" or pod is None:
                continue
            annotations = pod.get("metadata", {}).get("annotations") or {}
            behaviour, _ = parse_behaviour(annotations)
            identity = Pod(namespace, str(pod["metadata"]["name"]), _image_tag(pod), behaviour)
            for address in endpoint.get("addresses") or []:
                for port in ports:
                    found.setdefault((str(address), int(port)), Endpoint(str(address), int(port), identity))
    return list(found.values())


class ClusterWatch:
    """The EndpointSlices and pods of the data plane's namespaces: read again as soon as a watch
    sees an EndpointSlice of one of them change (so a new pod is served within moments of Traefik
    learning its address), and every ``REFRESH_SECONDS`` regardless (a namespace labelled since)."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self._api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(self._api)
        self._discovery = client.DiscoveryV1Api(self._api)
        self.changed = threading.Event()
        self._served_namespaces: frozenset[str] = frozenset()
        threading.Thread(target=self._watch_slices, name="watch endpointslices", daemon=True).start()

    def _watch_slices(self) -> None:
        from kubernetes import watch

        while True:
            try:
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._discovery.list_endpoint_slice_for_all_namespaces, timeout_seconds=300, _request_timeout=330
                )
                for event in stream:
                    # Other namespaces' churn (a test making hundreds of Services) is not ours.
                    if event["object"].metadata.namespace in self._served_namespaces:
                        self.changed.set()
            except Exception as error:  # the API server away: the periodic read carries on
                LOG.info("watching EndpointSlices: %s", error)
                time.sleep(REFRESH_SECONDS)

    def endpoints(self) -> list[Endpoint]:
        sanitize = self._api.sanitize_for_serialization
        namespaces = sanitize(self._core.list_namespace(label_selector=DATA_PLANE_LABEL, _request_timeout=10).items)
        slices: list[Mapping[str, Any]] = []
        pods: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._served_namespaces = frozenset(str(namespace["metadata"]["name"]) for namespace in namespaces)
        for namespace in namespaces:
            name = str(namespace["metadata"]["name"])
            slices += sanitize(self._discovery.list_namespaced_endpoint_slice(name, _request_timeout=10).items)
            for pod in sanitize(self._core.list_namespaced_pod(name, _request_timeout=10).items):
                pods[(name, pod["metadata"]["name"])] = pod
        return ready_endpoints(slices, pods)

    def close(self) -> None:
        self._api.close()


def control_handler(served: Served, ready: threading.Event) -> type[BaseHTTPRequestHandler]:
    class ControlHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, kind = generate_latest(served.registry), CONTENT_TYPE_LATEST
            elif self.path == "/served":
                body, kind = json.dumps(served.as_json()).encode(), "application/json"
            elif self.path == "/healthz":
                code = 200 if ready.is_set() else 503
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            else:
                self.send_error(404, "only /metrics, /served and /healthz are here")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ControlHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.backends", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--netns", required=True, help="path of the pod network namespace, e.g. /run/netns/NAME")
    parser.add_argument("--listen", required=True, help="127.0.0.1:PORT for /metrics, /served and /healthz")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, _, port = options.listen.rpartition(":")
    if host != "127.0.0.1":
        parser.error("--listen must be on 127.0.0.1")
    served, ready, stop = Served(), threading.Event(), threading.Event()
    control = ThreadingHTTPServer((host, int(port)), control_handler(served, ready))
    threading.Thread(target=control.serve_forever, daemon=True).start()

    watch = ClusterWatch(options.kubeconfig)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        watch.changed.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    servers = PodServers(options.netns, served, random.Random(options.seed))
    last_error = ""
    while not stop.is_set():
        # Cleared before reading, so a change seen while reading is read again at once.
        watch.changed.clear()
        try:
            servers.sync(watch.endpoints())
            ready.set()
            last_error = ""
        except Exception as error:  # the API server away for a moment: keep serving what we had
            if str(error) != last_error:
                LOG.warning("reading the endpoints failed: %s", error)
                last_error = str(error)
        # At most twenty reads a second, however fast the slices change.
        stop.wait(MIN_READ_GAP_SECONDS)
        watch.changed.wait(REFRESH_SECONDS)
    servers.close()
    watch.close()
    control.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
