"""Events on a Canary, as the page and `serin` list them: latest last, even within one second."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from serin.kube.store import Conflict, KubeStore
from serin.model import parse_canary

CANARY = parse_canary(
    {
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 80},
            "analysis": {"stepWeight": 10},
        },
    }
)


class EventsApi(KubeStore):
    """The store over an in-memory list of Events, which the API server lists by name."""

    def __init__(self) -> None:
        super().__init__(api=None)  # type: ignore[arg-type]
        self.events: dict[str, dict[str, Any]] = {}

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
        name = path.rsplit("/", 1)[-1]
        if method == "POST":
            assert body is not None
            if body["metadata"]["name"] in self.events:
                raise Conflict(f"{what}: already exists")
            stored = copy.deepcopy(dict(body))
            stored["metadata"]["resourceVersion"] = "1"
            self.events[body["metadata"]["name"]] = stored
            return {}
        if method == "PATCH":
            assert body is not None
            stored = self.events[name]
            assert body["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
            stored["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)
            for key, value in body.items():
                if key == "metadata":
                    stored["metadata"].setdefault("annotations", {}).update(value.get("annotations") or {})
                else:
                    stored[key] = value
            return {}
        if method == "GET" and path.endswith("/events"):
            return {"items": [copy.deepcopy(event) for _, event in sorted(self.events.items())]}
        if method == "GET":
            return copy.deepcopy(self.events[name])
        raise AssertionError(f"unexpected {method} {path}")


def test_events_of_one_second_are_listed_in_the_order_they_happened() -> None:
    store = EventsApi()
    second = datetime.datetime(2026, 12, 7, 8, 0, 0, tzinfo=datetime.UTC)
    messages = ["podinfo-primary not ready: not created yet", "Initialization done! podinfo", "Advance podinfo"]
    for offset, message in enumerate(messages):
        store.record_event(CANARY, "Normal", "Synced", message, second + datetime.timedelta(microseconds=offset * 1000))
    # Said again later in that second: now the latest.
    store.record_event(CANARY, "Normal", "Synced", messages[0], second + datetime.timedelta(microseconds=900_000))
    listed = store.canary_events("test", "podinfo")
    assert [event["message"] for event in listed] == [messages[1], messages[2], messages[0]]
    assert [event["count"] for event in listed] == [1, 1, 2]
