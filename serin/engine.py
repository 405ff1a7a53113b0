"""Wires the engine's parts together for the HTTP handlers: one per process, built at start."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from serin import egress
from serin.admission import Admission
from serin.config import Settings
from serin.kube.client import Connection, api_client
from serin.kube.store import KubeStore
from serin.metrics.providers import provider_for
from serin.notify.webhooks import HttpHookCaller
from serin.ports import MetricsProvider, ProviderConfig, Router
from serin.reconcile import GlobalNotifier, Reconciler
from serin.routers import router_for
from serin.telemetry import CanaryCollector


@dataclass
class Engine:
    settings: Settings
    api: Connection
    store: KubeStore
    reconciler: Reconciler
    admission: Admission
    # The per-Canary gauges of /metrics, read at most every GAUGE_SECONDS.
    gauges: CanaryCollector


def build_engine(settings: Settings, api: Connection | None = None) -> Engine:
    egress.use(settings.egress)
    api = api or api_client(settings.kubeconfig)
    store = KubeStore(api)

    @lru_cache(maxsize=16)
    def router(provider: str) -> Router:
        return router_for(provider, store)

    @lru_cache(maxsize=64)
    def metrics(config: ProviderConfig) -> MetricsProvider:
        # One provider (and connection pool) per metrics backend, reused across ticks.
        return provider_for(config, store)

    reconciler = Reconciler(
        store=store,
        router_for=router,
        metrics_for=metrics,
        hooks=HttpHookCaller(),
        default_metrics_server=settings.metrics_server,
        default_provider=settings.default_provider,
        notifier=GlobalNotifier(
            settings.notifier_type,
            settings.notifier_url,
            settings.notifier_channel,
            settings.notifier_username,
            settings.notifier_proxy,
        ),
        cluster_name=settings.cluster_name,
        concurrency=settings.tick_concurrency,
        # The API server's time, not this replica's: claims and due times are shared by replicas.
        clock=store.now,
        scope=settings.scope,
    )

    @lru_cache(maxsize=1)
    def own_username() -> str:
        """Who Serin is to the API server, to tell its own writes from everybody else's."""
        review = store.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            what="self subject review",
        )
        return str(review.get("status", {}).get("userInfo", {}).get("username", ""))

    admission = Admission(
        store=store,
        reconciler=reconciler,
        default_provider=settings.default_provider,
        own_username=own_username,
        acts=settings.admission_authenticated,
        clock=store.now,
        scope=settings.scope,
    )
    gauges = CanaryCollector(store, settings.default_provider, scope=settings.scope)
    return Engine(settings=settings, api=api, store=store, reconciler=reconciler, admission=admission, gauges=gauges)
