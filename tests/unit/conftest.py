"""Fixtures for unit tests that talk to small HTTP servers of their own on loopback."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured in the developer's shell must not carry requests to the local test servers.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
