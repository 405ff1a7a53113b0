"""Liveness, readiness and Serin's own Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from serin.engine import Engine
from serin.telemetry import exposition

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@blueprint.get("/readyz")
def readyz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@blueprint.get("/metrics")
def metrics() -> Response:
    engine: Engine = current_app.extensions["serin"]
    return Response(exposition(engine.gauges), mimetype=CONTENT_TYPE_LATEST)
