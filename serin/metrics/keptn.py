"""A ``MetricsProvider`` over Keptn's metrics custom resources (``metrics.keptn.sh/v1beta1``), read from
the cluster Serin runs in, through its Kubernetes access layer (``store.request`` with full API
paths, so that no kind needs adding to ``serin.kube.store.RESOURCES``).

The query names a resource, as in Flagger (its ``keptn`` provider, newer than v1.36):

* ``keptnmetric/<namespace>/<name>``: the KeptnMetric's ``status.value`` (a string, which Keptn's
  metrics operator keeps up to date from its own provider), as a number. A KeptnMetric without a
  value yet is ``NoValuesFound`` (with Keptn's ``status.errMsg`` when it has one).
* ``analysis/<namespace>/<AnalysisDefinition>[/<timeframe>[/<key>=<value>;<key>=<value>...]]``:
  an Analysis of that AnalysisDefinition over the last ``timeframe`` (default ``1m``) with those
  arguments is created, read every second until Keptn has completed it, and deleted; the value is
  1 when it passed and 0 when it did not (so a template checks it with ``thresholdRange.min: 1``).
  Keptn not completing it within 10 seconds (Flagger's wait) is ``MetricsUnavailable``. The tick
  waits for it meanwhile, as Flagger's analysis does.

``keptnmetrics`` and ``analyses`` are accepted for the kinds, in any case, as in Flagger; the
namespace, name and timeframe are lower-cased (Kubernetes names are). Nothing comes from a Secret
(``spec.provider.address`` and ``secretRef`` are ignored): the API server is asked as Serin's
service account, which needs ``get`` on ``keptnmetrics`` and ``create``, ``get`` and ``delete`` on
``analyses`` in the ``metrics.keptn.sh`` group. Its refusal (401/403) is ``InvalidCredentials``
saying so; an object or kind the API server does not have (404) and another refusal are
``InvalidQuery``; an API server that cannot be reached or fails (5xx) is ``MetricsUnavailable``.

Where Serin differs from Flagger:

* Flagger lower-cases the whole query, the arguments' values too; Serin keeps the arguments as
  written (an argument is substituted into the AnalysisValueTemplate's query, where case matters),
  and an argument may contain ``/``;
* an argument that is not ``key=value``, or a timeframe that is not a duration, is ``InvalidQuery``
  (Flagger drops such an argument, and Keptn refuses the Analysis);
* a completed Analysis without a ``status.pass`` verdict is ``NoValuesFound`` at once (Flagger
  keeps waiting until its timeout).

``syntax_error`` checks the query's form without asking the API server.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from serin.kube.store import KubeRejected, KubeStore, NotFound
from serin.model import parse_duration
from serin.ports import (
    InvalidCredentials,
    InvalidQuery,
    MetricsUnavailable,
    NoValuesFound,
    PermanentError,
    ProviderConfig,
    SerinError,
    TemporaryError,
)

LOG = logging.getLogger("serin.metrics.keptn")

GROUP = "metrics.keptn.sh"
VERSION = "v1beta1"
API = f"/apis/{GROUP}/{VERSION}"
KEPTN_METRIC, ANALYSIS = "keptnmetric", "analysis"
KINDS = {"keptnmetric": KEPTN_METRIC, "keptnmetrics": KEPTN_METRIC, "analysis": ANALYSIS, "analyses": ANALYSIS}
FORMAT = (
    "a keptn query is keptnmetric/<namespace>/<name> or "
    "analysis/<namespace>/<analysis definition>[/<timeframe>[/<key>=<value>;...]]"
)
DEFAULT_TIMEFRAME = "1m"
# Flagger waits this long for Keptn to complete an Analysis, looking every second.
ANALYSIS_TIMEOUT = 10.0
POLL_INTERVAL = 1.0
# The Analysis's name is the definition's and six random hex digits, within Kubernetes' 253.
_NAME_ROOM = 253 - 7


class Requests(Protocol):
    """What the provider needs of Serin's access layer (``KubeStore``): one request by full path."""

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, what: str = ""
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class KeptnQuery:
    kind: str
    namespace: str
    name: str
    timeframe: str = DEFAULT_TIMEFRAME
    args: tuple[tuple[str, str], ...] = ()


def build(config: ProviderConfig, store: KubeStore) -> KeptnProvider:
    """Keptn in Serin's own cluster, asked through ``store``; the template's address and Secret are unused."""
    return KeptnProvider(store)


def outside(query: str, namespace: str) -> str | None:
    """Why a Canary of ``namespace`` may not ask ``query``, which names another namespace, or None.
    Keptn is asked as Serin, which may read KeptnMetrics and create Analyses in every namespace."""
    asked = parse_query(query).namespace
    if asked == namespace:
        return None
    return (
        f"keptn query {query} is in namespace {asked}: "
        f"a Canary's Keptn metrics and analyses are those of its own namespace, {namespace}"
    )


