"""The Istio router: a VirtualService and two DestinationRules that split traffic for one Canary.

For a Canary whose service is named ``podinfo`` it owns, in the Canary's namespace:

* DestinationRules ``podinfo-primary`` and ``podinfo-canary`` (host = their name, ``trafficPolicy``
  from ``spec.service.trafficPolicy``);
* VirtualService ``podinfo`` (hosts ``podinfo`` plus ``spec.service.hosts``, ``spec.service.gateways``)
  whose http routes send a weighted share to ``podinfo-primary`` and ``podinfo-canary``. For A/B
  testing a first route, matching ``spec.analysis.match``, carries the split and a second one sends
  everything else to the primary.

The desired objects are built by the pure functions at the top of this module; ``IstioRouter`` only
reads, compares and writes them. Every write sets absolute values, is skipped when nothing would
change, and carries the resourceVersion it was computed from, so repeating any call is harmless.

This module must not delete anything (ownerReferences to the Canary let the garbage collector do it),
must not touch Services or Deployments, and must not decide weights: it writes what it is told.
Kubernetes client errors never leave it; they become ``RouterError``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import urllib3.exceptions
from kubernetes.client import ApiClient, ApiException, CustomObjectsApi

from serin.model import API_VERSION as CANARY_API_VERSION
from serin.model import Canary, Strategy
from serin.ports import RouterError, Routes

GROUP = "networking.istio.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
VIRTUAL_SERVICES = "virtualservices"
DESTINATION_RULES = "destinationrules"
_KINDS = {VIRTUAL_SERVICES: "VirtualService", DESTINATION_RULES: "DestinationRule"}

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "serin"

# A write that loses a race (409) is recomputed from a fresh read this many times before giving up.
MAX_CONFLICT_RETRIES = 3
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0

Obj = dict[str, Any]


# ---------------------------------------------------------------------------
# Pure functions: names, desired objects, reading and changing weights


def primary_host(canary: Canary) -> str:
    return f"{canary.service.name}-primary"


def canary_host(canary: Canary) -> str:
    return f"{canary.service.name}-canary"


def validate_weights(primary_weight: int, canary_weight: int) -> None:
    """ValueError unless both weights are integers in 0..100 that add up to 100."""
    for label, weight in (("primary", primary_weight), ("canary", canary_weight)):
        # bool is an int subclass; True as a weight is a bug upstream, not 1 percent.
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"{label} weight must be an integer between 0 and 100 (got {weight!r})")
    if primary_weight + canary_weight != 100:
        raise ValueError(f"weights must add up to 100 (got primary {primary_weight} + canary {canary_weight})")


def owner_references(canary: Canary) -> list[Obj]:
    """The reference that lets the garbage collector delete our objects with the Canary.

    Empty without a uid (a Canary not stored yet, e.g. in a dry run): a reference with an empty uid
    is rejected by the API server.
    """
    if not canary.uid:
        return []
    return [
        {
            "apiVersion": CANARY_API_VERSION,
            "kind": "Canary",
            "name": canary.name,
            "uid": canary.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists only, so desired objects never alias the parsed Canary."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _metadata(
    canary: Canary, name: str, labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None
) -> Obj:
    metadata: Obj = {
        "name": name,
        "namespace": canary.namespace,
        "labels": {**(labels or {}), MANAGED_BY_LABEL: MANAGED_BY},
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    references = owner_references(canary)
    if references:
        metadata["ownerReferences"] = references
    return metadata


def merge_match(analysis_match: Sequence[Mapping[str, Any]], service_match: Sequence[Mapping[str, Any]]) -> list[Obj]:
    """The A/B route's match: every analysis condition combined with every service condition.

    Istio ORs the entries of a match list and ANDs the fields inside one entry, so a request must
    satisfy one service condition *and* one analysis condition: the cross product, each pair merged.
    Fields that are maps (headers, queryParams, withoutHeaders, sourceLabels) are merged key by key;
    for anything else, and for a key present in both, the analysis condition wins.
    """
    if not service_match:
        return [_plain(condition) for condition in analysis_match]
    merged: list[Obj] = []
    for analysis_condition in analysis_match:
        for service_condition in service_match:
            combined: Obj = _plain(service_condition)
            for key, value in analysis_condition.items():
                if isinstance(value, Mapping) and isinstance(combined.get(key), dict):
                    combined[key] = {**combined[key], **_plain(value)}
                else:
                    combined[key] = _plain(value)
            merged.append(combined)
    return merged


def _destination(canary: Canary, host: str, weight: int) -> Obj:
    return {"destination": {"host": host, "port": {"number": canary.service.port}}, "weight": weight}


def _http_route(canary: Canary, match: Sequence[Mapping[str, Any]], primary_weight: int, canary_weight: int) -> Obj:
    service = canary.service
    route: Obj = {}
    if match:
        route["match"] = _plain(match)
    optional = {
        "rewrite": service.rewrite,
        "timeout": service.timeout,
        "retries": service.retries,
        "corsPolicy": service.cors_policy,
        "headers": service.headers,
    }
    route.update({key: _plain(value) for key, value in optional.items() if value is not None})
    route["route"] = [
        _destination(canary, primary_host(canary), primary_weight),
        _destination(canary, canary_host(canary), canary_weight),
    ]
    return route


def desired_virtual_service(canary: Canary, primary_weight: int, canary_weight: int) -> Obj:
    """The VirtualService the Canary asks for, with the given split; ValueError for a bad split."""
    validate_weights(primary_weight, canary_weight)
    service = canary.service
    hosts = list(dict.fromkeys([service.name, *service.hosts]))  # keeps order, drops repeats
    spec: Obj = {"hosts": hosts}
    if service.gateways:
        spec["gateways"] = list(service.gateways)
    if canary.analysis.strategy is Strategy.AB_TESTING:
        spec["http"] = [
            _http_route(canary, merge_match(canary.analysis.match, service.match), primary_weight, canary_weight),
            # Everyone outside the experiment stays on the primary, whatever the split above.
            _http_route(canary, service.match, 100, 0),
        ]
    else:
        spec["http"] = [_http_route(canary, service.match, primary_weight, canary_weight)]
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _metadata(canary, service.name, service.apex.labels, service.apex.annotations),
        "spec": spec,
    }


def desired_destination_rule(canary: Canary, host: str) -> Obj:
    """The DestinationRule named after ``host`` (the primary or the canary Service)."""
    spec: Obj = {"host": host}
    if canary.service.traffic_policy is not None:
        spec["trafficPolicy"] = _plain(canary.service.traffic_policy)
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _metadata(canary, host),
        "spec": spec,
    }


def _as_dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _host_of(entry: Any) -> Any:
    return _as_dict(_as_dict(entry).get("destination")).get("host")


def _weighted_route_indexes(vs: Mapping[str, Any], canary: Canary) -> list[int]:
    """Indexes of the http routes that send traffic to the canary host, in order."""
    routes = _as_list(_as_dict(vs.get("spec")).get("http"))
    target = canary_host(canary)
    return [
        index
        for index, route in enumerate(routes)
        if any(_host_of(entry) == target for entry in _as_list(_as_dict(route).get("route")))
    ]


def routes_of(vs: Mapping[str, Any], canary: Canary) -> Routes | None:
    """The split of the first http route that reaches the canary; None if no route does.

    A destination without a weight gets 100 when it is the route's only one and 0 otherwise, as
    Istio reads it (objects written by Flagger omit zero weights).
    """
    indexes = _weighted_route_indexes(vs, canary)
    if not indexes:
        return None
    route = _as_dict(_as_list(_as_dict(vs.get("spec")).get("http"))[indexes[0]])
    entries = _as_list(route.get("route"))
    weights = {primary_host(canary): 0, canary_host(canary): 0}
    for entry in entries:
        host = _host_of(entry)
        if host in weights:
            weight = _as_dict(entry).get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int):
                weight = 100 if len(entries) == 1 else 0
            weights[host] = weight
    mirrored = bool(_as_dict(route.get("mirror")).get("host"))
    return Routes(weights[primary_host(canary)], weights[canary_host(canary)], mirrored=mirrored)


def with_weights(vs: Mapping[str, Any], canary: Canary, primary_weight: int, canary_weight: int) -> Obj:
    """A copy of ``vs`` with the split written into the routes that reach the canary.

    The first such route gets the split. For A/B testing the later ones (the default route) get
    100/0, so only requests that match the experiment can reach the canary; otherwise they get the
    split too. Nothing else changes, so applying the same split twice gives an equal object.
    ValueError for a bad split.
    """
    validate_weights(primary_weight, canary_weight)
    result: Obj = copy.deepcopy(dict(vs))
    routes = _as_list(_as_dict(result.get("spec")).get("http"))
    for position, index in enumerate(_weighted_route_indexes(result, canary)):
        split = (primary_weight, canary_weight)
        if position > 0 and canary.analysis.strategy is Strategy.AB_TESTING:
            split = (100, 0)
        weights = dict(zip((primary_host(canary), canary_host(canary)), split, strict=True))
        for entry in _as_list(_as_dict(routes[index]).get("route")):
            host = _host_of(entry)
            if host in weights and isinstance(entry, dict):
                entry["weight"] = weights[host]
    return result


def adopted(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> Obj:
    """``stored`` with the desired spec, labels, annotations and owner reference merged in.

    Metadata is merged, not replaced: other controllers and people may add labels, annotations and
    owners of their own, and ``metadata.resourceVersion`` must stay for the write's precondition.
    """
    result: Obj = copy.deepcopy(dict(stored))
    result["spec"] = copy.deepcopy(desired["spec"])
    metadata = result.setdefault("metadata", {})
    wanted = _as_dict(desired.get("metadata"))
    for key in ("labels", "annotations"):
        if wanted.get(key):
            metadata[key] = {**_as_dict(metadata.get(key)), **wanted[key]}
    references = _as_list(metadata.get("ownerReferences"))
    known_uids = {_as_dict(reference).get("uid") for reference in references}
    has_controller = any(_as_dict(reference).get("controller") for reference in references)
    for reference in _as_list(wanted.get("ownerReferences")):
        if reference["uid"] in known_uids:
            continue
        # The API server allows one controller per object; under another one we are a plain owner.
        references.append({**reference, "controller": False} if has_controller else copy.deepcopy(reference))
    if references:
        metadata["ownerReferences"] = references
    return result


# ---------------------------------------------------------------------------
# API calls


def _reason(exc: ApiException) -> str:
    """The API server's own explanation (its Status message) when there is one."""
    try:
        message = json.loads(exc.body or "").get("message")
    except (ValueError, AttributeError, TypeError):
        message = None
    return str(message or exc.reason or "no reason given")


