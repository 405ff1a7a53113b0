"""The cluster as the data plane sees it: Services, the workloads they select, and how each
version behaves (from its pod template's annotations)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from localcluster.simulator.routes import as_mapping

ERROR_RATE_ANNOTATION = "simulator.serin.dev/error-rate"
LATENCY_ANNOTATION = "simulator.serin.dev/latency-ms"
DEFAULT_ERROR_RATE = 0.0
DEFAULT_LATENCY_MS = 50.0
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = DEFAULT_ERROR_RATE
    latency_ms: float = DEFAULT_LATENCY_MS


@dataclass(frozen=True)
class Workload:
    """A Deployment, DaemonSet or StatefulSet as far as the data plane is concerned."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ready_replicas: int
    behaviour: Behaviour
    # Stands in for the ReplicaSet's pod-template-hash: it changes whenever the template does.
    template_hash: str = "0"
    kind: str = "Deployment"

    @property
    def ready(self) -> bool:
        return self.ready_replicas > 0

    @property
    def pod_name(self) -> str:
        """A name for the pod that served a request, shaped like its kind's pod names (a
        Deployment's ``<deployment>-<template hash>-<suffix>``, a DaemonSet's ``<name>-<suffix>``,
        a StatefulSet's ``<name>-<ordinal>``), for metrics labelled by pod."""
        if self.kind == "DaemonSet":
            return f"{self.name}-sim00"
        if self.kind == "StatefulSet":
            return f"{self.name}-0"
        return f"{self.name}-{self.template_hash}-sim00"


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    namespace: str
    selector: Mapping[str, str]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class ResolvedHost:
    service: ServiceInfo
    workloads: tuple[Workload, ...]
    """Every workload in the Service's namespace whose pod template the selector selects."""

    @property
    def ready_workloads(self) -> tuple[Workload, ...]:
        return tuple(w for w in self.workloads if w.ready)


@dataclass(frozen=True)
class ClusterIndex:
    services: Mapping[tuple[str, str], ServiceInfo]
    """Keyed by (namespace, name)."""
    workloads: Mapping[str, tuple[Workload, ...]]
    """Keyed by namespace."""
    warnings: tuple[str, ...] = ()


def parse_behaviour(annotations: Mapping[str, Any]) -> tuple[Behaviour, tuple[str, ...]]:
    """Reads the simulator annotations; invalid values fall back to the defaults with a warning."""
    problems: list[str] = []
    error_rate = DEFAULT_ERROR_RATE
    raw_rate = annotations.get(ERROR_RATE_ANNOTATION)
    if raw_rate is not None:
        parsed = _parse_float(raw_rate)
        if parsed is None or not 0.0 <= parsed <= 1.0:
            problems.append(f"{ERROR_RATE_ANNOTATION}={raw_rate!r} is not a number in 0..1; using {DEFAULT_ERROR_RATE}")
        else:
            error_rate = parsed
    latency = DEFAULT_LATENCY_MS
    raw_latency = annotations.get(LATENCY_ANNOTATION)
    if raw_latency is not None:
        parsed = _parse_float(raw_latency)
        if parsed is None or parsed < 0.0:
            problems.append(
                f"{LATENCY_ANNOTATION}={raw_latency!r} is not a non-negative number; using {DEFAULT_LATENCY_MS}"
            )
        else:
            latency = parsed
    return Behaviour(error_rate=error_rate, latency_ms=latency), tuple(problems)


def _parse_float(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _string_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_mapping(value).items()}


def parse_service(obj: Mapping[str, Any]) -> ServiceInfo:
    metadata = as_mapping(obj.get("metadata"))
    return ServiceInfo(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        selector=_string_map(as_mapping(obj.get("spec")).get("selector")),
    )


def template_hash(template: Mapping[str, Any]) -> str:
    """Ten lowercase letters and digits derived from the pod template, like a pod-template-hash."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated names
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:10])


def parse_deployment(obj: Mapping[str, Any]) -> tuple[Workload, tuple[str, ...]]:
    metadata = as_mapping(obj.get("metadata"))
    template = as_mapping(as_mapping(obj.get("spec")).get("template"))
    template_metadata = as_mapping(template.get("metadata"))
    kind = str(obj.get("kind") or "Deployment")
    # A DaemonSet counts its pods per node.
    ready = as_mapping(obj.get("status")).get("numberReady" if kind == "DaemonSet" else "readyReplicas")
    behaviour, problems = parse_behaviour(as_mapping(template_metadata.get("annotations")))
    workload = Workload(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        labels=_string_map(template_metadata.get("labels")),
        ready_replicas=ready if isinstance(ready, int) and not isinstance(ready, bool) else 0,
        behaviour=behaviour,
        template_hash=template_hash(template),
        kind=kind,
    )
    located = tuple(f"{kind.lower()} {workload.namespace}/{workload.name}: {p}" for p in problems)
    return workload, located


def build_index(services: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]]) -> ClusterIndex:
    service_map: dict[tuple[str, str], ServiceInfo] = {}
    for obj in services:
        service = parse_service(obj)
        service_map[(service.namespace, service.name)] = service
    by_namespace: dict[str, list[Workload]] = {}
    warnings: list[str] = []
    for obj in deployments:
        workload, problems = parse_deployment(obj)
        by_namespace.setdefault(workload.namespace, []).append(workload)
        warnings.extend(problems)
    return ClusterIndex(
        services=service_map,
        workloads={ns: tuple(sorted(ws, key=lambda w: w.name)) for ns, ws in by_namespace.items()},
        warnings=tuple(warnings),
    )


def split_host(host: str, vs_namespace: str) -> tuple[str, str] | None:
    """(service name, namespace) for an in-cluster host, as Istio resolves short names.

    ``svc`` resolves in the VirtualService's namespace; ``svc.ns``,
    ``svc.ns.svc`` and ``svc.ns.svc.<cluster domain>`` name the namespace.
    Anything else (external hosts, wildcards) is not a cluster Service.
    """
    parts = host.strip().rstrip(".").lower().split(".")
    if not parts[0] or "*" in host:
        return None
    if len(parts) == 1:
        return parts[0], vs_namespace
    if len(parts) == 2 or parts[2] == "svc":
        return parts[0], parts[1]
    return None


def resolve_host(host: str, vs_namespace: str, index: ClusterIndex) -> ResolvedHost | None:
    key = split_host(host, vs_namespace)
    if key is None:
        return None
    name, namespace = key
    service = index.services.get((namespace, name))
    if service is None:
        return None
    if not service.selector:
        # A selector-less Service has hand-made endpoints, none of which is a Deployment here.
        return ResolvedHost(service=service, workloads=())
    selected = tuple(
        w for w in index.workloads.get(namespace, ()) if all(w.labels.get(k) == v for k, v in service.selector.items())
    )
    return ResolvedHost(service=service, workloads=selected)
