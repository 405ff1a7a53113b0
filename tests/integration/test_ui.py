"""The page in a real browser: headless Chromium (Debian's) driven by Playwright, logged in with a
token of an account that may only get and list Canaries, watching a live promotion on the local
control plane. Screenshots are kept under ``artifacts/ui/`` (or ``$SERIN_ARTIFACTS/ui``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster.browser import CHROMIUM_ARGS, ensure_chromium
from localcluster.serin_server import TOKEN_AUDIENCE
from localcluster.testing import ClusterHandle, in_ci
from tests.integration.helpers import (
    SerinServer,
    initialized,
    set_image,
    tick,
    wait_for_canary_traffic,
)

# One worker runs the whole module: one browser.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SERIN_ARTIFACTS") or ROOT / "artifacts") / "ui"
ANALYSIS = {
    "interval": "10s",
    "threshold": 2,
    "maxWeight": 40,
    "stepWeight": 20,
    "metrics": [
        {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
    ],
}
VIEWER: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer", "namespace": "serin-tests"}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "serin-tests-viewer"},
        "rules": [{"apiGroups": ["serin.dev"], "resources": ["canaries"], "verbs": ["get", "list"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "serin-tests-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "serin-tests-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "serin-tests"}],
    },
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        chromium = ensure_chromium()
        from playwright.sync_api import sync_playwright
    except (RuntimeError, ImportError) as error:
        if in_ci():
            pytest.fail(f"no browser for the page's tests: {error}")
        pytest.skip(f"no browser for the page's tests: {error}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


@pytest.fixture
def viewer_token(local_cluster: ClusterHandle, tokens: dict[str, str]) -> str:
    local_cluster.apply(VIEWER)
    return local_cluster.kubectl(
        "create", "token", "viewer", "-n", "serin-tests", "--duration=1h", f"--audience={TOKEN_AUDIENCE}"
    ).stdout.strip()


def log_in(page: Any, server: SerinServer, token: str) -> None:
    page.goto(f"{server.url}/ui?refresh=0")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_load_state()


def test_a_live_promotion_watched_in_the_browser(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    viewer_token: str,
    namespace: str,
    browser: Any,
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=ANALYSIS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    log_in(page, serin_server, viewer_token)
    row = page.locator(f'tr[data-canary="{namespace}/podinfo"]')
    assert row.locator("td").nth(2).inner_text() == "Initialized"
    assert row.locator("td").nth(3).inner_text() == "0%"
    assert "Initialization done!" in row.locator("td").nth(6).inner_text()

    # The page of the Canary refreshes itself every second while the release goes on.
    page.goto(f"{serin_server.url}/ui/{namespace}/podinfo?refresh=1")
    assert page.inner_text("#phase") == "Initialized"
    set_image(local_cluster, namespace, "6.0.1")
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    seen: list[tuple[str, str]] = []
    for _ in range(30):
        ticked_at = time.time()
        report = tick(serin_server, token, namespace)["canaries"][0]
        # No reload by the test: what it reads, the page fetched by itself.
        deadline = time.monotonic() + 10
        expected = (report["phase"], f"{report['weight']}%")
        while time.monotonic() < deadline:
            shown = (page.inner_text("#phase"), page.inner_text("#weight"))
            if shown == expected:
                break
            page.wait_for_timeout(200)
        assert shown == expected, (shown, report)
        if not seen or seen[-1] != shown:
            seen.append(shown)
        if shown[1] == "40%":
            page.screenshot(path=str(ARTIFACTS / "canary-at-40.png"), full_page=True)
        if report["phase"] == "Succeeded":
            break
        if report["phase"] == "Progressing" and report["weight"]:
            wait_for_canary_traffic(local_cluster, namespace, since=ticked_at)

    weights = [int(weight.rstrip("%")) for phase, weight in seen if phase == "Progressing"]
    assert weights == sorted(weights) and {20, 40} <= set(weights), seen
    assert seen[-1] == ("Succeeded", "0%"), seen
    page.wait_for_selector("#chart-weight canvas")
    assert page.locator(".chart canvas").count() == 3, page.inner_html("#charts")
    assert page.locator(".chart .problem").count() == 0, page.inner_html("#charts")
    assert page.inner_text("#routes") == "primary 100% · canary 0%"
    assert [cell.inner_text() for cell in page.locator("#checks tbody tr td:nth-child(3)").all()] == ["passed"] * 2
    # The step's Events are recorded just after its status: a refresh or two later at most. (A
    # locator, not a predicate: waiting on a JavaScript string needs eval, which the page's
    # Content-Security-Policy forbids as soon as the wait has to poll.)
    page.locator("#events", has_text="Promotion completed! Scaling down").wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "canary-succeeded.png"), full_page=True)
    # The Canary's page refreshes itself: the list opens in a page of its own (the session is the
    # context's), or the next refresh could cut its navigation short.
    page.close()
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{serin_server.url}/ui?refresh=0")
    page.screenshot(path=str(ARTIFACTS / "canaries.png"), full_page=True)
    assert errors == []
    context.close()


def test_the_page_is_for_whom_the_api_server_allows(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], browser: Any
) -> None:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    response = page.goto(f"{serin_server.url}/ui/default/podinfo")
    assert response is not None and response.status == 401
    page.fill("#token", "not-a-token")
    page.click("#login")
    assert page.inner_text("#problem") == (
        "the API server did not accept this token for audience serin "
        "(for example from `kubectl create token ACCOUNT --audience serin`)"
    )

    log_in(page, serin_server, tokens["stranger"])
    assert page.inner_text("h1") == "Not allowed"
    assert page.inner_text("#problem").startswith(
        "system:serviceaccount:serin-tests:stranger may not list canaries.serin.dev in all namespaces"
    )
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    assert cookies["serin-token"]["httpOnly"] and cookies["serin-token"]["secure"]
    assert cookies["serin-token"]["sameSite"] == "Strict"
    page.click("text=Log out")
    assert "serin-token" not in {cookie["name"] for cookie in context.cookies()}
    context.close()
