"""Liveness, readiness and Serin's own Prometheus metrics.

``/metrics`` names every tenant's Canaries, so it is guarded as kube-rbac-proxy guards a metrics
endpoint: a bearer token the API server vouches for (TokenReview), then RBAC's ``get`` on the
non-resource URL ``/metrics`` (SubjectAccessReview), which the shipped ClusterRole
``serin-metrics-reader`` grants. Both are asked before the Canaries are read, so a refused scrape
costs no list. ``SERIN_METRICS_AUTH=false`` turns this off for a Prometheus that cannot send a token.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from handlers.params import bearer_token, caller, error, refusal
from serin import worker
from serin.engine import Engine
from serin.kube.auth import may_on_path
from serin.kube.store import KubeError
from serin.telemetry import exposition

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@blueprint.get("/readyz")
def readyz() -> Response:
    """Not ready while as many requests wait for a thread of this process as it has threads: a new
    one would wait a whole round, and the API server gives a review 5 s in all (the webhooks'
    timeoutSeconds). A few waiting is an ordinary burst, and the chart's probe must fail three
    times in a row (15 s) to take the Pod out of the Service.

    Nothing else is asked: the engine and its settings are built before the worker serves
    anything, and the API server is not called, since every replica would then leave the Service
    together whenever it is slow or down, and with them the fail-closed webhook.
    """
    pool = worker.POOL
    if pool is not None and pool.waiting >= pool.threads:
        text = f"busy: {pool.waiting} requests wait for one of {pool.threads} threads\n"
        return Response(text, status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")


METRICS_PATH = "/metrics"
# What the chart ships to grant it (charts/serin/templates/rbac.yaml): bind a scraper's account to it.
METRICS_READER_ROLE = "serin-metrics-reader"


@blueprint.get(METRICS_PATH)
def metrics() -> Response | tuple[Response, int]:
    engine: Engine = current_app.extensions["serin"]
    if engine.settings.metrics_authenticated:
        try:
            denied = refusal(scrape_denied(engine, bearer_token()))
        except KubeError as problem:
            return error(503, f"cannot reach the Kubernetes API: {problem}")
        if denied is not None:
            return denied
    return Response(exposition(engine.gauges), mimetype=CONTENT_TYPE_LATEST)


def scrape_denied(engine: Engine, token: str) -> tuple[int, str] | None:
    """Why the token's owner may not scrape (401 or 403, the reason); None when they may.
    KubeError when the API server cannot be asked."""
    identity = caller(engine, token, engine.settings.metrics_token_audience)
    if isinstance(identity, str):
        return 401, identity
    allowed, reason = may_on_path(engine.store, identity, "get", METRICS_PATH)
    if allowed:
        return None
    detail = f" ({reason})" if reason else ""
    grant = f"the ClusterRole {METRICS_READER_ROLE} grants it"
    return 403, f"{identity.username} may not get {METRICS_PATH}{detail}; {grant}"
