"""Writing the primary: a primary that already runs the revision is not written again, and a
write that loses to another writer reads the primary again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serin.kube.store import Conflict
from serin.objects import CONFLICT_RETRIES, CanaryObjects, OwnedByAnother
from serin.workloads import SOURCE_HASH_ANNOTATION, primary_config, primary_workload, template_hash

from .fake_store import FakeStore
from .test_workloads import CANARY

TARGET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "app", "image": "podinfo:6.0.0"}]},
        },
    },
}


class WritingStore(FakeStore):
    """The fake with create and replace; ``conflicts`` replaces lose to another writer first."""

    def __init__(self, conflicts: int = 0) -> None:
        super().__init__()
        self.conflicts = conflicts

    def create(self, obj: Any) -> None:
        self.calls.append(f"create {obj['kind']} {obj['metadata']['name']}")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)

    def replace(self, obj: Any) -> None:
        self.calls.append(f"replace {obj['kind']} {obj['metadata']['name']}")
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(f"replace {obj['kind']} {obj['metadata']['name']}: the object has been modified")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)

    def get_config(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(kind, namespace, name)

    def find(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for (found, _), obj in self.objects.items() if found == kind]


def defaulted(primary: dict[str, Any]) -> dict[str, Any]:
    """The primary as the API server stores it: with defaults Serin never wrote."""
    stored = copy.deepcopy(primary)
    stored["metadata"]["resourceVersion"] = "7"
    container = stored["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    return stored


def writes(store: WritingStore) -> list[str]:
    return [call for call in store.calls if call.startswith(("create", "replace"))]


def test_a_primary_that_already_runs_the_revision_is_not_written_again() -> None:
    """The primary another writer (the bootstrap) just made: nothing to write, so nothing to lose."""
    store = WritingStore(conflicts=CONFLICT_RETRIES + 1)
    revision = template_hash(TARGET)
    store.objects[("Deployment", "podinfo-primary")] = defaulted(primary_workload(CANARY, TARGET, set(), 2))
    CanaryObjects(store, router_for=lambda provider: pytest.fail("no routing")).copy_to_primary(
        CANARY, revision, TARGET, 2
    )
    (recorded,) = store.find("ControllerRevision", "test", "")
    assert writes(store) == [f"create ControllerRevision {recorded['metadata']['name']}"]


@pytest.mark.parametrize(
    ("replicas", "stored_replicas", "written"),
    [(3, 2, 3), (None, 5, 5)],
)
def test_a_primary_that_differs_is_written(replicas: int | None, stored_replicas: int, written: int) -> None:
    store = WritingStore()
    revision = template_hash(TARGET)
    old = defaulted(primary_workload(CANARY, TARGET, set(), stored_replicas))
    store.objects[("Deployment", "podinfo-primary")] = old
    old["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:5.0.0"
    CanaryObjects(store, router_for=lambda provider: pytest.fail("no routing")).copy_to_primary(
        CANARY, revision, TARGET, replicas
    )
    primary = store.objects[("Deployment", "podinfo-primary")]
    assert writes(store)[-1] == "replace Deployment podinfo-primary"
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:6.0.0"
    assert primary["spec"]["replicas"] == written
    assert primary["metadata"]["annotations"][SOURCE_HASH_ANNOTATION] == revision


def test_a_write_that_loses_to_another_writer_is_made_again() -> None:
    store = WritingStore(conflicts=CONFLICT_RETRIES)
    revision = template_hash(TARGET)
    stale = defaulted(primary_workload(CANARY, TARGET, set(), 2))
    stale["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:5.0.0"
    store.objects[("Deployment", "podinfo-primary")] = stale
    CanaryObjects(store, router_for=lambda provider: pytest.fail("no routing")).copy_to_primary(
        CANARY, revision, TARGET, None
    )
    assert writes(store)[1:] == ["replace Deployment podinfo-primary"] * (CONFLICT_RETRIES + 1)
    image = store.objects[("Deployment", "podinfo-primary")]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "podinfo:6.0.0"


@pytest.mark.parametrize(
    ("kind", "name", "what"),
    [
        pytest.param("Deployment", "podinfo-primary", "its primary", id="workload"),
        pytest.param("configmap", "settings-primary", "the primary's copy of its config", id="config-copy"),
    ],
)
def test_a_primary_object_serin_did_not_make_is_never_written(kind: str, name: str, what: str) -> None:
    """RBAC may let a person write only that one object: Serin taking it over would bypass that."""
    store = WritingStore()
    target = copy.deepcopy(TARGET)
    target["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    store.objects[("configmap", "settings")] = {"metadata": {"name": "settings"}, "data": {"a": "1"}}
    if kind == "Deployment":
        store.objects[("configmap", "settings-primary")] = primary_config(
            CANARY, store.objects[("configmap", "settings")]
        )
    theirs = {"kind": kind, "metadata": {"name": name, "namespace": "test", "labels": {"team": "a"}}, "spec": {}}
    store.objects[(kind, name)] = theirs
    objects = CanaryObjects(store, router_for=lambda provider: pytest.fail("no routing"))
    with pytest.raises(OwnedByAnother) as refused:
        objects.copy_to_primary(CANARY, template_hash(target), target, 2)
    assert str(refused.value) == (
        f"{kind} test/{name} was not made by Serin: {CANARY.key} will not take it over as {what} (delete or rename it)"
    )
    assert store.objects[(kind, name)] == theirs
    assert not [call for call in writes(store) if name in call]
