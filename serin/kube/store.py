"""The one way Serin reads and writes Kubernetes objects: the reconciler, admission and routers alike.

Objects travel as the plain dicts the API server speaks: the client's typed models are skipped
(they cost time and drop fields they do not know), only its configuration, authentication and
connection pool are used. Objects Serin owns are written with server-side apply under the field
manager ``serin``: one request, no read before it, and the API server merges what others set.

No library exception leaves this module. Failures are ``KubeError``s of the engine's two kinds
(``serin.ports``): ``KubeUnavailable`` and ``Conflict`` are temporary (asking again later may
work), ``NotFound`` and ``KubeRejected`` are permanent (the request itself is refused).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import datetime
import email.utils
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client

from serin.kube.client import Connection
from serin.model import API_GROUP, Canary
from serin.ports import PermanentError, SerinError, TemporaryError
from serin.workloads import MANAGED_FOR_LABEL, TARGET_LABEL

CANARY_VERSION = "v1beta1"
CANARIES = f"/apis/{API_GROUP}/{CANARY_VERSION}"
FIELD_MANAGER = "serin"
# Every write names Serin as its field manager, so `managedFields` says who set what.
# Strict: a field the schema does not know is an error, not silently dropped, so what Serin
# writes is exactly what is stored.
MANAGER = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
# A repeated Event whose count update keeps losing races is dropped after this many tries.
EVENT_UPDATE_ATTEMPTS = 3
# On an Event: the step that last said it, so that sending it again for that step counts nothing.
STEP_ANNOTATION = "serin.dev/step"
# When an Event was last said, to the microsecond: its timestamps only count seconds, and a page
# must still show which of two Events of one second came last.
SEEN_ANNOTATION = "serin.dev/seen-at"


class KubeError(SerinError):
    """The API server refused or could not be reached."""


class KubeUnavailable(KubeError, TemporaryError):
    """No answer, a timeout, or a 5xx/429: the API server may answer later."""


class KubeRejected(KubeError, PermanentError):
    """The API server refused the request (400, 403, 422, ...): asking again changes nothing."""


class NotFound(KubeError, PermanentError):
    pass


class Conflict(KubeError, TemporaryError):
    """A write lost against a newer version of the object, or the object already exists."""


# kind -> (API group/version, plural). Every kind Serin touches, in one place.
RESOURCES: Mapping[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "ControllerRevision": ("apps/v1", "controllerrevisions"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "Service": ("v1", "services"),
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Event": ("v1", "events"),
    "Canary": (f"{API_GROUP}/{CANARY_VERSION}", "canaries"),
    "MetricTemplate": (f"{API_GROUP}/{CANARY_VERSION}", "metrictemplates"),
    "AlertProvider": (f"{API_GROUP}/{CANARY_VERSION}", "alertproviders"),
    "VirtualService": ("networking.istio.io/v1beta1", "virtualservices"),
    "DestinationRule": ("networking.istio.io/v1beta1", "destinationrules"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
    "HTTPProxy": ("projectcontour.io/v1", "httpproxies"),
    "TraefikService": ("traefik.io/v1alpha1", "traefikservices"),
    "TrafficSplit": ("split.smi-spec.io/v1alpha1", "trafficsplits"),
}


# The API server's partial-object representation: a list of objects' metadata and nothing else.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


def collection_path(kind: str, namespace: str | None, api_version: str | None = None) -> str:
    """``/api/v1/namespaces/NS/services`` and the like; all namespaces when ``namespace`` is None.

    ``api_version`` picks another served version of the kind than the one in ``RESOURCES``.
    """
    default_version, plural = RESOURCES[kind]
    group_version = api_version or default_version
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{root}/namespaces/{_segment(namespace)}/{plural}" if namespace else f"{root}/{plural}"


def object_path(kind: str, namespace: str, name: str, api_version: str | None = None) -> str:
    return f"{collection_path(kind, namespace, api_version)}/{_segment(name)}"


def _segment(text: str) -> str:
    """One path segment, whatever ``text`` holds: ``/`` and ``..`` would otherwise reach another
    path, since urllib3 resolves dot segments before it sends the request."""
    quoted = urllib.parse.quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


def _selector_value(value: str) -> str:
    """``value`` as a field selector's value: its backslashes, commas and equals signs escaped, as
    the API server reads them (``fields.EscapeValue``)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


