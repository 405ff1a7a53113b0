"""Pure builders and readings of the objects Serin manages next to the user's workload.

For a Canary ``podinfo`` targeting Deployment ``podinfo``: the ``podinfo-primary`` Deployment (the
target's spec under the primary's labels, its ConfigMaps and Secrets copied with a ``-primary``
suffix) and the Services ``podinfo``, ``podinfo-primary`` and ``podinfo-canary``. Also the hashes
that tell a new revision: of the pod template and of the data of every config it uses. A
DaemonSet or StatefulSet target gets a primary of its own kind the same way (see
``WORKLOAD_KINDS`` for what each copies, and how each is held at zero).

No I/O here: functions take and return plain dicts as the API server speaks them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from serin.model import API_VERSION, Canary

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "serin"
# On the primary: the hash of the target template it was last copied from.
SOURCE_HASH_ANNOTATION = "serin.dev/source-template-hash"
# A DaemonSet runs a pod on every node its template selects: it is "scaled to zero" by this node
# selector, which no node matches, as Flagger does with its own key. It is not part of a revision.
SCALE_TO_ZERO_NODE_SELECTOR = "serin.dev/scale-to-zero"


@dataclass(frozen=True)
class WorkloadKind:
    """What Serin does differently for each kind of target."""

    kind: str
    # What promotion copies from the target's spec into the primary's, as Flagger's Promote does
    # (replicas are the primary's own, set apart: an autoscaler or a person may scale it).
    promoted_fields: tuple[str, ...]
    # What the primary takes from the target when it is created only: the API server refuses to
    # change them afterwards.
    created_fields: tuple[str, ...] = ()
    # Scaled by spec.replicas; a DaemonSet has none (see SCALE_TO_ZERO_NODE_SELECTOR).
    has_replicas: bool = True


WORKLOAD_KINDS: Mapping[str, WorkloadKind] = {
    "Deployment": WorkloadKind(
        "Deployment",
        ("template", "selector", "strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"),
    ),
    "DaemonSet": WorkloadKind(
        "DaemonSet",
        ("template", "updateStrategy", "minReadySeconds", "revisionHistoryLimit"),
        created_fields=("selector",),
        has_replicas=False,
    ),
    # The primary keeps its own pods, ordinals and volume claims (<claim>-<name>-primary-<n>): a
    # promotion rolls the primary's pods over to the new template in its own update order, and
    # no data moves between the target's volumes and the primary's.
    "StatefulSet": WorkloadKind(
        "StatefulSet",
        (
            "template",
            "updateStrategy",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
            "revisionHistoryLimit",
        ),
        created_fields=("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates"),
    ),
}
# Promotion copies for a Deployment (most targets).
PROMOTED_SPEC_FIELDS = WORKLOAD_KINDS["Deployment"].promoted_fields


def workload_kind(kind: str) -> WorkloadKind:
    return WORKLOAD_KINDS.get(kind) or WORKLOAD_KINDS["Deployment"]


# ControllerRevisions kept per Canary (promoted templates), as a Deployment's revisionHistoryLimit.
REVISION_HISTORY = 10
# On the target: which Canary it belongs to (the Deployment webhook selects on this).
TARGET_LABEL = "serin.dev/canary"
# On every object Serin makes for a Canary: which one, so that objects made for a Canary that was
# never stored (admission bootstraps before the Canary exists) can be found and removed.
MANAGED_FOR_LABEL = "serin.dev/managed-for"
# What Serin wrote over on an object the user made before the Canary, to give it back when the
# Canary goes: a Service's selector (only the selector is taken over), a routing object's spec.
ORIGINAL_SELECTOR_ANNOTATION = "serin.dev/original-selector"
ORIGINAL_SPEC_ANNOTATION = "serin.dev/original-spec"
# Flagger's choice of selector labels, in order of preference.
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
# On generated Services and routing objects, as Flagger sets them: Flux must not fight Serin over
# objects that live only in the cluster (kustomize-controller and helm-controller drift detection).
GITOPS_HANDS_OFF = {
    "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
    "helm.toolkit.fluxcd.io/driftDetection": "disabled",
}


class WorkloadError(ValueError):
    """The target cannot be handled as it is; the message says what to change."""


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _without_scale_to_zero(template: Mapping[str, Any]) -> dict[str, Any]:
    """A pod template without the node selector that holds a DaemonSet at zero."""
    pod_spec = template.get("spec")
    selector = pod_spec.get("nodeSelector") if isinstance(pod_spec, Mapping) else None
    if not isinstance(pod_spec, Mapping) or not isinstance(selector, Mapping):
        return dict(template)
    if SCALE_TO_ZERO_NODE_SELECTOR not in selector:
        return dict(template)
    kept = {key: value for key, value in selector.items() if key != SCALE_TO_ZERO_NODE_SELECTOR}
    spec = {key: value for key, value in pod_spec.items() if key != "nodeSelector"}
    if kept:
        spec["nodeSelector"] = kept
    return {**template, "spec": spec}


def template_hash(workload: Mapping[str, Any]) -> str:
    """The revision of a workload: a hash of its pod template (replicas are not a revision, nor is
    the node selector that holds a DaemonSet at zero)."""
    template = (workload.get("spec") or {}).get("template") or {}
    return _digest(_without_scale_to_zero(template) if isinstance(template, Mapping) else template)


def held_at_zero(workload: Mapping[str, Any]) -> bool:
    """Whether a DaemonSet's template carries the node selector no node matches."""
    pod_spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    return SCALE_TO_ZERO_NODE_SELECTOR in (pod_spec.get("nodeSelector") or {})


