"""From Flagger to Serin without a restart or a dropped route (``serin migrate``).

A Flagger Canary at rest (Initialized or Succeeded: its primary runs what its target holds) is
handed over in an order where nothing is ever without an owner that would delete it, and no pod
template is written:

1. the Serin Canary is checked first by a server-side dry run (Serin's webhooks judge it);
2. every object Flagger made for it (the ``-primary`` workload and configs, the Services, the
   routes, the primary's autoscaler: whatever carries Flagger's Canary as owner) loses that owner
   and gets Serin's labels, so that Serin adopts it instead of refusing it; the primary also gets
   the revision it runs, so that Serin knows it runs the target's revision and leaves its pods be;
3. the Serin Canary is created from the same spec (the two are field-compatible); Serin
   initializes it on the objects that exist, changing no route;
4. the Flagger Canary loses its finalizers (Flagger no longer runs to remove them) and is deleted;
   nothing it owned goes with it.

A Canary that Flagger is still analysing, or one already migrated, is left as it is, and said so.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from serin.kube.store import Conflict, KubeError, KubeStore, NotFound, collection_path, object_path
from serin.workloads import MANAGED_BY, MANAGED_BY_LABEL, MANAGED_FOR_LABEL, SOURCE_HASH_ANNOTATION, template_hash

FLAGGER_API_VERSION = "flagger.app/v1beta1"
SERIN_API_VERSION = "serin.dev/v1beta1"
# Flagger's phases in which the primary runs the target's revision and nothing is under way.
AT_REST = frozenset({"Initialized", "Succeeded"})
FLAGGER_FINALIZER = "finalizer.flagger.app"
# Of the Flagger Canary's metadata, what would be wrong on the Serin Canary: kubectl's record of
# the last applied Flagger manifest (a later `kubectl apply` would diff against it).
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# The kinds Flagger makes objects of for a Canary, whatever its provider.
ADOPTED_KINDS = (
    "Deployment",
    "DaemonSet",
    "Service",
    "ConfigMap",
    "Secret",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "VirtualService",
    "DestinationRule",
    "HTTPRoute",
    "Ingress",
    "HTTPProxy",
    "TraefikService",
    "TrafficSplit",
)
PRIMARY_KINDS = frozenset({"Deployment", "DaemonSet"})


class MigrationRefused(Exception):
    """This Canary cannot be migrated now; the message says why and what to do."""


# ---- what the objects become, pure ------------------------------------------------------------


def serin_canary(flagger: Mapping[str, Any]) -> dict[str, Any]:
    """The Serin Canary for a Flagger one: the same name, labels, annotations and spec."""
    metadata = flagger.get("metadata", {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in DROPPED_ANNOTATIONS}
    new_metadata: dict[str, Any] = {"name": metadata["name"], "namespace": metadata["namespace"]}
    if metadata.get("labels"):
        new_metadata["labels"] = dict(metadata["labels"])
    if annotations:
        new_metadata["annotations"] = annotations
    return {
        "apiVersion": SERIN_API_VERSION,
        "kind": "Canary",
        "metadata": new_metadata,
        "spec": copy.deepcopy(flagger.get("spec") or {}),
    }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(reference.get("uid") == uid for reference in obj.get("metadata", {}).get("ownerReferences") or [])


def handover_patch(
    obj: Mapping[str, Any], canary_name: str, flagger_uid: str, revision: str | None = None
) -> dict[str, Any]:
    """A merge patch giving one of Flagger's objects to Serin: Flagger's Canary is no longer its
    owner, Serin's labels say whose it is, and a primary records the ``revision`` it runs. The
    resourceVersion makes it fail rather than overwrite a change made meanwhile."""
    metadata = obj.get("metadata", {})
    kept = [ref for ref in metadata.get("ownerReferences") or [] if ref.get("uid") != flagger_uid]
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": metadata.get("resourceVersion"),
            "ownerReferences": kept or None,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, MANAGED_FOR_LABEL: canary_name},
        }
    }
    if revision is not None:
        patch["metadata"]["annotations"] = {SOURCE_HASH_ANNOTATION: revision}
    return patch


def finalizers_patch(flagger: Mapping[str, Any]) -> dict[str, Any] | None:
    """Without Flagger's finalizer (None: it has none); a deletion would wait for it forever."""
    finalizers = flagger.get("metadata", {}).get("finalizers") or []
    if FLAGGER_FINALIZER not in finalizers:
        return None
    kept = [item for item in finalizers if item != FLAGGER_FINALIZER]
    return {"metadata": {"resourceVersion": flagger["metadata"].get("resourceVersion"), "finalizers": kept or None}}


