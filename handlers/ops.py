"""Liveness, readiness and Serin's own Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from serin import worker
from serin.engine import Engine
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


@blueprint.get("/metrics")
def metrics() -> Response:
    engine: Engine = current_app.extensions["serin"]
    return Response(exposition(engine.gauges), mimetype=CONTENT_TYPE_LATEST)