def _claims(workload: Mapping[str, Any]) -> dict[str, Any]:
    """A StatefulSet's volume claim templates by name: what each asks for (its spec)."""
    templates = (workload.get("spec") or {}).get("volumeClaimTemplates") or []
    return {
        str((claim.get("metadata") or {}).get("name")): claim.get("spec") or {}
        for claim in templates
        if isinstance(claim, Mapping)
    }


def changed_claims(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The volume claim templates that differ between two StatefulSets, as ``added data``,
    ``removed logs`` or ``changed data``; empty when they ask for the same volumes."""
    old, new = _claims(before), _claims(after)
    return sorted(
        [f"added {name}" for name in new.keys() - old.keys()]
        + [f"removed {name}" for name in old.keys() - new.keys()]
        + [f"changed {name}" for name in old.keys() & new.keys() if old[name] != new[name]]
    )


def unpromotable_claims(target: Mapping[str, Any], primary: Mapping[str, Any]) -> str | None:
    """Why the target's revisions can never be promoted into the primary: a StatefulSet's volume
    claim templates cannot change once it exists, so the primary keeps those it was created
    with. None when they ask for the same volumes (or the workloads are not StatefulSets)."""
    if target.get("kind") != "StatefulSet" or primary.get("kind") != "StatefulSet":
        return None
    changes = changed_claims(primary, target)
    if not changes:
        return None
    name = (target.get("metadata") or {}).get("name")
    primary_name = (primary.get("metadata") or {}).get("name")
    return (
        f"the volumeClaimTemplates of StatefulSet {name} differ from {primary_name}'s ({', '.join(changes)}): a "
        f"StatefulSet's claims cannot change, so {primary_name} cannot be given them; to change them, delete the "
        f"Canary, recreate {name} with them, and create the Canary again"
    )


def scale_patch(workload: Mapping[str, Any], replicas: int) -> dict[str, Any] | None:
    """The merge patch that scales a target to ``replicas``; None when it already is there. A
    DaemonSet is either at zero or on every node its template selects."""
    if workload_kind(str(workload.get("kind", "Deployment"))).has_replicas:
        if (workload.get("spec") or {}).get("replicas") == replicas:
            return None
        return {"spec": {"replicas": replicas}}
    if held_at_zero(workload) == (replicas == 0):
        return None
    value = "true" if replicas == 0 else None
    return {"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: value}}}}}


def config_hash(obj: Mapping[str, Any]) -> str:
    return _digest({"data": obj.get("data") or {}, "binaryData": obj.get("binaryData") or {}})


def config_key(kind: str, name: str) -> str:
    """Keys of ``status.trackedConfigs``: ``configmap/<name>`` and ``secret/<name>``."""
    return f"{kind}/{name}"


def _config_references(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every place in a pod spec that names a ConfigMap or Secret: (kind, holder dict, key of the name)."""
    for volume in pod_spec.get("volumes") or []:
        if volume.get("configMap"):
            yield "configmap", volume["configMap"], "name"
        if volume.get("secret"):
            yield "secret", volume["secret"], "secretName"
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap"):
                yield "configmap", source["configMap"], "name"
            if source.get("secret"):
                yield "secret", source["secret"], "name"
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        for env_from in container.get("envFrom") or []:
            if env_from.get("configMapRef"):
                yield "configmap", env_from["configMapRef"], "name"
            if env_from.get("secretRef"):
                yield "secret", env_from["secretRef"], "name"
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if source.get("configMapKeyRef"):
                yield "configmap", source["configMapKeyRef"], "name"
            if source.get("secretKeyRef"):
                yield "secret", source["secretKeyRef"], "name"


def tracked_configs(deployment: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (kind, name) of every ConfigMap and Secret the target's pods use."""
    pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return {(kind, holder[key]) for kind, holder, key in _config_references(pod_spec) if holder.get(key)}


def selector_label(deployment: Mapping[str, Any]) -> tuple[str, str]:
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    for key in SELECTOR_LABELS:
        if labels.get(key):
            return key, str(labels[key])
    name = deployment.get("metadata", {}).get("name", "?")
    kind = deployment.get("kind", "Deployment")
    raise WorkloadError(
        f"{kind} {name} needs one of the selector labels {', '.join(SELECTOR_LABELS)} in spec.selector.matchLabels"
    )


def owner_reference(canary: Canary) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Canary",
        "name": canary.name,
        "uid": canary.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def managed_metadata(
    canary: Canary,
    name: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Metadata of an object Serin manages for ``canary``: the managed-by label and, once the
    Canary is stored (it has a uid), the owner reference that lets the garbage collector remove
    the object with it."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": canary.namespace,
        "labels": {**(labels or {}), MANAGED_BY_LABEL: MANAGED_BY, MANAGED_FOR_LABEL: canary.name},
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    if canary.uid:
        metadata["ownerReferences"] = [owner_reference(canary)]
    return metadata


def generated_metadata(
    canary: Canary, name: str, labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Metadata of a generated Service or routing object: managed, and hands off for GitOps tools."""
    return managed_metadata(canary, name, labels, {**(annotations or {}), **GITOPS_HANDS_OFF})


def primary_pod_template(
    target: Mapping[str, Any], renamed_configs: set[tuple[str, str]], label: tuple[str, str]
) -> dict[str, Any]:
    """The target's pod template as the primary runs it: primary labels, ``-primary`` configs, on
    every node the target's own selects."""
    template = copy.deepcopy(_without_scale_to_zero(target.get("spec", {}).get("template", {})))
    key, value = label
    template.setdefault("metadata", {}).setdefault("labels", {})[key] = f"{value}-primary"
    for kind, holder, name_key in _config_references(template.get("spec", {})):
        if (kind, holder.get(name_key)) in renamed_configs:
            holder[name_key] = f"{holder[name_key]}-primary"
    return template


def primary_workload(
    canary: Canary,
    target: Mapping[str, Any],
    renamed_configs: set[tuple[str, str]],
    replicas: int | None = None,
) -> dict[str, Any]:
    """The ``<target>-primary`` workload serving ``target`` (the target, or a promotion source), of
    the Canary's target kind."""
    kind = workload_kind(canary.target_ref.kind)
    label = selector_label({"kind": kind.kind, **target})
    key, value = label
    source = target.get("spec", {})
    spec = {
        name: copy.deepcopy(source[name]) for name in (*kind.promoted_fields, *kind.created_fields) if name in source
    }
    spec["selector"] = {"matchLabels": {key: f"{value}-primary"}}
    spec["template"] = primary_pod_template(target, renamed_configs, label)
    if replicas is not None and kind.has_replicas:
        spec["replicas"] = replicas
    target_labels = dict(target.get("metadata", {}).get("labels") or {})
    target_labels.pop(TARGET_LABEL, None)
    metadata = managed_metadata(canary, canary.primary_name, {**target_labels, key: f"{value}-primary"})
    metadata["annotations"] = {SOURCE_HASH_ANNOTATION: template_hash(target)}
    return {"apiVersion": "apps/v1", "kind": kind.kind, "metadata": metadata, "spec": spec}


def promotion_source(target: Mapping[str, Any]) -> dict[str, Any]:
    """What of the target a primary is built from: its labels and the spec fields promotion copies
    (and, for a primary rebuilt from it, those it takes when created)."""
    kind = workload_kind(str(target.get("kind", "Deployment")))
    labels = dict(target.get("metadata", {}).get("labels") or {})
    labels.pop(TARGET_LABEL, None)
    spec = target.get("spec", {})
    fields = (*kind.promoted_fields, *kind.created_fields)
    kept = {key: copy.deepcopy(spec[key]) for key in fields if key in spec}
    if "template" in kept:
        kept["template"] = _without_scale_to_zero(kept["template"])
    return {"metadata": {"labels": labels}, "spec": kept}


def revision_names(canary: Canary, revision: str) -> tuple[str, str]:
    """The two names a revision's record may have: its own, and the one its owned copy takes
    while a record without an owner holds the first (see ``owned_revision``)."""
    name = f"{canary.name[:200]}-{revision}"
    return name, f"{name}-1"


def promoted_revision(canary: Canary, target: Mapping[str, Any], number: int) -> dict[str, Any]:
    """A ControllerRevision that keeps one revision of the target as the primary was given it.

    Kept by the Canary as StatefulSets and DaemonSets keep theirs, so that a deleted or edited
    primary is rebuilt from what was analysed and promoted, never from whatever the target holds
    by then. It keeps no config data: Secrets stay in Secrets.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": managed_metadata(canary, revision_names(canary, template_hash(target))[0]),
        "data": promotion_source(target),
        "revision": number,
    }


def owned_revision(canary: Canary, revision: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a revision's record that the Canary owns, under the record's other name.

    A ControllerRevision is never written twice. The API server keeps its ``data`` byte for byte
    and refuses any write that would change it, and a patch, even of the owner references only,
    has the whole object encoded again, by Go's rules rather than those of the client that wrote
    it. So a record made before its Canary was stored (admission records the first revision then)
    is not adopted in place: it is copied, with its owner, and the first is deleted.
    """
    first, second = revision_names(canary, revision)
    name = (recorded.get("metadata") or {}).get("name")
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": managed_metadata(canary, second if name == first else first),
        "data": copy.deepcopy(recorded.get("data") or {}),
        "revision": int(recorded.get("revision") or 0),
    }


def contains(stored: Any, wanted: Any) -> bool:
    """Whether ``stored`` says everything ``wanted`` says (and may say more: the API server's defaults).

    Maps may have extra keys; lists must be as long and each item contain the wanted one, so an
    added or removed container is a difference while a defaulted field inside one is not.
    """
    if isinstance(wanted, Mapping):
        return isinstance(stored, Mapping) and all(contains(stored.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(wanted)
            and all(contains(have, want) for have, want in zip(stored, wanted, strict=True))
        )
    return bool(stored == wanted)


def taking_over(stored: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` as it may be written over ``stored``.

    An object Serin made is written as desired. Somebody else's (no managed-by label, or taken over
    before) is written over too, as Flagger does, but keeps the spec it had in an annotation, once,
    and gets no owner reference: the garbage collector must never delete it with the Canary.
    """
    wanted = copy.deepcopy(dict(desired))
    if stored is None:
        return wanted
    metadata = stored.get("metadata") or {}
    recorded = (metadata.get("annotations") or {}).get(ORIGINAL_SPEC_ANNOTATION)
    if recorded is None and (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
        return wanted
    if recorded is None:
        recorded = json.dumps(stored.get("spec") or {}, sort_keys=True)
    wanted["metadata"].pop("ownerReferences", None)
    wanted["metadata"]["annotations"] = {
        **(wanted["metadata"].get("annotations") or {}),
        ORIGINAL_SPEC_ANNOTATION: recorded,
    }
    return wanted


def recorded_original(obj: Mapping[str, Any], annotation: str) -> dict[str, Any] | None:
    """What Serin recorded in ``annotation`` on taking ``obj`` over (None: nothing was taken over);
    WorkloadError, naming the object, if the annotation was edited into something unreadable."""
    metadata = obj.get("metadata") or {}
    recorded = (metadata.get("annotations") or {}).get(annotation)
    if recorded is None:
        return None
    where = f"{obj.get('kind')} {metadata.get('namespace')}/{metadata.get('name')}"
    try:
        original = json.loads(recorded)
    except ValueError as error:
        raise WorkloadError(f"{where}: annotation {annotation} is not JSON ({error})") from None
    if not isinstance(original, dict):
        raise WorkloadError(f"{where}: annotation {annotation} is not a JSON object")
    return original


def given_back(stored: Mapping[str, Any]) -> dict[str, Any] | None:
    """The server-side apply that gives a taken-over object the spec it had (None for an object
    Serin made). It says nothing else, so what Serin added, labels and annotations, goes."""
    spec = recorded_original(stored, ORIGINAL_SPEC_ANNOTATION)
    if spec is None:
        return None
    metadata = stored.get("metadata") or {}
    return {
        "apiVersion": stored.get("apiVersion"),
        "kind": stored.get("kind"),
        "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace")},
        "spec": spec,
    }


def runs_revision(primary: Mapping[str, Any], source: Mapping[str, Any], revision: str) -> bool:
    """Whether the primary runs ``revision`` (its promotion ``source``) as Serin wrote it."""
    annotations = primary.get("metadata", {}).get("annotations") or {}
    if annotations.get(SOURCE_HASH_ANNOTATION) != revision:
        return False
    expected = primary_pod_template(source, tracked_configs(source), selector_label(source))
    return contains(primary.get("spec", {}).get("template"), expected)


def primary_config(canary: Canary, source: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ConfigMap or Secret for the primary, named ``<name>-primary``."""
    name = source["metadata"]["name"]
    copied: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": source.get("kind", "ConfigMap"),
        "metadata": managed_metadata(canary, f"{name}-primary"),
    }
    for key in ("data", "binaryData", "type", "immutable"):
        if key in source:
            copied[key] = copy.deepcopy(source[key])
    return copied


# Mesh proxies injected beside the application: their ports are not the application's.
SIDECAR_CONTAINERS = frozenset({"istio-proxy", "envoy"})


def discovered_ports(canary: Canary, target: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The target's other container ports, as Flagger's port discovery exposes them: every port
    of every container but the mesh proxies and the service's own, named as the container names
    it (``tcp-<container>-<index>`` when it does not), sorted by name."""
    main = canary.service.target_port
    containers = target.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    found: dict[str, int] = {}
    for container in containers:
        if not isinstance(container, Mapping) or container.get("name") in SIDECAR_CONTAINERS:
            continue
        for index, port in enumerate(container.get("ports") or []):
            number, port_name = port.get("containerPort"), port.get("name")
            if not isinstance(number, int) or number == main or (port_name and port_name == main):
                continue
            found[port_name or f"tcp-{container.get('name')}-{index}"] = number
    return [
        {"name": name, "port": number, "targetPort": number, "protocol": "TCP"}
        for name, number in sorted(found.items())
    ]


def services(canary: Canary, target: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Apex (selects the primary, as users' clients call it), primary and canary Services."""
    key, value = selector_label(target)
    name = canary.service.name
    port: dict[str, Any] = {
        "name": canary.service.port_name,
        "port": canary.service.port,
        "targetPort": canary.service.target_port,
        "protocol": "TCP",
    }
    if canary.service.app_protocol:
        port["appProtocol"] = canary.service.app_protocol
    ports = [port, *discovered_ports(canary, target)] if canary.service.port_discovery else [port]
    result = []
    for service_name, selected, metadata in (
        (name, f"{value}-primary", canary.service.apex),
        (canary.service.primary_name, f"{value}-primary", canary.service.primary),
        (canary.service.canary_name, value, canary.service.canary),
    ):
        # As Flagger labels them: the selector's key with the Service's own name.
        labels = {**metadata.labels, key: service_name}
        service_metadata = generated_metadata(canary, service_name, labels, metadata.annotations)
        result.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": service_metadata,
                "spec": {"type": "ClusterIP", "selector": {key: selected}, "ports": ports},
            }
        )
    return result
