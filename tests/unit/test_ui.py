"""The page's answers that need no API server, and the timeline it draws from Events."""

from __future__ import annotations

import datetime
import json
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from markupsafe import escape

from handlers import ui
from handlers.ui import SECURITY_HEADERS, _script_json
from serin.kube.auth import Identity
from serin.timeline import DEFAULT_WINDOW, MAX_WINDOW, release_start, weight_points

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)
# Where the tests' requests are sent: the origin of the server's own pages.
SERVER = "https://serin.example:8443"
FROM_THE_PAGE = {"Origin": SERVER, "Sec-Fetch-Site": "same-origin"}
# What an install that serves team-a only says of team-b.
NOT_SERVED = (
    "namespace team-b is not served by this install of Serin, which serves team-a only (SERIN_WATCH_NAMESPACES)"
)
CROSS_SITE = [
    pytest.param({"Origin": "https://evil.example"}, "this one comes from https://evil.example", id="other-origin"),
    pytest.param({"Origin": "https://serin.example"}, "this one comes from https://serin.example", id="other-port"),
    pytest.param(
        {"Origin": "http://serin.example:8443"}, "this one comes from http://serin.example:8443", id="other-scheme"
    ),
    # What a sandboxed frame, or a page whose referrer policy is no-referrer, sends.
    pytest.param({"Origin": "null"}, "this one comes from null", id="opaque-origin"),
    pytest.param(
        {"Referer": "https://evil.example/page?x=1"}, "this one comes from https://evil.example", id="other-referer"
    ),
    pytest.param(
        {"Origin": SERVER, "Sec-Fetch-Site": "cross-site"},
        "the browser says this one is cross-site",
        id="fetch-cross-site",
    ),
    pytest.param(
        {"Origin": SERVER, "Sec-Fetch-Site": "same-site"},
        "the browser says this one is same-site",
        id="fetch-same-site",
    ),
    pytest.param({"Sec-Fetch-Site": "none"}, "the browser says this one is none", id="fetch-none"),
]
FROM_HERE = [
    pytest.param(FROM_THE_PAGE, id="origin"),
    pytest.param({"Referer": f"{SERVER}/ui?refresh=0"}, id="referer"),
    pytest.param({"Sec-Fetch-Site": "same-origin"}, id="fetch-metadata-only"),
    # No browser sends a cross-site POST without Origin: this is curl or a script, which has no
    # one else's cookie to ride on.
    pytest.param({}, id="no-browser"),
]


def test_without_a_token_the_page_is_the_login_form(app_client: FlaskClient) -> None:
    response = app_client.get("/ui")
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<form method="post" action="/ui/login">' in page
    assert 'id="problem"' not in page
    assert {key: response.headers[key] for key in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param(
            {}, "paste a token (for example from `kubectl create token ACCOUNT --audience serin`)", id="no-token"
        ),
        pytest.param(
            {"token": "  "},
            "paste a token (for example from `kubectl create token ACCOUNT --audience serin`)",
            id="blank",
        ),
        pytest.param(
            {"token": "x" * 20_000},
            "paste a token (for example from `kubectl create token ACCOUNT --audience serin`)",
            id="too-long",
        ),
    ],
)
def test_a_login_without_a_usable_token_says_so(app_client: FlaskClient, form: dict[str, str], message: str) -> None:
    response = app_client.post("/ui/login", data=form)
    assert response.status_code == 400
    assert f'<p class="problem" id="problem">{message}</p>' in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


