"""``POST /mutate`` and ``POST /validate``: admission.k8s.io/v1 AdmissionReviews in, verdicts out.

The handler checks the envelope, and the parts of a Deployment that Serin reads, then dispatches by
kind. Malformed input of any shape gets a 400 that names what is wrong, before anything acts on it;
so an error inside the handlers is a bug: a 500 with a generic message, its traceback logged.

Most reviews are of workloads a webhook leaves alone (every Deployment update its selectors let
through): known from the review, they are answered allowed before the engine is asked, and cost
what parsing the review and answering cost. A review allowed as it is is logged at debug only and
left out of the access log; denials and changes are logged at info, with the review's uid.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from handlers.params import BadRequest, BodyTooLarge, decoded_json, read_body
from serin import logs
from serin.admission import Admission, Verdict, not_a_primary, not_a_target
from serin.engine import Engine
from serin.model import DNS_LABEL

LOG = logging.getLogger("serin.handlers.admission")

blueprint = Blueprint("admission", __name__)

Handler = Callable[[Admission, Mapping[str, Any]], Verdict]

WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
MUTATORS: dict[tuple[str, str], Handler] = {
    ("serin.dev", "Canary"): Admission.mutate_canary,
    **{("apps", kind): Admission.mutate_workload for kind in WORKLOADS},
}
VALIDATORS: dict[tuple[str, str], Handler] = {
    ("serin.dev", "Canary"): Admission.validate_canary,
    **{("apps", kind): Admission.validate_workload for kind in WORKLOADS},
}


# What each webhook leaves alone, known from the review itself: such a review is answered
# allowed at once, with nothing asked of the engine and nothing logged above debug.
IGNORED_BY_MUTATORS: dict[tuple[str, str], Callable[[Mapping[str, Any]], bool]] = {
    ("apps", kind): not_a_target for kind in WORKLOADS
}
IGNORED_BY_VALIDATORS: dict[tuple[str, str], Callable[[Mapping[str, Any]], bool]] = {
    ("apps", kind): not_a_primary for kind in WORKLOADS
}
# The names in the client certificate of each open connection (an empty set: it presented none).
# A certificate cannot change while its connection is open, so a kept-alive connection, as the
# API server keeps, has its certificate read once instead of on every review it carries.
_CERTIFICATE_NAMES: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


class Malformed(BadRequest):
    """The request is not an AdmissionReview we can answer; the message says why."""


def _optional(review: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str, where: str) -> None:
    value = review.get(key)
    if value is not None and not isinstance(value, kind):
        raise Malformed(f"{where}.{key} must be {what}, not {type(value).__name__}")


def check_deployment(obj: Any, where: str) -> None:
    """The fields of a Deployment Serin reads must have the shape Kubernetes gives them."""
    if obj is None:
        return
    _optional(obj, "metadata", dict, "an object", where)
    _optional(obj, "spec", dict, "an object", where)
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    for key in ("name", "namespace"):
        _optional(metadata, key, str, "a string", f"{where}.metadata")
    _optional(metadata, "labels", dict, "an object", f"{where}.metadata")
    for key, value in (metadata.get("labels") or {}).items():
        if not isinstance(value, str):
            raise Malformed(f"{where}.metadata.labels.{key} must be a string, not {type(value).__name__}")
    _optional(metadata, "annotations", dict, "an object", f"{where}.metadata")
    if isinstance(spec.get("replicas"), bool):
        raise Malformed(f"{where}.spec.replicas must be an integer, not bool")
    _optional(spec, "replicas", int, "an integer", f"{where}.spec")
    _optional(spec, "template", dict, "an object", f"{where}.spec")


def parse_review(body: bytes, content_type: str | None) -> Mapping[str, Any]:
    if not (content_type or "").lower().startswith("application/json"):
        raise Malformed(f"Content-Type must be application/json, not {content_type or 'missing'!r}")
    review = decoded_json(body)
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
    for key in ("group", "version"):
        _optional(kind, key, str, "a string", "request.kind")
    if not isinstance(admission_request.get("operation"), str):
        raise Malformed("request.operation is missing")
    for key in ("object", "oldObject", "userInfo"):
        _optional(admission_request, key, dict, "an object", "request")
    _optional(admission_request, "dryRun", bool, "true or false", "request")
    _optional(admission_request, "name", str, "a string", "request")
    _optional(admission_request, "namespace", str, "a string", "request")
    namespace = admission_request.get("namespace")
    if namespace and not DNS_LABEL.fullmatch(namespace):
        raise Malformed(f"request.namespace must be a namespace name, not {namespace[:64]!r}")
    _optional(admission_request.get("userInfo") or {}, "username", str, "a string", "request.userInfo")
    if (kind.get("group"), kind["kind"]) == ("apps", "Deployment"):
        for key in ("object", "oldObject"):
            check_deployment(admission_request.get(key), f"request.{key}")
    return admission_request


def _not_the_api_server() -> str | None:
    """Why the caller is not the API server (None: it is, or Serin is told not to check)."""
    settings = current_app.extensions["serin"].settings
    if not settings.admission_authenticated:
        return None
    # gunicorn verified any certificate against the CA during the handshake (cert_reqs: optional).
    connection: Any = request.environ.get("gunicorn.socket")
    names = _CERTIFICATE_NAMES.get(connection) if connection is not None else None
    if names is None:
        certificate = connection.getpeercert() if hasattr(connection, "getpeercert") else None
        names = frozenset(certificate_names(certificate)) if certificate else frozenset()
        if certificate is not None:
            _CERTIFICATE_NAMES[connection] = names
    if not names:
        return (
            "admission reviews need a client certificate signed by the CA in SERIN_ADMISSION_CLIENT_CA (the API "
            "server's)"
        )
    subject = settings.admission_client_subject
    if subject not in names:
        # Any certificate of a CA that also signs others (the cluster's) would do otherwise.
        return f"admission reviews need the client certificate issued to {subject} (SERIN_ADMISSION_CLIENT_SUBJECT)"
    return None


def certificate_names(certificate: Mapping[str, Any]) -> set[str]:
    """The common names and DNS names a peer certificate (as ``getpeercert()`` gives it) is issued to."""
    names = {value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"}
    return names | {value for key, value in certificate.get("subjectAltName", ()) if key == "DNS"}


def _answer(
    handlers: dict[tuple[str, str], Handler], ignored: dict[tuple[str, str], Callable[[Mapping[str, Any]], bool]]
) -> tuple[Response, int]:
    refused = _not_the_api_server()
    if refused is not None:
        return jsonify(error=refused), 401
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error=f"body is larger than {limit} bytes; an AdmissionReview is far smaller"), 413
    try:
        admission_request = parse_review(read_body(limit, "an AdmissionReview is far smaller"), request.content_type)
        kind = admission_request["kind"]
        key = (kind.get("group", ""), kind["kind"])
        handler = handlers.get(key)
        if handler is None:
            known = ", ".join(f"{k} ({g})" for g, k in handlers)
            raise Malformed(
                f"cannot review kind {kind['kind']!r} of group {kind.get('group', '')!r}; this webhook reviews {known}"
            )
    except BodyTooLarge as error:
        return jsonify(error=str(error)), 413
    except BadRequest as error:
        return jsonify(error=str(error)), 400
    kind_name, name = kind["kind"], admission_request.get("name") or "(generated name)"
    namespace = admission_request.get("namespace") or ""
    leaves_alone = ignored.get(key)
    if leaves_alone is not None and leaves_alone(admission_request):
        if LOG.isEnabledFor(logging.DEBUG):
            with logs.context(request_id=admission_request["uid"], namespace=namespace):
                LOG.debug("%s %s %s allowed: not Serin's", admission_request["operation"], kind_name, name)
        request.environ[logs.QUIET] = True
        return _allowed_as_is(admission_request["uid"])
    engine: Engine = current_app.extensions["serin"]
    with logs.context(
        request_id=admission_request["uid"], namespace=namespace, canary=name if kind_name == "Canary" else ""
    ):
        elsewhere = engine.settings.scope.refusal(namespace)
        if elsewhere:
            # Another install's namespace, or nobody's: let through as it is, with no work done
            # (the chart's namespaceSelector keeps the API server from sending these at all).
            verdict, outcome = Verdict(), f"allowed untouched: {elsewhere}"
        else:
            verdict = handler(engine.admission, admission_request)
            outcome = "allowed" if verdict.allowed else f"denied: {verdict.message}"
        # Most reviews are of workloads allowed as they are (every Deployment update the webhooks'
        # selectors let through): a line each at info would be most of a busy cluster's log.
        # A review of a namespace this install does not serve is said at info: the API server
        # should not have sent it.
        quiet = verdict.allowed and not verdict.patch and not verdict.warnings and not elsewhere
        level = logging.DEBUG if quiet else logging.INFO
        if LOG.isEnabledFor(level):
            changed = f", {len(verdict.patch)} changes" if verdict.patch else ""
            LOG.log(level, "%s %s %s %s%s", admission_request["operation"], kind_name, name, outcome, changed)
    if quiet:
        request.environ[logs.QUIET] = True  # and so left out of the access log (serin/access_log.py)
    return _answered(admission_request["uid"], verdict)


# The answer to most reviews, as jsonify writes it for Verdict() (a test holds the two alike),
# without a pass through the JSON provider for a body that only its uid changes.
_ALLOWED_AS_IS = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"allowed":true,"uid":%s}}\n'


def _allowed_as_is(uid: str) -> tuple[Response, int]:
    return Response(_ALLOWED_AS_IS % json.dumps(uid), mimetype="application/json"), 200


def _answered(uid: str, verdict: Verdict) -> tuple[Response, int]:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": verdict.to_response(uid)}
    return jsonify(body), 200


@blueprint.post("/mutate")
def mutate() -> tuple[Response, int]:
    return _answer(MUTATORS, IGNORED_BY_MUTATORS)


@blueprint.post("/validate")
def validate() -> tuple[Response, int]:
    return _answer(VALIDATORS, IGNORED_BY_VALIDATORS)
