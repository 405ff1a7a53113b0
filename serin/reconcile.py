"""One tick: observe each due Canary, let ``decide`` choose, apply the actions, write the status.

The order of writes is what makes a tick crash-safe and concurrency-safe: the actions set absolute
values (a replica count, a weight) and are harmless to repeat; the status is written last, whole,
with the resourceVersion that was read, so of two ticks racing on one Canary only one advances it —
the other's write fails with a conflict and it reports that. Events and notification hooks follow a
successful status write, so the loser of a race sends none.

A tick where no Canary is due costs one request: the list of Canaries. A suspended Canary costs
none beyond it either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serin import telemetry
from serin.decide import (
    ALL_ON_PRIMARY,
    METRICS,
    Decision,
    EnsureObjects,
    MetricReading,
    Need,
    Observation,
    PromotePrimary,
    RunHooks,
    ScaleTarget,
    SetRoutes,
    Split,
    WorkloadState,
    decide,
    desired_split,
    next_step_in,
    waiting_for_interval,
)
from serin.kube.store import Conflict, KubeError, KubeStore
from serin.metrics.builtin import query_for
from serin.model import FINALIZER, Canary, HookType, InvalidCanary, Metric, parse_canary
from serin.notify.webhooks import event_payload, hook_payload
from serin.ports import (
    HookCaller,
    HookResult,
    MetricsProvider,
    NoValuesFound,
    PermanentError,
    Router,
    SerinError,
    TemporaryError,
)
from serin.status import CanaryStatus, Phase
from serin.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SOURCE_HASH_ANNOTATION,
    TARGET_LABEL,
    WorkloadError,
    config_hash,
    config_key,
    owner_reference,
    primary_config,
    primary_deployment,
    primary_pod_template,
    selector_label,
    services,
    template_hash,
    tracked_configs,
)

LOG = logging.getLogger("serin.reconcile")

# Gathering results may unlock a later gate in the same step (metrics, then confirm-promotion).
MAX_DECISION_ROUNDS = 5


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
    # When this Canary next wants a tick (seconds); None when no tick will move it.
    next_step_in_seconds: float | None = None

    def record(self, status: CanaryStatus) -> None:
        self.phase = status.phase.value if status.phase else None
        self.weight, self.iterations, self.failed_checks = status.canary_weight, status.iterations, status.failed_checks

    def to_dict(self) -> dict[str, Any]:
        """JSON with Kubernetes-style camelCase keys."""
        data = dataclasses.asdict(self)
        data["failedChecks"] = data.pop("failed_checks")
        seconds = data.pop("next_step_in_seconds")
        data["nextStepInSeconds"] = None if seconds is None else round(seconds, 3)
        return data


def describe(action: object) -> str:
    fields = dataclasses.asdict(action) if dataclasses.is_dataclass(action) and not isinstance(action, type) else {}
    args = ", ".join(f"{key}={value}" for key, value in fields.items())
    return f"{type(action).__name__}({args})"


def workload_state(deployment: Mapping[str, Any] | None) -> WorkloadState | None:
    if deployment is None:
        return None
    spec, status, metadata = deployment.get("spec", {}), deployment.get("status", {}), deployment.get("metadata", {})
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    return WorkloadState(
        name=metadata.get("name", ""),
        template_hash=template_hash(deployment),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        generation=int(metadata.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        progress_deadline_exceeded=conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded",
        source_hash=(metadata.get("annotations") or {}).get(SOURCE_HASH_ANNOTATION, ""),
    )


def routes_after(decision: Decision, observation: Observation) -> Split:
    """The split the routing objects hold once the decision's actions are applied."""
    for action in reversed(decision.actions):
        if isinstance(action, SetRoutes):
            return action.primary_weight, action.canary_weight
    return observation.routes or ALL_ON_PRIMARY


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