# ---- the reads of one tick -------------------------------------------------------------------

# Kinds a tick may read as one list per namespace, and the label selectors that find the objects
# of Canaries among them: what Serin made or took over carries ``serin.dev/managed-for``, a target
# carries ``serin.dev/canary``. ConfigMaps and Secrets are never listed: Serin may only get them.
_MANAGED = MANAGED_FOR_LABEL
_WORKLOADS = (_MANAGED, TARGET_LABEL)
LISTED_SELECTORS: Mapping[str, tuple[str, ...]] = {
    "Deployment": _WORKLOADS,
    "DaemonSet": _WORKLOADS,
    "StatefulSet": _WORKLOADS,
    "Service": (_MANAGED,),
    "VirtualService": (_MANAGED,),
    "DestinationRule": (_MANAGED,),
    "HTTPRoute": (_MANAGED,),
    "Ingress": (_MANAGED,),
    "HTTPProxy": (_MANAGED,),
    "TraefikService": (_MANAGED,),
    "TrafficSplit": (_MANAGED,),
    "HorizontalPodAutoscaler": (_MANAGED,),
    "ScaledObject": (_MANAGED,),
}
# A kind is listed in a namespace once a tick has read objects of it there one by one as many as a
# tenth of the Canaries it takes there (all of them, or its shard's), and at least three: a list
# costs about as much as the GETs it saves, a few more at most, so a tick stepping a few Canaries
# of a big namespace reads them one by one, and a tick stepping hundreds reads each kind once.
LIST_AFTER_GETS = 3
LIST_AFTER_SHARE = 0.1
# Objects per page of such a list: a tick holds one page's JSON at a time, not the namespace's.
LIST_PAGE = 500