class IstioRouter:
    """Reconciles and re-weights the Istio objects of Canaries, through the Kubernetes API."""

    def __init__(self, api: ApiClient, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS) -> None:
        self._objects = CustomObjectsApi(api)
        # Without a timeout a stuck API server would hold a tick (and its lease) forever.
        self._timeout = request_timeout

    # -- Router protocol

    def reconcile(self, canary: Canary) -> None:
        for host in (primary_host(canary), canary_host(canary)):
            rule = desired_destination_rule(canary, host)
            self._write(canary, DESTINATION_RULES, host, functools.partial(_converge, desired=rule))
        self._write(canary, VIRTUAL_SERVICES, canary.service.name, lambda stored: _converge_vs(stored, canary))

    def get_routes(self, canary: Canary) -> Routes | None:
        stored = self._get(canary, VIRTUAL_SERVICES, canary.service.name)
        return None if stored is None else routes_of(stored, canary)

    def set_routes(self, canary: Canary, primary_weight: int, canary_weight: int) -> None:
        validate_weights(primary_weight, canary_weight)

        def change(stored: Obj | None) -> Obj | None:
            if stored is None or routes_of(stored, canary) is None:
                state = "does not exist" if stored is None else f"has no http route to {canary_host(canary)}"
                raise RouterError(
                    f"cannot set routes of Canary {canary.key}: VirtualService {canary.namespace}/"
                    f"{canary.service.name} {state}; reconcile it first"
                )
            return _if_changed(stored, with_weights(stored, canary, primary_weight, canary_weight))

        self._write(canary, VIRTUAL_SERVICES, canary.service.name, change)

    def finalize(self, canary: Canary) -> None:
        def change(stored: Obj | None) -> Obj | None:
            # Nothing to route back: no VirtualService, or none of its routes reaches the canary.
            if stored is None or routes_of(stored, canary) is None:
                return None
            return _if_changed(stored, with_weights(stored, canary, 100, 0))

        self._write(canary, VIRTUAL_SERVICES, canary.service.name, change)

    # -- plumbing

    def _describe(self, canary: Canary, plural: str, name: str) -> str:
        return f"{_KINDS[plural]} {canary.namespace}/{name} (Canary {canary.key})"

    def _get(self, canary: Canary, plural: str, name: str) -> Obj | None:
        try:
            found = self._objects.get_namespaced_custom_object(
                GROUP, VERSION, canary.namespace, plural, name, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise RouterError(f"reading {self._describe(canary, plural, name)}: {exc.status} {_reason(exc)}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RouterError(f"reading {self._describe(canary, plural, name)}: API server unreachable: {exc}") from exc
        if not isinstance(found, dict):
            raise RouterError(f"reading {self._describe(canary, plural, name)}: unexpected answer {found!r}")
        return found

    def _write(self, canary: Canary, plural: str, name: str, change: Callable[[Obj | None], Obj | None]) -> None:
        """Read, compute the new object with ``change`` (None: nothing to write), then create or replace.

        A conflict means someone wrote in between (or created the object first); the change is
        computed again from a fresh read rather than forcing ours over theirs.
        """
        what = self._describe(canary, plural, name)
        for _ in range(1 + MAX_CONFLICT_RETRIES):
            stored = self._get(canary, plural, name)
            new = change(stored)
            if new is None:
                return
            try:
                if stored is None:
                    self._objects.create_namespaced_custom_object(
                        GROUP, VERSION, canary.namespace, plural, new, _request_timeout=self._timeout
                    )
                else:
                    self._objects.replace_namespaced_custom_object(
                        GROUP, VERSION, canary.namespace, plural, name, new, _request_timeout=self._timeout
                    )
                return
            except ApiException as exc:
                if exc.status == 409:
                    continue
                action = "creating" if stored is None else "updating"
                raise RouterError(f"{action} {what}: {exc.status} {_reason(exc)}") from exc
            except urllib3.exceptions.HTTPError as exc:
                raise RouterError(f"writing {what}: API server unreachable: {exc}") from exc
        raise RouterError(f"writing {what}: still conflicting after {MAX_CONFLICT_RETRIES} retries")


def _if_changed(stored: Obj, new: Obj) -> Obj | None:
    return None if new == stored else new


def _converge(stored: Obj | None, desired: Obj) -> Obj | None:
    """The object to write so that ``stored`` becomes ``desired`` (None when it already is)."""
    return desired if stored is None else _if_changed(stored, adopted(stored, desired))


def _converge_vs(stored: Obj | None, canary: Canary) -> Obj | None:
    routes = routes_of(stored, canary) if stored is not None else None
    split = (100, 0) if routes is None else (routes.primary_weight, routes.canary_weight)
    try:
        desired = desired_virtual_service(canary, *split)
    except ValueError:
        # Stored weights Istio itself would reject (hand-edited, not adding up to 100): the only
        # safe split to repair them to is everything on the primary.
        desired = desired_virtual_service(canary, 100, 0)
    return _converge(stored, desired)
