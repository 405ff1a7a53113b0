"""Fixtures for unit tests: the app without an API server, and loopback without a proxy."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from kubernetes import client

from handlers import create_app
from serin.config import Settings
from serin.scope import Scope
from tests.conftest import LOOPBACK_ALLOWED


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured in the developer's shell must not carry requests to the local test servers.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def unreachable_app(settings: Settings) -> FlaskClient:
    # An API server nobody listens on: the requests made with it must be answered without one.
    configuration = client.Configuration(host="https://127.0.0.1:9")
    return create_app(settings, api=client.ApiClient(configuration)).test_client()


@pytest.fixture
def app_client() -> FlaskClient:
    # No TLS here to carry the API server's certificate: reviews are answered as with
    # SERIN_ADMISSION_AUTHENTICATION=none (tests/integration/test_security.py has the real check).
    return unreachable_app(Settings(admission_authentication="none", egress=LOOPBACK_ALLOWED))


@pytest.fixture
def namespaced_client() -> FlaskClient:
    """The app of an install that serves namespace team-a only (SERIN_WATCH_NAMESPACES=team-a)."""
    return unreachable_app(Settings(admission_authentication="none", egress=LOOPBACK_ALLOWED, scope=Scope(("team-a",))))
