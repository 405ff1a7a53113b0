"""``kubectl get -o json`` without a kubectl process, for the forms tests poll most.

Tests read objects after every tick and poll them in waits. A kubectl process per read costs tens
of milliseconds of CPU on a machine that runs four control planes and their tests at once; the
same GET through the API client costs a fraction of that. Only unambiguous forms are answered
here (one resource that discovery names exactly once, a name or none, ``-n``, ``-l``,
``--field-selector``, ``--show-managed-fields``); anything else goes to kubectl, as before.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client


@dataclass(frozen=True)
class Resource:
    group_version: str  # "v1" or "apps/v1"
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None) -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
        return f"{root}{scope}/{self.plural}" + (f"/{quote(name, safe='')}" if name else "")


@dataclass(frozen=True)
class Get:
    """One parsed ``kubectl get``: what to read and how kubectl would print it."""

    resource: str
    name: str | None
    namespace: str | None
    query: dict[str, str]
    managed_fields: bool


FLAGS_WITH_VALUES = {"-n": "namespace", "--namespace": "namespace", "-l": "labelSelector"}
FLAGS_WITH_VALUES |= {"--selector": "labelSelector", "--field-selector": "fieldSelector"}


def parse(args: tuple[str, ...]) -> Get | None:
    """The read ``kubectl get ARGS -o json`` asks for, or None for a form left to kubectl."""
    positional: list[str] = []
    options: dict[str, str] = {}
    managed = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        flag, equals, value = arg.partition("=")
        if flag in FLAGS_WITH_VALUES:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            options[FLAGS_WITH_VALUES[flag]] = value
        elif arg == "--show-managed-fields":
            managed = True
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
    if not 1 <= len(positional) <= 2 or any(c in positional[0] for c in ",/"):
        return None
    query = {key: value for key, value in options.items() if key != "namespace"}
    name = positional[1] if len(positional) == 2 else None
    if name is not None and query:
        return None
    return Get(positional[0].lower(), name, options.get("namespace"), query, managed)


class Reader:
    """Answers the forms ``parse`` accepts through one API client; discovery is read once."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._by_name: dict[str, list[Resource]] | None = None

    def get(self, args: tuple[str, ...]) -> dict[str, Any] | None:
        """kubectl's JSON for ``get ARGS``; None when this form or resource is left to kubectl.
        Raises AssertionError, as a failing kubectl does, when the API server refuses."""
        wanted = parse(args)
        if wanted is None:
            return None
        resource = self.resolve(wanted.resource)
        if resource is None or (resource.namespaced and wanted.namespace is None):
            return None  # kubectl's own defaults (the context's namespace, its priorities) decide
        namespace = wanted.namespace if resource.namespaced else None
        status, data = self._request(resource.path(namespace, wanted.name), wanted.query)
        if status != 200:
            raise AssertionError(f"kubectl get {' '.join(args)} failed: {status} {data.get('message', '')}")
        if wanted.name is not None:
            return data if wanted.managed_fields else _without_managed_fields(data)
        items = [
            {"apiVersion": resource.group_version, "kind": resource.kind, **item} for item in data.get("items", [])
        ]
        if not wanted.managed_fields:
            items = [_without_managed_fields(item) for item in items]
        return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}

    def resolve(self, token: str) -> Resource | None:
        """The one resource kubectl would take ``token`` for, if discovery leaves no doubt (a
        name two API groups besides the core one serve is left to kubectl)."""
        by_name = self._discovered()
        short, _, group = token.partition(".")
        found = {
            resource
            for resource in by_name.get(short if group else token, [])
            if not group or resource.group_version.rpartition("/")[0] == group
        }
        core = {resource for resource in found if resource.group_version == "v1"}
        # kubectl's mapping puts the core group first: `events` is v1's, not events.k8s.io's.
        if len(core) == 1:
            return core.pop()
        return found.pop() if len(found) == 1 else None

    def _discovered(self) -> dict[str, list[Resource]]:
        with self._lock:
            if self._by_name is None:
                self._by_name = self._discover()
            return self._by_name

    def _discover(self) -> dict[str, list[Resource]]:
        versions = ["v1"]
        status, groups = self._request("/apis", {})
        if status == 200:
            versions += [group["preferredVersion"]["groupVersion"] for group in groups.get("groups", [])]
        by_name: dict[str, list[Resource]] = {}
        for group_version in versions:
            status, listed = self._request("/api/v1" if group_version == "v1" else f"/apis/{group_version}", {})
            for entry in listed.get("resources", []) if status == 200 else []:
                if "/" in entry["name"]:
                    continue  # a subresource
                resource = Resource(group_version, entry["name"], entry["kind"], entry["namespaced"])
                names = {entry["name"], entry.get("singularName") or "", entry["kind"].lower()}
                for each in (names | set(entry.get("shortNames") or [])) - {""}:
                    by_name.setdefault(each, []).append(resource)
        return by_name

    def _request(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        method, url, headers, body, post = self.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, headers, body, post, _request_timeout=30)
        response.read()  # type: ignore[no-untyped-call]
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {}
        return response.status, data if isinstance(data, dict) else {}


def _without_managed_fields(item: dict[str, Any]) -> dict[str, Any]:
    """As kubectl prints objects unless asked for ``--show-managed-fields``."""
    metadata = item.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return item
    return {**item, "metadata": {key: value for key, value in metadata.items() if key != "managedFields"}}
