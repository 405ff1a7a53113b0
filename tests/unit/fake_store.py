"""A small fake of Serin's access layer for the routers' tests: get and server-side apply."""

from __future__ import annotations

import copy
from typing import Any

from serin.kube.store import KubeStore, KubeUnavailable


class FakeStore(KubeStore):
    """Serin's access layer with the API server swapped for a dict; apply stores the object whole."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.down = False

    def get(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> dict[str, Any] | None:
        self.calls.append(f"get {kind} {name}")
        if self.down:
            raise KubeUnavailable(f"get {kind} {namespace}/{name}: connection refused")
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def apply(self, obj: Any) -> dict[str, Any]:
        self.calls.append(f"apply {obj['kind']} {obj['metadata']['name']}")
        if self.down:
            raise KubeUnavailable(f"apply {obj['kind']}: connection refused")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return dict(obj)
