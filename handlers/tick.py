"""``POST /tick``: one analysis step for every due Canary (or one, with ``?namespace=&name=``).

Options: ``dry_run=true`` decides and reports without applying; ``force=true`` ignores the
interval wait; ``window=S`` says the caller ticked last S seconds ago (idle Canaries are checked
once per interval, by the first tick after their time); ``shard=I&shards=N`` takes only the
Canaries whose stable hash falls on shard I of N (the tick Job's pods each take one). The caller
authenticates with a Kubernetes
bearer token and must be allowed to tick canaries.serin.dev in the namespace (for a full tick, in
every namespace; for an install that serves some namespaces only, in each of those, and another
namespace is a 404). Every parameter is checked before any request to the API server is made from it.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, Response, current_app, jsonify, request

from handlers.params import BadRequest, canary_names, error, flag, not_served, oversized, refused
from serin.engine import Engine
from serin.kube.store import KubeError
from serin.reconcile import WHOLE, Shard

blueprint = Blueprint("tick", __name__)
# What the caller must be allowed on canaries.serin.dev to tick them (RBAC takes any verb).
TICK_VERB = "tick"

MAX_WINDOW_SECONDS = 86400.0
MAX_SHARDS = 1024


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


@blueprint.post("/tick")
def tick() -> tuple[Response, int]:
    engine: Engine = current_app.extensions["serin"]
    if too_large := oversized("none"):
        return too_large
    try:
        dry_run, force, window, shard = flag("dry_run"), flag("force"), _window(), _shard()
        namespace, name = canary_names()
    except BadRequest as problem:
        return error(400, str(problem))
    if elsewhere := not_served(engine, namespace):
        return error(404, elsewhere)
    try:
        # Serin's own verb: a ticker need not be allowed to change Canaries, only to have them stepped.
        denied = refused(engine, TICK_VERB, namespace, name)
        if denied is not None:
            return denied
        started = time.monotonic()
        reports = engine.reconciler.tick(
            namespace=namespace, name=name, force=force, dry_run=dry_run, window=window, shard=shard
        )
    except KubeError as problem:
        return error(503, f"cannot reach the Kubernetes API: {problem}")
    if name and not reports:
        return error(404, f"no canary {namespace}/{name}")
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
