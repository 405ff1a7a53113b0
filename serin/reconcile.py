"""One tick: observe each due Canary, let ``decide`` choose, record the status, then act.

The order of writes is what makes a tick crash-safe and concurrency-safe. The new status is
written first, whole, with the resourceVersion that was read: of two ticks racing on one Canary
only one gets it stored, and the other does nothing at all. A step that must ask hooks (calls with
effects of their own) claims the Canary with a status write before asking, so a racing tick does
not ask them too. Only then are the actions carried out; each sets an absolute value the status
implies (a weight, a replica count, a revision on the primary), so a tick that dies after the status
was written leaves a state the next one completes. Events and notification hooks are recorded in
that same status write and sent afterwards; a tick that finds some still recorded sends them, and
an Event sent twice for one step is counted once.

A tick where no Canary is due costs one request: the list of Canaries. A suspended Canary, or an
idle one that needs nothing, costs none beyond it either, and no write.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import datetime
import functools
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from serin import logs, telemetry
from serin.decide import (
    ALL_ON_PRIMARY,
    DEFAULT_TICK_WINDOW_SECONDS,
    METRICS,
    CopyToPrimary,
    Decision,
    EnsureObjects,
    MetricReading,
    Need,
    Observation,
    RunHooks,
    ScaleTarget,
    SetRoutes,
    Split,
    alerts_for,
    decide,
    desired_split,
    next_step_in,
    session_cookie,
    waiting_for_interval,
    windowed,
)
from serin.groups import group_name, group_of, index_groups, too_large
from serin.kube.store import Conflict, KubeError, KubeStore
from serin.metrics import keptn
from serin.metrics.builtin import compare_problem, query_for
from serin.model import (
    FINALIZER,
    REQUEST_ANNOTATION,
    AlertRef,
    Canary,
    HookType,
    InvalidCanary,
    ManualRequest,
    Metric,
    not_shared,
    parse_canary,
    parse_duration,
)
from serin.notify.alerts import Notifier, Severity, canary_alert, notifier_for, wanted
from serin.notify.webhooks import event_payload, hook_payload, idempotency_key
from serin.objects import CanaryObjects, workload_state
from serin.ports import (
    HookCaller,
    HookResult,
    InvalidCredentials,
    InvalidQuery,
    MetricsProvider,
    NoValuesFound,
    PermanentError,
    ProviderConfig,
    Router,
    SerinError,
    TemporaryError,
    TimeSeriesProvider,
)
from serin.scope import WHOLE_CLUSTER, Scope
from serin.status import IDLE_PHASES, CanaryStatus, Pending, Phase, format_time, parse_time
from serin.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MANAGED_FOR_LABEL,
    WORKLOAD_KINDS,
    WorkloadError,
    config_hash,
    config_key,
    tracked_configs,
    unpromotable_claims,
)

LOG = logging.getLogger("serin.reconcile")

# Canaries a tick steps side by side (at most).
DEFAULT_CONCURRENCY = 8
# Gathering results may unlock a later gate in the same step (metrics, then confirm-promotion).
MAX_DECISION_ROUNDS = 5
# How long a claim keeps other ticks away from a Canary whose step asks hooks: longer than a step
# takes, short enough that a tick that died holding it delays the Canary little.
CLAIM_SECONDS = 120.0
# A claim ending later than this was written by no tick (a tick's lasts CLAIM_SECONDS; the rest is
# for clocks that differ): it holds nothing, or whoever may write a status could freeze a Canary.
MAX_CLAIM_AHEAD = datetime.timedelta(seconds=2 * CLAIM_SECONDS)


# While a step's hooks run, its claim is renewed this often, so that it never runs out under them
# however long they take (each hook at most a minute, a step's hooks one after the other).
CLAIM_RENEW_SECONDS = CLAIM_SECONDS / 4


def claim_holds(status: CanaryStatus, now: datetime.datetime) -> bool:
    """Whether a tick holds the Canary's claim at ``now``."""
    return status.claimed_until is not None and now < status.claimed_until <= now + MAX_CLAIM_AHEAD


