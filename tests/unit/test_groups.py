"""Release groups in the decision core: members advance in lockstep, are promoted together and are
rolled back together; a new revision of one restarts the group's release.

Each case runs a small world of members through ``decide``: at every tick each member is decided
with the group as the others' statuses stood when the tick began (as the tick reads them), and the
exact sequence of every member's phase and step is asserted.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any

import pytest

from serin.decide import (
    METRICS,
    CopyToPrimary,
    Decision,
    EnsureObjects,
    MetricReading,
    Observation,
    ScaleTarget,
    SetRoutes,
    Split,
    WorkloadState,
    decide,
)
from serin.groups import Group, GroupMember, Standing, group_of, index_groups
from serin.model import Canary, HookType, parse_canary
from serin.ports import HookResult
from serin.reconcile import GROUP_ROUNDS, Shard
from serin.status import CanaryStatus, GroupProgress, Phase

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
SUCCESS_RATE = {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "15s"}
WEIGHTED = {"interval": "1m", "threshold": 1, "maxWeight": 20, "stepWeight": 10, "metrics": [SUCCESS_RATE]}
BLUE_GREEN = {"interval": "1m", "threshold": 1, "iterations": 2, "metrics": [SUCCESS_RATE]}
AB = {
    "interval": "1m",
    "threshold": 1,
    "iterations": 1,
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
    "metrics": [SUCCESS_RATE],
}


def make_canary(name: str, analysis: dict[str, Any], group: str = "checkout", namespace: str = "shop") -> Canary:
    return parse_canary(
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "generation": 1},
            "spec": {
                "group": group,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 80},
                "analysis": analysis,
            },
        }
    )


def ready(name: str, template: str, replicas: int = 0, source: str = "") -> WorkloadState:
    return WorkloadState(
        name=name,
        template_hash=template,
        replicas=replicas,
        updated_replicas=replicas,
        available_replicas=replicas,
        status_replicas=replicas,
        source_hash=source,
    )


@dataclass
class Member:
    canary: Canary
    status: CanaryStatus
    target: WorkloadState
    primary: WorkloadState
    routes: Split = (100, 0)
    # The success rate the member's canary answers with.
    success_rate: float = 100.0
    last_events: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.canary.name

    def release(self, template: str) -> None:
        self.target = dataclasses.replace(self.target, template_hash=template)

    def step(self, group: Group, now: datetime.datetime) -> Decision:
        observation = Observation(target=self.target, primary=self.primary, routes=self.routes)
        decision = decide(self.canary, self.status, observation, now, group=group)
        while decision.needs:
            hooks = {need: (HookResult("gate", True, ""),) for need in decision.needs if isinstance(need, HookType)}
            metrics = tuple(MetricReading(self.success_rate) for _ in self.canary.analysis.metrics)
            observation = dataclasses.replace(
                observation,
                hooks={**observation.hooks, **hooks},
                metrics=metrics if METRICS in decision.needs else observation.metrics,
            )
            decision = decide(self.canary, self.status, observation, now, group=group)
        for action in decision.actions:
            self.apply(action)
        self.status = decision.status
        self.last_events += tuple(event.message for event in decision.events)
        return decision

    def apply(self, action: object) -> None:
        if isinstance(action, ScaleTarget):
            self.target = dataclasses.replace(
                self.target,
                replicas=action.replicas,
                updated_replicas=action.replicas,
                available_replicas=action.replicas,
                status_replicas=action.replicas,
            )
        elif isinstance(action, SetRoutes):
            self.routes = (action.primary_weight, action.canary_weight)
        elif isinstance(action, CopyToPrimary):
            self.primary = dataclasses.replace(self.primary, source_hash=action.revision)
        else:
            assert isinstance(action, EnsureObjects) or action is not None

    def where(self) -> str:
        status = self.status
        phase = status.phase.value if status.phase else "-"
        steps = status.group.steps if status.group else 0
        return f"{phase} w{status.canary_weight} i{status.iterations} s{steps}"


@dataclass
class GroupWorld:
    members: list[Member]
    now: datetime.datetime = NOW
    log: list[dict[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Member:
        return next(member for member in self.members if member.name == name)

    def tick(self, seconds: float = 60) -> dict[str, str]:
        """One tick as the reconciler takes it: every member decided against the others' statuses
        as the tick began; then, if one moved, those that held for the group once more. A member's
        Events are those of both its steps."""
        self.now += datetime.timedelta(seconds=seconds)
        before = {member.name: member.status for member in self.members}
        for member in self.members:
            member.last_events = ()
        held = []
        for member in self.members:
            if member.step(self.group_of(member, before), self.now).waits_for_group:
                held.append(member)
        moved = any(place(before[member.name]) != place(member.status) for member in self.members)
        for _ in range(GROUP_ROUNDS):
            if not held or not moved:
                break
            now_stored = {member.name: member.status for member in self.members}
            again = []
            for member in held:
                if member.step(self.group_of(member, now_stored), self.now).waits_for_group:
                    again.append(member)
            moved = any(place(now_stored[member.name]) != place(member.status) for member in held)
            held = again
        row = {member.name: member.where() for member in self.members}
        self.log.append(row)
        return row

    def group_of(self, member: Member, statuses: dict[str, CanaryStatus]) -> Group:
        others = tuple(GroupMember.of(name, status) for name, status in statuses.items() if name != member.name)
        return Group(member.canary.group, others)

    def run(self, ticks: int) -> list[dict[str, str]]:
        return [self.tick() for _ in range(ticks)]


def place(status: CanaryStatus) -> tuple[object, ...]:
    return (status.phase, status.last_applied_spec, status.group)


def promoted_member(name: str, analysis: dict[str, Any]) -> Member:
    status = CanaryStatus(
        last_applied_spec="v1",
        last_promoted_spec="v1",
        observed_generation=1,
    ).with_phase(Phase.SUCCEEDED, NOW - datetime.timedelta(hours=1))
    return Member(make_canary(name, analysis), status, ready(name, "v1"), ready(f"{name}-primary", "p1", 2, "v1"))


def three() -> GroupWorld:
    return GroupWorld(
        [promoted_member("frontend", WEIGHTED), promoted_member("api", BLUE_GREEN), promoted_member("worker", AB)]
    )


def test_a_good_release_of_two_members_is_promoted_together_and_the_third_stays_at_rest() -> None:
    world = three()
    world["frontend"].release("v2")
    world["api"].release("v2")
    assert world.run(8) == [
        # Both start in one tick; at the next, each takes its first step (weight 10 / iteration 1).
        {"frontend": "Progressing w0 i0 s0", "api": "Progressing w0 i0 s0", "worker": "Succeeded w0 i0 s0"},
        {"frontend": "Progressing w10 i0 s1", "api": "Progressing w0 i1 s1", "worker": "Succeeded w0 i0 s0"},
        {"frontend": "Progressing w20 i0 s2", "api": "Progressing w0 i2 s2", "worker": "Succeeded w0 i0 s0"},
        # The frontend's analysis passed at 20%; blue/green still switches traffic to api's canary.
        {"frontend": "WaitingPromotion w20 i0 s2", "api": "Progressing w0 i3 s3", "worker": "Succeeded w0 i0 s0"},
        # api's analysis passed: both are promoted in the same tick.
        {"frontend": "Promoting w20 i0 s2", "api": "Promoting w100 i3 s3", "worker": "Succeeded w0 i0 s0"},
        {"frontend": "Finalising w0 i0 s2", "api": "Finalising w0 i3 s3", "worker": "Succeeded w0 i0 s0"},
        {"frontend": "Succeeded w0 i0 s2", "api": "Succeeded w0 i0 s3", "worker": "Succeeded w0 i0 s0"},
        {"frontend": "Succeeded w0 i0 s2", "api": "Succeeded w0 i0 s3", "worker": "Succeeded w0 i0 s0"},
    ]
    assert world["frontend"].status.last_promoted_spec == world["api"].status.last_promoted_spec == "v2"
    # Never one promoted while the other was still under analysis.
    for row in world.log:
        promoting = [name for name in ("frontend", "api") if row[name].split()[0] in ("Promoting", "Finalising")]
        analysing = [name for name in ("frontend", "api") if row[name].split()[0] == "Progressing"]
        assert not (promoting and analysing), row


def test_the_status_of_a_member_that_waits_says_for_whom() -> None:
    world = three()
    world["frontend"].release("v2")
    world["api"].release("v2")
    world.run(4)
    frontend = world["frontend"].status
    assert frontend.group is not None
    assert (frontend.group.analysed, frontend.group.message) == (True, "api analysing at step 3, worker at rest")
    assert frontend.phase is Phase.WAITING_PROMOTION
    assert frontend.condition is not None
    assert frontend.condition.message == "Canary analysis passed, waiting for the rest of group checkout."
    assert world["frontend"].last_events == ("Canary analysis of frontend.shop passed: waiting for group checkout",)


def test_each_step_of_a_member_records_where_the_others_were() -> None:
    world = three()
    world["frontend"].release("v2")
    world["api"].release("v2")
    messages = []
    for _ in range(3):
        world.tick()
        messages.append(world["frontend"].status.group.message if world["frontend"].status.group else None)
    assert messages == ["", "api analysing at step 0, worker at rest", "api analysing at step 1, worker at rest"]


def test_a_bad_release_of_one_member_rolls_back_all_three() -> None:
    world = three()
    for member in world.members:
        member.release("v2")
    world["api"].success_rate = 50.0
    assert world.run(4) == [
        {"frontend": "Progressing w0 i0 s0", "api": "Progressing w0 i0 s0", "worker": "Progressing w0 i0 s0"},
        {"frontend": "Progressing w10 i0 s1", "api": "Progressing w0 i1 s1", "worker": "Progressing w0 i1 s1"},
        # api's first analysed step fails a check; the worker's single iteration passed.
        {"frontend": "Progressing w20 i0 s2", "api": "Progressing w0 i1 s1", "worker": "WaitingPromotion w0 i1 s1"},
        # api reaches its threshold (1) and is rolled back: the others with it, in the same tick.
        {"frontend": "Failed w0 i0 s2", "api": "Failed w0 i0 s1", "worker": "Failed w0 i0 s1"},
    ]
    assert world["frontend"].last_events == (
        "Rolling back frontend.shop: api of group checkout failed",
        "Canary failed! Scaling down frontend.shop",
    )
    assert all(member.routes == (100, 0) and member.target.replicas == 0 for member in world.members)
    # Nothing moves until a member has a new revision.
    assert world.run(2)[-1] == {"frontend": "Failed w0 i0 s2", "api": "Failed w0 i0 s1", "worker": "Failed w0 i0 s1"}


def test_a_fixed_revision_of_the_failed_member_restarts_the_whole_group() -> None:
    world = three()
    for member in world.members:
        member.release("v2")
    world["api"].success_rate = 50.0
    world.run(4)
    world["api"].success_rate = 100.0
    world["api"].release("v3")
    assert world.run(2) == [
        {"frontend": "Failed w0 i0 s2", "api": "Progressing w0 i0 s0", "worker": "Failed w0 i0 s1"},
        # The others see api's new run and join it; api, no longer waiting for them, takes its first step.
        {"frontend": "Progressing w0 i0 s0", "api": "Progressing w0 i1 s1", "worker": "Progressing w0 i0 s0"},
    ]
    assert world["frontend"].last_events == ("Group checkout has a new release! Restarting analysis for frontend.shop",)
    assert world["frontend"].target.replicas == 2  # scaled up again
    world.run(8)
    assert {member.name: member.status.phase for member in world.members} == dict.fromkeys(
        ("frontend", "api", "worker"), Phase.SUCCEEDED
    )
    assert [member.status.last_promoted_spec for member in world.members] == ["v2", "v3", "v2"]


def test_a_new_revision_of_one_member_restarts_the_others_analysis() -> None:
    world = three()
    world["frontend"].release("v2")
    world["api"].release("v2")
    world.run(3)
    assert world["frontend"].status.canary_weight == 20
    world["api"].release("v3")
    assert world.tick() == {
        "frontend": "Progressing w0 i0 s0",
        "api": "Progressing w0 i0 s0",
        "worker": "Succeeded w0 i0 s0",
    }
    assert world["frontend"].routes == (100, 0)
    assert world["frontend"].last_events == (
        # The frontend's analysis had passed this tick before it saw api's new revision.
        "Canary analysis of frontend.shop passed: waiting for group checkout",
        "Group checkout has a new release! Restarting analysis for frontend.shop",
    )
    assert world["api"].last_events == ("New revision detected! Restarting analysis for api.shop",)


def test_a_member_due_more_often_waits_for_the_slower_one_at_every_step() -> None:
    fast = promoted_member("frontend", {**WEIGHTED, "interval": "30s", "maxWeight": 30})
    slow = promoted_member("api", {**WEIGHTED, "maxWeight": 30})
    world = GroupWorld([fast, slow])
    fast.release("v2")
    slow.release("v2")
    rows = [world.tick(30) for _ in range(9)]
    # The frontend is due every tick, the api every other one: the frontend never gets a step ahead.
    for row in rows:
        if row["frontend"].startswith("Progressing") and row["api"].startswith("Progressing"):
            assert int(row["frontend"].split("s")[-1]) - int(row["api"].split("s")[-1]) <= 1, row
    assert rows[2:9] == [
        {"frontend": "Progressing w10 i0 s1", "api": "Progressing w10 i0 s1"},
        {"frontend": "Progressing w20 i0 s2", "api": "Progressing w10 i0 s1"},
        {"frontend": "Progressing w30 i0 s3", "api": "Progressing w20 i0 s2"},
        # The frontend is due, but the api has not passed step 3 yet.
        {"frontend": "Progressing w30 i0 s3", "api": "Progressing w20 i0 s2"},
        {"frontend": "WaitingPromotion w30 i0 s3", "api": "Progressing w30 i0 s3"},
        {"frontend": "WaitingPromotion w30 i0 s3", "api": "Progressing w30 i0 s3"},
        {"frontend": "Promoting w30 i0 s3", "api": "Promoting w30 i0 s3"},
    ]


def test_a_retry_of_one_failed_member_brings_the_group_back() -> None:
    world = three()
    for member in world.members:
        member.release("v2")
    world["api"].success_rate = 50.0
    world.run(4)
    world["api"].success_rate = 100.0
    api = world["api"]
    api.canary = dataclasses.replace(api.canary, request=parse_request("retry"))
    world.tick()
    api.canary = dataclasses.replace(api.canary, request=None)
    row = world.tick()
    assert row == {"frontend": "Progressing w0 i0 s0", "api": "Progressing w0 i1 s1", "worker": "Progressing w0 i0 s0"}
    world.run(8)
    assert [member.status.phase for member in world.members] == [Phase.SUCCEEDED] * 3


def parse_request(value: str) -> Any:
    from serin.model import ManualRequest

    return ManualRequest(value)


def test_a_canary_without_a_group_ignores_group_bookkeeping() -> None:
    member = promoted_member("alone", WEIGHTED)
    member.canary = dataclasses.replace(member.canary, group="")
    member.status = member.status.replace(group=GroupProgress("old", "r", steps=3))
    member.release("v2")
    observation = Observation(target=member.target, primary=member.primary, routes=member.routes)
    decision = decide(member.canary, member.status, observation, NOW)
    assert decision.status.group is None
    assert decision.status.phase is Phase.PROGRESSING


# ---- reading the group from the stored Canaries ---------------------------------------------


def stored(name: str, namespace: str, group: str, phase: Phase = Phase.SUCCEEDED) -> dict[str, Any]:
    status = CanaryStatus(last_applied_spec="v1", last_promoted_spec="v1").with_phase(phase, NOW)
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"group": group} if group else {},
        "status": status.to_dict(),
    }


def test_a_group_is_its_namespace_only_so_another_tenant_cannot_join_it() -> None:
    canaries = [
        stored("frontend", "shop", "checkout"),
        stored("api", "shop", "checkout"),
        stored("intruder", "other-team", "checkout", Phase.FAILED),
        stored("lonely", "shop", ""),
        stored("elsewhere", "shop", "billing"),
    ]
    index = index_groups(canaries)
    assert sorted(index) == [("other-team", "checkout"), ("shop", "billing"), ("shop", "checkout")]
    group = group_of("shop", "frontend", "checkout", index[("shop", "checkout")])
    assert group is not None
    assert [member.name for member in group.members] == ["api"]
    assert group_of("shop", "lonely", "", canaries) is None


def test_a_group_falls_in_one_shard_whatever_its_members_names() -> None:
    members = [stored(f"member-{index}", "shop", "checkout") for index in range(20)]
    for count in (2, 3, 5):
        shards = {index for index in range(count) for raw in members if Shard(index, count).holds(raw)}
        assert len(shards) == 1, count
    ungrouped = [stored(f"alone-{index}", "shop", "") for index in range(20)]
    assert len({index for index in range(3) for raw in ungrouped if Shard(index, 3).holds(raw)}) == 3


@pytest.mark.parametrize(
    ("phase", "release", "analysed", "revision", "expected"),
    [
        (Phase.SUCCEEDED, "old", False, "v1", Standing.AT_REST),
        (Phase.INITIALIZED, "", False, "v1", Standing.AT_REST),
        (Phase.SUCCEEDED, "R", False, "v2", Standing.PROMOTED),
        (Phase.PROMOTING, "R", False, "v2", Standing.PROMOTED),
        (Phase.PROGRESSING, "R", False, "v2", Standing.ANALYSING),
        (Phase.WAITING_PROMOTION, "R", True, "v2", Standing.ANALYSED),
        (Phase.FAILED, "R", False, "v2", Standing.FAILED),
        (Phase.FAILED, "old", False, "v2", Standing.PENDING),
        (Phase.PROGRESSING, "old", False, "v2", Standing.PENDING),
        (Phase.WAITING, "old", False, "v1", Standing.PENDING),
        (Phase.TERMINATING, "R", False, "v2", Standing.AT_REST),
    ],
)
def test_what_a_member_is_to_the_others(
    phase: Phase, release: str, analysed: bool, revision: str, expected: Standing
) -> None:
    progress = GroupProgress("checkout", release, analysed=analysed)
    member = GroupMember("api", phase, revision, "v1", progress, NOW)
    assert member.standing("R") is expected
