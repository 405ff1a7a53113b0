"""``POST /mutate`` and ``POST /validate``: admission.k8s.io/v1 AdmissionReviews in, verdicts out.

The handler only checks the envelope and dispatches by kind. Malformed input gets a 400 that says
what is wrong; nothing the sender can put in a request produces a 5xx or a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from serin.admission import Admission, Verdict
from serin.engine import Engine

blueprint = Blueprint("admission", __name__)
LOG = logging.getLogger("serin.admission")

Handler = Callable[[Admission, Mapping[str, Any]], Verdict]

MUTATORS: dict[tuple[str, str], Handler] = {
    ("serin.dev", "Canary"): Admission.mutate_canary,
    ("apps", "Deployment"): Admission.mutate_deployment,
}
VALIDATORS: dict[tuple[str, str], Handler] = {
    ("serin.dev", "Canary"): Admission.validate_canary,
    ("apps", "Deployment"): Admission.validate_deployment,
}


class Malformed(ValueError):
    """The request is not an AdmissionReview we can answer; the message says why."""


def parse_review(body: bytes, content_type: str | None) -> Mapping[str, Any]:
    if not (content_type or "").lower().startswith("application/json"):
        raise Malformed(f"Content-Type must be application/json, not {content_type or 'missing'!r}")
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise Malformed(f"body is not JSON: {error}") from None
    if not isinstance(review, dict):
        raise Malformed("body must be a JSON object (an AdmissionReview)")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != "admission.k8s.io/v1":
        raise Malformed("expected kind AdmissionReview, apiVersion admission.k8s.io/v1")
    admission_request = review.get("request")
    if not isinstance(admission_request, dict):
        raise Malformed("AdmissionReview has no request")
    if not isinstance(admission_request.get("uid"), str) or not admission_request["uid"]:
        raise Malformed("request.uid is missing")
    kind = admission_request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise Malformed("request.kind is missing")
    for key in ("object", "oldObject"):
        if admission_request.get(key) is not None and not isinstance(admission_request[key], dict):
            raise Malformed(f"request.{key} must be an object")
    if not isinstance(admission_request.get("operation"), str):
        raise Malformed("request.operation is missing")
    return admission_request


def _answer(handlers: dict[tuple[str, str], Handler]) -> tuple[Response, int]:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error=f"body is larger than {limit} bytes; an AdmissionReview is far smaller"), 400
    try:
        admission_request = parse_review(request.get_data(cache=False), request.content_type)
        kind = admission_request["kind"]
        handler = handlers.get((kind.get("group", ""), kind["kind"]))
        if handler is None:
            known = ", ".join(f"{k} ({g})" for g, k in handlers)
            raise Malformed(
                f"cannot review kind {kind['kind']!r} of group {kind.get('group', '')!r}; this webhook reviews {known}"
            )
    except Malformed as error:
        return jsonify(error=str(error)), 400
    engine: Engine = current_app.extensions["serin"]
    try:
        verdict = handler(engine.admission, admission_request)
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        # A request whose shape we did not expect deep inside: say so rather than fail.
        LOG.warning("cannot review %s: %s", admission_request.get("uid"), error)
        return jsonify(error=f"request.object is not a valid {kind['kind']}: {error}"), 400
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": verdict.to_response(admission_request["uid"]),
    }
    return jsonify(body), 200


@blueprint.post("/mutate")
def mutate() -> tuple[Response, int]:
    return _answer(MUTATORS)


@blueprint.post("/validate")
def validate() -> tuple[Response, int]:
    return _answer(VALIDATORS)
