"""The objects Serin keeps for a Canary, and how they are created, repaired and given back.

For a Canary ``podinfo`` targeting Deployment ``podinfo``: the primary Deployment and its config
copies, the apex, primary and canary Services, the routing objects (through the Canary's router)
and one ControllerRevision per promoted revision of the target. The primary is only ever built
from such a revision, so a primary that was deleted or edited comes back as it was promoted,
never as whatever the target holds by then.

What the objects should be is decided elsewhere (``serin.decide``, built by ``serin.workloads``);
this module reads and writes them through the access layer and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from serin.autoscalers import pause_patch, primary_scaler
from serin.decide import WorkloadState
from serin.kube.store import Conflict, KubeStore, NotFound
from serin.model import AUTOSCALER_GROUPS, Canary
from serin.ports import PermanentError, Router, SerinError
from serin.routers import ROUTING_KINDS
from serin.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MANAGED_FOR_LABEL,
    ORIGINAL_SELECTOR_ANNOTATION,
    REVISION_HISTORY,
    SOURCE_HASH_ANNOTATION,
    TARGET_LABEL,
    WORKLOAD_KINDS,
    WorkloadError,
    config_hash,
    config_key,
    contains,
    given_back,
    held_at_zero,
    owned_revision,
    owner_reference,
    primary_config,
    primary_workload,
    promoted_revision,
    recorded_original,
    revision_names,
    runs_revision,
    scale_patch,
    selector_label,
    services,
    template_hash,
    tracked_configs,
    workload_kind,
)

AUTOSCALER_KINDS = tuple(AUTOSCALER_GROUPS)
# Spec fields the API server fills in on an autoscaler written without them.
DEFAULTED_SCALER_FIELDS = frozenset({"minReplicas", "metrics"})
# A replace that loses against a newer version of the object is computed again this many times.
CONFLICT_RETRIES = 3
CONFLICT_BACKOFF_SECONDS = 0.05


class RevisionUnknown(PermanentError):
    """The primary should run a revision that was never recorded and the target no longer holds."""


def workload_state(workload: Mapping[str, Any] | None) -> WorkloadState | None:
    """What the decision needs of a Deployment, DaemonSet or StatefulSet (see ``WorkloadState``)."""
    if workload is None:
        return None
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    metadata = workload.get("metadata") or {}
    kind = str(workload.get("kind") or "Deployment")
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    if kind == "DaemonSet":
        # Not held at zero, it runs on at least one node (one that cannot schedule it is not ready).
        replicas = 0 if held_at_zero(workload) else max(1, int(status.get("desiredNumberScheduled") or 0))
        updated = int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        scheduled = int(status.get("currentNumberScheduled") or 0)
    else:
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        updated = int(status.get("updatedReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        scheduled = int(status.get("replicas") or 0)
    return WorkloadState(
        name=metadata.get("name", ""),
        template_hash=template_hash(workload),
        replicas=replicas,
        updated_replicas=updated,
        available_replicas=available,
        status_replicas=scheduled,
        generation=int(metadata.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        progress_deadline_exceeded=conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded",
        source_hash=(metadata.get("annotations") or {}).get(SOURCE_HASH_ANNOTATION, ""),
        kind=kind,
    )


def _runs_already(
    primary: Mapping[str, Any],
    built: Mapping[str, Any],
    promoted_fields: tuple[str, ...],
    revision: str,
    with_replicas: bool,
) -> bool:
    """Whether the primary as stored already says all that ``built`` (for ``revision``) would
    write over it; the API server's defaults may add to it."""
    spec, wanted = primary.get("spec", {}), built["spec"]
    metadata = primary.get("metadata", {})
    if (metadata.get("annotations") or {}).get(SOURCE_HASH_ANNOTATION) != revision:
        return False
    if not contains(metadata.get("labels") or {}, built["metadata"]["labels"]):
        return False
    if with_replicas and "replicas" in wanted and spec.get("replicas") != wanted["replicas"]:
        return False
    return all(
        contains(spec.get(name), wanted[name]) if name in wanted else name not in spec for name in promoted_fields
    )