def parse_query(query: str) -> KeptnQuery:
    """The resource a keptn query names; InvalidQuery saying what is wrong with its form."""
    parts = query.strip().split("/")
    if len(parts) < 3:
        raise InvalidQuery(f"keptn query {query!r} has too few parts: {FORMAT}")
    kind = KINDS.get(parts[0].strip().lower())
    if kind is None:
        raise InvalidQuery(f"keptn query {query!r} names kind {parts[0].strip()!r}, not keptnmetric or analysis")
    namespace, name = parts[1].strip().lower(), parts[2].strip().lower()
    if not namespace or not name:
        raise InvalidQuery(f"keptn query {query!r} lacks a namespace or a name: {FORMAT}")
    if kind == KEPTN_METRIC:
        return KeptnQuery(kind, namespace, name)
    timeframe = parts[3].strip().lower() if len(parts) > 3 else ""
    timeframe = timeframe or DEFAULT_TIMEFRAME
    try:
        parse_duration(timeframe)
    except ValueError as error:
        raise InvalidQuery(f"keptn query {query!r} has timeframe {timeframe!r}: {error}") from None
    args: list[tuple[str, str]] = []
    for item in "/".join(parts[4:]).split(";"):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InvalidQuery(f"keptn query {query!r} has argument {item.strip()!r}, not <key>=<value>")
        args.append((key.strip(), value.strip()))
    return KeptnQuery(kind, namespace, name, timeframe, tuple(args))


class KeptnProvider:
    """KeptnMetrics and Analyses in the cluster, read and written through Serin's access layer."""

    def __init__(
        self,
        store: Requests,
        analysis_timeout: float = ANALYSIS_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.analysis_timeout = analysis_timeout
        self.poll_interval = poll_interval
        self.sleep = sleep

    def __repr__(self) -> str:
        return "KeptnProvider()"

    def query(self, query: str, interval_seconds: float = 60.0) -> float:
        """A KeptnMetric's value, or 1/0 for an Analysis that passed/failed."""
        parsed = parse_query(query)
        if parsed.kind == KEPTN_METRIC:
            return self._metric(parsed)
        return self._analysis(parsed)

    def syntax_error(self, query: str) -> str | None:
        """What is wrong with the query's form, or None; the API server is not asked."""
        try:
            parse_query(query)
        except InvalidQuery as error:
            return str(error)
        return None

    def _metric(self, query: KeptnQuery) -> float:
        where = f"KeptnMetric {query.namespace}/{query.name}"
        path = f"{API}/namespaces/{query.namespace}/keptnmetrics/{query.name}"
        missing = InvalidQuery(f"{where} does not exist (or Keptn's {GROUP}/{VERSION} is not installed)")
        found = self._request("GET", path, f"get {where}", "get keptnmetrics", missing)
        status = _status(found)
        value = status.get("value")
        if value is None or value == "":
            why = f": {status['errMsg']}" if status.get("errMsg") else ""
            raise NoValuesFound(f"{where} has no value yet{why}")
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError(value)
            number = float(value)
        except ValueError:
            raise InvalidQuery(f"{where} has a value that is not a number: {value!r}") from None
        if math.isnan(number):
            raise NoValuesFound(f"{where} has no value (NaN)")
        return number

    def _analysis(self, query: KeptnQuery) -> float:
        namespace = query.namespace
        name = f"{query.name[:_NAME_ROOM].rstrip('-.')}-{secrets.token_hex(3)}"
        where = f"Analysis {namespace}/{name} of AnalysisDefinition {namespace}/{query.name}"
        collection = f"{API}/namespaces/{namespace}/analyses"
        analysis = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Analysis",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "analysisDefinition": {"name": query.name},
                "timeframe": {"recent": query.timeframe},
                "args": dict(query.args),
            },
        }
        missing = InvalidQuery(f"cannot create Analyses in {namespace}: Keptn's {GROUP}/{VERSION} is not installed")
        self._request("POST", collection, f"create {where}", "create analyses", missing, analysis)
        try:
            return self._verdict(f"{collection}/{name}", where)
        finally:
            try:
                self.store.request("DELETE", f"{collection}/{name}", what=f"delete {where}")
            except NotFound:
                pass
            except SerinError as error:
                LOG.warning("could not delete the %s: %s", where, error)

    def _verdict(self, path: str, where: str) -> float:
        """Wait for Keptn to complete the Analysis; 1.0 when it passed, 0.0 when it failed."""
        deadline = time.monotonic() + self.analysis_timeout
        gone = MetricsUnavailable(f"{where} disappeared before Keptn completed it")
        while True:
            # As Flagger: Keptn needs a moment before there is anything to read.
            self.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
            found = self._request("GET", path, f"get {where}", "get analyses", gone)
            status = _status(found)
            if status.get("state") == "Completed":
                passed = status.get("pass")
                if isinstance(passed, bool):
                    return 1.0 if passed else 0.0
                raise NoValuesFound(f"Keptn completed {where} without a verdict (status.pass)")
            if time.monotonic() >= deadline:
                state = status.get("state") or "no state"
                raise MetricsUnavailable(
                    f"Keptn did not complete {where} within {self.analysis_timeout:g}s (it is {state})"
                )

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        permission: str,
        missing: SerinError,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The store's answer, its errors turned into the metrics provider's."""
        try:
            return self.store.request(method, path, body, what=what)
        except NotFound:
            raise missing from None
        except KubeRejected as error:
            status = re.match(rf"{re.escape(what)}: (\d{{3}}) ", str(error))
            if status is not None and status.group(1) in ("401", "403"):
                raise InvalidCredentials(
                    f"the API server refused to {what} ({status.group(1)}): Serin's service account needs "
                    f"permission to {permission} in {GROUP} (Keptn needs no Secret)"
                ) from None
            raise InvalidQuery(str(error)) from None
        except TemporaryError as error:
            raise MetricsUnavailable(str(error)) from None
        except PermanentError as error:
            raise InvalidQuery(str(error)) from None


def _status(found: Mapping[str, Any]) -> Mapping[str, Any]:
    status = found.get("status")
    return status if isinstance(status, dict) else {}
