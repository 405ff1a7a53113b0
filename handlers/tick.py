"""``POST /tick``: one analysis step for every due Canary (or one, with ``?namespace=&name=``).

Options: ``dry_run=true`` decides and reports without applying; ``force=true`` ignores the
interval wait; ``window=S`` says the caller ticked last S seconds ago (idle Canaries are checked
once per interval, by the first tick after their time); ``shard=I&shards=N`` takes only the
Canaries whose stable hash falls on shard I of N (the tick Job's pods each take one). The caller
authenticates with a Kubernetes
bearer token and must be allowed to update canaries.serin.dev in the namespace (in every namespace
for a full tick). Every parameter is checked before any request to the API server is made from it.
"""

from __future__ import annotations

import math
import re
import time

from flask import Blueprint, Response, current_app, jsonify, request

from serin.engine import Engine
from serin.kube.auth import authenticate, may_update_canaries
from serin.kube.store import KubeError
from serin.reconcile import WHOLE, Shard

blueprint = Blueprint("tick", __name__)

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
# Kubernetes names: a namespace is a DNS label, a Canary's name a DNS subdomain.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_WINDOW_SECONDS = 86400.0
MAX_SHARDS = 1024


class BadRequest(ValueError):
    pass


def _flag(name: str) -> bool:
    value = request.args.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"query parameter {name} must be true or false, not {value!r}")


def _name(parameter: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = request.args.get(parameter) or None
    if value is not None and not pattern.fullmatch(value):
        raise BadRequest(f"query parameter {parameter} must be {what}, not {value[:100]!r}")
    return value


def _window() -> float | None:
    value = request.args.get("window")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise BadRequest(
            f"query parameter window must be seconds between 0 and {MAX_WINDOW_SECONDS:.0f}, not {value[:100]!r}"
        )
    return seconds


def _shard() -> Shard:
    """``shard`` and ``shards``: both or neither, 0 <= shard < shards <= MAX_SHARDS."""
    index, count = request.args.get("shard"), request.args.get("shards")
    if index is None and count is None:
        return WHOLE
    if index is None or count is None:
        raise BadRequest("query parameters shard and shards go together: POST /tick?shard=I&shards=N")
    if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count) <= MAX_SHARDS:
        raise BadRequest(
            f"query parameters shard and shards must be integers with 0 <= shard < shards <= {MAX_SHARDS}, "
            f"not {index[:20]!r} and {count[:20]!r}"
        )
    return Shard(int(index), int(count))


def _error(status: int, message: str, **headers: str) -> tuple[Response, int]:
    response = jsonify(error=message)
    response.headers.update(headers)
    return response, status


@blueprint.post("/tick")
def tick() -> tuple[Response, int]:
    engine: Engine = current_app.extensions["serin"]
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body is larger than {limit} bytes; POST /tick needs none")
    try:
        dry_run, force, window, shard = _flag("dry_run"), _flag("force"), _window(), _shard()
        namespace = _name("namespace", _DNS_LABEL, "a namespace name (a DNS-1123 label)")
        name = _name("name", _DNS_SUBDOMAIN, "a Canary name (a DNS-1123 subdomain)")
    except BadRequest as error:
        return _error(400, str(error))
    if name and not namespace:
        return _error(400, "name needs a namespace: POST /tick?namespace=NS&name=NAME")

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' (for example from `kubectl create token`)",
            **{"WWW-Authenticate": 'Bearer realm="serin"'},
        )
    try:
        identity = authenticate(engine.store, token.strip())
        if identity is None:
            return _error(
                401, "the API server did not accept this token", **{"WWW-Authenticate": 'Bearer realm="serin"'}
            )
        allowed, reason = may_update_canaries(engine.store, identity, namespace)
        if not allowed:
            where = f"namespace {namespace}" if namespace else "all namespaces"
            detail = f" ({reason})" if reason else ""
            return _error(403, f"{identity.username} may not update canaries.serin.dev in {where}{detail}")
        started = time.monotonic()
        reports = engine.reconciler.tick(
            namespace=namespace, name=name, force=force, dry_run=dry_run, window=window, shard=shard
        )
    except KubeError as error:
        return _error(503, f"cannot reach the Kubernetes API: {error}")
    if name and not reports:
        return _error(404, f"no canary {namespace}/{name}")
    upcoming = [report.next_step_in_seconds for report in reports if report.next_step_in_seconds is not None]
    body = {
        "dryRun": dry_run,
        "forced": force,
        "durationSeconds": round(time.monotonic() - started, 3),
        "shard": {"index": shard.index, "of": shard.count},
        # When the next tick has work to do: the tick CronJob's Pod sleeps until then.
        "nextStepInSeconds": round(min(upcoming), 3) if upcoming else None,
        "canaries": [report.to_dict() for report in reports],
    }
    return jsonify(body), 200
