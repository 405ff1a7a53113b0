"""What every router shares: weights checked the same way, Istio-shaped matches combined the same
way, the rule for writing over an object the user made (taken over with its spec recorded, given
back at the end; see ``serin.workloads.taking_over``), and ``OneObjectRouter`` for the routers
whose whole split is one object named after the Canary's service."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from serin.kube.store import KubeStore
from serin.model import Canary
from serin.ports import Routes
from serin.workloads import contains, given_back, taking_over

Obj = dict[str, Any]


def validate_weights(primary_weight: int, canary_weight: int) -> None:
    """ValueError unless both weights are integers in 0..100 that add up to 100."""
    for label, weight in (("primary", primary_weight), ("canary", canary_weight)):
        # bool is an int subclass; True as a weight is a bug upstream, not 1 percent.
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"{label} weight must be an integer between 0 and 100 (got {weight!r})")
    if primary_weight + canary_weight != 100:
        raise ValueError(f"weights must add up to 100 (got primary {primary_weight} + canary {canary_weight})")


def cookie_match(cookie: str) -> Obj:
    """An Istio-shaped match on the ``cookie`` request header carrying ``name=value`` among others."""
    name, _, value = cookie.partition("=")
    return {"headers": {"cookie": {"regex": f".*{re.escape(name)}={re.escape(value)}.*"}}}


def plain(value: Any) -> Any:
    """A deep copy made of dicts and lists only, so desired objects never alias the parsed Canary."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def merge_match(analysis_match: Sequence[Mapping[str, Any]], service_match: Sequence[Mapping[str, Any]]) -> list[Obj]:
    """The A/B route's match: every analysis condition combined with every service condition.

    Istio ORs the entries of a match list and ANDs the fields inside one entry, so a request must
    satisfy one service condition *and* one analysis condition: the cross product, each pair merged.
    Fields that are maps (headers, queryParams, withoutHeaders, sourceLabels) are merged key by key;
    for anything else, and for a key present in both, the analysis condition wins.
    """
    if not service_match:
        return [plain(condition) for condition in analysis_match]
    merged: list[Obj] = []
    for analysis_condition in analysis_match:
        for service_condition in service_match:
            combined: Obj = plain(service_condition)
            for key, value in analysis_condition.items():
                if isinstance(value, Mapping) and isinstance(combined.get(key), dict):
                    combined[key] = {**combined[key], **plain(value)}
                else:
                    combined[key] = plain(value)
            merged.append(combined)
    return merged


def as_dict(value: Any) -> Obj:
    """``value`` if it is a dict, else an empty one: stored objects are read without trusting their shape."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def already_holds(stored: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether writing ``body`` over ``stored`` would change nothing that matters, so the write can
    be skipped: the spec exactly as Serin writes it (an entry or key left over from an earlier
    split, such as a mirror, must go) and every label, annotation and owner reference it sets.
    A label Serin no longer sets stays until the object is next written."""
    wanted_metadata = {
        key: value for key, value in body["metadata"].items() if key in ("labels", "annotations", "ownerReferences")
    }
    return stored.get("spec") == body.get("spec") and contains(stored.get("metadata"), wanted_metadata)


class RoutingObjects:
    """Base of the routers: reads before it writes, so the user's own objects are taken over
    with what they had recorded, and given back."""

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def _write(self, desired: Obj) -> None:
        """Write ``desired`` whole, over what is stored: read first, because an object the user
        made is taken over only with its spec recorded (see ``serin.workloads.taking_over``)."""
        metadata = desired["metadata"]
        stored = self._store.get(desired["kind"], metadata["namespace"], metadata["name"], desired.get("apiVersion"))
        body = taking_over(stored, desired)
        if stored is None or not already_holds(stored, body):
            self._store.apply(body)

    def _give_back(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> Obj | None:
        """The object if it is Serin's own; a taken-over one gets its spec back (and None)."""
        stored = self._store.get(kind, namespace, name, api_version)
        if stored is None:
            return None
        body = given_back(stored)
        if body is None:
            return stored
        self._store.apply(body)
        return None


def shares(weights: Mapping[Any, int], primary: str, canary: str) -> Routes | None:
    """The primary's and the canary's percent of their total weight (a proxy balancing by
    relative weights); None when neither is there."""
    if primary not in weights and canary not in weights:
        return None
    total = weights.get(primary, 0) + weights.get(canary, 0)
    if total <= 0:
        return Routes(0, 0)
    canary_share = round(100 * weights.get(canary, 0) / total)
    return Routes(100 - canary_share, canary_share)


class OneObjectRouter(RoutingObjects):
    """A router whose split is one object named after the Canary's service: the subclass says how
    to build it (``desired``; the ``session`` cookie and ``mirror`` matter only to providers that
    can keep users on the canary or copy requests to it, admission refuses them for the others)
    and how to read the split back (``split_of``)."""

    shifts_traffic = True
    kind: str
    kinds: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kinds = (cls.kind,)

    def api_version(self, canary: Canary) -> str | None:
        """The version to read the object in (None: the one ``serin.kube.store`` knows)."""
        return None

    def desired(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None, mirror: bool
    ) -> Obj:
        raise NotImplementedError

    def split_of(self, stored: Mapping[str, Any], canary: Canary) -> Routes | None:
        raise NotImplementedError

    def reconcile(
        self, canary: Canary, split: tuple[int, int] = (100, 0), session: str | None = None, mirror: bool = False
    ) -> None:
        self.set_routes(canary, *split, session, mirror)

    def get_routes(self, canary: Canary) -> Routes | None:
        stored = self._store.get(self.kind, canary.namespace, canary.service.name, self.api_version(canary))
        return None if stored is None else self.split_of(stored, canary)

    def set_routes(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
    ) -> None:
        """The whole object with this split; it is created when missing."""
        self._write(self.desired(canary, primary_weight, canary_weight, session, mirror))

    def finalize(self, canary: Canary) -> None:
        """Give back an object that was the user's; route all traffic of Serin's own (which the
        garbage collector removes with the Canary) to the primary."""
        stored = self._give_back(self.kind, canary.namespace, canary.service.name, self.api_version(canary))
        if stored is not None and self.split_of(stored, canary) is not None:
            self.set_routes(canary, 100, 0)
