"""The pure part of `serin migrate`: what a Flagger Canary and Flagger's objects become."""

from __future__ import annotations

from typing import Any

from serin import migrate

FLAGGER_UID = "5d1c0f3e-0000-4000-8000-000000000001"
FLAGGER_CANARY: dict[str, Any] = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {
        "name": "podinfo",
        "namespace": "test",
        "uid": FLAGGER_UID,
        "resourceVersion": "812",
        "generation": 3,
        "labels": {"team": "web"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"flagger.app/v1beta1"}',
            "owner": "web-team",
        },
        "finalizers": ["finalizer.flagger.app", "example.com/keep"],
    },
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
    },
    "status": {"phase": "Succeeded", "lastAppliedSpec": "5f8b9c"},
}


def test_the_serin_canary_keeps_name_labels_annotations_and_spec() -> None:
    assert migrate.serin_canary(FLAGGER_CANARY) == {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"team": "web"},
            "annotations": {"owner": "web-team"},
        },
        "spec": FLAGGER_CANARY["spec"],
    }
    created = migrate.serin_canary(FLAGGER_CANARY)
    created["spec"]["analysis"]["threshold"] = 1
    assert FLAGGER_CANARY["spec"]["analysis"]["threshold"] == 5, "a copy, not the same spec"


def test_a_bare_flagger_canary_gives_bare_metadata() -> None:
    bare = {"metadata": {"name": "a", "namespace": "b"}, "spec": {"service": {"port": 80}}}
    assert migrate.serin_canary(bare) == {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "a", "namespace": "b"},
        "spec": {"service": {"port": 80}},
    }


def owned(*references: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "podinfo-primary", "resourceVersion": "901", "ownerReferences": list(references)}}


FLAGGER_OWNER = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo", "uid": FLAGGER_UID}
OTHER_OWNER = {"apiVersion": "example.com/v1", "kind": "App", "name": "web", "uid": "other"}


def test_a_primary_is_handed_over_with_the_revision_it_runs() -> None:
    assert migrate.handover_patch(owned(FLAGGER_OWNER), "podinfo", FLAGGER_UID, "7d9f") == {
        "metadata": {
            "resourceVersion": "901",
            "ownerReferences": None,
            "labels": {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "podinfo"},
            "annotations": {"serin.dev/source-template-hash": "7d9f"},
        }
    }


def test_other_owners_are_kept() -> None:
    assert migrate.handover_patch(owned(OTHER_OWNER, FLAGGER_OWNER), "podinfo", FLAGGER_UID) == {
        "metadata": {
            "resourceVersion": "901",
            "ownerReferences": [OTHER_OWNER],
            "labels": {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "podinfo"},
        }
    }


def test_ownership_is_by_uid() -> None:
    assert migrate.owned_by(owned(FLAGGER_OWNER), FLAGGER_UID)
    assert not migrate.owned_by(owned(OTHER_OWNER), FLAGGER_UID)
    assert not migrate.owned_by({"metadata": {}}, FLAGGER_UID)


def test_only_flaggers_finalizer_is_removed() -> None:
    assert migrate.finalizers_patch(FLAGGER_CANARY) == {
        "metadata": {"resourceVersion": "812", "finalizers": ["example.com/keep"]}
    }
    alone = {"metadata": {"resourceVersion": "1", "finalizers": ["finalizer.flagger.app"]}}
    assert migrate.finalizers_patch(alone) == {"metadata": {"resourceVersion": "1", "finalizers": None}}
    assert migrate.finalizers_patch({"metadata": {"finalizers": ["example.com/keep"]}}) is None
    assert migrate.finalizers_patch({"metadata": {}}) is None


class RecordingStore:
    """Answers `get_canary` and records every other request; a migration refused early makes none."""

    def __init__(self, serin_canary: dict[str, Any] | None = None) -> None:
        self.serin_canary = serin_canary
        self.requests: list[tuple[str, str]] = []

    def get_canary(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.serin_canary

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests.append((method, path))
        return {"items": []}


def refusal(store: RecordingStore, flagger: dict[str, Any]) -> str:
    try:
        migrate.Migration(store).migrate(flagger)  # type: ignore[arg-type]
    except migrate.MigrationRefused as error:
        return str(error)
    raise AssertionError("not refused")


def test_a_release_under_analysis_is_not_migrated() -> None:
    progressing = {**FLAGGER_CANARY, "status": {"phase": "Progressing"}}
    store = RecordingStore()
    assert refusal(store, progressing) == (
        "Flagger's canary test/podinfo is Progressing: migrate it at rest (Initialized or Succeeded), once Flagger "
        "has finished its release"
    )
    assert store.requests == []


def test_a_canary_migrated_before_is_left_alone() -> None:
    store = RecordingStore(serin_canary={"metadata": {"name": "podinfo"}})
    assert refusal(store, FLAGGER_CANARY) == "a Serin canary test/podinfo exists already: nothing done"
    assert store.requests == []