class Lease:
    """A step's claim on its Canary, renewed in the background while the step waits on hooks.

    Renewing writes only ``claimedUntil``, with the version the lease last wrote, so a tick that
    wrote the Canary meanwhile makes the renewal fail: the lease is then lost, and the step, whose
    next write would conflict too, does nothing more."""

    def __init__(
        self,
        store: KubeStore,
        canary: Canary,
        version: str,
        status: CanaryStatus,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self.store, self.canary, self.status, self.clock = store, canary, status, clock
        self.version = version
        self.lost = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{canary.name}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stopped.wait(CLAIM_RENEW_SECONDS):
            renewed = self.status.replace(claimed_until=self.clock() + datetime.timedelta(seconds=CLAIM_SECONDS))
            try:
                self.version = self.store.write_canary_status(
                    self.canary.namespace, self.canary.name, self.version, renewed.to_dict()
                )
            except Conflict:
                self.lost = True
                return
            except KubeError as error:
                # The claim still holds for a while: the next renewal tries again.
                LOG.warning("could not renew the claim on %s: %s", self.canary.key, error)

    def end(self) -> str:
        """Stop renewing; the Canary's version after the last renewal (Lost if another tick wrote it)."""
        self._stopped.set()
        self._thread.join()
        if self.lost:
            raise Lost()
        return self.version


# Points of a metric's chart over its window.
CHART_POINTS = 120
# How often a sender of a step's news tries to take the record off a Canary that others keep changing.
RELEASE_ATTEMPTS = 3
# Phases in which the primary must run the promoted revision (checked when its spec changed).
PRIMARY_KEPT_PHASES = IDLE_PHASES | {Phase.PROGRESSING, Phase.WAITING_PROMOTION}
# Every ten minutes a tick looks for objects admission made for a Canary that was never stored,
# and removes those older than five (a Canary being admitted right now has not been stored yet).
ORPHAN_SWEEP_SECONDS = 600.0
ORPHAN_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class Observed:
    """What a step read: the decision's view, and the objects the actions then work from."""

    observation: Observation
    target: dict[str, Any] | None
    primary: dict[str, Any] | None


@dataclass
class StepReport:
    """What one tick did to one Canary: the JSON entry of the tick's answer."""

    name: str
    namespace: str
    phase: str | None = None
    weight: int = 0
    iterations: int = 0
    failed_checks: int = 0
    summary: str = ""
    actions: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    applied: bool = False
    error: str | None = None
    # Each metric of a step that analysed them, with what it found (``MetricCheck``).
    metrics: list[dict[str, object]] = field(default_factory=list)
    # When this Canary next wants a tick (seconds); None when no tick will move it.
    next_step_in_seconds: float | None = None
    # How long this Canary's step took, its backends and hooks included.
    duration_seconds: float = 0.0
    # For the tick, not its answer: the step held for the Canary's release group, or moved the
    # Canary's place in it (see ``Reconciler.tick``).
    waiting_for_group: bool = False
    moved_in_group: bool = False

    def record(self, status: CanaryStatus) -> None:
        self.phase = status.phase.value if status.phase else None
        self.weight, self.iterations, self.failed_checks = status.canary_weight, status.iterations, status.failed_checks

    def to_dict(self) -> dict[str, Any]:
        """JSON with Kubernetes-style camelCase keys."""
        data = dataclasses.asdict(self)
        del data["waiting_for_group"], data["moved_in_group"]
        data["failedChecks"] = data.pop("failed_checks")
        seconds = data.pop("next_step_in_seconds")
        data["nextStepInSeconds"] = None if seconds is None else round(seconds, 3)
        data["durationSeconds"] = data.pop("duration_seconds")
        return data


def describe(action: object) -> str:
    fields = dataclasses.asdict(action) if dataclasses.is_dataclass(action) and not isinstance(action, type) else {}
    args = ", ".join(f"{key}={value}" for key, value in fields.items())
    return f"{type(action).__name__}({args})"


def routes_after(decision: Decision, observation: Observation) -> tuple[Split, bool]:
    """The split the routing objects hold once the decision's actions are applied, and whether
    they mirror requests to the canary."""
    for action in reversed(decision.actions):
        if isinstance(action, SetRoutes):
            return (action.primary_weight, action.canary_weight), action.mirror
    return observation.routes or ALL_ON_PRIMARY, observation.mirrored


def target_replicas_after(decision: Decision, observation: Observation) -> int:
    """The target's replicas once the decision's actions are applied."""
    for action in reversed(decision.actions):
        if isinstance(action, ScaleTarget):
            return action.replicas
    return observation.target.replicas if observation.target else 0


def decoded_secret(secret: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A Secret's data as text (``stringData`` is folded into ``data`` by the API server)."""
    values = []
    for key, value in sorted((secret.get("data") or {}).items()):
        try:
            values.append((str(key), base64.b64decode(str(value)).decode()))
        except (ValueError, UnicodeDecodeError):
            continue  # binary, so no credential of a metrics backend
    return tuple(values)


def duplicate_owner(canary: Canary, raw: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str | None:
    """The older Canary that already targets the same workload, if any (the oldest one wins)."""
    mine = (raw.get("metadata", {}).get("creationTimestamp", ""), canary.name)
    for other in others:
        metadata = other.get("metadata", {})
        if metadata.get("namespace") != canary.namespace or metadata.get("name") == canary.name:
            continue
        ref = other.get("spec", {}).get("targetRef", {})
        if ref.get("kind") == canary.target_ref.kind and ref.get("name") == canary.target_ref.name:
            theirs = (metadata.get("creationTimestamp", ""), metadata.get("name", ""))
            if theirs < mine:
                return f"{canary.namespace}/{metadata.get('name')}"
    return None


@dataclass(frozen=True)
class Shard:
    """The share of the Canaries one tick takes: those whose stable hash falls on ``index`` of
    ``count``. Replicas of the server each tick a shard (an Indexed Job's pod ``i`` asks for shard
    ``i``); a Canary always falls in the same one, and every Canary in exactly one."""

    index: int = 0
    count: int = 1

    def holds(self, raw: Mapping[str, Any]) -> bool:
        if self.count <= 1:
            return True
        metadata = raw.get("metadata", {})
        # A release group's members are decided together: the whole group falls in one shard.
        group = group_name(raw)
        key = f"group:{group}" if group else str(metadata.get("name", ""))
        return shard_of(str(metadata.get("namespace", "")), key, self.count) == self.index


def shard_of(namespace: str, name: str, count: int) -> int:
    """The shard of a Canary: the same in every process and every release of Serin (a hash of its
    key, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


WHOLE = Shard()

# How many times one tick steps again the members of a release group that held while another
# moved: a promotion reaches every member in two (the last member's, then everyone's).
GROUP_ROUNDS = 3


@dataclass(frozen=True)
class GlobalNotifier:
    """Where a Canary with no ``analysis.alerts`` is alerted (see ``serin.config.Settings``)."""

    type: str
    url: str
    channel: str = ""
    username: str = ""
    proxy: str = ""


# A metric that compares reads this many samples of each workload over its interval, one every
# interval / COMPARE_SAMPLES seconds (but no closer than Prometheus can tell apart).
COMPARE_SAMPLES = 20
MIN_SAMPLE_STEP_SECONDS = 1.0


def over_time(provider: MetricsProvider, config: ProviderConfig, metric: Metric) -> TimeSeriesProvider:
    """The backend, if it can answer for a past time and over a range (InvalidQuery otherwise)."""
    if isinstance(provider, TimeSeriesProvider):
        return provider
    raise InvalidQuery(
        f"metric {metric.name}: a {config.type} backend cannot answer for a past time or over a range; "
        "comparing with the primary and replaying need Prometheus"
    )


@dataclass(frozen=True)
class MetricChart:
    """A metric over a window: its lines (``canary``, and ``primary`` when compared) of (time,
    value) points and its thresholds; ``problem`` says why there are no lines."""

    name: str
    min: float | None = None
    max: float | None = None
    lines: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    problem: str = ""


class Lost(Exception):
    """Another tick stored a newer status of this Canary first: this one does nothing more."""


def namespace_lanes(namespaces: Sequence[str], concurrency: int) -> list[list[int]]:
    """The steps of one tick (given by the namespace of each), as lanes of a thread pool: each
    lane is taken by one thread, in order. A namespace gets at most its share of the threads (the
    concurrency over the number of namespaces, at least one), so that however slow its backends
    and hooks, the other namespaces' steps have threads; the lanes alternate between namespaces,
    so that each gets its first thread before any gets its second."""
    indices: dict[str, list[int]] = {}
    for index, namespace in enumerate(namespaces):
        indices.setdefault(namespace, []).append(index)
    share = max(1, math.ceil(concurrency / max(1, len(indices))))
    split = [
        [steps[lane :: min(share, len(steps))] for lane in range(min(share, len(steps)))] for steps in indices.values()
    ]
    return [lanes[turn] for turn in range(share) for lanes in split if turn < len(lanes)]


class Reconciler:
    def __init__(
        self,
        store: KubeStore,
        router_for: Callable[[str], Router],
        metrics_for: Callable[[ProviderConfig], MetricsProvider],
        hooks: HookCaller,
        default_metrics_server: str,
        default_provider: str = "istio",
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        notifier: GlobalNotifier | None = None,
        cluster_name: str = "",
        concurrency: int = DEFAULT_CONCURRENCY,
        scope: Scope = WHOLE_CLUSTER,
    ) -> None:
        self.store = store
        self.router_for = router_for
        self.objects = CanaryObjects(store, router_for)
        self.metrics_for = metrics_for
        self.hooks = hooks
        self.default_metrics_server = default_metrics_server
        self.default_provider = default_provider
        self.clock = clock
        self.notifier = notifier
        self.cluster_name = cluster_name
        self.concurrency = concurrency
        # The namespaces this install serves: it lists and reads nowhere else.
        self.scope = scope

    # ---- the tick ----------------------------------------------------------------------------

    def tick(
        self,
        namespace: str | None = None,
        name: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        window: float | None = None,
        shard: Shard = WHOLE,
    ) -> list[StepReport]:
        """One step for every due Canary of ``shard`` (in ``namespace``, or in every namespace
        served). ``window``: seconds since the caller's previous tick."""
        started = time.monotonic()
        raw_canaries = [raw for where in self.scope.lists(namespace) for raw in self.store.list_canaries(where)]
        now = self.clock()
        sweep_due = now.timestamp() % ORPHAN_SWEEP_SECONDS < (window or DEFAULT_TICK_WINDOW_SECONDS)
        if not dry_run and sweep_due and shard.index == 0:
            self.sweep_orphans(namespace, raw_canaries, now)
        chosen = [
            raw
            for raw in raw_canaries
            if (not name or raw.get("metadata", {}).get("name") == name) and shard.holds(raw)
        ]

        groups = index_groups(raw_canaries)

        def one(raw: Mapping[str, Any]) -> StepReport:
            return self.step_isolated(raw, raw_canaries, force=force, dry_run=dry_run, window=window, groups=groups)

        # The objects of many Canaries of a namespace are read as one list per kind, once this
        # tick's steps there have read as many as a tenth of the Canaries it takes there.
        per_namespace = collections.Counter(str(raw.get("metadata", {}).get("namespace")) for raw in chosen)
        with self.store.reads_of_one_tick(per_namespace):
            if self.concurrency <= 1 or len(chosen) <= 1:
                reports = [one(raw) for raw in chosen]
            else:
                # Each Canary's step waits on its own backends (the API server, Prometheus, hooks):
                # taken side by side, a slow one delays only itself. The API server's optimistic
                # concurrency keeps each Canary's status consistent, as between two ticks.
                # A namespace takes at most its share of the threads (see ``namespace_lanes``).
                taken: list[StepReport | None] = [None] * len(chosen)

                def lane(indices: list[int]) -> None:
                    for index in indices:
                        taken[index] = one(chosen[index])

                namespaces = [str(raw.get("metadata", {}).get("namespace")) for raw in chosen]
                with concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="tick") as pool:
                    lanes = [
                        pool.submit(contextvars.copy_context().run, lane, indices)
                        for indices in namespace_lanes(namespaces, self.concurrency)
                    ]
                    for future in lanes:
                        future.result()
                reports = [report for report in taken if report is not None]
            if not dry_run:
                reports = self.step_groups_again(reports, raw_canaries, groups, force, window)
        telemetry.TICK_DURATION.observe(time.monotonic() - started)
        return reports

    def step_groups_again(
        self,
        reports: list[StepReport],
        raw_canaries: Sequence[Mapping[str, Any]],
        groups: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
        force: bool,
        window: float | None,
    ) -> list[StepReport]:
        """Members that held for their group while a member of it moved (or joined its release) are
        stepped again, against the members as now stored, until none moves (at most
        ``GROUP_ROUNDS`` times): the group moves in the tick in which its last member gets there
        (all promoted in one tick), not one member per tick."""
        by_key = {(report.namespace, report.name): index for index, report in enumerate(reports)}
        for (namespace, group), members in groups.items():
            names = [str(raw.get("metadata", {}).get("name", "")) for raw in members]
            taken = [reports[by_key[(namespace, name)]] for name in names if (namespace, name) in by_key]
            held = [report for report in taken if report.waiting_for_group]
            moved = any(report.moved_in_group for report in taken)
            for _ in range(GROUP_ROUNDS):
                if not held or not moved:
                    break
                fresh = [raw for name in names if (raw := self.store.get_canary(namespace, name)) is not None]
                now_stored = {(namespace, group): fresh}
                again = []
                for report in held:
                    raw = next((raw for raw in fresh if raw.get("metadata", {}).get("name") == report.name), None)
                    if raw is None:
                        continue
                    stepped = self.step_isolated(raw, raw_canaries, force=force, window=window, groups=now_stored)
                    reports[by_key[(namespace, report.name)]] = stepped
                    again.append(stepped)
                held = [report for report in again if report.waiting_for_group]
                moved = any(report.moved_in_group for report in again)
        return reports

    def step_isolated(
        self,
        raw: Mapping[str, Any],
        others: Sequence[Mapping[str, Any]],
        force: bool = False,
        dry_run: bool = False,
        window: float | None = None,
        groups: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None,
    ) -> StepReport:
        """One Canary's step, whatever goes wrong in it: one failing Canary never stops the others."""
        metadata = raw.get("metadata", {})
        report = StepReport(name=metadata.get("name", ""), namespace=metadata.get("namespace", ""))
        step_started = time.monotonic()
        with logs.context(canary=report.name, namespace=report.namespace):
            try:
                self.step(raw, others, report, force=force, dry_run=dry_run, window=window, groups=groups)
            except Lost:
                report.summary = "another tick stored a newer status of this canary first: this one did nothing"
                report.events, report.applied = [], False
            except (SerinError, WorkloadError) as error:
                report.error = str(error)
                telemetry.TICK_ERRORS.labels(report.namespace).inc()
                if not dry_run:  # the page's plans would repeat it at every refresh
                    LOG.warning("step failed: %s", report.error)
            except Exception as error:
                LOG.exception("tick of canary %s/%s failed", report.namespace, report.name)
                report.error = f"internal error: {type(error).__name__}: {error}"
                telemetry.TICK_ERRORS.labels(report.namespace).inc()
            if report.applied and not report.error and not dry_run:
                LOG.info("%s (phase %s, weight %d)", report.summary, report.phase, report.weight)
        report.duration_seconds = round(time.monotonic() - step_started, 3)
        telemetry.ANALYSIS_DURATION.labels(report.namespace).observe(report.duration_seconds)
        return report

    def step(
        self,
        raw: Mapping[str, Any],
        others: Sequence[Mapping[str, Any]],
        report: StepReport,
        force: bool = False,
        dry_run: bool = False,
        window: float | None = None,
        groups: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        status = CanaryStatus.from_dict(raw.get("status"))
        report.record(status)
        try:
            canary = parse_canary(raw, self.default_provider)
        except InvalidCanary as invalid:
            report.error = f"invalid canary: {invalid}"
            return
        now = self.clock()
        if raw.get("metadata", {}).get("deletionTimestamp"):
            self.finish_deletion(canary, raw, report, now, dry_run)
            return
        members = (groups if groups is not None else index_groups(others)).get((canary.namespace, canary.group), ())
        if refusal := too_large(canary.group, members):
            report.error = refusal
            return
        if claim_holds(status, now) and status.claimed_until is not None:
            report.summary = (
                f"another tick is taking a step of this canary (claimed until {format_time(status.claimed_until)})"
            )
            return
        # Decide cheaply whether to look closer: a Canary that is not due costs no request, and a
        # suspended one needs nothing observed. A person's request is acted on at once.
        requested = canary.request is not None
        force = force or requested
        quiet = canary.suspend and not requested
        waiting = None if quiet else waiting_for_interval(canary, status, now, force, window)
        report.next_step_in_seconds = next_step_in(canary, status, now)
        if waiting and status.pending is None:
            report.summary = waiting
            return
        if quiet or waiting:
            observed = Observed(Observation(target=None, primary=None), None, None)
        else:
            observed = self.observe(canary, raw, others, status)
        version = canary.resource_version
        if status.pending is not None and not dry_run:
            # The tick or webhook that recorded these died before sending them: its claim ran out.
            # Claimed again first, so that a racing tick does not send them too.
            claimed = status.replace(claimed_until=now + datetime.timedelta(seconds=CLAIM_SECONDS))
            delivered = self.deliver(canary, status.pending, claimed, self.write_status(canary, version, claimed), now)
            if delivered is None:
                raise Lost()
            status, version = delivered
        observation = observed.observation
        group = group_of(canary.namespace, canary.name, canary.group, members)
        decision = (
            Decision(status, waiting)
            if waiting
            else decide(canary, status, observation, now, force=force, window=window, group=group)
        )
        lease = None
        if any(isinstance(need, HookType) for need in decision.needs) and not dry_run:
            # Hooks act on their own (a load test starts): claim the step so that no racing tick
            # asks them too, for as long as they take.
            status = claimed_for_hooks(status, now)
            version = self.write_status(canary, version, status)
            lease = Lease(self.store, canary, version, status, self.clock)
        try:
            for _ in range(MAX_DECISION_ROUNDS):
                if not decision.needs:
                    break
                if dry_run and any(need != METRICS for need in decision.needs):
                    report.summary = f"would call hooks: {', '.join(str(n) for n in decision.needs)} (dry run)"
                    return
                observation = self.gather(canary, decision.needs, observation, status)
                decision = decide(canary, status, observation, now, force=force, window=window, group=group)
        finally:
            if lease is not None:
                version = lease.end()
        report.summary = decision.summary
        report.actions = [describe(action) for action in decision.actions]
        report.events = [event.message for event in decision.events]
        report.metrics = [check.to_dict() for check in decision.checks or ()]
        if dry_run:
            report.record(decision.status)
            return

        # A step that changes the status records what it will send in the same write, so that a
        # tick dying before sending loses nothing. A step that changes nothing (a repeated warning)
        # sends without writing: losing a repeat is harmless, a write per check is not.
        changed = decision.status != status.replace(claimed_until=None, claimed_step="", pending=None)
        # A step that asked hooks records its news under the id it asked them with: one step, one
        # set of keys.
        pending = pending_of(decision, now, canary, status.claimed_step)
        new_status = decision.status.replace(claimed_until=None, claimed_step="", pending=pending if changed else None)
        if new_status.pending is not None:
            # Claimed until sent: a racing tick leaves the step to this one rather than send it twice.
            new_status = new_status.replace(claimed_until=now + datetime.timedelta(seconds=CLAIM_SECONDS))
        if new_status != status:
            version = self.write_status(canary, version, new_status)
        report.applied = True
        report.record(new_status)
        report.waiting_for_group = decision.waits_for_group
        report.moved_in_group = bool(canary.group) and _place_in_group(status) != _place_in_group(new_status)
        report.next_step_in_seconds = next_step_in(canary, new_status, now)
        if new_status.phase != status.phase and new_status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            outcome = "succeeded" if new_status.phase is Phase.SUCCEEDED else "failed"
            telemetry.CANARY_RESULTS.labels(canary.namespace, outcome).inc()
        try:
            if observed.target is not None:
                self.apply(canary, decision, observed, new_status)
            if decision.answered is not None:
                self.answered(canary, decision.answered)
        finally:
            # Sent even when acting failed: the step is stored, and the next tick completes its actions.
            if new_status.pending is not None:
                self.deliver(canary, new_status.pending, new_status, version, now)
            elif pending is not None:
                self.send(canary, pending, new_status, now)

    def sweep_orphans(
        self, namespace: str | None, canaries: Sequence[Mapping[str, Any]], now: datetime.datetime
    ) -> None:
        """Remove what admission made for Canaries that were never stored: one list (one per
        namespace served, for a namespaced install), then only for primaries nobody owns, made for
        a name no Canary has, older than the grace period. Whatever carries the name of a stored
        Canary is that Canary's (nothing is made for a Canary before it is stored, nor for a CREATE
        whose name is taken) and is left alone."""
        stored = {(c["metadata"].get("namespace"), c["metadata"].get("name")) for c in canaries}
        try:
            primaries = [
                primary
                for where in self.scope.lists(namespace)
                for kind in WORKLOAD_KINDS
                for primary in self.store.find(kind, where, f"{MANAGED_BY_LABEL}={MANAGED_BY}")
            ]
        except KubeError as error:
            LOG.warning("could not look for objects of Canaries never stored: %s", error)
            return
        for primary in primaries:
            metadata = primary["metadata"]
            owner = (metadata.get("labels") or {}).get(MANAGED_FOR_LABEL)
            created = parse_time(metadata.get("creationTimestamp"))
            if not owner or metadata.get("ownerReferences") or (metadata.get("namespace"), owner) in stored:
                continue
            if created is None or (now - created).total_seconds() < ORPHAN_GRACE_SECONDS:
                continue
            try:
                removed = self.objects.remove_orphans(metadata["namespace"], owner)
            except KubeError as error:
                LOG.warning("could not remove the objects of canary %s/%s: %s", metadata["namespace"], owner, error)
                continue
            LOG.warning(
                "removed %s, made for canary %s/%s which was never stored",
                ", ".join(removed),
                metadata["namespace"],
                owner,
            )

    def write_status(self, canary: Canary, version: str, status: CanaryStatus) -> str:
        """Store the whole status if the Canary is still at ``version``; its new version, or Lost."""
        try:
            return self.store.write_canary_status(canary.namespace, canary.name, version, status.to_dict())
        except Conflict:
            raise Lost() from None

    # ---- observing ---------------------------------------------------------------------------

    def observe(
        self, canary: Canary, raw: Mapping[str, Any], others: Sequence[Mapping[str, Any]], status: CanaryStatus
    ) -> Observed:
        target = self.store.get(canary.target_ref.kind, canary.namespace, canary.target_ref.name)
        primary = self.store.get(canary.target_ref.kind, canary.namespace, canary.primary_name)
        hashes: dict[str, str] = {}
        if target is not None:
            for kind, name in sorted(tracked_configs(target)):
                config = self.store.get_config(kind, canary.namespace, name)
                if config is not None:
                    hashes[config_key(kind, name)] = config_hash(config)
        routes, mirrored = None, False
        if target is not None:
            router = self.router_for(canary.provider)
            if router.shifts_traffic:
                current = router.get_routes(canary)
                routes = None if current is None else (current.primary_weight, current.canary_weight)
                mirrored = current is not None and current.mirrored
            else:
                routes = desired_split(canary, status)  # nothing holds a split but the status
        intact, primary_configs = None, None
        if primary is not None and status.phase in (None, Phase.INITIALIZING):
            primary_configs = self.objects.primary_config_hashes(canary, primary)
        primary_state = workload_state(primary)
        if (
            primary_state is not None
            and status.phase in PRIMARY_KEPT_PHASES
            and status.last_promoted_spec
            and primary_state.generation != status.primary_generation
        ):
            # Its spec changed since it was last checked (a scale, an edit): check it runs the
            # promoted revision.
            intact = self.objects.primary_runs(canary, primary or {}, status.last_promoted_spec)
        observation = Observation(
            target=workload_state(target),
            primary=primary_state,
            config_hashes=hashes,
            duplicate_of=duplicate_owner(canary, raw, others),
            unpromotable=unpromotable_claims(target, primary) if target and primary else None,
            routes=routes,
            mirrored=mirrored,
            primary_intact=intact,
            primary_config_hashes=primary_configs,
        )
        return Observed(observation, target, primary)

    def gather(
        self, canary: Canary, needs: tuple[Need, ...], observation: Observation, status: CanaryStatus
    ) -> Observation:
        hooks = dict(observation.hooks)
        metrics = observation.metrics
        for need in needs:
            if need == METRICS:
                metrics = self.read_metrics(windowed(canary, status.traffic_since, self.clock()))
            elif isinstance(need, HookType):
                hooks[need] = self.call_hooks(canary, need, status, status.claimed_step)
        return dataclasses.replace(observation, hooks=hooks, metrics=metrics)

    def call_hooks(
        self, canary: Canary, hook_type: HookType, status: CanaryStatus, step: str
    ) -> tuple[HookResult, ...]:
        """Ask the gates of ``hook_type`` for the step ``step`` (its id, for their keys)."""
        # As Flagger: the gates of the analysis are told "Progressing" (in WaitingPromotion too);
        # confirm-rollout and rollback hooks hear the phase the Canary is in.
        current = status.phase.value if status.phase else ""
        phase = current if hook_type in (HookType.CONFIRM_ROLLOUT, HookType.ROLLBACK) else Phase.PROGRESSING.value
        return tuple(
            self.hooks.call(
                hook,
                hook_payload(
                    canary, phase, status.last_applied_spec, hook, idempotency_key(canary, step, hook, position)
                ),
            )
            for position, hook in enumerate(canary.analysis.hooks(hook_type))
        )

    def read_metrics(self, canary: Canary, at: datetime.datetime | None = None) -> tuple[MetricReading, ...]:
        """Every metric of the analysis, asked side by side: a step waits for its slowest backend,
        not for the sum of them. ``at``: as the metrics were at that past time (a replay)."""
        metrics = canary.analysis.metrics
        if len(metrics) <= 1:
            return tuple(self.read_metric(canary, metric, at) for metric in metrics)
        with concurrent.futures.ThreadPoolExecutor(len(metrics), thread_name_prefix="metric") as pool:
            return tuple(pool.map(lambda metric: self.read_metric(canary, metric, at), metrics))

    def read_metric(self, canary: Canary, metric: Metric, at: datetime.datetime | None = None) -> MetricReading:
        """The metric's value (or, to compare, the samples of both workloads), or which kind of
        problem kept it from one (see ``serin.ports``)."""
        try:
            template_query, config = self.source(canary, metric)
            provider = self.metrics_for(config)
            if metric.compare is not None:
                return self.compared(canary, metric, over_time(provider, config, metric), template_query, at)
            query = query_for(metric, canary, template_query)
            if config.type == "keptn" and (elsewhere := keptn.outside(query, canary.namespace)):
                raise InvalidQuery(elsewhere)
            if at is not None:
                return MetricReading(over_time(provider, config, metric).query_at(query, at))
            return MetricReading(provider.query(query, parse_duration(metric.interval)))
        except NoValuesFound as error:
            return MetricReading(None, "no-data", str(error))
        except TemporaryError as error:
            return MetricReading(None, "unavailable", str(error))
        except PermanentError as error:
            return MetricReading(None, "invalid", str(error))

    def source(self, canary: Canary, metric: Metric) -> tuple[str | None, ProviderConfig]:
        """The metric's template query (None: builtin or inline) and the backend that answers it."""
        if metric.template_ref is None:
            return None, self.prometheus(canary)
        namespace = metric.template_ref.namespace or canary.namespace
        if refusal := self.scope.refusal(namespace):
            raise InvalidQuery(f"MetricTemplate {namespace}/{metric.template_ref.name}: {refusal}")
        template = self.store.get_metric_template(namespace, metric.template_ref.name)
        unshared = not_shared("MetricTemplate", (namespace, metric.template_ref.name), template, canary.namespace)
        if unshared:
            raise InvalidQuery(unshared)
        config = self.provider_config(namespace, metric.template_ref.name, template, canary)
        return template.get("spec", {}).get("query"), config

    def charts(self, canary: Canary, start: datetime.datetime, end: datetime.datetime) -> tuple[MetricChart, ...]:
        """Each metric of the analysis over a window, as the analysis queries it (for a compared
        metric, the canary's and the primary's): what a page draws against the thresholds."""
        step = max(MIN_SAMPLE_STEP_SECONDS, (end - start).total_seconds() / CHART_POINTS)
        charts = []
        for metric in canary.analysis.metrics:
            chart = MetricChart(metric.name, metric.threshold_range.min, metric.threshold_range.max)
            try:
                template_query, config = self.source(canary, metric)
                provider = over_time(self.metrics_for(config), config, metric)
                if metric.compare is None:
                    lines = {"canary": provider.points(query_for(metric, canary, template_query), start, end, step)}
                else:
                    lines = {
                        role: provider.points(query_for(metric, canary, template_query, target=name), start, end, step)
                        for role, name in (("canary", canary.target_ref.name), ("primary", canary.primary_name))
                    }
                chart = dataclasses.replace(chart, lines=lines)
            except SerinError as error:
                chart = dataclasses.replace(chart, problem=str(error))
            charts.append(chart)
        return tuple(charts)

    def compared(
        self,
        canary: Canary,
        metric: Metric,
        provider: TimeSeriesProvider,
        template_query: str | None,
        at: datetime.datetime | None,
    ) -> MetricReading:
        """The samples of the canary and of the primary over the metric's interval up to ``at``
        (now by default): the same query, with ``{{ target }}`` naming each workload in turn."""
        problem = compare_problem(metric, canary, template_query)
        if problem is not None:
            raise InvalidQuery(f"metric {metric.name} cannot compare: {problem}")
        end = at or self.clock()
        seconds = parse_duration(metric.interval)
        start, step = end - datetime.timedelta(seconds=seconds), max(MIN_SAMPLE_STEP_SECONDS, seconds / COMPARE_SAMPLES)
        samples = [
            provider.series(query_for(metric, canary, template_query, target=workload), start, end, step)
            for workload in (canary.target_ref.name, canary.primary_name)
        ]
        return MetricReading(None, canary_samples=samples[0], primary_samples=samples[1])

    def prometheus(self, canary: Canary) -> ProviderConfig:
        """The Prometheus of builtin metrics and inline queries."""
        return ProviderConfig(type="prometheus", address=canary.metrics_server or self.default_metrics_server)

    def provider_config(self, namespace: str, name: str, template: Mapping[str, Any], canary: Canary) -> ProviderConfig:
        """A MetricTemplate's backend, its credentials read from its Secret (in the template's
        namespace). A Prometheus template without an address uses the Canary's Prometheus, unless
        it carries credentials (a Secret or headers): those go only to the install's, never to an
        address the Canary's author chose."""
        provider = template.get("spec", {}).get("provider") or {}
        kind = str(provider.get("type") or "prometheus")
        address = str(provider.get("address") or "")
        if kind == "prometheus" and not address:
            credentials = provider.get("secretRef") or provider.get("headers")
            address = (
                self.default_metrics_server if credentials else canary.metrics_server or self.default_metrics_server
            )
        secret_name, secret = "", tuple[tuple[str, str], ...]()
        ref = (provider.get("secretRef") or {}).get("name")
        if ref:
            secret_name = f"{namespace}/{ref}"
            stored = self.store.get_config("secret", namespace, str(ref))
            if stored is None:
                raise InvalidCredentials(
                    f"Secret {secret_name}, the credentials of MetricTemplate {namespace}/{name}, does not exist"
                )
            secret = decoded_secret(stored)
        headers = tuple(
            (str(header), tuple(str(value) for value in values))
            for header, values in sorted((provider.get("headers") or {}).items())
            if isinstance(values, list)
        )
        return ProviderConfig(
            type=kind,
            address=address,
            region=str(provider.get("region") or ""),
            insecure_skip_verify=bool(provider.get("insecureSkipVerify")),
            headers=headers,
            secret_name=secret_name,
            secret=secret,
        )

    # ---- acting ------------------------------------------------------------------------------

    def apply(self, canary: Canary, decision: Decision, observed: Observed, status: CanaryStatus) -> None:
        """Carry out the decision's actions, in order. The routing objects are written once: with
        EnsureObjects, already carrying the split the decision's SetRoutes ask for."""
        target = observed.target
        assert target is not None
        split, mirror = routes_after(decision, observed.observation)
        session = session_cookie(canary, status)
        ensured = False
        for action in decision.actions:
            if isinstance(action, EnsureObjects):
                self.objects.ensure(canary, target, observed.primary, split, status.last_promoted_spec, session, mirror)
                ensured = True
            elif isinstance(action, ScaleTarget):
                self.objects.scale_target(canary, target, action.replicas)
            elif isinstance(action, SetRoutes) and not ensured:
                self.router_for(canary.provider).set_routes(
                    canary, action.primary_weight, action.canary_weight, session, action.mirror
                )
            elif isinstance(action, CopyToPrimary):
                promoting = action.revision == status.last_applied_spec != status.last_promoted_spec
                # Promotion gives the primary the canary's replicas, as Flagger does, unless its
                # autoscaler owns them; a repair leaves the primary's own.
                replicas = observed.observation.target.replicas if promoting and observed.observation.target else None
                if canary.autoscaler_ref is not None:
                    replicas = None
                self.objects.copy_to_primary(canary, action.revision, target, replicas or None)
            # RunHooks are notifications, sent after the status is stored (see ``send``).
        if ensured:
            self.objects.reconcile_scalers(canary, target_replicas_after(decision, observed.observation))

    def send(self, canary: Canary, pending: Pending, status: CanaryStatus, now: datetime.datetime) -> None:
        """Events on the Canary, event hooks, notification hooks and alerts a step recorded."""
        for message, severity, details in pending.alerts:
            self.alert(canary, message, severity, details, now)
        phase = status.phase.value if status.phase else ""
        # Keys from the step's id as recorded: a tick sending what another recorded uses the same.
        for index, (event_type, reason, message) in enumerate(pending.events):
            try:
                self.store.record_event(canary, event_type, reason, message, now, step=pending.step)
            except KubeError as error:
                LOG.warning("could not record event on %s: %s", canary.key, error)
            for position, hook in enumerate(canary.analysis.hooks(HookType.EVENT)):
                key = idempotency_key(canary, pending.step, hook, position, f"event-{index}")
                self.hooks.call(
                    hook,
                    event_payload(canary, phase, status.last_applied_spec, hook, message, event_type, now, key),
                )
        for hook_type in pending.hooks:
            for position, hook in enumerate(canary.analysis.hooks(HookType(hook_type))):
                key = idempotency_key(canary, pending.step, hook, position)
                result = self.hooks.call(hook, hook_payload(canary, phase, status.last_applied_spec, hook, key))
                if not result.ok:
                    LOG.warning("%s hook %s of %s failed: %s", hook_type, hook.name, canary.key, result.message)

    def answered(self, canary: Canary, request: ManualRequest) -> None:
        """Take the request the step acted on (or turned down) off the Canary; a different request
        written since stays, for the next tick."""
        raw = self.store.get_canary(canary.namespace, canary.name)
        metadata = (raw or {}).get("metadata", {})
        if (metadata.get("annotations") or {}).get(REQUEST_ANNOTATION) != request.value:
            return
        version = metadata["resourceVersion"]
        patch = {"metadata": {"annotations": {REQUEST_ANNOTATION: None}, "resourceVersion": version}}
        with contextlib.suppress(Conflict):  # changed meanwhile: the next tick looks at it again
            self.store.patch_canary(canary.namespace, canary.name, patch)

    def deliver(
        self, canary: Canary, pending: Pending, status: CanaryStatus, version: str, now: datetime.datetime
    ) -> tuple[CanaryStatus, str] | None:
        """Send what ``status``, stored at ``version`` with this sender's claim, records as pending;
        then store it without the record and the claim. The status and version stored, or None if
        that write failed (the record stays, and once the claim runs out the next tick sends it)."""
        self.send(canary, pending, status, now)
        for _ in range(RELEASE_ATTEMPTS):
            released = status.replace(pending=None, claimed_until=None, claimed_step="")
            try:
                return released, self.write_status(canary, version, released)
            except Lost:
                # Something else changed the Canary (its spec, say): the record, if still there, is ours.
                try:
                    raw = self.store.get_canary(canary.namespace, canary.name)
                except KubeError:
                    return None
                if raw is None:
                    return None
                status, version = CanaryStatus.from_dict(raw.get("status")), raw["metadata"]["resourceVersion"]
                if status.pending is None or status.pending.step != pending.step:
                    return None
            except KubeError as error:
                LOG.warning("sent the news of %s's step but could not store that: %s", canary.key, error)
                return None
        return None

    # ---- alerts ------------------------------------------------------------------------------

    def alert(self, canary: Canary, message: str, severity: str, details: bool, now: datetime.datetime) -> None:
        """Send one alert to each of the Canary's alert providers that wants its severity, or to
        the global notifier when the Canary names none. A chat service that is down changes
        nothing in the release: the failure is a Warning Event and a count in /metrics."""
        alert = canary_alert(canary, message, cast(Severity, severity), details=details, cluster=self.cluster_name)
        targets: list[tuple[str, str, Callable[[], Notifier]]] = []
        if not canary.analysis.alerts:
            settings = self.notifier
            if settings is not None and settings.url:
                targets.append(
                    (
                        "global notifier",
                        settings.type,
                        lambda: notifier_for(
                            settings.type, settings.url, settings.channel, settings.username, settings.proxy
                        ),
                    )
                )
        for ref in canary.analysis.alerts:
            if wanted(severity, ref.severity):
                targets.append((f"alert {ref.name}", "", functools.partial(self.alert_provider, canary, ref)))
        for name, kind, notifier in targets:
            try:
                notifier().send(alert)
            except SerinError as error:
                LOG.warning("%s of %s not sent: %s", name, canary.key, error)
                telemetry.ALERTS_FAILED.labels(canary.namespace, kind or "provider").inc()
                with contextlib.suppress(KubeError):
                    self.store.record_event(canary, "Warning", "Synced", f"{name} not sent: {error}", now)

    def alert_provider(self, canary: Canary, ref: AlertRef) -> Notifier:
        """The notifier of an AlertProvider (in the ref's namespace, or the Canary's); its address
        from its Secret's ``address`` when it has a secretRef, with the Secret's ``token``."""
        namespace = ref.provider_ref.namespace or canary.namespace
        where = f"AlertProvider {namespace}/{ref.provider_ref.name}"
        if refusal := self.scope.refusal(namespace):
            raise PermanentError(f"{where}: {refusal}")
        provider = self.store.get("AlertProvider", namespace, ref.provider_ref.name)
        if provider is None:
            raise PermanentError(f"{where} does not exist")
        unshared = not_shared("AlertProvider", (namespace, ref.provider_ref.name), provider, canary.namespace)
        if unshared:
            raise PermanentError(unshared)
        spec = provider.get("spec") or {}
        address, token = str(spec.get("address") or ""), ""
        secret_ref = (spec.get("secretRef") or {}).get("name")
        if secret_ref:
            stored = self.store.get_config("secret", namespace, str(secret_ref))
            if stored is None:
                raise InvalidCredentials(f"Secret {namespace}/{secret_ref} of {where} does not exist")
            data = dict(decoded_secret(stored))
            if not data.get("address"):
                raise InvalidCredentials(f"Secret {namespace}/{secret_ref} of {where} has no address")
            address, token = data["address"], data.get("token", "")
        return notifier_for(
            str(spec.get("type") or ""),
            address,
            str(spec.get("channel") or ""),
            str(spec.get("username") or ""),
            str(spec.get("proxy") or ""),
            token=token,
        )

    # ---- deletion ----------------------------------------------------------------------------

    def finish_deletion(
        self, canary: Canary, raw: Mapping[str, Any], report: StepReport, now: datetime.datetime, dry_run: bool
    ) -> None:
        metadata = raw.get("metadata", {})
        finalizers = list(metadata.get("finalizers") or [])
        if FINALIZER not in finalizers:
            report.summary = "being deleted"
            return
        if dry_run:
            report.summary = "would give the target its traffic back and let the deletion finish (dry run)"
            return
        if not self.objects.revert(canary):
            report.summary = f"being deleted: waiting for {canary.target_ref.name} to be ready before the primary goes"
            return
        finalizers.remove(FINALIZER)
        # The resourceVersion makes this a no-op for a tick that raced with another one.
        self.store.patch_canary(
            canary.namespace,
            canary.name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version}},
        )
        report.applied = True
        report.summary = f"deleted: {canary.target_ref.name} serves all traffic again"
        with contextlib.suppress(KubeError):
            self.store.record_event(
                canary, "Normal", "Synced", f"Canary deleted: {canary.target_ref.name}.{canary.namespace} restored", now
            )


def _place_in_group(status: CanaryStatus) -> tuple[object, ...]:
    """What the other members of a release group read of this one (``serin.groups.GroupMember``)."""
    progress = status.group
    return (
        status.phase,
        status.last_applied_spec,
        None if progress is None else (progress.release, progress.steps, progress.analysed, progress.since),
    )


def claimed_for_hooks(status: CanaryStatus, now: datetime.datetime) -> CanaryStatus:
    """``status`` claimed from ``now`` on by a step that asks hooks. A claim that ran out without
    being released is a step whose tick died before storing it: taken over, the step keeps its id,
    so that its hooks are asked with the keys they were asked with before."""
    taken_over = status.claimed_step if status.claimed_until is not None else ""
    return status.replace(
        claimed_until=now + datetime.timedelta(seconds=CLAIM_SECONDS), claimed_step=taken_over or step_id(now)
    )


def step_id(now: datetime.datetime) -> str:
    """A new step's id: its time, for people, and enough randomness that no other step has it."""
    return f"{format_time(now)}/{uuid.uuid4().hex[:8]}"


def pending_of(decision: Decision, now: datetime.datetime, canary: Canary, step: str = "") -> Pending | None:
    """What the step will send once its status is stored, under the step's id ``step`` (a new one
    if not given); None when nothing."""
    hooks = tuple(action.hook_type.value for action in decision.actions if isinstance(action, RunHooks))
    if not decision.events and not hooks:
        return None
    events = tuple((event.type, event.reason, event.message) for event in decision.events)
    alerts = tuple((alert.message, alert.severity, alert.details) for alert in alerts_for(canary, decision.events))
    return Pending(step=step or step_id(now), events=events, hooks=hooks, alerts=alerts)