class TickReads:
    """Objects of one tick, read once per kind and namespace (see ``KubeStore.reads_of_one_tick``).

    A hit is a copy of what the list said; an object not in a list (one not labelled yet, or
    created since) and an object written during the tick are read with a GET as ever, so a step
    never decides on something older than the tick, nor on its own writes' past.
    """

    def __init__(self, canaries: Mapping[str, int] | None = None) -> None:
        # Canaries per namespace that the tick takes (a tenth of them is worth a list).
        self._canaries = dict(canaries or {})
        self._lock = threading.Lock()
        self._gets: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lists: dict[tuple[str, str], dict[str, dict[str, Any]] | None] = {}
        self._listing: dict[tuple[str, str], threading.Lock] = {}
        self._written: set[tuple[str, str, str]] = set()
        self.lists_read = 0

    def written(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._written.add((kind, namespace, name))

    def cached(self, store: KubeStore, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the listed object, or None when it must be read on its own."""
        selectors = LISTED_SELECTORS.get(kind)
        if not selectors:
            return None
        key = (kind, namespace)
        with self._lock:
            if (kind, namespace, name) in self._written:
                return None
            if key not in self._lists:
                self._gets[key] += 1
                if self._gets[key] <= max(LIST_AFTER_GETS, self._canaries.get(namespace, 0) * LIST_AFTER_SHARE):
                    return None
            listing = self._listing.setdefault(key, threading.Lock())
        with listing:  # one list per kind and namespace, however many steps want it at once
            if key not in self._lists:
                self._lists[key] = self._list(store, kind, namespace, selectors)
        listed = self._lists[key]
        found = None if listed is None else listed.get(name)
        return copy.deepcopy(found) if found is not None else None

    def _list(
        self, store: KubeStore, kind: str, namespace: str, selectors: tuple[str, ...]
    ) -> dict[str, dict[str, Any]] | None:
        """Every object of the selectors by name; None (read one by one) if the list fails: a kind
        not installed, or a list the API server refuses, is no reason to fail a step."""
        listed: dict[str, dict[str, Any]] = {}
        pages = 0
        try:
            for selector in selectors:
                for page in store.pages(kind, namespace, selector, LIST_PAGE):
                    pages += 1
                    for item in page:
                        # Never read by Serin, and often the biggest part of an object.
                        item["metadata"].pop("managedFields", None)
                        listed[item["metadata"]["name"]] = item
        except KubeError:
            return None
        with self._lock:
            self.lists_read += pages
        return listed


_TICK_READS: contextvars.ContextVar[TickReads | None] = contextvars.ContextVar("serin_tick_reads", default=None)


# How far apart two readings of the API server's clock from Date headers may be by rounding (and
# the time an answer takes) alone.
CLOCK_ROUNDING_SECONDS = 2.0


def _event_order(event: Mapping[str, Any]) -> tuple[str, str]:
    """Oldest first: by the second an Event was last seen, then, within it, by Serin's own record."""
    second = str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"))
    annotations = (event.get("metadata") or {}).get("annotations") or {}
    return second, str(annotations.get(SEEN_ANNOTATION, ""))


class KubeStore:
    """Every kind in ``RESOURCES``, as dicts, over one generic request."""

    def __init__(self, api: Connection, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout
        # The API server's clock less this machine's, in seconds, from the Date of its last answer.
        self._clock_offset = 0.0

    def now(self) -> datetime.datetime:
        """The API server's time, as far as its answers tell (this machine's before the first).

        Claims and due times are written by one replica and read by another: measured on the one
        clock they share, they mean the same whatever the replicas' own clocks say."""
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self._clock_offset)

    def _learn_clock(self, date: object) -> None:
        if not isinstance(date, str):
            return
        try:
            said = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        if said.tzinfo is None:
            return
        # Date is to the second: the server's time is within that second. An estimate within
        # CLOCK_ROUNDING_SECONDS of the one in use is that rounding, not a change: taking it would make this
        # clock jump back and forth between answers, and a step's windows with it.
        estimate = (said - datetime.datetime.now(datetime.UTC)).total_seconds() + 0.5
        if abs(estimate - self._clock_offset) > CLOCK_ROUNDING_SECONDS:
            self._clock_offset = estimate

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        what: str = "",
        query: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request; translate every failure into this module's errors."""
        what = what or f"{method} {path}"
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, serialized, post = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, headers, serialized, post, _request_timeout=self.timeout)
            response.read()
            self._learn_clock((getattr(response, "headers", None) or {}).get("Date"))
        except (OSError, urllib3.exceptions.HTTPError) as error:
            raise KubeUnavailable(f"{what}: {error}") from None
        except (ValueError, client.ApiException) as error:
            raise KubeRejected(f"{what}: {error}") from None
        data: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            loaded = json.loads(response.data or b"{}")
            data = loaded if isinstance(loaded, dict) else {}
        if 200 <= response.status < 300:
            return data
        message = data.get("message") or response.reason or ""
        if response.status == 404:
            raise NotFound(f"{what}: not found")
        if response.status == 409:
            raise Conflict(f"{what}: {message}")
        if response.status == 429 or response.status >= 500:
            raise KubeUnavailable(f"{what}: {response.status} {message}")
        raise KubeRejected(f"{what}: {response.status} {message}")

    # ---- any kind ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def reads_of_one_tick(self, canaries: Mapping[str, int] | None = None) -> Iterator[TickReads]:
        """Within it, objects asked for one by one are read as lists per kind and namespace once
        enough of them are wanted (see ``TickReads``; ``canaries``: how many Canaries the tick
        takes in each namespace). The scope is the calling context: a thread pool's tasks join it when
        run with a copy of it (``contextvars.copy_context().run``)."""
        reads = TickReads(canaries)
        token = _TICK_READS.set(reads)
        try:
            yield reads
        finally:
            _TICK_READS.reset(token)

    def _writing(self, kind: str, namespace: str, name: str) -> None:
        """Marked before the write is sent: whether it lands or not, the next read asks the API server."""
        reads = _TICK_READS.get()
        if reads is not None:
            reads.written(kind, namespace, name)

    def get(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> dict[str, Any] | None:
        reads = _TICK_READS.get()
        if reads is not None and api_version in (None, RESOURCES[kind][0]):
            cached = reads.cached(self, kind, namespace, name)
            if cached is not None:
                return cached
        try:
            obj = self.request(
                "GET", object_path(kind, namespace, name, api_version), what=f"get {kind} {namespace}/{name}"
            )
        except NotFound:
            return None
        obj.setdefault("kind", kind)
        return obj

    def find(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace that carry the labels (``key=value,...``)."""
        return [item for page in self.pages(kind, namespace, label_selector) for item in page]

    def pages(self, kind: str, namespace: str | None, label_selector: str, limit: int = 0) -> Iterator[list[Any]]:
        """``find`` a page of at most ``limit`` objects at a time (0: all at once), so that a big
        list need not be held whole, as JSON and as objects, at one moment."""
        query = {"labelSelector": label_selector, **({"limit": str(limit)} if limit else {})}
        while True:
            listed = self.request(
                "GET",
                collection_path(kind, namespace),
                what=f"list {kind} in {namespace} ({label_selector})",
                query=query,
            )
            items: list[dict[str, Any]] = listed.get("items", [])
            for item in items:
                # Items of a list carry no kind or apiVersion (except custom resources): complete
                # them, so that an item reads as the object would.
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", RESOURCES[kind][0])
            yield items
            token = (listed.get("metadata") or {}).get("continue")
            if not token:
                return
            query = {**query, "continue": str(token)}

    def metadata_of_all(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace, metadata only: what a search by owner needs,
        without the data of every Secret and ConfigMap travelling with it."""
        listed = self.request(
            "GET", collection_path(kind, namespace), what=f"list {kind} in {namespace}", accept=METADATA_ONLY
        )
        version = RESOURCES[kind][0]
        return [
            {"apiVersion": version, "kind": kind, "metadata": item.get("metadata") or {}}
            for item in listed.get("items") or []  # an empty partial list has items: null
        ]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object; one already gone is fine."""
        self._writing(kind, namespace, name)
        with contextlib.suppress(NotFound):
            self.request("DELETE", object_path(kind, namespace, name), what=f"delete {kind} {namespace}/{name}")

    def create(self, obj: Mapping[str, Any]) -> None:
        """Create an object; an existing one is left alone."""
        metadata, kind = obj["metadata"], obj["kind"]
        self._writing(kind, metadata["namespace"], metadata["name"])
        with contextlib.suppress(Conflict):
            self.request(
                "POST",
                collection_path(kind, metadata["namespace"], obj.get("apiVersion")),
                obj,
                what=f"create {kind} {metadata['namespace']}/{metadata['name']}",
                query=MANAGER,
            )

    def replace(self, obj: Mapping[str, Any]) -> None:
        """Replace an object; its metadata.resourceVersion makes a stale replace fail with Conflict."""
        metadata, kind = obj["metadata"], obj["kind"]
        namespace, name = metadata["namespace"], metadata["name"]
        self._writing(kind, namespace, name)
        self.request(
            "PUT",
            object_path(kind, namespace, name, obj.get("apiVersion")),
            obj,
            what=f"replace {kind} {namespace}/{name}",
            query=MANAGER,
        )

    def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A JSON merge patch (a resourceVersion in it makes it conditional)."""
        self._writing(kind, namespace, name)
        self.request(
            "PATCH",
            object_path(kind, namespace, name),
            patch,
            "application/merge-patch+json",
            f"patch {kind} {namespace}/{name}",
            query=MANAGER,
        )

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as ``serin``: the fields in ``obj`` become what Serin says they are.

        Fields other managers own and ``obj`` leaves out are kept; ``force`` takes over fields that
        someone else changed, since these objects are Serin's to keep as the Canary says.
        """
        metadata, kind = obj["metadata"], obj["kind"]
        namespace, name = metadata["namespace"], metadata["name"]
        self._writing(kind, namespace, name)
        return self.request(
            "PATCH",
            object_path(kind, namespace, name, obj.get("apiVersion")),
            obj,
            "application/apply-patch+yaml",
            f"apply {kind} {namespace}/{name}",
            query={**MANAGER, "force": "true"},
        )

    # ---- Canaries ----------------------------------------------------------------------------

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """All Canaries in one request (the tick's only request when nothing is due)."""
        items: list[dict[str, Any]] = self.request(
            "GET", collection_path("Canary", namespace), what="list canaries"
        ).get("items", [])
        return items

    def first_canaries(self, namespace: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """At most ``limit`` Canaries of a namespace, and whether it holds more: one request whose
        answer is as small whatever the namespace holds."""
        listed = self.request(
            "GET", collection_path("Canary", namespace), what="list canaries", query={"limit": str(limit)}
        )
        items: list[dict[str, Any]] = listed.get("items") or []
        return items, bool((listed.get("metadata") or {}).get("continue"))

    def canaries_with(self, namespace: str, field: str, value: str) -> list[dict[str, Any]]:
        """The Canaries of a namespace whose ``field`` (one of the CRD's ``selectableFields``, such as
        ``spec.targetRef.name``; an absent field reads as empty) is ``value``: one request, answered
        with those Canaries alone however many the namespace holds. KubeRejected when the API server
        does not know the field (a CRD older than its selectable fields)."""
        items: list[dict[str, Any]] = (
            self.request(
                "GET",
                collection_path("Canary", namespace),
                what=f"list canaries in {namespace} with {field}={value}",
                query={"fieldSelector": f"{field}={_selector_value(value)}"},
            ).get("items")
            or []
        )
        return items

    def write_canary_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        """Replace the whole status if the Canary is still at ``resource_version`` (else Conflict).

        A PUT, not a merge patch: a key the new status leaves out is gone from the stored one.
        """
        body = {
            "apiVersion": f"{API_GROUP}/{CANARY_VERSION}",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": status,
        }
        updated = self.request(
            "PUT",
            f"{object_path('Canary', namespace, name)}/status",
            body,
            what=f"update status of canary {namespace}/{name}",
        )
        return str(updated["metadata"]["resourceVersion"])

    def get_canary(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("Canary", namespace, name)

    def patch_canary(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.patch("Canary", namespace, name, patch)

    def get_metric_template(self, namespace: str, name: str) -> dict[str, Any]:
        template = self.get("MetricTemplate", namespace, name)
        if template is None:
            raise NotFound(f"MetricTemplate {namespace}/{name} does not exist")
        return template

    # ---- Services and configs ---------------------------------------------------------------

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("Service", namespace, name)

    def get_config(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap (``kind='configmap'``) or Secret (``'secret'``), or None."""
        return self.get("ConfigMap" if kind == "configmap" else "Secret", namespace, name)

    # ---- Events ------------------------------------------------------------------------------

    def canary_events(self, namespace: str | None, name: str | None = None) -> list[dict[str, Any]]:
        """The Events of a Canary (None: of every Canary) in a namespace (None: in every one),
        oldest first (by when each was last seen)."""
        selector = "involvedObject.kind=Canary" + (f",involvedObject.name={name}" if name else "")
        listed = self.request(
            "GET",
            collection_path("Event", namespace),
            what=f"events of canary {namespace}/{name}" if name else "events of canaries",
            query={"fieldSelector": selector},
        )
        items = [item for item in listed.get("items") or [] if isinstance(item, dict)]
        return sorted(items, key=_event_order)

    def record_event(
        self,
        canary: Canary,
        event_type: str,
        reason: str,
        message: str,
        now: datetime.datetime,
        step: str = "",
    ) -> None:
        """An Event on the Canary, as `kubectl describe canary` lists them.

        A repeat of the same Event is counted on the existing object (count and lastTimestamp), as
        client-go's recorder does, instead of adding one object per tick: the Event's name is a
        digest of what it says about which Canary. ``step`` names the step that says it: sent
        again for the same step (after a crash between recording and sending), it is not counted
        twice.
        """
        stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        seen = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        digest = hashlib.sha256("\0".join((canary.uid, event_type, reason, message)).encode()).hexdigest()[:16]
        name = f"{canary.name}.{digest}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": canary.namespace,
                "annotations": {STEP_ANNOTATION: step, SEEN_ANNOTATION: seen},
            },
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{CANARY_VERSION}",
                "kind": "Canary",
                "name": canary.name,
                "namespace": canary.namespace,
                "uid": canary.uid,
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": "serin"},
            "reportingComponent": "serin",
            "reportingInstance": "serin",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.request("POST", collection_path("Event", canary.namespace), body, what=f"event on {canary.key}")
            return
        except Conflict:
            pass
        for _ in range(EVENT_UPDATE_ATTEMPTS):
            existing = self.get("Event", canary.namespace, name)
            if existing is None:  # expired in between: start counting again
                with contextlib.suppress(Conflict):
                    self.request(
                        "POST", collection_path("Event", canary.namespace), body, what=f"event on {canary.key}"
                    )
                return
            counted = {
                "metadata": {
                    "resourceVersion": existing["metadata"]["resourceVersion"],
                    "annotations": {SEEN_ANNOTATION: seen},
                },
                "count": int(existing.get("count") or 1) + 1,
                "lastTimestamp": stamp,
            }
            try:
                self.patch("Event", canary.namespace, name, counted)
                return
            except Conflict:
                continue
