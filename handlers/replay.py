"""``POST /replay?namespace=&name=&from=&to=``: what the Canary's analysis would have decided over
a past window, from the metrics recorded then. Changes nothing in the cluster.

``from`` is when the replayed release starts (RFC 3339, or seconds since the epoch); ``to`` ends
the window (default: now). The body, if any, modifies the Canary for this replay only: a JSON merge
patch (an object, RFC 7386) or a JSON Patch (a list, RFC 6902), as ``kubectl patch`` takes them.
The caller authenticates with a Kubernetes bearer token and must be allowed to get
canaries.serin.dev in the namespace.
"""

from __future__ import annotations

import copy
import datetime
import threading
import time
from collections.abc import Mapping
from typing import Any

import jsonpatch
from flask import Blueprint, Response, current_app, jsonify, request

from handlers.params import (
    BadRequest,
    BodyTooLarge,
    canary_names,
    decoded_json,
    error,
    not_served,
    oversized,
    read_body,
    refused,
)
from serin.decide import MetricReading
from serin.engine import Engine
from serin.kube.store import KubeError
from serin.model import Canary, InvalidCanary, parse_canary
from serin.ports import TemporaryError
from serin.replay import MAX_STEPS, replay
from serin.status import format_time

blueprint = Blueprint("replay", __name__)

# What the body may hold, and how much of it: a patch of a few thresholds, never a whole object.
PATCH_ONLY = "at most a patch of the Canary"
MAX_PATCH_BYTES = 64 * 1024
# Each step waits on the backend: a replay ends by this deadline, and only so many run at once.
REPLAY_SECONDS = 60.0
MAX_CONCURRENT_REPLAYS = 2
_RUNNING = threading.BoundedSemaphore(MAX_CONCURRENT_REPLAYS)
# The fields a replay changes for a caller who may only read the Canary: how it judges and steps.
JUDGING_FIELDS = (
    "spec.analysis.threshold",
    "stepWeight",
    "stepWeights",
    "stepWeightPromotion",
    "maxWeight",
    "iterations",
    "metrics[].thresholdRange",
    "metrics[].threshold",
    "metrics[].compare",
)
_ANALYSIS_KNOBS = ("threshold", "stepWeight", "stepWeights", "stepWeightPromotion", "maxWeight", "iterations")
_METRIC_KNOBS = ("thresholdRange", "threshold", "compare")


class ReplayTooLong(Exception):
    pass


@blueprint.post("/replay")
def replay_window() -> tuple[Response, int]:
    engine: Engine = current_app.extensions["serin"]
    if too_large := oversized(PATCH_ONLY, MAX_PATCH_BYTES):
        return too_large
    now = datetime.datetime.now(datetime.UTC)
    try:
        namespace, name = canary_names()
        if not namespace or not name:
            raise BadRequest("replay needs the Canary: POST /replay?namespace=NS&name=NAME&from=TIME")
        start = _time("from", None, now)
        end = min(_time("to", now, now), now)
        if end <= start:
            raise BadRequest(f"from ({format_time(start)}) must be before to ({format_time(end)}) and in the past")
    except BadRequest as problem:
        return error(400, str(problem))
    if elsewhere := not_served(engine, namespace):
        return error(404, elsewhere)
    try:
        # Before the body is read: nothing of it costs the server anything until the caller is known.
        denied = refused(engine, "get", namespace)
        if denied is not None:
            return denied
        patch = _patch()
        stored = engine.store.get_canary(namespace, name)
    except BodyTooLarge as problem:
        return error(413, str(problem))
    except BadRequest as problem:
        return error(400, str(problem))
    except KubeError as problem:
        return error(503, f"cannot reach the Kubernetes API: {problem}")
    if stored is None:
        return error(404, f"no canary {namespace}/{name}")
    try:
        obj = _patched(stored, patch)
        beyond = first_change_beyond_judging(stored, obj)
        # What the analysis reads, from where, and as whom is the Canary's; changing it for a replay
        # takes what changing it in the Canary does.
        if beyond is not None and (denied := refused(engine, "update", namespace)) is not None:
            if denied[1] != 403:
                return denied
            return error(
                403,
                f"the patch changes {beyond}: a caller who may only get the Canary replays it changing only how it "
                f"judges and steps ({', '.join(JUDGING_FIELDS)}); anything else needs update on canaries.serin.dev",
            )
        canary = parse_canary(obj, engine.settings.default_provider)
    except KubeError as problem:
        return error(503, f"cannot reach the Kubernetes API: {problem}")
    except BadRequest as problem:
        return error(400, str(problem))
    except InvalidCanary as invalid:
        response = jsonify(
            error=f"the Canary as the body modifies it is invalid: {invalid}",
            errors=[{"field": problem.path, "message": problem.message} for problem in invalid.errors],
        )
        return response, 422
    steps = (end - start).total_seconds() / canary.analysis.interval_seconds
    if steps > MAX_STEPS:
        return error(
            400,
            f"the window holds {steps:.0f} analysis intervals of {canary.analysis.interval}; a replay takes at most "
            f"{MAX_STEPS}: shorten it",
        )
    if not _RUNNING.acquire(blocking=False):
        return error(
            429,
            f"{MAX_CONCURRENT_REPLAYS} replays are running on this server; try again shortly",
            **{"Retry-After": "10"},
        )
    try:
        deadline = time.monotonic() + REPLAY_SECONDS

        def read_metrics(canary: Canary, at: datetime.datetime) -> tuple[MetricReading, ...]:
            if time.monotonic() > deadline:
                raise ReplayTooLong(f"the replay took over {REPLAY_SECONDS:.0f}s; replay a shorter window")
            return engine.reconciler.read_metrics(canary, at)

        result = replay(canary, start, end, read_metrics)
    except ReplayTooLong as problem:
        return error(504, str(problem))
    except (TemporaryError, KubeError) as problem:
        return error(503, f"cannot replay now: {problem}")
    finally:
        _RUNNING.release()
    body: dict[str, Any] = {"canary": f"{namespace}/{name}", "modified": patch is not None, **result.to_dict()}
    return jsonify(body), 200


