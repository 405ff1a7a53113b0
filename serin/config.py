"""Server settings, read once from the environment (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # Where builtin metrics are queried when a Canary names no spec.metricsServer.
    metrics_server: str = "http://prometheus.istio-system:9090"
    # The mesh a Canary uses when it names no spec.provider.
    default_provider: str = "istio"
    # Kubeconfig to use outside a cluster; in a cluster the Pod's service account is used.
    kubeconfig: str | None = None
    # Largest AdmissionReview or tick request body accepted.
    max_body_bytes: int = 3 * 1024 * 1024
    # When set, admission reviews must come over TLS with a client certificate this CA signed (the
    # API server's, configured with --admission-control-config-file); gunicorn asks for it.
    admission_client_ca: str | None = None
    # Where a Canary with no analysis.alerts is alerted (Flagger's -slack-url and friends): the
    # notifier type (slack, msteams, discord, rocket, gchat, webhook), its URL, channel, username
    # and proxy. No URL: no such alerts.
    notifier_type: str = "slack"
    notifier_url: str = ""
    notifier_channel: str = ""
    notifier_username: str = ""
    notifier_proxy: str = ""
    # Added to every alert as its "Cluster" field, when set.
    cluster_name: str = ""
    # Canaries one tick steps side by side (each waits on its own API calls, queries and hooks).
    tick_concurrency: int = 8

    @classmethod
    def from_env(cls) -> Settings:
        defaults = cls()
        return cls(
            metrics_server=os.environ.get("SERIN_METRICS_SERVER", defaults.metrics_server),
            default_provider=os.environ.get("SERIN_DEFAULT_PROVIDER", defaults.default_provider),
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            max_body_bytes=int(os.environ.get("SERIN_MAX_BODY_BYTES", defaults.max_body_bytes)),
            admission_client_ca=os.environ.get("SERIN_ADMISSION_CLIENT_CA") or None,
            notifier_type=os.environ.get("SERIN_NOTIFIER_TYPE", defaults.notifier_type),
            notifier_url=os.environ.get("SERIN_NOTIFIER_URL", ""),
            notifier_channel=os.environ.get("SERIN_NOTIFIER_CHANNEL", ""),
            notifier_username=os.environ.get("SERIN_NOTIFIER_USERNAME", ""),
            notifier_proxy=os.environ.get("SERIN_NOTIFIER_PROXY", ""),
            cluster_name=os.environ.get("SERIN_CLUSTER_NAME", ""),
            tick_concurrency=max(1, int(os.environ.get("SERIN_TICK_CONCURRENCY", defaults.tick_concurrency))),
        )
