"""What Serin answers when the API server hands it a Canary or a workload on `kubectl apply`.

* Canaries: the mutating webhook fills in Flagger's defaults and, for a CREATE of a name no Canary
  has, bootstraps the primary, Services and routing once the API server has stored the Canary
  (from the stored Canary, with its uid, so everything is owned by it from the start); the
  validating webhook lists every problem with its field path and writes nothing.
* Target workloads (Deployments, DaemonSets, StatefulSets): a new pod template is a new revision,
  recorded on the Canary and scaled up in the same response; an unchanged template keeps an idle
  target at zero without a single API request.
* Primary workloads: only Serin changes their pod template.

Everything here is also done (or redone) by the tick, so a webhook that was down, timed out or
whose request was rejected later loses nothing. Dry-run requests change nothing outside the
answer itself.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from serin.decide import Observation, ScaleTarget, SetRoutes, decide, desired_split, session_cookie
from serin.kube.store import Conflict, KubeError, KubeRejected, KubeStore, NotFound
from serin.metrics.builtin import compare_problem, query_for
from serin.model import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_WEIGHT,
    DEFAULT_METRIC_INTERVAL,
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    DEFAULT_THRESHOLD,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    FINALIZER,
    Canary,
    FieldError,
    InvalidCanary,
    not_shared,
    parse_canary,
)
from serin.objects import workload_state
from serin.ports import SerinError
from serin.reconcile import CLAIM_SECONDS, Reconciler, claim_holds, pending_of
from serin.scope import WHOLE_CLUSTER, Scope
from serin.status import CanaryStatus, Phase, Unconfirmed
from serin.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SCALE_TO_ZERO_NODE_SELECTOR,
    TARGET_LABEL,
    changed_claims,
    held_at_zero,
    template_hash,
    workload_kind,
)

LOG = logging.getLogger("serin.admission")
ADOPTION_WAIT_SECONDS = 10.0

# Phases during which a release is under way and the target must not change under it.
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING, Phase.FINALISING})


@dataclass
class Verdict:
    """The answer to one AdmissionReview (before it is wrapped for the wire)."""

    allowed: bool = True
    message: str = ""
    code: int = 200
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_response(self, uid: str) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": uid, "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {"code": self.code, "message": self.message, "reason": "Invalid"}
        if self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(self.patch).encode()).decode()
        if self.warnings:
            response["warnings"] = self.warnings
        return response


def deny(errors: list[FieldError], name: str) -> Verdict:
    lines = "\n".join(f"  {error}" for error in errors)
    return Verdict(allowed=False, code=422, message=f"Canary {name} is invalid:\n{lines}")


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is an object, else an empty one: admission input is untrusted."""
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _at_zero(workload: Mapping[str, Any]) -> bool:
    if workload_kind(str(workload.get("kind"))).has_replicas:
        return _mapping(workload.get("spec")).get("replicas") == 0
    return held_at_zero(workload)


