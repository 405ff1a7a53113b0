"""The ports between the engine and the outside world: one Protocol per kind of backend.

The decision core never sees these; the reconciler calls them to observe and to act. Each backend
(a mesh router, a metrics provider) is one module implementing one of these, picked by name.
Backends raise the errors below, never their library's own, so the reconciler can tell a missing
value from a backend that is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from serin.model import Canary, Webhook


class SerinError(Exception):
    """Base of the errors the engine's ports raise."""


class NoValuesFound(SerinError):
    """The metrics backend answered, but the query returned no data (never counts as a pass)."""


class MetricsUnavailable(SerinError):
    """The metrics backend could not be reached or answered with an error: hold the step."""


class RouterError(SerinError):
    """Routing objects could not be read or written."""


@dataclass(frozen=True)
class Routes:
    """Traffic split as the router's objects say it is now (percentages)."""

    primary_weight: int
    canary_weight: int
    mirrored: bool = False


class Router(Protocol):
    """Owns the mesh objects that split traffic between ``<target>-primary`` and the canary."""

    def reconcile(self, canary: Canary) -> None:
        """Create or update the routing objects, keeping the current weights (100/0 when new)."""

    def get_routes(self, canary: Canary) -> Routes | None:
        """Current split, or None when the routing objects do not exist yet."""

    def set_routes(self, canary: Canary, primary_weight: int, canary_weight: int) -> None:
        """Set the split (absolute values, so repeating it is harmless)."""

    def finalize(self, canary: Canary) -> None:
        """Route everything to the primary and remove what only the canary needed."""


class MetricsProvider(Protocol):
    def query(self, query: str) -> float:
        """The query's single value; NoValuesFound or MetricsUnavailable otherwise."""


@dataclass(frozen=True)
class HookResult:
    name: str
    ok: bool
    message: str


class HookCaller(Protocol):
    def call(self, hook: Webhook, payload: Mapping[str, Any]) -> HookResult:
        """POST the payload to the hook; ok when it answers 2xx up to 202 in time."""