class Reconciler:
    def __init__(
        self,
        store: KubeStore,
        router_for: Callable[[str], Router],
        metrics_for: Callable[[str], MetricsProvider],
        hooks: HookCaller,
        default_metrics_server: str,
        default_provider: str = "istio",
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.store = store
        self.router_for = router_for
        self.metrics_for = metrics_for
        self.hooks = hooks
        self.default_metrics_server = default_metrics_server
        self.default_provider = default_provider
        self.clock = clock

    # ---- the tick ----------------------------------------------------------------------------

    def tick(
        self, namespace: str | None = None, name: str | None = None, force: bool = False, dry_run: bool = False
    ) -> list[StepReport]:
        started = time.monotonic()
        raw_canaries = self.store.list_canaries(namespace)
        telemetry.record_counts(Counter(c.get("metadata", {}).get("namespace", "") for c in raw_canaries))
        reports = []
        for raw in raw_canaries:
            metadata = raw.get("metadata", {})
            if name and metadata.get("name") != name:
                continue
            report = StepReport(name=metadata.get("name", ""), namespace=metadata.get("namespace", ""))
            step_started = time.monotonic()
            try:
                self.step(raw, raw_canaries, report, force=force, dry_run=dry_run)
            except (SerinError, WorkloadError) as error:
                # One failing Canary never stops the others.
                report.error = str(error)
                telemetry.TICK_ERRORS.labels(report.namespace).inc()
            except Exception as error:
                LOG.exception("tick of canary %s/%s failed", report.namespace, report.name)
                report.error = f"internal error: {type(error).__name__}: {error}"
                telemetry.TICK_ERRORS.labels(report.namespace).inc()
            telemetry.ANALYSIS_DURATION.labels(report.namespace).observe(time.monotonic() - step_started)
            reports.append(report)
        telemetry.TICK_DURATION.observe(time.monotonic() - started)
        return reports

    def step(
        self,
        raw: Mapping[str, Any],
        others: Sequence[Mapping[str, Any]],
        report: StepReport,
        force: bool = False,
        dry_run: bool = False,
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
        # Decide cheaply whether to look closer: a Canary that is not due costs no request, and a
        # suspended one needs nothing observed.
        waiting = None if canary.suspend else waiting_for_interval(canary, status, now, force)
        report.next_step_in_seconds = next_step_in(canary, status, now)
        if waiting:
            report.summary = waiting
            return
        if canary.suspend:
            observed = Observed(Observation(target=None, primary=None), None, None)
        else:
            observed = self.observe(canary, raw, others)
        observation = observed.observation
        decision = decide(canary, status, observation, now, force=force)
        for _ in range(MAX_DECISION_ROUNDS):
            if not decision.needs:
                break
            if dry_run and any(need != METRICS for need in decision.needs):
                report.summary = f"would call hooks: {', '.join(str(n) for n in decision.needs)} (dry run)"
                return
            observation = self.gather(canary, decision.needs, observation, status)
            decision = decide(canary, status, observation, now, force=force)
        report.summary = decision.summary
        report.actions = [describe(action) for action in decision.actions]
        report.events = [event.message for event in decision.events]
        if dry_run:
            report.record(decision.status)
            return

        if observed.target is not None:
            self.apply(canary, decision, observed)
        new_status = decision.status
        if new_status != status:
            try:
                self.store.write_canary_status(
                    canary.namespace, canary.name, canary.resource_version, new_status.to_dict()
                )
            except Conflict:
                report.summary = "another tick advanced this canary first; nothing recorded"
                report.events = []
                return
        report.applied = True
        report.record(new_status)
        report.next_step_in_seconds = next_step_in(canary, new_status, now)
        telemetry.record_canary(
            canary.name,
            canary.namespace,
            canary.target_ref.name,
            new_status.phase,
            desired_split(canary, new_status)[1],
        )
        if new_status.phase != status.phase and new_status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            outcome = "succeeded" if new_status.phase is Phase.SUCCEEDED else "failed"
            telemetry.CANARY_RESULTS.labels(canary.name, canary.namespace, outcome).inc()
        self.announce(canary, decision, now)

    # ---- observing ---------------------------------------------------------------------------

    def observe(self, canary: Canary, raw: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> Observed:
        target = self.store.get_deployment(canary.namespace, canary.target_ref.name)
        primary = self.store.get_deployment(canary.namespace, canary.primary_name)
        hashes: dict[str, str] = {}
        if target is not None:
            for kind, name in sorted(tracked_configs(target)):
                config = self.store.get_config(kind, canary.namespace, name)
                if config is not None:
                    hashes[config_key(kind, name)] = config_hash(config)
        routes = None
        if target is not None:
            current = self.router_for(canary.provider).get_routes(canary)
            routes = None if current is None else (current.primary_weight, current.canary_weight)
        observation = Observation(
            target=workload_state(target),
            primary=workload_state(primary),
            config_hashes=hashes,
            duplicate_of=duplicate_owner(canary, raw, others),
            routes=routes,
        )
        return Observed(observation, target, primary)

    def gather(
        self, canary: Canary, needs: tuple[Need, ...], observation: Observation, status: CanaryStatus
    ) -> Observation:
        hooks = dict(observation.hooks)
        metrics = observation.metrics
        for need in needs:
            if need == METRICS:
                metrics = tuple(self.read_metric(canary, metric) for metric in canary.analysis.metrics)
            elif isinstance(need, HookType):
                hooks[need] = self.call_hooks(canary, need, status)
        return dataclasses.replace(observation, hooks=hooks, metrics=metrics)

    def call_hooks(self, canary: Canary, hook_type: HookType, status: CanaryStatus) -> tuple[HookResult, ...]:
        # As Flagger: the gates of the analysis are told "Progressing" (in WaitingPromotion too);
        # confirm-rollout and rollback hooks hear the phase the Canary is in.
        current = status.phase.value if status.phase else ""
        phase = current if hook_type in (HookType.CONFIRM_ROLLOUT, HookType.ROLLBACK) else Phase.PROGRESSING.value
        return tuple(
            self.hooks.call(hook, hook_payload(canary, phase, status.last_applied_spec, hook))
            for hook in canary.analysis.hooks(hook_type)
        )

    def read_metric(self, canary: Canary, metric: Metric) -> MetricReading:
        """The metric's value, or which kind of problem kept it from one (see ``serin.ports``)."""
        address = canary.metrics_server or self.default_metrics_server
        try:
            template_query = None
            if metric.template_ref is not None:
                template = self.store.get_metric_template(
                    metric.template_ref.namespace or canary.namespace, metric.template_ref.name
                )
                template_query = template.get("spec", {}).get("query")
                address = template.get("spec", {}).get("provider", {}).get("address") or address
            value = self.metrics_for(address).query(query_for(metric, canary, template_query))
            return MetricReading(value)
        except NoValuesFound as error:
            return MetricReading(None, "no-data", str(error))
        except TemporaryError as error:
            return MetricReading(None, "unavailable", str(error))
        except PermanentError as error:
            return MetricReading(None, "invalid", str(error))

    # ---- acting ------------------------------------------------------------------------------

    def apply(self, canary: Canary, decision: Decision, observed: Observed) -> None:
        """Carry out the decision's actions, in order. The routing objects are written once: with
        EnsureObjects, already carrying the split the decision's SetRoutes ask for."""
        namespace, target = canary.namespace, observed.target
        assert target is not None
        split = routes_after(decision, observed.observation)
        ensured = False
        for action in decision.actions:
            if isinstance(action, EnsureObjects):
                self.ensure_objects(canary, target, observed.primary, split)
                ensured = True
            elif isinstance(action, ScaleTarget):
                current = observed.observation.target.replicas if observed.observation.target else None
                if current != action.replicas:
                    self.store.scale_deployment(namespace, canary.target_ref.name, action.replicas)
            elif isinstance(action, SetRoutes) and not ensured:
                self.router_for(canary.provider).set_routes(canary, action.primary_weight, action.canary_weight)
            elif isinstance(action, PromotePrimary):
                self.promote(canary, target)
            # RunHooks are notifications, sent after the status is stored (see ``announce``).

    def ensure_objects(
        self,
        canary: Canary,
        target: Mapping[str, Any],
        primary: Mapping[str, Any] | None,
        split: Split = ALL_ON_PRIMARY,
    ) -> None:
        """Create what is missing, adopt what has no owner yet, and route ``split``.

        ``primary`` is as last read. Never overwrites the primary's template: that is promotion's
        job. Objects that admission created before the Canary was stored carry no ownerReference;
        they get one here. Generated Services are written whole; a Service the user made before the
        Canary only has its selector pointed at the right pods.
        """
        namespace = canary.namespace
        labels = target.get("metadata", {}).get("labels") or {}
        if labels.get(TARGET_LABEL) != canary.name:
            # The Deployment webhook selects targets by this label.
            self.store.patch(
                "Deployment", namespace, canary.target_ref.name, {"metadata": {"labels": {TARGET_LABEL: canary.name}}}
            )
        configs = tracked_configs(target)
        for kind, name in sorted(configs):
            copy_name = f"{name}-primary"
            existing = self.store.get_config(kind, namespace, copy_name)
            if existing is None:
                source = self.store.get_config(kind, namespace, name)
                if source is not None:
                    self.store.create(primary_config(canary, source))
            else:
                self._adopt(canary, existing)
        if primary is None:
            replicas = max(1, int(target.get("spec", {}).get("replicas") or 1))
            self.store.create(primary_deployment(canary, target, configs, replicas=replicas))
        else:
            self._adopt(canary, primary)
        for wanted in services(canary, target):
            name = wanted["metadata"]["name"]
            existing = self.store.get_service(namespace, name)
            if existing is None:
                self.store.create(wanted)
            elif (existing["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
                if not _contains(existing, wanted):
                    self.store.patch("Service", namespace, name, _service_patch(existing, wanted))
            elif existing.get("spec", {}).get("selector") != wanted["spec"]["selector"]:
                self.store.patch("Service", namespace, name, {"spec": {"selector": wanted["spec"]["selector"]}})
        self.router_for(canary.provider).reconcile(canary, split)

    # ---- deletion ----------------------------------------------------------------------------

    def revert(self, canary: Canary) -> bool:
        """Give the target its traffic back, as before the Canary; True once the target is ready.

        The target is scaled to the primary's replicas and the apex Service, kept (no owner any
        more) so that clients keep their address, selects the target's pods. The routes go back to
        100/0 until the garbage collector removes them with the primary and the other Services.
        """
        namespace = canary.namespace
        target = self.store.get_deployment(namespace, canary.target_ref.name)
        if target is None:
            return True
        primary = self.store.get_deployment(namespace, canary.primary_name)
        replicas = int((primary or {}).get("spec", {}).get("replicas") or 0) or max(
            1, int(target.get("spec", {}).get("replicas") or 1)
        )
        if target.get("spec", {}).get("replicas") != replicas:
            self.store.scale_deployment(namespace, canary.target_ref.name, replicas)
        key, value = selector_label(target)
        apex = self.store.get_service(namespace, canary.service.name)
        if apex is not None and (apex.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
            self.store.patch(
                "Service",
                namespace,
                canary.service.name,
                {"metadata": {"ownerReferences": None}, "spec": {"selector": {key: value}}},
            )
        with contextlib.suppress(SerinError):
            self.router_for(canary.provider).finalize(canary)
        state = workload_state(target)
        return state is not None and state.available_replicas >= replicas

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
        if not self.revert(canary):
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

    def _adopt(self, canary: Canary, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata", {})
        references = metadata.get("ownerReferences") or []
        if not canary.uid or any(reference.get("uid") == canary.uid for reference in references):
            return
        if (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            return  # never take over somebody else's object
        self.store.patch(
            obj.get("kind", "Deployment"),
            canary.namespace,
            metadata["name"],
            {"metadata": {"ownerReferences": [*references, owner_reference(canary)]}},
        )

    def promote(self, canary: Canary, target: dict[str, Any]) -> None:
        """Copy the target's configs and pod template into the primary (replicas stay the primary's)."""
        namespace = canary.namespace
        configs = tracked_configs(target)
        for kind, name in sorted(configs):
            source = self.store.get_config(kind, namespace, name)
            if source is None:
                continue
            wanted = primary_config(canary, source)
            existing = self.store.get_config(kind, namespace, f"{name}-primary")
            if existing is None:
                self.store.create(wanted)
            else:
                wanted["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                self.store.replace(wanted)
        primary = self.store.get_deployment(namespace, canary.primary_name)
        if primary is None:
            self.store.create(primary_deployment(canary, target, configs))
            return
        primary["spec"]["template"] = primary_pod_template(target, configs, selector_label(target))
        annotations = primary["metadata"].setdefault("annotations", {})
        annotations[SOURCE_HASH_ANNOTATION] = template_hash(target)
        primary["metadata"].setdefault("labels", {})[MANAGED_BY_LABEL] = MANAGED_BY
        self.store.replace(primary)

    def announce(self, canary: Canary, decision: Decision, now: datetime.datetime) -> None:
        """Events on the Canary, event hooks, and post-rollout notifications, after the status landed."""
        phase = decision.status.phase.value if decision.status.phase else ""
        for event in decision.events:
            try:
                self.store.record_event(canary, event.type, event.reason, event.message, now)
            except KubeError as error:
                LOG.warning("could not record event on %s: %s", canary.key, error)
            for hook in canary.analysis.hooks(HookType.EVENT):
                self.hooks.call(
                    hook,
                    event_payload(
                        canary,
                        phase,
                        decision.status.last_applied_spec,
                        hook,
                        event.message,
                        event.type,
                        now,
                    ),
                )
        for action in decision.actions:
            if isinstance(action, RunHooks):
                for hook in canary.analysis.hooks(action.hook_type):
                    result = self.hooks.call(hook, hook_payload(canary, phase, decision.status.last_applied_spec, hook))
                    if not result.ok:
                        LOG.warning(
                            "%s hook %s of %s failed: %s", action.hook_type.value, hook.name, canary.key, result.message
                        )


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
    return {"metadata": metadata, "spec": dict(wanted["spec"])}


def _contains(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether every field of ``wanted`` is already in ``stored`` as wanted (lists compared whole)."""
    for key, value in wanted.items():
        if isinstance(value, Mapping):
            inner = stored.get(key)
            if not isinstance(inner, Mapping) or not _contains(inner, value):
                return False
        elif stored.get(key) != value:
            return False
    return True