def test_an_unreachable_api_server_is_a_503_page(app_client: FlaskClient) -> None:
    response = app_client.get("/ui/shop/web", headers={"Authorization": "Bearer some-token"})
    assert response.status_code == 503
    assert "<h1>Cannot reach the Kubernetes API</h1>" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param(
            "/ui?namespace=x/../../../../api/v1/namespaces/kube-system/secrets/foo?",
            "namespace must be a namespace name (a DNS-1123 label), not 'x/../../../../api/v1/namespaces/kube-system/"
            "secrets/foo?'",
            id="list",
        ),
        pytest.param(
            "/ui/%2E%2E/web", "namespace must be a namespace name (a DNS-1123 label), not '..'", id="canary-namespace"
        ),
        pytest.param(
            "/ui/shop/%2E%2E", "name must be a Canary name (a DNS-1123 subdomain), not '..'", id="canary-name"
        ),
    ],
)
def test_a_page_of_no_namespace_or_name_is_a_400_before_any_request(
    app_client: FlaskClient, path: str, message: str
) -> None:
    """Anything else would become part of the path Serin asks the API server, as itself."""
    response = app_client.get(path, headers={"Authorization": "Bearer some-token"})
    assert response.status_code == 400
    assert f'<p class="problem" id="problem">{escape(message)}</p>' in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/ui?namespace=team-b", "/ui/team-b/web"], ids=["list", "canary"])
def test_a_page_of_a_namespace_the_install_does_not_serve_is_a_404_before_any_request(
    namespaced_client: FlaskClient, path: str
) -> None:
    response = namespaced_client.get(path, headers={"Authorization": "Bearer some-token"})
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<h1>Not served here</h1>" in page
    assert f'<p class="problem" id="problem">{escape(NOT_SERVED)}</p>' in page


@pytest.mark.parametrize("headers", FROM_HERE)
def test_logout_clears_the_cookie(app_client: FlaskClient, headers: dict[str, str]) -> None:
    response = app_client.post("/ui/logout", headers=headers, base_url=SERVER)
    assert (response.status_code, response.headers["Location"]) == (303, "/ui")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("serin-token=;") and "Max-Age=0" in cookie and "Path=/ui" in cookie


@pytest.mark.parametrize("path", ["/ui/login", "/ui/logout"])
@pytest.mark.parametrize(("headers", "why"), CROSS_SITE)
def test_a_login_or_logout_from_another_site_is_refused(
    app_client: FlaskClient, path: str, headers: dict[str, str], why: str
) -> None:
    """Another site's page could otherwise log its visitor in as someone else, or out."""
    response = app_client.post(path, data={"token": "some-token"}, headers=headers, base_url=SERVER)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "<h1>Not from this page</h1>" in page
    message = f"{path} takes forms from its own page ({SERVER}) only; {why}"
    assert f'<p class="problem" id="problem">{escape(message)}</p>' in page
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("headers", FROM_HERE)
def test_a_login_from_the_page_itself_goes_on_to_the_token(app_client: FlaskClient, headers: dict[str, str]) -> None:
    """Checked with the API server, which nobody answers for here."""
    response = app_client.post("/ui/login", data={"token": "some-token"}, headers=headers, base_url=SERVER)
    assert response.status_code == 503
    assert "<h1>Cannot reach the Kubernetes API</h1>" in response.get_data(as_text=True)


def test_the_login_cookie_lasts_an_hour(app_client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """As long as a token of `kubectl create token` does by default; the page sends it to /ui only,
    never to scripts or other sites."""
    monkeypatch.setattr(ui, "authenticate", lambda store, token, audience: Identity("someone", "1", ()))
    response = app_client.post("/ui/login", data={"token": "some-token"}, headers=FROM_THE_PAGE, base_url=SERVER)
    assert (response.status_code, response.headers["Location"]) == (303, "/ui")
    name, *attributes = response.headers["Set-Cookie"].split("; ")
    assert name == "serin-token=some-token"
    assert sorted(a for a in attributes if not a.startswith("Expires=")) == [
        "HttpOnly",
        "Max-Age=3600",
        "Path=/ui",
        "SameSite=Strict",
        "Secure",
    ]


def test_the_pages_links_and_forms_tell_the_server_their_origin() -> None:
    """The login form's POST must say where it comes from to be taken: with a referrer policy of
    no-referrer, browsers send "Origin: null" instead; with same-origin, no other site learns
    which page linked to it."""
    assert SECURITY_HEADERS["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/static/vendor/uplot/uPlot.iife.min.js", "/static/ui.js", "/static/ui.css"])