def first_change_beyond_judging(stored: Mapping[str, Any], patched: Mapping[str, Any]) -> str | None:
    """The path of the first thing ``patched`` changes beyond ``JUDGING_FIELDS`` (None: nothing)."""
    return _first_difference(_without_knobs(stored), _without_knobs(patched), "")


def _without_knobs(obj: Mapping[str, Any]) -> Any:
    copied = copy.deepcopy(dict(obj))
    analysis = (copied.get("spec") or {}).get("analysis") if isinstance(copied.get("spec"), dict) else None
    if isinstance(analysis, dict):
        for key in _ANALYSIS_KNOBS:
            analysis.pop(key, None)
        for metric in analysis.get("metrics") or () if isinstance(analysis.get("metrics"), list) else ():
            if isinstance(metric, dict):
                for key in _METRIC_KNOBS:
                    metric.pop(key, None)
    return copied


def _first_difference(old: Any, new: Any, path: str) -> str | None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted({*old, *new}):
            if (found := _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)) is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            if (found := _first_difference(before, after, f"{path}[{index}]")) is not None:
                return found
        return None
    return None if old == new else path or "the whole Canary"


def _time(parameter: str, default: datetime.datetime | None, now: datetime.datetime) -> datetime.datetime:
    """A query parameter as an aware time: RFC 3339 (``2026-11-28T10:00:00Z``) or epoch seconds."""
    raw = request.args.get(parameter)
    if not raw:
        if default is None:
            raise BadRequest(f"query parameter {parameter} is required: a time (RFC 3339, or seconds since the epoch)")
        return default
    try:
        moment = datetime.datetime.fromtimestamp(float(raw), datetime.UTC)
    except (ValueError, OverflowError, OSError):
        try:
            moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"query parameter {parameter} must be a time (RFC 3339 such as 2026-11-28T10:00:00Z, or seconds "
                f"since the epoch), not {raw[:100]!r}"
            ) from None
    if moment.tzinfo is None:
        raise BadRequest(f"query parameter {parameter} must say its time zone (Z or +HH:MM), not {raw[:100]!r}")
    return moment


def _patch() -> Mapping[str, Any] | list[Any] | None:
    """The body: None when empty, else a merge patch (object) or a JSON Patch (list)."""
    data = read_body(MAX_PATCH_BYTES, PATCH_ONLY)
    if not data.strip():
        return None
    body = decoded_json(data)
    if not isinstance(body, dict | list):
        raise BadRequest("the body must be a JSON object (a merge patch) or a list (a JSON Patch)")
    return body


def _patched(stored: Mapping[str, Any], patch: Mapping[str, Any] | list[Any] | None) -> dict[str, Any]:
    obj = copy.deepcopy(dict(stored))
    if patch is None:
        return obj
    if isinstance(patch, list):
        try:
            patched: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as problem:
            raise BadRequest(f"the JSON Patch does not apply to the Canary: {problem}") from None
        return patched
    merged: dict[str, Any] = _merge(obj, patch)
    return merged


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386: an object merges key by key, null removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged
