"""Fixtures shared by all tests; the local-cluster ones live with the code that runs the cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serin import egress
from serin.destinations import Destinations

pytest_plugins = ["localcluster.testing", "tests.scheduling"]

# The tests' own backends, hooks and alert receivers listen on loopback, which an install denies
# by default; what the tests ask from their own process is held to this instead.
LOOPBACK_ALLOWED = Destinations.parse(denied="169.254.0.0/16,fe80::/10")


@pytest.fixture(autouse=True)
def loopback_allowed() -> Iterator[None]:
    before = egress.policy()
    egress.use(LOOPBACK_ALLOWED)
    yield
    egress.use(before)
