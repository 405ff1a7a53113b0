"""Release groups: Canaries that name the same ``spec.group`` in one namespace move together.

A group's *release* is the set of its members' revisions, named by a fingerprint of them. Every
member that is not at rest on its promoted revision runs the release: each of its analysis steps
waits until no other member is behind it, it is promoted only once every member's analysis has
passed, and any member's failure in the release rolls back every other. A member with a new
revision makes a new release, and every member's run of the old one starts again.

Groups are per namespace: a Canary can never hold back or roll back another team's.

What a member knows of the others is what their statuses say (``GroupMember``), read by the tick
together with its own. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serin.status import CanaryStatus, GroupProgress, Phase

# The most Canaries one release group may hold: each member's step reads every other's status.
MAX_GROUP_MEMBERS = 20


class Standing(enum.StrEnum):
    """A member's part in a release, as another member sees it."""

    # On its promoted revision and not in the release: it neither waits nor is waited for.
    AT_REST = "at rest"
    # Has a revision to release but has not started this run of it (a gate, a restart to come).
    PENDING = "not started"
    ANALYSING = "analysing"
    ANALYSED = "analysed"
    PROMOTED = "promoted"
    FAILED = "failed"


_RELEASING = frozenset({Phase.PROGRESSING, Phase.WAITING_PROMOTION})
_PROMOTED = frozenset({Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED})
_LEAVING = frozenset({Phase.TERMINATING, Phase.TERMINATED})


@dataclass(frozen=True)
class GroupMember:
    """Another member of the group, as its stored status shows it."""

    name: str
    phase: Phase | None
    # The revision it releases or last released, and the one its primary runs.
    revision: str
    promoted: str
    progress: GroupProgress | None
    # When its phase last changed (for a Failed member: when it was rolled back).
    changed_at: datetime.datetime | None

    @classmethod
    def of(cls, name: str, status: CanaryStatus) -> GroupMember:
        return cls(
            name,
            status.phase,
            status.last_applied_spec,
            status.last_promoted_spec,
            status.group,
            status.last_transition_time,
        )

    def standing(self, release: str) -> Standing:
        if self.phase in _LEAVING:
            return Standing.AT_REST
        if self.progress is not None and self.progress.release == release:
            if self.phase is Phase.FAILED:
                return Standing.FAILED
            if self.phase in _PROMOTED:
                return Standing.PROMOTED
            if self.phase in _RELEASING:
                return Standing.ANALYSED if self.progress.analysed else Standing.ANALYSING
            return Standing.PENDING
        at_rest = self.phase in (Phase.INITIALIZED, Phase.SUCCEEDED) and self.revision == self.promoted
        return Standing.AT_REST if at_rest else Standing.PENDING

    @property
    def steps(self) -> int:
        return self.progress.steps if self.progress is not None else 0


@dataclass(frozen=True)
class Group:
    """A Canary's group: its name and every other member."""

    name: str
    members: tuple[GroupMember, ...] = ()

    def release(self, own_name: str, own_revision: str) -> str:
        """The fingerprint of the release the members' revisions make, with this one's ``own_revision``."""
        revisions = sorted([(member.name, member.revision) for member in self.members] + [(own_name, own_revision)])
        text = "\n".join(f"{name}={revision}" for name, revision in revisions)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def standings(self, release: str, since: datetime.datetime | None) -> dict[str, Standing]:
        """Each other member's part in the run of ``release`` that started at ``since``. A member
        rolled back before ``since`` failed an earlier run (before a retry): it runs this one
        again, so it has not started it yet."""
        standings = {}
        for member in self.members:
            standing = member.standing(release)
            earlier = since is not None and member.changed_at is not None and member.changed_at < since
            standings[member.name] = Standing.PENDING if standing is Standing.FAILED and earlier else standing
        return standings

    def failed(self, release: str, since: datetime.datetime | None) -> list[str]:
        """The members rolled back in this run of ``release``."""
        return sorted(name for name, s in self.standings(release, since).items() if s is Standing.FAILED)

    def behind(self, release: str, since: datetime.datetime | None, steps: int) -> list[str]:
        """The members a member with ``steps`` passed waits for before its next step."""
        standings = self.standings(release, since)
        return sorted(
            member.name
            for member in self.members
            if standings[member.name] is Standing.PENDING
            or (standings[member.name] is Standing.ANALYSING and member.steps < steps)
        )

    def not_analysed(self, release: str, since: datetime.datetime | None) -> list[str]:
        """The members whose analysis has not passed yet: promotion waits for them."""
        waiting_for = (Standing.PENDING, Standing.ANALYSING)
        return sorted(name for name, s in self.standings(release, since).items() if s in waiting_for)

    def rejoins(self, release: str, failed_at: datetime.datetime | None) -> bool:
        """Whether a member rolled back at ``failed_at`` runs ``release`` again: another member
        started a run of it after that (a retry, or a new release)."""
        return any(
            member.standing(release) in (Standing.ANALYSING, Standing.ANALYSED)
            and member.progress is not None
            and member.progress.since is not None
            and (failed_at is None or member.progress.since > failed_at)
            for member in self.members
        )

    def summary(self, release: str, since: datetime.datetime | None) -> str:
        """Each other member and where it is, for the status and the page."""
        standings = self.standings(release, since)
        parts = []
        for member in sorted(self.members, key=lambda m: m.name):
            standing = standings[member.name]
            detail = f" at step {member.steps}" if standing is Standing.ANALYSING else ""
            parts.append(f"{member.name} {standing.value}{detail}")
        return ", ".join(parts)


