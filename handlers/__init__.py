"""The HTTP face of Serin: Flask blueprints that parse, call the engine and answer.

``create_app`` is the one place the server is assembled (``wsgi.py`` calls it for gunicorn; tests
call it with their own settings). Every answer of the API is JSON, errors included: no HTML error
pages, no tracebacks. The page for people (``/ui``) answers HTML, its own errors included.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from handlers import admission, ops, replay, tick, ui
from serin.config import Settings
from serin.engine import build_engine
from serin.kube.client import Connection

LOG = logging.getLogger("serin.handlers")


def create_app(settings: Settings | None = None, api: Connection | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("serin")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["serin"] = build_engine(settings, api)
    app.register_blueprint(admission.blueprint)
    app.register_blueprint(tick.blueprint)
    app.register_blueprint(replay.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(ui.blueprint)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description or error.name), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        # A bug, not the caller's mistake (those are 400s): the traceback goes to the log only.
        LOG.exception("unhandled error")
        return jsonify(error="internal error"), 500

    return app
