"""Server settings, read once from the environment (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from serin.destinations import Destinations, denied_in_cluster
from serin.scope import Scope

CLIENT_CERTIFICATE, NO_AUTHENTICATION = "client-certificate", "none"


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
    # Who may send admission reviews. "client-certificate": only a TLS client presenting a
    # certificate that admission_client_ca signed, issued to admission_client_subject (the API
    # server, configured with --admission-control-config-file). "none": anyone who reaches the
    # port; the webhooks then answer from the request alone and write nothing (the tick does).
    admission_authentication: str = "client-certificate"
    admission_client_ca: str | None = None
    admission_client_subject: str = "kube-apiserver"
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
    # Where metrics backends, hooks and alert providers may be (see serin.destinations).
    egress: Destinations = field(default_factory=Destinations)
    # The audience a caller's token must be issued for (``kubectl create token X --audience serin``):
    # a token made for Serin is no use against the API server, so Serin cannot replay it there.
    # Empty: any token the API server accepts for itself.
    token_audience: str = "serin"
    # Whether /metrics asks its caller for a token and for RBAC's ``get`` on the non-resource URL
    # /metrics (the ClusterRole serin-metrics-reader), as kube-rbac-proxy does. Off only for a
    # Prometheus that cannot send a token: anyone who reaches the port then reads every Canary's name.
    metrics_authenticated: bool = True
    # The audience a scraper's token must be issued for. Empty: the API server's own, which a
    # Prometheus sends when it scrapes with its Pod's service-account token (as kube-rbac-proxy and
    # controller-runtime's metrics filter take it). Such a token sent to Serin is one the API server
    # would take too, which is why its account should hold little else; "serin" takes only tokens
    # projected for Serin, which are no use elsewhere.
    metrics_token_audience: str = ""
    # The namespaces this install serves (SERIN_WATCH_NAMESPACES; see serin.scope): every one by default.
    scope: Scope = field(default_factory=Scope)

    @property
    def admission_authenticated(self) -> bool:
        return self.admission_authentication == CLIENT_CERTIFICATE

    @classmethod
    def from_env(cls) -> Settings:
        """The settings the environment gives; ValueError saying what is wrong with them."""
        defaults = cls()
        client_ca = os.environ.get("SERIN_ADMISSION_CLIENT_CA") or None
        authentication = os.environ.get("SERIN_ADMISSION_AUTHENTICATION") or (CLIENT_CERTIFICATE if client_ca else "")
        if authentication not in (CLIENT_CERTIFICATE, NO_AUTHENTICATION):
            raise ValueError(
                f"SERIN_ADMISSION_AUTHENTICATION must be {CLIENT_CERTIFICATE} (with SERIN_ADMISSION_CLIENT_CA, the "
                f"CA of the API server's webhook client certificate) or {NO_AUTHENTICATION} (the webhooks then "
                f"write nothing), not {authentication or 'unset'!r}"
            )
        if authentication == CLIENT_CERTIFICATE and (not client_ca or not os.path.isfile(client_ca)):
            raise ValueError(
                "SERIN_ADMISSION_AUTHENTICATION is client-certificate, so SERIN_ADMISSION_CLIENT_CA must name the "
                f"file of the CA that signs the API server's webhook client certificate (is {client_ca!r})"
            )
        metrics_authentication = os.environ.get("SERIN_METRICS_AUTH", "true")
        metrics_audience = os.environ.get("SERIN_METRICS_TOKEN_AUDIENCE", defaults.metrics_token_audience)
        if metrics_authentication.strip().lower() not in ("true", "false"):
            raise ValueError(
                "SERIN_METRICS_AUTH must be true (scrapers of /metrics need a token and get on the non-resource URL "
                f"/metrics) or false (anyone who reaches the port may scrape), not {metrics_authentication!r}"
            )
        try:
            egress = Destinations.parse(
                os.environ.get("SERIN_EGRESS_ALLOWED", ""),
                os.environ.get("SERIN_EGRESS_DENIED", denied_in_cluster(os.environ)),
            )
        except ValueError as error:
            raise ValueError(f"SERIN_EGRESS_ALLOWED or SERIN_EGRESS_DENIED: {error}") from None
        try:
            scope = Scope.parse(os.environ.get("SERIN_WATCH_NAMESPACES", ""))
        except ValueError as error:
            raise ValueError(f"SERIN_WATCH_NAMESPACES {error}") from None
        return cls(
            metrics_server=os.environ.get("SERIN_METRICS_SERVER", defaults.metrics_server),
            default_provider=os.environ.get("SERIN_DEFAULT_PROVIDER", defaults.default_provider),
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            max_body_bytes=int(os.environ.get("SERIN_MAX_BODY_BYTES", defaults.max_body_bytes)),
            admission_authentication=authentication,
            admission_client_ca=client_ca if authentication == CLIENT_CERTIFICATE else None,
            admission_client_subject=os.environ.get("SERIN_ADMISSION_CLIENT_SUBJECT")
            or defaults.admission_client_subject,
            notifier_type=os.environ.get("SERIN_NOTIFIER_TYPE", defaults.notifier_type),
            notifier_url=os.environ.get("SERIN_NOTIFIER_URL", ""),
            notifier_channel=os.environ.get("SERIN_NOTIFIER_CHANNEL", ""),
            notifier_username=os.environ.get("SERIN_NOTIFIER_USERNAME", ""),
            notifier_proxy=os.environ.get("SERIN_NOTIFIER_PROXY", ""),
            cluster_name=os.environ.get("SERIN_CLUSTER_NAME", ""),
            tick_concurrency=max(1, int(os.environ.get("SERIN_TICK_CONCURRENCY", defaults.tick_concurrency))),
            egress=egress,
            token_audience=os.environ.get("SERIN_TOKEN_AUDIENCE", defaults.token_audience).strip(),
            metrics_authenticated=metrics_authentication.strip().lower() == "true",
            metrics_token_audience=metrics_audience.strip(),
            scope=scope,
        )