def group_name(raw: Mapping[str, Any]) -> str:
    """The ``spec.group`` of a stored Canary, or ""."""
    spec = raw.get("spec")
    name = spec.get("group") if isinstance(spec, Mapping) else None
    return name if isinstance(name, str) else ""


def _key(raw: Mapping[str, Any]) -> tuple[str, str]:
    metadata = raw.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return str(namespace or ""), group_name(raw)


def index_groups(canaries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """The stored Canaries of each (namespace, group), in one pass over the list."""
    index: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for raw in canaries:
        key = _key(raw)
        if key[1]:
            index.setdefault(key, []).append(raw)
    return index


def too_large(group: str, members: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a group cannot be released, if it holds more than ``MAX_GROUP_MEMBERS``: each member's
    step reads every other, so a group costs the square of its size."""
    if len(members) <= MAX_GROUP_MEMBERS:
        return None
    return (
        f"release group {group} has {len(members)} members, more than the {MAX_GROUP_MEMBERS} one release "
        "may hold: no member is stepped"
    )


def group_of(namespace: str, name: str, group: str, members: Sequence[Mapping[str, Any]]) -> Group | None:
    """The group of the Canary ``namespace/name`` from its members as stored; None when ungrouped."""
    if not group:
        return None
    others = []
    for raw in members:
        metadata = raw.get("metadata")
        other = str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""
        if other == name or _key(raw) != (namespace, group):
            continue
        status = raw.get("status")
        others.append(GroupMember.of(other, CanaryStatus.from_dict(status if isinstance(status, Mapping) else None)))
    return Group(group, tuple(others))


# The phase a group shows as one release: the least advanced of its members' (a group is only as
# far as its last member), a failure first of all.
_GROUP_PHASE_ORDER = (
    Phase.FAILED,
    Phase.INITIALIZING,
    Phase.WAITING,
    Phase.PROGRESSING,
    Phase.WAITING_PROMOTION,
    Phase.PROMOTING,
    Phase.FINALISING,
    Phase.SUCCEEDED,
    Phase.INITIALIZED,
    Phase.TERMINATING,
    Phase.TERMINATED,
)


def group_phase(phases: Iterable[Phase | None]) -> Phase | None:
    """The phase of a group's release: its members' least advanced phase (None: none has one yet)."""
    known = [phase for phase in phases if phase is not None]
    if not known:
        return None
    return min(known, key=_GROUP_PHASE_ORDER.index)


@dataclass(frozen=True)
class Release:
    """What the page and the CLI list as one line: a Canary, or a release group with its members."""

    namespace: str
    name: str
    group: bool
    members: tuple[Mapping[str, Any], ...]

    @property
    def phase(self) -> Phase | None:
        return group_phase(CanaryStatus.from_dict(raw.get("status")).phase for raw in self.members)


def releases(canaries: Iterable[Mapping[str, Any]]) -> list[Release]:
    """The Canaries as releases: each group's members together under it, every other Canary alone,
    in order of namespace and name."""
    found: dict[tuple[str, str, bool], list[Mapping[str, Any]]] = {}
    for raw in canaries:
        namespace, group = _key(raw)
        metadata = raw.get("metadata")
        name = str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""
        found.setdefault((namespace, group or name, bool(group)), []).append(raw)
    return [
        Release(namespace, name, group, tuple(sorted(members, key=lambda raw: str(raw["metadata"].get("name")))))
        for (namespace, name, group), members in sorted(found.items())
    ]