# ---- the migration, against the API server -----------------------------------------------------


@dataclass
class Outcome:
    namespace: str
    name: str
    migrated: bool
    lines: list[str] = field(default_factory=list)


class Migration:
    def __init__(self, store: KubeStore, dry_run: bool = False) -> None:
        self.store = store
        self.dry_run = dry_run

    def flagger_canaries(self, namespace: str | None) -> list[dict[str, Any]]:
        try:
            listed = self.store.request(
                "GET", collection_path("Canary", namespace, FLAGGER_API_VERSION), what="list Flagger's canaries"
            )
        except NotFound:
            return []  # Flagger's CRD is not installed: nothing to migrate
        items: list[dict[str, Any]] = listed.get("items", [])
        return sorted(items, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))

    def owned_objects(self, namespace: str, uid: str) -> Iterator[dict[str, Any]]:
        for kind in ADOPTED_KINDS:
            try:
                listed = self.store.metadata_of_all(kind, namespace)
            except NotFound:
                continue  # an API this cluster does not serve (no such mesh)
            yield from (item for item in listed if owned_by(item, uid))

    def migrate(self, flagger: Mapping[str, Any]) -> Outcome:
        metadata = flagger["metadata"]
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        outcome = Outcome(namespace, name, migrated=False)
        say = outcome.lines.append
        phase = (flagger.get("status") or {}).get("phase") or "(no status)"
        if phase not in AT_REST:
            raise MigrationRefused(
                f"Flagger's canary {namespace}/{name} is {phase}: migrate it at rest (Initialized or Succeeded), once "
                "Flagger has finished its release"
            )
        if self.store.get_canary(namespace, name) is not None:
            raise MigrationRefused(f"a Serin canary {namespace}/{name} exists already: nothing done")
        wanted = serin_canary(flagger)
        try:
            self.store.request(
                "POST",
                collection_path("Canary", namespace),
                wanted,
                what="check the Serin canary",
                query={"dryRun": "All"},
            )
        except KubeError as error:
            raise MigrationRefused(f"the Serin canary {namespace}/{name} would be refused: {error}") from None
        target_ref = (flagger.get("spec") or {}).get("targetRef") or {}
        target = self.store.get(target_ref.get("kind", "Deployment"), namespace, target_ref.get("name", ""))
        revision = template_hash(target) if target is not None else None
        primary_name = f"{target_ref.get('name')}-primary"
        owned = list(self.owned_objects(namespace, uid))
        for obj in owned:
            kind, object_name = obj["kind"], obj["metadata"]["name"]
            is_primary = kind in PRIMARY_KINDS and object_name == primary_name
            say(f"{'would adopt' if self.dry_run else 'adopted'} {kind} {namespace}/{object_name}")
            if not self.dry_run:
                patch = handover_patch(obj, name, uid, revision if is_primary else None)
                self._patch(kind, namespace, object_name, patch, obj.get("apiVersion"))
        if self.dry_run:
            say(f"would create canary {namespace}/{name} ({SERIN_API_VERSION}) and delete Flagger's")
            return outcome
        self.store.create(wanted)
        say(f"created canary {namespace}/{name} ({SERIN_API_VERSION}): Serin initializes it on these objects")
        unfinalized = finalizers_patch(flagger)
        if unfinalized is not None:
            self._patch("Canary", namespace, name, unfinalized, FLAGGER_API_VERSION)
        self.store.request("DELETE", object_path("Canary", namespace, name, FLAGGER_API_VERSION), what="delete")
        say(f"deleted Flagger's canary {namespace}/{name} ({FLAGGER_API_VERSION}); what it owned stays")
        outcome.migrated = True
        return outcome

    def _patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], api_version: str | None) -> None:
        try:
            self.store.request(
                "PATCH",
                object_path(kind, namespace, name, api_version),
                patch,
                "application/merge-patch+json",
                f"patch {kind} {namespace}/{name}",
            )
        except Conflict:
            raise MigrationRefused(
                f"{kind} {namespace}/{name} changed while it was being handed over: run serin migrate again"
            ) from None
