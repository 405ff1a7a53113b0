"""``GET /ui``: a read-only page to watch releases, for people.

``/ui`` lists the Canaries (phase, weight, last Event); ``/ui/NAMESPACE/NAME`` shows one: where it
is and why, the next step as the tick would take it now (a dry run), the routes, the last checks,
its weight over time (from its Events) and each metric over the release against its thresholds
(the analysis' own queries, over a range). Pages refresh themselves every few seconds.

Authenticated as ``/tick`` is, with a Kubernetes bearer token: in the ``Authorization`` header, or
given once to the login form, which keeps it in an HttpOnly, Secure, SameSite=Strict cookie. The
token's owner needs only ``list`` (the list) or ``get`` (one Canary) on canaries.serin.dev. Logging
in and out is accepted from the page's own forms only: another site's page could otherwise log its
visitors in with a token of its choosing, or out.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as Redirect

from handlers.params import DNS_LABEL, DNS_SUBDOMAIN, denied, how_to_get_a_token, not_accepted, not_served
from serin.engine import Engine
from serin.groups import releases
from serin.kube.auth import authenticate
from serin.kube.store import KubeError
from serin.model import REQUEST_ANNOTATION, Canary, InvalidCanary, parse_canary
from serin.ports import SerinError
from serin.status import CanaryStatus
from serin.timeline import age, event_time, release_start, weight_points

blueprint = Blueprint("ui", __name__)

COOKIE = "serin-token"
# How long the login cookie lasts: as long as a token of `kubectl create token` does by default.
# The token's own expiry applies too.
COOKIE_SECONDS = 3600
REFRESH_SECONDS = 5
# The longest token the login form takes (service account tokens are about 1 KB).
MAX_TOKEN_CHARS = 16_384
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on the login form's POST, which could
    # then not be told from another site's. Same-origin tells no other site which page linked to it.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@blueprint.after_request
def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(COOKIE, "").strip()


def _refusal(engine: Engine, verb: str, namespace: str | None) -> tuple[str, int] | None:
    """The page to answer instead when the caller may not see this: the login form (401) or why
    not (403, 503)."""
    try:
        denial = denied(engine, _token(), verb, namespace)
    except KubeError as error:
        return _page("error.html", 503, title="Cannot reach the Kubernetes API", message=str(error))
    if denial is None:
        return None
    status, message = denial
    if status == 401:
        return _page("login.html", 401, message=message if _token() else "")
    return _page("error.html", status, title="Not allowed", message=message)


def _page(template: str, code: int, **context: Any) -> tuple[str, int]:
    return render_template(template, refresh=_refresh(), **context), code


def _refresh() -> int:
    """Seconds between refreshes; ``?refresh=0`` stops them."""
    value = request.args.get("refresh", "")
    return int(value) if value.isdigit() and int(value) <= 3600 else REFRESH_SECONDS


def _not_names(namespace: str | None, name: str | None = None) -> tuple[str, int] | None:
    """The 400 page for a namespace or name that is not one: either would become part of a path
    Serin asks the API server, with its own credentials; the 404 page for a namespace this install
    does not serve."""
    problems = [
        f"{field} must be {what}, not {value[:100]!r}"
        for field, value, pattern, what in (
            ("namespace", namespace, DNS_LABEL, "a namespace name (a DNS-1123 label)"),
            ("name", name, DNS_SUBDOMAIN, "a Canary name (a DNS-1123 subdomain)"),
        )
        if value is not None and not pattern.fullmatch(value)
    ]
    if problems:
        return _page("error.html", 400, title="No such page", message="; ".join(problems))
    if elsewhere := not_served(current_app.extensions["serin"], namespace):
        return _page("error.html", 404, title="Not served here", message=elsewhere)
    return None


@blueprint.get("/ui")
@blueprint.get("/ui/")
def canaries() -> tuple[str, int]:
    engine: Engine = current_app.extensions["serin"]
    namespace = request.args.get("namespace") or None
    if invalid := _not_names(namespace):
        return invalid
    if refused := _refusal(engine, "list", namespace):
        return refused
    try:
        # Each namespace served, for an install that serves some only (it may list nowhere else).
        served = engine.settings.scope.lists(namespace)
        listed = [raw for where in served for raw in engine.store.list_canaries(where)]
        last_events = {key: event for where in served for key, event in _last_events(engine, where).items()}
    except KubeError as error:
        return _page("error.html", 503, title="Cannot reach the Kubernetes API", message=str(error))
    now = datetime.datetime.now(datetime.UTC)
    return _page("list.html", 200, releases=_releases(listed, last_events, now), namespace=namespace)


def _releases(
    listed: Sequence[Mapping[str, Any]],
    last_events: Mapping[tuple[str, str], Mapping[str, Any]],
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """The rows of the list, a release group's members under a row of the group's own."""
    shown = []
    for release in releases(listed):
        phase = release.phase
        group = {"name": release.name, "phase": phase.value if phase else "-", "members": len(release.members)}
        shown.append(
            {
                "namespace": release.namespace,
                "group": group if release.group else None,
                "rows": [_row(canary, last_events, now) for canary in release.members],
            }
        )
    return shown


@blueprint.get("/ui/<namespace>/<name>")
def canary(namespace: str, name: str) -> tuple[str, int]:
    engine: Engine = current_app.extensions["serin"]
    if invalid := _not_names(namespace, name):
        return invalid
    if refused := _refusal(engine, "get", namespace):
        return refused
    now = datetime.datetime.now(datetime.UTC)
    try:
        stored = engine.store.get_canary(namespace, name)
        if stored is None:
            return _page("error.html", 404, title="Not found", message=f"no canary {namespace}/{name}")
        events = engine.store.canary_events(namespace, name)
    except KubeError as error:
        return _page("error.html", 503, title="Cannot reach the Kubernetes API", message=str(error))
    status = CanaryStatus.from_dict(stored.get("status"))
    context: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "status": status,
        "spec": stored.get("spec") or {},
        "request_pending": ((stored.get("metadata") or {}).get("annotations") or {}).get(REQUEST_ANNOTATION),
        "events": [
            {"age": age(event_time(event), now), "type": event.get("type", ""), "message": event.get("message", "")}
            for event in reversed(events)
        ],
        "last_transition": age(status.last_transition_time, now),
    }
    try:
        parsed = parse_canary(stored, engine.settings.default_provider)
    except InvalidCanary as invalid:
        context["invalid"] = str(invalid)
        return _page("canary.html", 200, **context, charts="{}")  # nothing to draw
    start = release_start(events, now)
    plan = engine.reconciler.tick(namespace=namespace, name=name, dry_run=True)
    context["plan"] = plan[0].to_dict() if plan else None
    context["routes"] = _routes(engine, parsed)
    context["threshold"] = parsed.analysis.threshold
    charts = {
        "weight": weight_points(events, start),
        "start": start.timestamp(),
        "end": now.timestamp(),
        "metrics": [
            {"name": chart.name, "min": chart.min, "max": chart.max, "lines": chart.lines, "problem": chart.problem}
            for chart in engine.reconciler.charts(parsed, start, now)
        ],
    }
    return _page("canary.html", 200, **context, charts=_script_json(charts))


def _cross_site() -> tuple[str, int] | None:
    """The 403 page for a POST that a browser sent from another site's page, or None.

    A POST without Origin, Referer and Sec-Fetch-Site is taken: browsers send Origin on every
    cross-origin POST (and Sec-Fetch-Site on every request to an HTTPS origin), so such a request
    comes from curl or a script, which has no visitor's cookie to ride on and could send any
    header it liked anyway.
    """
    own = request.host_url.rstrip("/")  # the scheme, host and port the request came to
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin is None and (referer := request.headers.get("Referer")) is not None:
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is not None and origin != own:
        why = f"this one comes from {origin[:200]}"
    elif site is not None and site != "same-origin":
        why = f"the browser says this one is {site[:50]}"
    else:
        return None
    message = f"{request.path} takes forms from its own page ({own}) only; {why}"
    return _page("error.html", 403, title="Not from this page", message=message)


@blueprint.post("/ui/login")
def login() -> Redirect | tuple[str, int]:
    engine: Engine = current_app.extensions["serin"]
    if refused := _cross_site():
        return refused
    token = request.form.get("token", "").strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        audience = engine.settings.token_audience
        return _page("login.html", 400, message=f"paste a token ({how_to_get_a_token(audience)})")
    try:
        identity = authenticate(engine.store, token, engine.settings.token_audience)
    except KubeError as error:
        return _page("error.html", 503, title="Cannot reach the Kubernetes API", message=str(error))
    if identity is None:
        return _page("login.html", 401, message=not_accepted(engine.settings.token_audience))
    response = redirect("/ui", code=303)
    response.set_cookie(
        COOKIE, token, max_age=COOKIE_SECONDS, path="/ui", secure=True, httponly=True, samesite="Strict"
    )
    return response


@blueprint.post("/ui/logout")
def logout() -> Redirect | tuple[str, int]:
    if refused := _cross_site():
        return refused
    response = redirect("/ui", code=303)
    response.delete_cookie(COOKIE, path="/ui", secure=True, httponly=True, samesite="Strict")
    return response


def _last_events(engine: Engine, namespace: str | None) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The latest Event of each Canary, from one list."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for event in engine.store.canary_events(namespace, None):
        involved = event.get("involvedObject") or {}
        latest[(str(involved.get("namespace", "")), str(involved.get("name", "")))] = event
    return latest


def _row(
    canary: Mapping[str, Any], last_events: Mapping[tuple[str, str], Mapping[str, Any]], now: datetime.datetime
) -> dict[str, Any]:
    metadata = canary["metadata"]
    status = CanaryStatus.from_dict(canary.get("status"))
    key = (metadata.get("namespace", ""), metadata["name"])
    event = last_events.get(key) or {}
    return {
        "namespace": key[0],
        "name": key[1],
        "phase": status.phase.value if status.phase else "-",
        "suspended": bool((canary.get("spec") or {}).get("suspend")),
        "weight": status.canary_weight,
        "failed_checks": status.failed_checks,
        "last_transition": age(status.last_transition_time, now),
        "last_event": event.get("message", ""),
        "last_event_age": age(event_time(event), now) if event else "",
    }


def _routes(engine: Engine, canary: Canary) -> str:
    """The split the routing objects hold now, in words."""
    router = engine.reconciler.router_for(canary.provider)
    if not router.shifts_traffic:
        return f"{canary.provider}: the Services alone (blue/green), no weights"
    try:
        split = router.get_routes(canary)
    except SerinError as error:
        return f"cannot read the routes: {error}"
    if split is None:
        return "no routes yet"
    mirrored = " (requests mirrored to the canary)" if split.mirrored else ""
    return f"primary {split.primary_weight}% · canary {split.canary_weight}%{mirrored}"


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no "</script>" can end it early, whatever a metric's
    query or an error message holds."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