def _scale_patch(workload: Mapping[str, Any], replicas: int) -> list[dict[str, Any]]:
    """JSON patch operations that scale the workload of a request to ``replicas`` (a DaemonSet:
    hold it at zero with the node selector no node matches, or take that selector away)."""
    spec = workload.get("spec")
    if workload_kind(str(workload.get("kind"))).has_replicas:
        if not isinstance(spec, dict):
            return [{"op": "add", "path": "/spec", "value": {"replicas": replicas}}]
        return [{"op": "replace" if "replicas" in spec else "add", "path": "/spec/replicas", "value": replicas}]
    if held_at_zero(workload) == (replicas == 0):
        return []
    key = SCALE_TO_ZERO_NODE_SELECTOR.replace("~", "~0").replace("/", "~1")
    if replicas != 0:
        return [{"op": "remove", "path": f"/spec/template/spec/nodeSelector/{key}"}]
    template = _mapping(_mapping(spec).get("template"))
    pod_spec = template.get("spec")
    held = {SCALE_TO_ZERO_NODE_SELECTOR: "true"}
    if not isinstance(spec, dict):
        return [{"op": "add", "path": "/spec", "value": {"template": {"spec": {"nodeSelector": held}}}}]
    if not isinstance(spec.get("template"), dict):
        return [{"op": "add", "path": "/spec/template", "value": {"spec": {"nodeSelector": held}}}]
    if not isinstance(pod_spec, dict):
        return [{"op": "add", "path": "/spec/template/spec", "value": {"nodeSelector": held}}]
    if not isinstance(pod_spec.get("nodeSelector"), dict):
        return [{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": held}]
    return [{"op": "add", "path": f"/spec/template/spec/nodeSelector/{key}", "value": "true"}]


def _name(request: Mapping[str, Any]) -> str:
    return str(_mapping(_mapping(request.get("object")).get("metadata")).get("name") or request.get("name") or "?")


# ---- Canaries: defaults --------------------------------------------------------------------


def with_defaults(obj: Mapping[str, Any], default_provider: str) -> dict[str, Any]:
    """The Canary with Flagger's constant defaults written out, so `kubectl get -o yaml` shows them.

    Defaults derived from another field (a Service named after the target, a targetPort equal to
    the port) are left out: written down, they would stay when that field changes later.
    """
    result = copy.deepcopy(dict(obj))
    spec = result.setdefault("spec", {})
    if not isinstance(spec, dict):
        return result
    spec.setdefault("provider", default_provider)
    metadata = result.setdefault("metadata", {})
    # No finalizer may be added to an object being deleted (nor should ours come back then).
    if isinstance(metadata, dict) and not metadata.get("deletionTimestamp"):
        finalizers = [f for f in _items(metadata.get("finalizers")) if f != FINALIZER]
        if spec.get("revertOnDeletion") is True:
            finalizers.append(FINALIZER)
        if finalizers or "finalizers" in metadata:
            metadata["finalizers"] = finalizers
    spec.setdefault("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)
    service = spec.get("service")
    if isinstance(service, dict):
        service.setdefault("portName", "http")
    analysis = spec.get("analysis")
    if isinstance(analysis, dict):
        analysis.setdefault("interval", DEFAULT_INTERVAL)
        analysis.setdefault("threshold", DEFAULT_THRESHOLD)
        if analysis.get("stepWeight") is not None and analysis.get("iterations") is None:
            analysis.setdefault("maxWeight", DEFAULT_MAX_WEIGHT)
        for metric in analysis.get("metrics") or []:
            if isinstance(metric, dict):
                metric.setdefault("interval", DEFAULT_METRIC_INTERVAL)
        for hook in analysis.get("webhooks") or []:
            if isinstance(hook, dict):
                hook.setdefault("type", "rollout")
                hook.setdefault("timeout", "10s")
    return result


def defaults_patch(obj: Mapping[str, Any], default_provider: str) -> list[dict[str, Any]]:
    patch: list[dict[str, Any]] = jsonpatch.make_patch(dict(obj), with_defaults(obj, default_provider)).patch
    return patch


def _names(spec: Mapping[str, Any]) -> tuple[str, str]:
    """(target name, Service name) of a Canary's spec, the Service name defaulting to the target's."""
    target = str(_mapping(spec.get("targetRef")).get("name") or "")
    service = _mapping(spec.get("service")).get("name")
    return target, service if isinstance(service, str) and service else target


# Up to this many Canaries in a namespace, one request reads them all to check a Canary against
# them; past it, the few that could clash are asked for by field selector.
FEW_CANARIES = 20
# The Services Serin makes for a Canary's spec.service.name (or target name) S: S, S-primary, S-canary.
SERVICE_SUFFIXES = ("", "-primary", "-canary")


def clash_selectors(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The field selectors (field, value) that find every Canary ``_conflicts_with_others`` could
    find against ``spec``: those whose target is its target, its target's primary, or the target
    whose primary its target is; and those whose Services, named after their spec.service.name or,
    without one, their target, would be among its own."""
    target, service = _names(spec)
    targets = {target, f"{target}-primary", target.removesuffix("-primary")} if target else set()
    # A Service name N is one of S's Services (S + suffix) exactly when S is N, N less a suffix,
    # or N plus one.
    services = (
        {service + suffix for suffix in SERVICE_SUFFIXES}
        | {service.removesuffix(suffix) for suffix in SERVICE_SUFFIXES if suffix}
        if service
        else set()
    )
    wanted = [("spec.targetRef.name", value) for value in sorted(targets | services)]
    return wanted + [("spec.service.name", value) for value in sorted(services)]


def _conflicts_with_others(
    target: Mapping[str, Any], spec: Mapping[str, Any], others: list[dict[str, Any]]
) -> list[FieldError]:
    """What two Canaries in one namespace may not share: a target, a target that is the other's
    primary, or Service names (each would rewrite the other's objects on every tick)."""
    problems = []
    mine_target, mine_service = _names(spec)
    for other in others:
        theirs = other["metadata"]["name"]
        their_target, their_service = _names(other.get("spec") or {})
        their_kind = _mapping(_mapping(other.get("spec")).get("targetRef")).get("kind")
        if (their_kind, their_target) == (target.get("kind"), mine_target):
            problems.append(
                FieldError(
                    "spec.targetRef", f"{target.get('kind')} {mine_target} is already the target of canary {theirs}"
                )
            )
            continue
        if mine_target == f"{their_target}-primary" or their_target == f"{mine_target}-primary":
            problems.append(
                FieldError(
                    "spec.targetRef",
                    f"Deployment {mine_target} and canary {theirs}'s target {their_target}: one is the other's "
                    "primary, which Serin manages",
                )
            )
        if {mine_service, f"{mine_service}-primary", f"{mine_service}-canary"} & {
            their_service,
            f"{their_service}-primary",
            f"{their_service}-canary",
        }:
            problems.append(
                FieldError(
                    "spec.service.name",
                    f"the Services of {mine_service!r} would be those of canary {theirs} ({their_service!r}): "
                    "give this Canary another spec.service.name",
                )
            )
    return problems


# ---- the webhooks --------------------------------------------------------------------------


class Bootstraps:
    """Canaries to bootstrap once the API server has stored them, taken by one thread.

    Each is looked up every ``POLL_SECONDS`` until stored or until ``ADOPTION_WAIT_SECONDS``
    have passed; at most ``MAX_WAITING`` wait at once (past that the tick bootstraps them), so
    no number of reviews costs more than one thread and a bounded rate of lookups.
    """

    POLL_SECONDS = 0.2
    MAX_WAITING = 64

    def __init__(self, bootstrap: Callable[[str, str], bool]) -> None:
        self._bootstrap = bootstrap
        self._waiting: dict[tuple[str, str], float] = {}
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, namespace: str, name: str) -> None:
        with self._lock:
            if len(self._waiting) >= self.MAX_WAITING:
                LOG.warning("too many Canaries wait to be bootstrapped; the tick bootstraps %s/%s", namespace, name)
                return
            self._waiting[(namespace, name)] = time.monotonic() + ADOPTION_WAIT_SECONDS
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="serin-bootstrap", daemon=True)
                self._thread.start()
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._lock.wait()
                due = list(self._waiting.items())
            for key, deadline in due:
                done = True
                try:
                    done = self._bootstrap(*key) or time.monotonic() > deadline
                except Exception as error:  # the next tick bootstraps it
                    LOG.warning("could not bootstrap canary %s/%s yet: %s", *key, error)
                if done:
                    with self._lock:
                        self._waiting.pop(key, None)
            time.sleep(self.POLL_SECONDS)


class Admission:
    def __init__(
        self,
        store: KubeStore,
        reconciler: Reconciler,
        default_provider: str,
        own_username: Callable[[], str],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        acts: bool = True,
        scope: Scope = WHOLE_CLUSTER,
    ) -> None:
        self.store = store
        self.reconciler = reconciler
        self.default_provider = default_provider
        self.own_username = own_username
        self.clock = clock
        # Whether a review may make Serin write anything (only when the API server is known to
        # have sent it): without, the webhooks answer from the request and the tick does the rest.
        self.acts = acts
        # The namespaces served: a Canary may not name a template or alert provider elsewhere.
        self.scope = scope
        self._bootstraps = Bootstraps(self._bootstrap_stored)

    # -- Canaries --

    def mutate_canary(self, request: Mapping[str, Any]) -> Verdict:
        """Defaults, after the same checks as validation.

        The CRD's schema runs between the mutating and the validating webhooks and stops at its
        own errors; checking here as well lets one denial name every problem at once.
        """
        obj = request.get("object") or {}
        if request.get("operation") not in ("CREATE", "UPDATE"):
            return Verdict()
        canary, errors = self._check(request, strict=False)
        if errors:
            return deny(errors, _name(request))
        creates = request.get("operation") == "CREATE" and self.acts and not request.get("dryRun")
        if creates and canary is not None and self._name_is_free(canary):
            # Bootstrapped once stored, from the stored Canary: a review the validating webhook
            # (or another) then denies creates nothing.
            self._bootstraps.submit(canary.namespace, canary.name)
        return Verdict(patch=defaults_patch(obj, self.default_provider))

    def _name_is_free(self, canary: Canary) -> bool:
        """Whether no Canary has the name a CREATE asks for. One that has it (live, or being deleted)
        makes the API server answer AlreadyExists after the webhooks: a bootstrap by name would then
        act on that Canary for a request that was never its own, and undo the revert of one being
        deleted. Unknown (the API server did not answer) counts as taken: the tick bootstraps."""
        try:
            return self.store.get_canary(canary.namespace, canary.name) is None
        except KubeError as error:
            LOG.warning("could not look for canary %s before its bootstrap: %s", canary.key, error)
            return False

    def _check(self, request: Mapping[str, Any], strict: bool = True) -> tuple[Canary | None, list[FieldError]]:
        """The Canary in the request, and every problem it has (none: the Canary is usable).

        ``strict``: a lookup the API server does not answer is a problem (validation); otherwise it
        is skipped, since the validating webhook checks again (defaulting).
        """
        obj = request.get("object") or {}
        canary: Canary | None = None
        errors: list[FieldError] = []
        try:
            canary = parse_canary(obj, self.default_provider)
            errors.extend(
                problem
                for index, metric in enumerate(canary.analysis.metrics)
                if metric.is_builtin and (problem := _compare_problem(canary, index)) is not None
            )
        except InvalidCanary as invalid:
            errors.extend(invalid.errors)
        namespace = str(request.get("namespace") or _mapping(obj.get("metadata")).get("namespace") or "")
        try:
            errors.extend(self._cluster_problems(obj, request.get("oldObject"), namespace, canary))
        except KubeError as error:
            if strict:
                errors.append(FieldError("metadata", f"could not be checked against the cluster, try again: {error}"))
        return canary, errors

    def validate_canary(self, request: Mapping[str, Any]) -> Verdict:
        # A DELETE changes nothing here: a Canary with revertOnDeletion keeps its finalizer until
        # the tick has given the target its traffic back, from the Canary as stored.
        if request.get("operation") not in ("CREATE", "UPDATE"):
            return Verdict()
        canary, errors = self._check(request)
        if errors or canary is None:
            return deny(errors, _name(request))
        problems, notes = self._query_problems(canary)
        if problems:
            return deny(problems, _name(request))
        verdict = Verdict(warnings=[*canary.warnings, *notes])
        if request.get("operation") == "CREATE":
            verdict.warnings.extend(self._missing(canary))
        return verdict

    def _query_problems(self, canary: Canary) -> tuple[list[FieldError], list[str]]:
        """Inline queries Prometheus cannot parse (denied), and those it could not be asked about (warned)."""
        problems: list[FieldError] = []
        notes: list[str] = []
        if canary.metrics_server is not None:
            # The Canary's own backend is asked nothing at admission: its answer, or that it
            # answered at all, would tell whoever applies a Canary what that address holds.
            unchecked = [i for i, metric in enumerate(canary.analysis.metrics) if metric.query is not None]
            notes.extend(
                f"spec.analysis.metrics[{index}].query: not checked at admission, since spec.metricsServer names the "
                "Canary's own backend; the first analysed step checks it"
                for index in unchecked
            )
            return problems, notes
        for index, metric in enumerate(canary.analysis.metrics):
            if metric.query is None:
                continue
            path = f"spec.analysis.metrics[{index}].query"
            try:
                prometheus = self.reconciler.metrics_for(self.reconciler.prometheus(canary))
                error = prometheus.syntax_error(query_for(metric, canary))
            except SerinError as unavailable:
                notes.append(f"{path}: not checked, {unavailable}")
                continue
            if error:
                problems.append(FieldError(path, f"Prometheus cannot parse it: {error}"))
        return problems, notes

    def _cluster_problems(
        self, obj: Mapping[str, Any], old: Any, namespace: str, canary: Canary | None
    ) -> list[FieldError]:
        """What the cluster finds wrong: missing or unfit MetricTemplates (``canary``: the Canary as
        parsed, when it could be), another Canary of the same target, a target changed mid-release."""
        problems: list[FieldError] = []
        spec = _mapping(obj.get("spec"))
        for index, metric in enumerate(_items(_mapping(spec.get("analysis")).get("metrics"))):
            ref = _mapping(metric).get("templateRef")
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                ref_namespace = ref.get("namespace") or namespace
                if refusal := self.scope.refusal(str(ref_namespace)):
                    problems.append(
                        FieldError(
                            f"spec.analysis.metrics[{index}].templateRef",
                            f"MetricTemplate {ref_namespace}/{ref['name']}: {refusal}",
                        )
                    )
                    continue
                try:
                    template = self.store.get_metric_template(str(ref_namespace), ref["name"])
                    where = (str(ref_namespace), ref["name"])
                    if unshared := not_shared("MetricTemplate", where, template, namespace):
                        problems.append(FieldError(f"spec.analysis.metrics[{index}].templateRef", unshared))
                    elif canary is not None and (problem := _compare_problem(canary, index, template)) is not None:
                        problems.append(problem)
                except NotFound:
                    problems.append(
                        FieldError(
                            f"spec.analysis.metrics[{index}].templateRef",
                            f"MetricTemplate {ref_namespace}/{ref['name']} does not exist",
                        )
                    )
        for index, alert in enumerate(_items(_mapping(spec.get("analysis")).get("alerts"))):
            ref = _mapping(_mapping(alert).get("providerRef"))
            ref_namespace = ref.get("namespace")
            if isinstance(ref.get("name"), str) and isinstance(ref_namespace, str) and ref_namespace != namespace:
                if refusal := self.scope.refusal(ref_namespace):
                    path = f"spec.analysis.alerts[{index}].providerRef"
                    problems.append(FieldError(path, f"AlertProvider {ref_namespace}/{ref['name']}: {refusal}"))
                    continue
                provider = self.store.get("AlertProvider", ref_namespace, ref["name"])
                where = (ref_namespace, ref["name"])
                if provider is not None and (unshared := not_shared("AlertProvider", where, provider, namespace)):
                    problems.append(FieldError(f"spec.analysis.alerts[{index}].providerRef", unshared))
        target = _mapping(spec.get("targetRef"))
        if isinstance(target.get("name"), str) and target["name"]:
            name = _mapping(obj.get("metadata")).get("name")
            others = [other for other in self._could_clash(namespace, spec) if other["metadata"]["name"] != name]
            problems.extend(_conflicts_with_others(target, spec, others))
        if isinstance(old, dict):
            old_status = CanaryStatus.from_dict(_mapping(old.get("status")))
            old_target = _mapping(_mapping(old.get("spec")).get("targetRef"))
            if old_status.phase in ACTIVE_PHASES and old_target != target:
                problems.append(
                    FieldError(
                        "spec.targetRef",
                        f"cannot change while the canary is {old_status.phase.value if old_status.phase else ''}; "
                        "wait for it to finish or roll back",
                    )
                )
        return problems

    def _could_clash(self, namespace: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Canaries of the namespace that could share a target or Services with ``spec``'s: all of
        them in one request when they are few, else those asked for by field selector, a few
        requests each answered with those Canaries only, however many the namespace holds (a list
        of them all would grow with every one)."""
        few, more = self.store.first_canaries(namespace, FEW_CANARIES)
        if not more:
            return few
        found: dict[str, dict[str, Any]] = {}
        try:
            for field, value in clash_selectors(spec):
                for other in self.store.canaries_with(namespace, field, value):
                    found[other["metadata"]["name"]] = other
        except KubeRejected:
            # A CRD applied before its selectableFields (an upgrade that has not applied the new
            # CRDs yet): the list of them all still answers.
            return self.store.list_canaries(namespace)
        return list(found.values())

    def _missing(self, canary: Canary) -> list[str]:
        """What the Canary names that does not exist yet, as warnings: it starts once it does."""
        if self.store.get(canary.target_ref.kind, canary.namespace, canary.target_ref.name) is None:
            return [f"Deployment {canary.target_ref.name} not found: the canary starts once it exists"]
        ref = canary.autoscaler_ref
        if ref is not None and self.store.get(ref.kind, canary.namespace, ref.name) is None:
            return [f"{ref.kind} {ref.name} not found: the primary gets its copy, {ref.primary_name}, once it exists"]
        return []

    def _bootstrap_stored(self, namespace: str, name: str) -> bool:
        """Primary, Services and routing for the Canary as stored (owned by it from the start), if
        it is stored yet: True when done with it, False to look again."""
        stored = self.store.get_canary(namespace, name)
        if stored is None:
            return False
        if _mapping(stored.get("metadata")).get("deletionTimestamp"):
            return True  # stored, then deleted at once: the tick gives its target back
        canary = parse_canary(stored, self.default_provider)
        target = self.store.get(canary.target_ref.kind, namespace, canary.target_ref.name)
        if target is None:
            return True  # the tick starts it once the target exists
        primary = self.store.get(canary.target_ref.kind, namespace, canary.primary_name)
        status = CanaryStatus.from_dict(stored.get("status"))
        self.reconciler.objects.ensure(
            canary,
            target,
            primary,
            desired_split(canary, status),
            status.last_promoted_spec,
            session_cookie(canary, status),
        )
        return True

    # -- workloads --

    def mutate_workload(self, request: Mapping[str, Any]) -> Verdict:
        """A target's new template is a new revision; an unchanged one leaves an idle target at zero."""
        if not_a_target(request):
            return Verdict()
        new, old = _mapping(request.get("object")), request.get("oldObject")
        assert isinstance(old, Mapping)
        canary_name = _mapping(_mapping(new.get("metadata")).get("labels"))[TARGET_LABEL]
        if not DNS_SUBDOMAIN.fullmatch(str(canary_name)):
            return Verdict()  # not a Canary's name: not a target of Serin's
        claims = changed_claims(old, new) if new.get("kind") == "StatefulSet" else []
        if claims:
            # The API server refuses this too, after the mutating webhooks; said here with why it
            # matters for the release and what to do instead.
            name = _mapping(new.get("metadata")).get("name")
            return Verdict(
                allowed=False,
                code=422,
                message=(
                    f"StatefulSet {name} is the target of canary {canary_name}: its volumeClaimTemplates cannot "
                    f"change ({', '.join(claims)}), and {name}-primary could not be given them either; to change "
                    f"them, delete the Canary, recreate {name} with them, and create the Canary again"
                ),
            )
        if template_hash(new) == template_hash(old):
            # Decided from the request alone: an update that is not a revision costs no API request.
            username = _mapping(request.get("userInfo")).get("username")
            # Serin itself scales the target up (a release the tick started, a deleted Canary).
            if _at_zero(old) and not _at_zero(new) and username != self.own_username():
                name = _mapping(new.get("metadata")).get("name")
                kind = str(new.get("kind") or "Deployment")
                if not self._is_target(request, kind, str(name), str(canary_name)):
                    return Verdict()  # a former target (its Canary gone, or targeting another): free
                idle = "runs on no node" if kind == "DaemonSet" else "stays at 0 replicas"
                return Verdict(
                    patch=_scale_patch(new, 0),
                    warnings=[
                        f"{kind} {name} is the target of canary {canary_name}: it {idle} between releases (the "
                        "primary serves); change its pod template to release"
                    ],
                )
            return Verdict()
        return self._new_revision(request, new, str(canary_name))

    def _is_target(self, request: Mapping[str, Any], kind: str, name: str, canary_name: str) -> bool:
        """Whether the Canary the workload's label names exists and targets it (the label stays on
        a workload whose Canary was deleted)."""
        namespace = str(
            request.get("namespace") or _mapping(_mapping(request.get("object")).get("metadata")).get("namespace") or ""
        )
        if not DNS_LABEL.fullmatch(namespace):
            return False
        raw = self.store.get_canary(namespace, canary_name)
        target = _mapping(_mapping(_mapping(raw).get("spec")).get("targetRef"))
        return raw is not None and (str(target.get("kind") or "Deployment"), target.get("name")) == (kind, name)

    def _new_revision(self, request: Mapping[str, Any], new: Mapping[str, Any], canary_name: str) -> Verdict:
        namespace = str(request.get("namespace") or _mapping(new.get("metadata")).get("namespace") or "")
        if not DNS_LABEL.fullmatch(namespace):
            return Verdict()
        if not self.acts:
            return Verdict()  # the tick detects the revision
        raw = self.store.get_canary(namespace, canary_name)
        if raw is None:
            return Verdict()
        try:
            canary = parse_canary(raw, self.default_provider)
        except InvalidCanary:
            return Verdict()
        status = CanaryStatus.from_dict(raw.get("status"))
        now = self.clock()
        if status.phase in (None, Phase.INITIALIZING) or canary.suspend:
            return Verdict()
        if claim_holds(status, now):
            return Verdict()  # a tick is taking a step of this Canary: it sees the revision next
        if status.pending is not None:
            return Verdict()  # news of a step nobody sent: the next tick sends them, then sees the revision
        primary = workload_state(self.store.get(canary.target_ref.kind, namespace, canary.primary_name))
        target = workload_state(dict(new))
        assert target is not None
        # Decided from the request and the status alone (the routes are taken to be as the status
        # says): the tick observes everything and repairs what differs.
        observation = Observation(
            target=target,
            primary=primary,
            config_hashes=status.tracked_configs,
            routes=desired_split(canary, status),
        )
        decision = decide(canary, status, observation, now, force=True)
        scale = next((a for a in decision.actions if isinstance(a, ScaleTarget)), None)
        if decision.needs and not request.get("dryRun"):
            # Gates (confirm-rollout) are the tick's to ask: a webhook must answer within seconds.
            # Until the tick does, the Canary says a release is coming (kstatus's Reconciling), so
            # that nobody waiting on Ready takes the previous release's for this one's.
            self._mark_new_revision(canary, status, now)
            return Verdict()
        if decision.needs or scale is None or decision.status.phase is not Phase.PROGRESSING:
            return Verdict()
        patch = _scale_patch(new, scale.replicas)
        if request.get("dryRun"):
            return Verdict(patch=patch)
        # Due at once: the next tick starts the analysis instead of waiting one more interval.
        pending = pending_of(decision, now, canary)
        # Another webhook may still refuse this update: how to go back is recorded with it.
        unconfirmed = Unconfirmed(target.template_hash, status.phase, status.last_applied_spec)
        # Claimed until sent, as a tick does: a racing tick leaves the news to this webhook.
        claim = now + datetime.timedelta(seconds=CLAIM_SECONDS) if pending is not None else None
        # Claimed to send, not to ask hooks: no step id of a tick's is taken over.
        recorded = decision.status.replace(
            last_analysis_time=None, claimed_until=claim, claimed_step="", pending=pending, unconfirmed=unconfirmed
        )
        try:
            # Recorded first, as a tick does: a webhook that dies after this leaves nothing undone
            # that the next tick does not complete.
            version = self.store.write_canary_status(
                namespace, canary.name, canary.resource_version, recorded.to_dict()
            )
            for action in decision.actions:
                if isinstance(action, SetRoutes):
                    self.reconciler.router_for(canary.provider).set_routes(
                        canary,
                        action.primary_weight,
                        action.canary_weight,
                        session_cookie(canary, recorded),
                        action.mirror,
                    )
        except Conflict:
            return Verdict(patch=patch)
        except Exception as error:  # the tick detects the revision by itself
            return Verdict(warnings=[f"canary {canary_name} not updated yet ({error}); the next tick will"])
        if pending is not None:
            self.reconciler.deliver(canary, pending, recorded, version, now)
        return Verdict(patch=patch)

    def _mark_new_revision(self, canary: Canary, status: CanaryStatus, now: datetime.datetime) -> None:
        marked = status.reconciling("NewRevision", "New revision detected, waiting for its gates.", now)
        if marked == status:
            return
        try:
            self.store.write_canary_status(canary.namespace, canary.name, canary.resource_version, marked.to_dict())
        except Exception as error:  # the tick sees the revision all the same
            LOG.info("canary %s/%s: new revision not marked (%s)", canary.namespace, canary.name, error)

    def validate_workload(self, request: Mapping[str, Any]) -> Verdict:
        """Only Serin changes a primary's pod template; scaling it stays allowed (HPA, kubectl scale)."""
        if not_a_primary(request):
            return Verdict()
        new, old = _mapping(request.get("object")), request.get("oldObject")
        assert isinstance(old, Mapping)
        if template_hash(new) == template_hash(old):
            return Verdict()
        username = _mapping(request.get("userInfo")).get("username", "")
        if username == self.own_username():
            return Verdict()
        name = str(_mapping(new.get("metadata")).get("name", ""))
        target = name.removesuffix("-primary")
        kind = str(new.get("kind") or "Deployment")
        return Verdict(
            allowed=False,
            code=403,
            message=(
                f"{kind} {name} is managed by Serin and serves the promoted release: edit {kind} {target} "
                "instead; its new revision will be analysed and promoted into the primary"
            ),
        )


def not_a_target(request: Mapping[str, Any]) -> bool:
    """Whether the review is of a workload the mutating webhook leaves alone: anything but an
    update of a workload labelled as a Canary's target. Decided from the review alone, before
    anything else: most workload reviews are such, and must cost no more than an answer."""
    labels = _mapping(_mapping(_mapping(request.get("object")).get("metadata")).get("labels"))
    return (
        request.get("operation") != "UPDATE"
        or not isinstance(request.get("oldObject"), Mapping)
        or (not labels.get(TARGET_LABEL))
    )


def not_a_primary(request: Mapping[str, Any]) -> bool:
    """Whether the review is of a workload the validating webhook leaves alone: anything but an
    update of a primary Serin manages. Either side's label counts: an update that drops it along
    with a template change is still a change of Serin's primary."""
    old = request.get("oldObject")
    if request.get("operation") != "UPDATE" or not isinstance(old, Mapping):
        return True
    return not any(
        _mapping(_mapping(side.get("metadata")).get("labels")).get(MANAGED_BY_LABEL) == MANAGED_BY
        for side in (_mapping(request.get("object")), old)
    )


def _compare_problem(canary: Canary, index: int, template: Mapping[str, Any] | None = None) -> FieldError | None:
    """Why metric ``index`` cannot compare the canary with the primary (None: it can, or does not
    compare): its query, the builtin's or its MetricTemplate's (a Prometheus one), must select the
    workload by ``{{ target }}``."""
    metric = canary.analysis.metrics[index]
    if metric.compare is None:
        return None
    path = f"spec.analysis.metrics[{index}].compare"
    query = None
    if template is not None:
        spec = _mapping(template.get("spec"))
        kind = str(_mapping(spec.get("provider")).get("type") or "prometheus")
        if kind != "prometheus":
            ref = metric.template_ref
            name = f"{ref.namespace or canary.namespace}/{ref.name}" if ref else ""
            return FieldError(
                path, f"MetricTemplate {name} queries {kind}: comparing with the primary needs Prometheus"
            )
        query = str(spec.get("query") or "")
    try:
        problem = compare_problem(metric, canary, query)
    except SerinError as unknown:
        problem = str(unknown)
    return FieldError(path, problem) if problem else None
