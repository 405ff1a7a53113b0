"""The reads of one tick: objects of many Canaries read as one list per kind and namespace, never
older than the tick and never hiding a step's own writes."""

from __future__ import annotations

import concurrent.futures
import contextvars
import copy
import threading
from collections.abc import Mapping
from typing import Any

from serin.kube.store import LIST_AFTER_GETS, LIST_AFTER_SHARE, LIST_PAGE, KubeStore, KubeUnavailable, NotFound
from serin.workloads import MANAGED_FOR_LABEL, TARGET_LABEL

PLURALS = {"deployments": "Deployment", "services": "Service", "configmaps": "ConfigMap"}


class RequestStore(KubeStore):
    """The access layer over a dict of objects instead of an API server: records each request,
    serves GETs of one object and label-selected lists, and merge-patches."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self.lists_fail = False
        self.lock = threading.Lock()

    def add(self, kind: str, name: str, labels: Mapping[str, str] | None = None, namespace: str = "ns") -> None:
        self.objects[(kind, namespace, name)] = {
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels or {}),
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {"replicas": 1},
        }

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
        parts = path.strip("/").split("/")
        namespace_at = parts.index("namespaces")
        namespace, kind = parts[namespace_at + 1], PLURALS[parts[namespace_at + 2]]
        name = parts[namespace_at + 3] if len(parts) > namespace_at + 3 else None
        selector = (query or {}).get("labelSelector", "")
        with self.lock:
            self.requests.append(f"{method} {kind} {name or selector}")
        if name is None:
            if self.lists_fail:
                raise KubeUnavailable("list: 503")
            found = [copy.deepcopy(obj) for key, obj in self.objects.items() if matches(key, obj, kind, selector)]
            start, limit = int((query or {}).get("continue") or 0), int((query or {}).get("limit") or 0)
            if not limit:
                return {"items": found}
            rest = {"continue": str(start + limit)} if start + limit < len(found) else {}
            return {"metadata": rest, "items": found[start : start + limit]}
        stored = self.objects.get((kind, namespace, name))
        if stored is None:
            raise NotFound(f"{kind} {name}")
        if method == "PATCH" and body is not None:
            stored["spec"].update(body.get("spec", {}))
        return copy.deepcopy(stored)


def matches(key: tuple[str, str, str], obj: Mapping[str, Any], kind: str, selector: str) -> bool:
    labels = obj["metadata"]["labels"]
    label, _, value = selector.partition("=")
    return key[0] == kind and label in labels and (not value or labels[label] == value)


def fleet(store: RequestStore, canaries: int) -> None:
    for index in range(canaries):
        store.add("Deployment", f"app-{index}", {TARGET_LABEL: f"app-{index}"})
        store.add("Deployment", f"app-{index}-primary", {MANAGED_FOR_LABEL: f"app-{index}"})
        store.add("Service", f"app-{index}", {MANAGED_FOR_LABEL: f"app-{index}"})


def test_outside_a_tick_every_read_is_a_get() -> None:
    store = RequestStore()
    fleet(store, 10)
    for index in range(10):
        assert store.get("Deployment", "ns", f"app-{index}") is not None
    assert store.requests == [f"GET Deployment app-{index}" for index in range(10)]


def test_after_a_few_gets_a_kind_is_listed_once_per_namespace() -> None:
    store = RequestStore()
    fleet(store, 10)
    with store.reads_of_one_tick() as reads:
        read = [store.get("Deployment", "ns", f"app-{index}-primary") for index in range(10)]
    assert [obj["metadata"]["name"] for obj in read if obj] == [f"app-{index}-primary" for index in range(10)]
    assert store.requests == [
        *(f"GET Deployment app-{index}-primary" for index in range(LIST_AFTER_GETS)),
        f"GET Deployment {MANAGED_FOR_LABEL}",
        f"GET Deployment {TARGET_LABEL}",
    ]
    assert reads.lists_read == 2


def test_in_a_namespace_of_many_canaries_a_list_waits_for_a_tenth_of_them_read_one_by_one() -> None:
    """A list of a big namespace costs about as much as a tenth of its objects read one by one."""
    store = RequestStore()
    fleet(store, 100)
    with store.reads_of_one_tick({"ns": 100, "elsewhere": 5}):
        for index in range(10):
            store.get("Deployment", "ns", f"app-{index}")
        assert store.requests == [f"GET Deployment app-{index}" for index in range(10)]
        store.get("Deployment", "ns", "app-10")
        store.get("Deployment", "ns", "app-11")
    assert store.requests == [
        *(f"GET Deployment app-{index}" for index in range(10)),
        f"GET Deployment {MANAGED_FOR_LABEL}",
        f"GET Deployment {TARGET_LABEL}",
    ]


def test_a_big_namespace_is_listed_a_page_at_a_time_and_kept_without_managed_fields() -> None:
    store = RequestStore()
    fleet(store, 1200)
    with store.reads_of_one_tick({"ns": 1200}) as reads:
        read = [store.get("Deployment", "ns", f"app-{index}") for index in range(1200)]
    assert all(obj is not None for obj in read)
    one_by_one = int(1200 * LIST_AFTER_SHARE)
    assert all("managedFields" in obj["metadata"] for obj in read[:one_by_one] if obj)
    assert all("managedFields" not in obj["metadata"] for obj in read[one_by_one:] if obj)
    # 1,200 targets and 1,200 primaries, LIST_PAGE a page.
    pages = 2 * -(-1200 // LIST_PAGE)
    assert reads.lists_read == pages == 6
    assert len(store.requests) == one_by_one + pages


def test_an_object_the_lists_do_not_hold_is_read_on_its_own() -> None:
    store = RequestStore()
    fleet(store, 5)
    store.add("Deployment", "unlabelled")
    with store.reads_of_one_tick():
        for index in range(5):
            store.get("Deployment", "ns", f"app-{index}")
        store.requests.clear()
        assert store.get("Deployment", "ns", "unlabelled") is not None
        assert store.get("Deployment", "ns", "missing") is None
    assert store.requests == ["GET Deployment unlabelled", "GET Deployment missing"]


def test_an_object_written_during_the_tick_is_read_again_from_the_api_server() -> None:
    store = RequestStore()
    fleet(store, 5)
    with store.reads_of_one_tick():
        for index in range(5):
            store.get("Deployment", "ns", f"app-{index}")
        store.patch("Deployment", "ns", "app-4", {"spec": {"replicas": 3}})
        store.requests.clear()
        after = store.get("Deployment", "ns", "app-4")
        untouched = store.get("Deployment", "ns", "app-3")
    assert after is not None and after["spec"]["replicas"] == 3
    assert untouched is not None and untouched["spec"]["replicas"] == 1
    assert store.requests == ["GET Deployment app-4"]


def test_a_listed_object_is_handed_out_as_a_copy() -> None:
    store = RequestStore()
    fleet(store, 5)
    with store.reads_of_one_tick():
        for index in range(5):
            store.get("Service", "ns", f"app-{index}")
        first = store.get("Service", "ns", "app-4")
        assert first is not None
        first["spec"]["replicas"] = 99
        again = store.get("Service", "ns", "app-4")
    assert again is not None and again["spec"]["replicas"] == 1


def test_a_failed_list_falls_back_to_gets() -> None:
    store = RequestStore()
    fleet(store, 6)
    store.lists_fail = True
    with store.reads_of_one_tick() as reads:
        read = [store.get("Service", "ns", f"app-{index}") for index in range(6)]
    assert all(obj is not None for obj in read)
    assert store.requests == [
        *(f"GET Service app-{index}" for index in range(LIST_AFTER_GETS)),
        f"GET Service {MANAGED_FOR_LABEL}",
        *(f"GET Service app-{index}" for index in range(LIST_AFTER_GETS, 6)),
    ]
    assert reads.lists_read == 0


def test_configs_are_never_listed() -> None:
    """Serin may get ConfigMaps and Secrets, not list them: it reads no more of them than it needs."""
    kind = "ConfigMap"
    store = RequestStore()
    for index in range(6):
        store.add(kind, f"config-{index}", {MANAGED_FOR_LABEL: "app"})
    with store.reads_of_one_tick():
        for index in range(6):
            store.get(kind, "ns", f"config-{index}")
    assert store.requests == [f"GET {kind} config-{index}" for index in range(6)]


def test_steps_side_by_side_share_one_list() -> None:
    """The tick's pool runs each step in a copy of the tick's context: all of them read the same lists."""
    store = RequestStore()
    fleet(store, 40)
    with (
        store.reads_of_one_tick() as reads,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        futures = [
            pool.submit(contextvars.copy_context().run, store.get, "Deployment", "ns", f"app-{index}")
            for index in range(40)
        ]
        read = [future.result() for future in futures]
    assert all(obj is not None for obj in read)
    gets = [request for request in store.requests if request.startswith("GET Deployment app-")]
    lists = [request for request in store.requests if not request.startswith("GET Deployment app-")]
    assert sorted(lists) == sorted([f"GET Deployment {MANAGED_FOR_LABEL}", f"GET Deployment {TARGET_LABEL}"])
    assert len(gets) == LIST_AFTER_GETS
    assert reads.lists_read == 2
