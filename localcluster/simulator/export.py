"""The metrics each data plane would report for the simulated requests.

* Istio's destination-side sidecar metrics, ``istio_requests_total`` and
  ``istio_request_duration_milliseconds``, for every request (every pod is in the mesh);
* Linkerd's inbound ``response_total`` and ``response_latency_ms`` for every request (every pod is
  meshed by Linkerd too);
* the application's own ``http_request_duration_seconds`` histogram, labelled as Prometheus's
  Kubernetes pod discovery labels it (``kubernetes_namespace``, ``kubernetes_pod_name``) with the
  response ``status``, for every request (the application is instrumented, as podinfo is);
* the NGINX ingress controller's ``nginx_ingress_controller_requests`` and
  ``nginx_ingress_controller_ingress_upstream_latency_seconds`` (sum and count), for requests
  through an Ingress, the canary upstream named in ``canary``;
* Envoy's ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time`` for requests
  through a Contour HTTPProxy, by Contour's cluster name;
* Traefik's ``traefik_service_request_duration_seconds`` for requests through a TraefikService,
  by Traefik's service name;
* ``simulator_unroutable_requests``: requests that reached no ready workload.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, Summary
from prometheus_client import Counter as PromCounter

from localcluster.simulator.traffic import TickResult

# Istio's default buckets for istio_request_duration_milliseconds.
ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

LINKERD_LABELS: tuple[str, ...] = ("namespace", "deployment", "direction", "classification", "status_code")
# Linkerd's proxy buckets.
LINKERD_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1,
    2,
    3,
    4,
    5,
    10,
    20,
    30,
    40,
    50,
    100,
    200,
    300,
    400,
    500,
    1000,
    2000,
    3000,
    4000,
    5000,
    10000,
    20000,
    30000,
)
# Traefik's default buckets.
TRAEFIK_DURATION_BUCKETS_SECONDS: tuple[float, ...] = (0.1, 0.3, 1.2, 5.0)
NGINX_LABELS: tuple[str, ...] = ("namespace", "ingress", "service", "canary", "status")
APP_LABELS: tuple[str, ...] = ("kubernetes_namespace", "kubernetes_pod_name", "status")
# The Prometheus client's default buckets, as an instrumented Go or Python application exposes.
APP_DURATION_BUCKETS_SECONDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUEST_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "response_code",
    "request_protocol",
)


class Metrics:
    """Every data plane's metrics (see the module docstring), in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = PromCounter(
            "istio_requests", "Requests seen by the destination sidecar.", REQUEST_LABELS, registry=self.registry
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration seen by the destination sidecar.",
            REQUEST_LABELS,
            buckets=ISTIO_DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.app_duration = Histogram(
            "http_request_duration_seconds",
            "Request duration seen by the application itself.",
            APP_LABELS,
            buckets=APP_DURATION_BUCKETS_SECONDS,
            registry=self.registry,
        )
        # A counter to the controller, but this client would name it ..._total: a gauge that only
        # grows keeps the controller's name, and rate() reads it the same.
        self.nginx_requests = Gauge(
            "nginx_ingress_controller_requests",
            "Requests the NGINX ingress controller served.",
            NGINX_LABELS,
            registry=self.registry,
        )
        self.nginx_latency = Summary(
            "nginx_ingress_controller_ingress_upstream_latency_seconds",
            "Upstream latency seen by the NGINX ingress controller.",
            NGINX_LABELS[:-1],
            registry=self.registry,
        )
        # Counters to Envoy, kept as growing gauges for Envoy's names (see nginx_requests).
        self.envoy_requests = Gauge(
            "envoy_cluster_upstream_rq",
            "Requests Envoy sent to an upstream cluster.",
            ("envoy_cluster_name", "envoy_response_code"),
            registry=self.registry,
        )
        self.envoy_duration = Histogram(
            "envoy_cluster_upstream_rq_time",
            "Upstream request time in milliseconds, as Envoy measures it.",
            ("envoy_cluster_name",),
            buckets=ISTIO_DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.traefik_duration = Histogram(
            "traefik_service_request_duration_seconds",
            "Request duration of a Traefik service.",
            ("service", "code"),
            buckets=TRAEFIK_DURATION_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.linkerd_responses = PromCounter(
            "response", "Responses a Linkerd proxy saw.", LINKERD_LABELS, registry=self.registry
        )
        self.linkerd_latency = Histogram(
            "response_latency_ms",
            "Response latency a Linkerd proxy saw, in milliseconds.",
            LINKERD_LABELS[:3],
            buckets=LINKERD_LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.unroutable = PromCounter(
            "simulator_unroutable_requests",
            "Synthetic requests that reached no ready workload (no route, no Service, or no ready replicas).",
            ("namespace", "kind", "name"),
            registry=self.registry,
        )

    def record(self, result: TickResult) -> None:
        grouped: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for outcome in result.outcomes:
            grouped.setdefault(tuple(outcome.metric_labels().items()), []).append(outcome.latency_ms)
        for labels, latencies in grouped.items():
            label_map = dict(labels)
            self.requests.labels(**label_map).inc(len(latencies))
            histogram = self.duration.labels(**label_map)
            for latency in latencies:
                histogram.observe(latency)
        by_pod: dict[tuple[str, str, str], list[float]] = {}
        for outcome in result.outcomes:
            key = (outcome.workload_namespace, outcome.pod_name, str(outcome.response_code))
            by_pod.setdefault(key, []).append(outcome.latency_ms / 1000.0)
        for (namespace, pod, status), seconds in by_pod.items():
            app_histogram = self.app_duration.labels(
                kubernetes_namespace=namespace, kubernetes_pod_name=pod, status=status
            )
            for value in seconds:
                app_histogram.observe(value)
        for outcome in result.outcomes:
            if outcome.table_kind != "Ingress":
                continue
            nginx_labels = {
                "namespace": outcome.table_namespace,
                "ingress": outcome.table,
                "service": outcome.service,
                "canary": outcome.destination_tag,
            }
            self.nginx_requests.labels(**nginx_labels, status=str(outcome.response_code)).inc()
            self.nginx_latency.labels(**nginx_labels).observe(outcome.latency_ms / 1000.0)
        for outcome in result.outcomes:
            code = str(outcome.response_code)
            inbound = {"namespace": outcome.workload_namespace, "deployment": outcome.workload, "direction": "inbound"}
            classification = "failure" if outcome.response_code >= 500 else "success"
            self.linkerd_responses.labels(**inbound, classification=classification, status_code=code).inc()
            self.linkerd_latency.labels(**inbound).observe(outcome.latency_ms)
            if outcome.table_kind == "HTTPProxy":
                self.envoy_requests.labels(envoy_cluster_name=outcome.destination_tag, envoy_response_code=code).inc()
                self.envoy_duration.labels(envoy_cluster_name=outcome.destination_tag).observe(outcome.latency_ms)
            elif outcome.table_kind == "TraefikService":
                self.traefik_duration.labels(service=outcome.destination_tag, code=code).observe(
                    outcome.latency_ms / 1000
                )
        for (namespace, kind, name), count in result.unroutable.items():
            self.unroutable.labels(namespace=namespace, kind=kind, name=name).inc(count)
