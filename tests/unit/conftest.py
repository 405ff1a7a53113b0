"""Fixtures for unit tests: the app without an API server, and loopback without a proxy."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from kubernetes import client

from handlers import create_app
from serin.config import Settings
from tests.conftest import LOOPBACK_ALLOWED


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured in the developer's shell must not carry requests to the local test servers.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def app_client() -> FlaskClient:
    # An API server nobody listens on: the requests made with it must be answered without one.
    configuration = client.Configuration(host="https://127.0.0.1:9")
    # No TLS here to carry the API server's certificate: reviews are answered as with
    # SERIN_ADMISSION_AUTHENTICATION=none (tests/integration/test_security.py has the real check).
    settings = Settings(admission_authentication="none", egress=LOOPBACK_ALLOWED)
    app = create_app(settings, api=client.ApiClient(configuration))
    return app.test_client()