def test_the_pages_assets_are_served_from_the_package(app_client: FlaskClient, path: str) -> None:
    response = app_client.get(path)
    assert response.status_code == 200 and len(response.data) > 500
    response.close()


def test_chart_data_cannot_end_its_script_element() -> None:
    data = {"problem": "query </script><script>alert(1)</script> & more"}
    text = _script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data


def event(message: str, at: datetime.datetime) -> dict[str, str]:
    return {"message": message, "lastTimestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def minutes(n: float) -> datetime.datetime:
    return NOW - datetime.timedelta(minutes=n)


def test_weight_over_a_release_from_its_events() -> None:
    events = [
        event("Advance web.shop canary weight 20", minutes(50)),  # an earlier release, before the window
        event("New revision detected! Scaling up web.shop", minutes(10)),
        event("Starting canary analysis for web.shop", minutes(9)),
        event("Advance web.shop canary weight 20", minutes(9)),
        event("Advance web.shop canary weight 40", minutes(8)),
        event("Advance web.shop canary iteration 1/2", minutes(7.5)),
        event("Copying web.shop template spec to web-primary.shop", minutes(7)),
        event("Routing all traffic to primary", minutes(6.5)),
        event("Promotion completed! Scaling down web.shop", minutes(6)),
    ]
    start = release_start(events, NOW)
    assert start == minutes(10)
    assert weight_points(events, start) == [
        (minutes(10).timestamp(), 0),
        (minutes(9).timestamp(), 20),
        (minutes(8).timestamp(), 40),
        (minutes(6.5).timestamp(), 0),
        (minutes(6).timestamp(), 0),
    ]


def test_blue_green_and_a_rollback_set_all_or_nothing() -> None:
    events = [
        event("Retry requested! Restarting analysis for web.shop", minutes(5)),
        event("Routing all traffic to canary", minutes(4)),
        event("Canary failed! Scaling down web.shop", minutes(3)),
    ]
    assert weight_points(events, release_start(events, NOW)) == [
        (minutes(5).timestamp(), 0),
        (minutes(4).timestamp(), 100),
        (minutes(3).timestamp(), 0),
    ]


def test_the_window_without_a_release_and_for_a_very_long_one() -> None:
    assert release_start([], NOW) == NOW - DEFAULT_WINDOW
    old = [event("New revision detected! Scaling up web.shop", NOW - 2 * MAX_WINDOW)]
    assert release_start(old, NOW) == NOW - MAX_WINDOW


def test_a_release_group_is_one_release_on_the_list(app_client: FlaskClient) -> None:
    def stored(name: str, phase: str, group: str = "") -> dict[str, Any]:
        return {
            "metadata": {"namespace": "shop", "name": name},
            "spec": {"group": group} if group else {},
            "status": {"phase": phase, "lastTransitionTime": "2026-11-28T11:00:00Z"},
        }

    listed = [
        stored("worker", "Succeeded", "checkout"),
        stored("cart", "Initialized"),
        stored("api", "Failed", "checkout"),
    ]
    shown = ui._releases(listed, {}, NOW)
    assert [(entry["group"], [row["name"] for row in entry["rows"]]) for entry in shown] == [
        (None, ["cart"]),
        ({"name": "checkout", "phase": "Failed", "members": 2}, ["api", "worker"]),
    ]
    with app_client.application.test_request_context("/ui"):
        page = flask.render_template("list.html", releases=shown, namespace=None)
    assert '<tr class="group" data-group="shop/checkout">' in page
    assert '<tr data-canary="shop/api" class="member">' in page
    assert '<tr data-canary="shop/cart">' in page