def _is_managed(obj: Mapping[str, Any]) -> bool:
    return (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


class OwnedByAnother(PermanentError):
    """An object this Canary would manage belongs to another Canary: it is left alone."""


def _refuse_if_owned_by_another(canary: Canary, obj: Mapping[str, Any]) -> None:
    for reference in obj.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("kind") == "Canary" and reference.get("controller") and reference.get("uid") != canary.uid:
            kind, name = obj.get("kind", "object"), obj.get("metadata", {}).get("name")
            raise OwnedByAnother(
                f"{kind} {canary.namespace}/{name} belongs to canary {reference.get('name')}: {canary.key} leaves it "
                "alone (give one of them another target or spec.service.name)"
            )


def _refuse_unless_serins(canary: Canary, obj: Mapping[str, Any], what: str) -> None:
    """Serin writes over a ``-primary`` object only if it made it (its label says so, or it is
    this Canary's: an edit may have taken the label off): one a person or another tool made under
    that name is theirs (RBAC may let them write only that one), never replaced."""
    _refuse_if_owned_by_another(canary, obj)
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    ours = bool(canary.uid) and any(owner.get("uid") == canary.uid for owner in owners)
    if not _is_managed(obj) and not ours:
        kind, name = obj.get("kind") or "object", (obj.get("metadata") or {}).get("name")
        raise OwnedByAnother(
            f"{kind} {canary.namespace}/{name} was not made by Serin: {canary.key} will not take it over as {what} "
            "(delete or rename it)"
        )


class CanaryObjects:
    def __init__(self, store: KubeStore, router_for: Callable[[str], Router]) -> None:
        self.store = store
        self.router_for = router_for

    # ---- the whole set -----------------------------------------------------------------------

    def ensure(
        self,
        canary: Canary,
        target: Mapping[str, Any],
        primary: Mapping[str, Any] | None,
        split: tuple[int, int] = (100, 0),
        promoted: str = "",
        session: str | None = None,
        mirror: bool = False,
    ) -> None:
        """Create what is missing, adopt what has no owner yet, and route ``split`` (with the
        ``session`` cookie, see ``serin.ports.Router.set_routes``).

        ``primary`` is as last read; a missing one is rebuilt from the ``promoted`` revision (or,
        before anything was promoted, from the target). Objects that admission created before the
        Canary was stored carry no ownerReference; they get one here. Generated Services are
        written whole; a Service the user made before the Canary only has its selector pointed at
        the right pods.
        """
        namespace = canary.namespace
        labels = target.get("metadata", {}).get("labels") or {}
        if labels.get(TARGET_LABEL) != canary.name:
            # The workload webhook selects targets by this label.
            self.store.patch(
                canary.target_ref.kind,
                namespace,
                canary.target_ref.name,
                {"metadata": {"labels": {TARGET_LABEL: canary.name}}},
            )
        configs = tracked_configs(target)
        for kind, name in sorted(configs):
            existing = self.store.get_config(kind, namespace, f"{name}-primary")
            if existing is None:
                source = self.store.get_config(kind, namespace, name)
                if source is not None:
                    self.store.create(primary_config(canary, source))
            else:
                self.adopt(canary, existing)
        if primary is None:
            replicas = max(1, int(target.get("spec", {}).get("replicas") or 1))
            self.copy_to_primary(canary, promoted or template_hash(target), target, replicas)
        else:
            _refuse_if_owned_by_another(canary, primary)
            self.adopt(canary, primary)
        for wanted in services(canary, target):
            name = wanted["metadata"]["name"]
            existing = self.store.get_service(namespace, name)
            if existing is not None:
                _refuse_if_owned_by_another(canary, existing)
            if existing is None:
                self.store.create(wanted)
            elif _is_managed(existing):
                if not contains(existing, wanted):
                    self.store.patch("Service", namespace, name, _service_patch(existing, wanted))
            elif existing.get("spec", {}).get("selector") != wanted["spec"]["selector"]:
                # A Service the user made: only its selector is taken over, and what it was is
                # recorded on it, to be given back when the Canary goes (see ``revert``); the
                # label lets the orphan sweep find it too.
                annotations = existing["metadata"].get("annotations") or {}
                recorded = annotations.get(ORIGINAL_SELECTOR_ANNOTATION)
                if recorded is None:
                    recorded = json.dumps(existing.get("spec", {}).get("selector") or {}, sort_keys=True)
                self.store.patch(
                    "Service",
                    namespace,
                    name,
                    {
                        "metadata": {
                            "labels": {MANAGED_FOR_LABEL: canary.name},
                            "annotations": {ORIGINAL_SELECTOR_ANNOTATION: recorded},
                        },
                        "spec": {
                            "selector": _replacing(existing.get("spec", {}).get("selector"), wanted["spec"]["selector"])
                        },
                    },
                )
        self.router_for(canary.provider).reconcile(canary, split, session, mirror)

    def scale_target(self, canary: Canary, target: Mapping[str, Any], replicas: int) -> None:
        """Scale the target (a DaemonSet: hold it at zero, or let it run everywhere again)."""
        patch = scale_patch({"kind": canary.target_ref.kind, **target}, replicas)
        if patch is not None:
            self.store.patch(canary.target_ref.kind, canary.namespace, canary.target_ref.name, patch)

    # ---- the primary's autoscaler ------------------------------------------------------------

    def target_scaler(self, canary: Canary) -> dict[str, Any]:
        """The autoscaler ``spec.autoscalerRef`` names; WorkloadError, naming it, when it is missing."""
        ref = canary.autoscaler_ref
        assert ref is not None
        scaler = self.store.get(ref.kind, canary.namespace, ref.name)
        if scaler is None:
            raise WorkloadError(
                f"{ref.kind} {canary.namespace}/{ref.name} not found: spec.autoscalerRef names it, and the primary's "
                f"{ref.primary_name} is copied from it"
            )
        return scaler

    def reconcile_scalers(self, canary: Canary, target_replicas: int) -> None:
        """Keep ``<autoscaler>-primary`` a copy of the target's autoscaler that scales the primary,
        and hold a ScaledObject's target at zero while the target is at zero (see
        ``serin.autoscalers``). Nothing is written when both already are as they should be."""
        ref = canary.autoscaler_ref
        if ref is None:
            return
        scaler = self.target_scaler(canary)
        wanted = primary_scaler(canary, scaler)
        existing = self.store.get(ref.kind, canary.namespace, ref.primary_name)
        if existing is not None:
            _refuse_if_owned_by_another(canary, existing)
            if not _is_managed(existing):
                raise OwnedByAnother(
                    f"{ref.kind} {canary.namespace}/{ref.primary_name} was not made by Serin: {canary.key} will not "
                    "take it over as the primary's autoscaler (delete or rename it)"
                )
        if existing is None or not contains(existing, wanted) or not _same_keys(existing["spec"], wanted["spec"]):
            # Server-side apply, whole: a field the target's autoscaler no longer has goes too.
            self.store.apply(wanted)
        patch = pause_patch(canary, scaler, paused=target_replicas == 0)
        if patch is not None:
            self.store.patch(ref.kind, canary.namespace, ref.name, patch)

    def adopt(self, canary: Canary, obj: Mapping[str, Any]) -> None:
        """Give an object Serin made for this Canary its owner reference, if it lacks one."""
        metadata = obj.get("metadata", {})
        references = metadata.get("ownerReferences") or []
        if not canary.uid or any(reference.get("uid") == canary.uid for reference in references):
            return
        if not _is_managed(obj):
            return  # never take over somebody else's object
        self.store.patch(
            obj.get("kind", "Deployment"),
            canary.namespace,
            metadata["name"],
            {"metadata": {"ownerReferences": [*references, owner_reference(canary)]}},
        )

    # ---- the primary and its revisions -------------------------------------------------------

    def recorded_revision(self, canary: Canary, revision: str) -> dict[str, Any] | None:
        """The record of ``revision``, owned by the Canary once it is stored; None if never recorded."""
        for name in revision_names(canary, revision):
            recorded = self.store.get("ControllerRevision", canary.namespace, name)
            if recorded is not None:
                return self._owned(canary, revision, recorded)
        return None

    def _owned(self, canary: Canary, revision: str, recorded: dict[str, Any]) -> dict[str, Any]:
        """``recorded``, or, when it has no owner yet, the owned copy that replaces it (see
        ``serin.workloads.owned_revision``: a record is never written twice)."""
        references = recorded.get("metadata", {}).get("ownerReferences") or []
        if not canary.uid or references or not _is_managed(recorded):
            return recorded
        owned = owned_revision(canary, revision, recorded)
        # Created before the first is deleted: a crash in between leaves both, and the next
        # read finds the first again and ends the move.
        self.store.create(owned)
        self.store.delete("ControllerRevision", canary.namespace, recorded["metadata"]["name"])
        return owned

    def revision_source(self, canary: Canary, revision: str, target: Mapping[str, Any] | None) -> dict[str, Any]:
        """The promotion source of ``revision``: recorded, or recorded now from the target if it
        still holds that revision; RevisionUnknown otherwise."""
        recorded = self.recorded_revision(canary, revision)
        if recorded is not None:
            data: dict[str, Any] = recorded.get("data") or {}
            return data
        if target is None or template_hash(target) != revision:
            raise RevisionUnknown(
                f"revision {revision} of {canary.target_ref.name} was never recorded and the target no longer "
                f"runs it: {canary.primary_name} cannot be given it"
            )
        # Numbered by time: increasing, and needs no list of the others to compute.
        record = promoted_revision(canary, target, int(time.time()))
        self.store.create(record)
        self._prune_revisions(canary)
        source: dict[str, Any] = record["data"]
        return source

    def _prune_revisions(self, canary: Canary) -> None:
        kept = sorted(
            self.store.find("ControllerRevision", canary.namespace, f"{MANAGED_FOR_LABEL}={canary.name}"),
            key=lambda item: int(item.get("revision") or 0),
            reverse=True,
        )
        for old in kept[REVISION_HISTORY:]:
            if _is_managed(old):
                self.store.delete("ControllerRevision", canary.namespace, old["metadata"]["name"])

    def copy_to_primary(
        self, canary: Canary, revision: str, target: Mapping[str, Any] | None, replicas: int | None = None
    ) -> None:
        """Make the primary run ``revision``: its configs copied, its template and the fields
        promotion copies written (creating the primary if it is gone). ``replicas`` only when given:
        otherwise the primary keeps its own."""
        namespace = canary.namespace
        source = self.revision_source(canary, revision, target)
        configs = tracked_configs(source)
        for kind, name in sorted(configs):
            original = self.store.get_config(kind, namespace, name)
            if original is None:
                continue
            wanted = primary_config(canary, original)
            existing = self.store.get_config(kind, namespace, f"{name}-primary")
            if existing is None:
                self.store.create(wanted)
                continue
            _refuse_unless_serins(canary, {"kind": kind, **existing}, "the primary's copy of its config")
            if config_hash(existing) != config_hash(wanted):
                wanted["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                self.store.replace(wanted)
        built = primary_workload(canary, source, configs, replicas)
        promoted_fields = workload_kind(canary.target_ref.kind).promoted_fields
        for attempt in range(CONFLICT_RETRIES + 1):
            primary = self.store.get(canary.target_ref.kind, namespace, canary.primary_name)
            if primary is None:
                self.store.create(built)
                return
            _refuse_unless_serins(canary, {"kind": canary.target_ref.kind, **primary}, "its primary")
            if _runs_already(primary, built, promoted_fields, revision, replicas is not None):
                # As another writer (the bootstrap, a racing tick) just left it: writing it again
                # would change nothing and could only lose to the workload's controller.
                return
            for name in promoted_fields:
                if name in built["spec"]:
                    primary["spec"][name] = built["spec"][name]
                else:
                    primary["spec"].pop(name, None)
            if replicas is not None and "replicas" in built["spec"]:
                primary["spec"]["replicas"] = replicas
            metadata = primary["metadata"]
            metadata["labels"] = {**(metadata.get("labels") or {}), **built["metadata"]["labels"]}
            metadata.setdefault("annotations", {})[SOURCE_HASH_ANNOTATION] = revision
            try:
                self.store.replace(primary)
                return
            except Conflict:
                # The workload's controller writes its status all the time (most often just after
                # the workload was made): read again, write again, a moment later.
                if attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(CONFLICT_BACKOFF_SECONDS * (attempt + 1))

    def primary_runs(self, canary: Canary, primary: Mapping[str, Any], revision: str) -> bool | None:
        """Whether the primary runs ``revision`` as it was recorded; None when nothing was recorded."""
        recorded = self.recorded_revision(canary, revision)
        if recorded is None:
            return None
        return runs_revision(primary, recorded.get("data") or {}, revision)

    def primary_config_hashes(self, canary: Canary, primary: Mapping[str, Any]) -> dict[str, str]:
        """The data hashes of the config copies the primary uses, keyed as the originals."""
        hashes = {}
        for kind, name in sorted(tracked_configs(primary)):
            copied = self.store.get_config(kind, canary.namespace, name)
            if copied is not None:
                hashes[config_key(kind, name.removesuffix("-primary"))] = config_hash(copied)
        return hashes

    # ---- objects of a Canary that was never stored -------------------------------------------

    def remove_orphans(self, namespace: str, canary_name: str) -> list[str]:
        """Undo what admission did for a Canary that never got stored (another webhook refused it,
        or the review was forged): delete the objects Serin made for that name that nobody owns,
        and give back the user's objects it took over."""
        removed = []
        for kind in (*WORKLOAD_KINDS, "Service", *ROUTING_KINDS, "ControllerRevision", *AUTOSCALER_KINDS):
            try:
                found = self.store.find(kind, namespace, f"{MANAGED_FOR_LABEL}={canary_name}")
            except NotFound:
                continue  # a routing API this cluster does not serve
            for obj in found:
                if self._give_back(obj):
                    removed.append(f"{kind}/{obj['metadata']['name']} (given back)")
                    continue
                if not _is_managed(obj) or obj["metadata"].get("ownerReferences"):
                    continue
                if kind in WORKLOAD_KINDS:
                    # Its config copies, by name (Serin lists no Secrets).
                    for config_kind, name in sorted(tracked_configs(obj)):
                        copied = self.store.get_config(config_kind, namespace, name)
                        if copied is not None and _is_managed(copied) and not copied["metadata"].get("ownerReferences"):
                            self.store.delete(copied.get("kind", "ConfigMap"), namespace, name)
                            removed.append(f"{copied.get('kind')}/{name}")
                self.store.delete(kind, namespace, obj["metadata"]["name"])
                removed.append(f"{kind}/{obj['metadata']['name']}")
        return removed

    # ---- giving the target its traffic back --------------------------------------------------

    def revert(self, canary: Canary) -> bool:
        """Give the target its traffic back, as before the Canary; True once the target is ready.

        The target is scaled to the primary's replicas and the apex Service, kept (no owner any
        more) so that clients keep their address, selects the target's pods. The routes go back to
        100/0 until the garbage collector removes them with the primary and the other Services.
        """
        namespace = canary.namespace
        target = self.store.get(canary.target_ref.kind, namespace, canary.target_ref.name)
        if target is None:
            return True
        primary = self.store.get(canary.target_ref.kind, namespace, canary.primary_name)
        replicas = int((primary or {}).get("spec", {}).get("replicas") or 0) or max(
            1, int(target.get("spec", {}).get("replicas") or 1)
        )
        self.scale_target(canary, target, replicas)
        key, value = selector_label(target)
        apex = self.store.get_service(namespace, canary.service.name)
        if apex is not None and _is_managed(apex):
            self.store.patch(
                "Service",
                namespace,
                canary.service.name,
                {"metadata": {"ownerReferences": None}, "spec": {"selector": {key: value}}},
            )
        elif apex is not None:
            self._give_back(apex)  # the user's own Service: the selector it had before the Canary
        with contextlib.suppress(SerinError):
            self.router_for(canary.provider).finalize(canary)
        if canary.autoscaler_ref is not None:
            # The target's own autoscaler scales it again (the primary's goes with the primary).
            with contextlib.suppress(SerinError, WorkloadError):
                patch = pause_patch(canary, self.target_scaler(canary), paused=False)
                if patch is not None:
                    # No longer the target's: the label goes, as the target's own does below.
                    patch["metadata"]["labels"] = {TARGET_LABEL: None}
                    self.store.patch(canary.autoscaler_ref.kind, namespace, canary.autoscaler_ref.name, patch)
        state = workload_state(target)
        ready = state is not None and state.available_replicas >= state.replicas > 0
        if ready and (target["metadata"].get("labels") or {}).get(TARGET_LABEL) == canary.name:
            # No longer this Canary's target: nothing holds it at zero or reads it as a revision.
            self.store.patch(
                canary.target_ref.kind,
                namespace,
                canary.target_ref.name,
                {"metadata": {"labels": {TARGET_LABEL: None}}},
            )
        return ready

    def _give_back(self, obj: Mapping[str, Any]) -> bool:
        """Give an object the user made what Serin wrote over (a Service its selector, a routing
        object its spec); False if Serin took nothing over on it."""
        body = given_back(obj)
        if body is not None:
            self.store.apply(body)
            return True
        selector = recorded_original(obj, ORIGINAL_SELECTOR_ANNOTATION) if obj.get("kind") == "Service" else None
        if selector is None:
            return False
        metadata = obj.get("metadata") or {}
        self.store.patch(
            "Service",
            metadata.get("namespace", ""),
            metadata.get("name", ""),
            {
                "metadata": {"labels": {MANAGED_FOR_LABEL: None}, "annotations": {ORIGINAL_SELECTOR_ANNOTATION: None}},
                "spec": {"selector": _replacing(obj.get("spec", {}).get("selector"), selector)},
            },
        )
        return True


def _same_keys(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a spec Serin wrote whole has no top-level field the wanted one lost (``contains``
    allows extra keys: the API server's defaults, which it fills in again anyway)."""
    return all(key in wanted or key in DEFAULTED_SCALER_FIELDS for key in stored)


def _replacing(current: Any, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch of a map that makes it exactly ``wanted``: keys it no longer has become null."""
    return {**{key: None for key in (current or {}) if key not in wanted}, **wanted}


def _service_patch(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that makes a generated Service what the Canary says: its ports and selector
    whole (a merge patch replaces lists), its labels and annotations merged, our owner added."""
    references = list(existing["metadata"].get("ownerReferences") or [])
    for reference in wanted["metadata"].get("ownerReferences") or []:
        if all(known.get("uid") != reference["uid"] for known in references):
            references.append(reference)
    metadata = {key: wanted["metadata"].get(key) for key in ("labels", "annotations") if key in wanted["metadata"]}
    if references:
        metadata["ownerReferences"] = references
    spec = dict(wanted["spec"])
    spec["selector"] = _replacing(existing.get("spec", {}).get("selector"), wanted["spec"]["selector"])
    return {"metadata": metadata, "spec": spec}
