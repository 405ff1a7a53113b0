"""The only place the reconciler reads and writes Kubernetes objects (routers own theirs).

Objects travel as the plain dicts the API server speaks: the client's typed models are skipped
(they cost time and drop fields they do not know), only its configuration, authentication and
connection pool are used. No library exception leaves this module: failures become ``NotFound``,
``Conflict`` or ``KubeError``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client

from serin.model import API_GROUP, Canary
from serin.ports import SerinError

CANARY_VERSION = "v1beta1"
CANARIES = f"/apis/{API_GROUP}/{CANARY_VERSION}"


class KubeError(SerinError):
    """The API server refused or could not be reached."""


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """A write lost against a newer version of the object (resourceVersion precondition)."""


class KubeStore:
    """Canaries, Deployments, Services, configs and Events, as dicts, over one generic request."""

    def __init__(self, api: client.ApiClient, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> dict[str, Any]:
        """Send one request; translate every failure into this module's errors."""
        what = what or f"{method} {path}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, serialized, post = self.api.param_serialize(
                method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            response = self.api.call_api(method, url, headers, serialized, post, _request_timeout=self.timeout)
            response.read()  # type: ignore[no-untyped-call]
        except (OSError, ValueError, urllib3.exceptions.HTTPError, client.ApiException) as error:
            raise KubeError(f"{what}: {error}") from None
        data: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            data = json.loads(response.data or b"{}")
        if 200 <= response.status < 300:
            return data
        message = data.get("message") or response.reason or ""
        if response.status == 404:
            raise NotFound(f"{what}: not found")
        if response.status == 409:
            raise Conflict(f"{what}: {message}")
        raise KubeError(f"{what}: {response.status} {message}")

    def get(self, path: str, what: str = "") -> dict[str, Any] | None:
        try:
            return self.request("GET", path, what=what)
        except NotFound:
            return None

    # ---- Canaries ----------------------------------------------------------------------------

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """All Canaries in one request (the tick's only request when nothing is due)."""
        scope = f"/namespaces/{namespace}" if namespace else ""
        items: list[dict[str, Any]] = self.request("GET", f"{CANARIES}{scope}/canaries", what="list canaries").get(
            "items", []
        )
        return items

    def write_canary_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        """Replace the status if the Canary is still at ``resource_version`` (else Conflict)."""
        # A merge patch that carries a resourceVersion is refused with 409 once the object moved on.
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        updated = self.request(
            "PATCH",
            f"{CANARIES}/namespaces/{namespace}/canaries/{name}/status",
            body,
            "application/merge-patch+json",
            f"update status of canary {namespace}/{name}",
        )
        return str(updated["metadata"]["resourceVersion"])

    def get_canary(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"{CANARIES}/namespaces/{namespace}/canaries/{name}")

    def patch_canary(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.request(
            "PATCH",
            f"{CANARIES}/namespaces/{namespace}/canaries/{name}",
            patch,
            "application/merge-patch+json",
            f"patch canary {namespace}/{name}",
        )

    def get_metric_template(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request(
            "GET",
            f"{CANARIES}/namespaces/{namespace}/metrictemplates/{name}",
            what=f"metrictemplate {namespace}/{name}",
        )

    # ---- workloads, Services and configs -----------------------------------------------------

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{namespace}/services/{name}")

    def get_config(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap (``kind='configmap'``) or Secret (``'secret'``), or None."""
        resource = "configmaps" if kind == "configmap" else "secrets"
        obj = self.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}")
        if obj is not None:
            obj.setdefault("kind", "ConfigMap" if kind == "configmap" else "Secret")
        return obj

    def create(self, obj: dict[str, Any]) -> None:
        """Create a Deployment, Service, ConfigMap or Secret; an existing one is left alone."""
        namespace, kind = obj["metadata"]["namespace"], obj["kind"]
        with contextlib.suppress(Conflict):
            self.request(
                "POST", f"{_collection(kind, namespace)}", obj, what=f"create {kind} {obj['metadata']['name']}"
            )

    def replace(self, obj: dict[str, Any]) -> None:
        """Replace an object; its metadata.resourceVersion makes a stale replace fail with Conflict."""
        namespace, kind, name = obj["metadata"]["namespace"], obj["kind"], obj["metadata"]["name"]
        self.request("PUT", f"{_collection(kind, namespace)}/{name}", obj, what=f"replace {kind} {namespace}/{name}")

    def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.request(
            "PATCH",
            f"{_collection(kind, namespace)}/{name}",
            patch,
            "application/merge-patch+json",
            f"patch {kind} {namespace}/{name}",
        )

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.patch("Deployment", namespace, name, {"spec": {"replicas": replicas}})

    # ---- Events ------------------------------------------------------------------------------

    def record_event(self, canary: Canary, event_type: str, reason: str, message: str, now: datetime.datetime) -> None:
        """An Event on the Canary, as `kubectl describe canary` lists them."""
        stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{canary.name}.{uuid.uuid4().hex[:16]}", "namespace": canary.namespace},
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
        self.request("POST", f"/api/v1/namespaces/{canary.namespace}/events", body, what=f"event on {canary.key}")


_COLLECTIONS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Secret": "/api/v1/namespaces/{namespace}/secrets",
}


def _collection(kind: str, namespace: str) -> str:
    return _COLLECTIONS[kind].format(namespace=namespace)
