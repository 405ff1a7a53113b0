"""The ports between the engine and the outside world: one Protocol per kind of backend, one error tree.

The decision core never sees these; the reconciler calls them to observe and to act. Each backend
(a mesh router, a metrics provider, the hook caller, the Kubernetes access layer) is one module
implementing one of these, picked by name. Backends raise the errors below, never their library's
own, and every error is one of two kinds:

* ``TemporaryError``: asking again later may succeed (a backend that is down, slow or overloaded).
  The step holds and says so; holding is bounded (``serin.decide.UNAVAILABLE_LIMIT``), so an
  outage cannot pin traffic on an unanalysed canary forever.
* ``PermanentError``: asking again gives the same answer (a query Prometheus cannot parse, a
  template that does not exist, a request the API server refuses). In the analysis it is a
  failed check at once; elsewhere a clear error for the user.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from serin.model import Canary, Webhook


class SerinError(Exception):
    """Base of the errors the engine's ports raise."""


class TemporaryError(SerinError):
    """Retrying later may succeed: hold, report, and try again on the next step."""


class PermanentError(SerinError):
    """Retrying gives the same answer: a failed check, or an error the user must fix."""


class NoValuesFound(PermanentError):
    """The metrics backend answered, but the query returned no data (never counts as a pass)."""


class MetricsUnavailable(TemporaryError):
    """The metrics backend could not be reached, timed out or failed on its side: hold the step."""


class InvalidCredentials(PermanentError):
    """The backend refused the credentials (401, 403), or the Secret that should hold them is
    missing or lacks a key. The message names the Secret, never what it holds."""


class InvalidQuery(PermanentError):
    """The query itself is wrong (refused by the backend, an unknown placeholder, a missing
    template, a result that is not one number): a failed check, whatever the backend's health."""


@dataclass(frozen=True)
class Routes:
    """Traffic split as the router's objects say it is now (percentages)."""

    primary_weight: int
    canary_weight: int
    mirrored: bool = False


class Router(Protocol):
    """Owns the mesh objects that split traffic between ``<target>-primary`` and the canary."""

    # False for a provider with no routing object (no mesh): the split is what the status says.
    shifts_traffic: bool
    # The kinds of object it writes (each in ``serin.kube.store.RESOURCES``).
    kinds: tuple[str, ...]

    def reconcile(
        self, canary: Canary, split: tuple[int, int] = (100, 0), session: str | None = None, mirror: bool = False
    ) -> None:
        """Create or update every routing object as the Canary says, routing ``split``."""

    def get_routes(self, canary: Canary) -> Routes | None:
        """Current split, or None when the routing objects do not exist (or reach no canary)."""

    def set_routes(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
    ) -> None:
        """Set the split (absolute values, so repeating it is harmless); creates what is missing.

        ``session`` (``name=value``, with ``analysis.sessionAffinity``) is the cookie of the release:
        set on the canary's responses and routed to the canary while it has traffic, taken back
        from whoever still carries it once it has none. ``mirror``: copy requests to the canary
        too (``analysis.mirror``; its responses are dropped)."""

    def finalize(self, canary: Canary) -> None:
        """Give back the routing objects that were the user's before the Canary, and route all
        traffic of Serin's own to the primary (the garbage collector removes them with the Canary)."""


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to query one metrics backend: a MetricTemplate's ``spec.provider`` with its
    Secret read (or the Canary's Prometheus for builtin metrics). Hashable, so that one provider
    (and its connection pool) serves every metric with the same backend."""

    type: str
    address: str = ""
    region: str = ""
    insecure_skip_verify: bool = False
    # Extra HTTP headers, each with its values.
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # ``<namespace>/<name>`` of the Secret the credentials come from (empty: none), for messages.
    secret_name: str = ""
    # The Secret's data, decoded; never printed.
    secret: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def credential(self, *keys: str, required: bool = True) -> str:
        """The first of ``keys`` the Secret has; InvalidCredentials naming the Secret when none is."""
        data = dict(self.secret)
        for key in keys:
            if data.get(key):
                return data[key]
        if not required:
            return ""
        where = f"Secret {self.secret_name}" if self.secret_name else "no secretRef"
        raise InvalidCredentials(f"{self.type} needs {' or '.join(keys)} in its credentials: {where} has none")


class MetricsProvider(Protocol):
    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """The query's single value; NoValuesFound, InvalidQuery or MetricsUnavailable otherwise.
        ``interval_seconds`` is the metric's interval, for backends whose queries cannot say
        their own time window (PromQL says it with ``{{ interval }}``)."""

    def syntax_error(self, query: str) -> str | None:
        """What the backend finds wrong with the query's syntax (None: nothing), without running it;
        MetricsUnavailable when it cannot be asked. Admission asks, to refuse a broken query early."""


@runtime_checkable
class TimeSeriesProvider(Protocol):
    """A metrics backend that answers for any past time, and with every sample over a range: what
    comparing the canary with the primary and replaying a past release need (Prometheus does)."""

    def query_at(self, query: str, at: datetime.datetime) -> float:
        """The query's single value as it was at ``at``; the errors of ``MetricsProvider.query``."""

    def series(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[float, ...]:
        """The query's values every ``step_seconds`` from ``start`` to ``end`` (samples without a
        value left out); NoValuesFound when there is none."""

    def points(
        self, query: str, start: datetime.datetime, end: datetime.datetime, step_seconds: float
    ) -> tuple[tuple[float, float], ...]:
        """``series`` with the time of each value (seconds since the epoch), for charts."""


@dataclass(frozen=True)
class HookResult:
    """A hook's answer. ``temporary``: the hook could not be asked (unreachable, timed out, 5xx),
    as opposed to a hook that answered no; only an answer is a verdict."""

    name: str
    ok: bool
    message: str
    temporary: bool = False


class HookCaller(Protocol):
    def call(self, hook: Webhook, payload: Mapping[str, Any]) -> HookResult:
        """POST the payload to the hook; ok when it answers 2xx up to 202 in time."""
