"""Count one client's API requests, split by verb, without an audit log.

The API server's Priority and Fairness filter counts every request it lets through, per
FlowSchema: ``apiserver_flowcontrol_dispatched_requests_total{flow_schema, priority_level}`` (the
metric has no verb label). So a client gets a set of FlowSchemas of its own, one per verb
(``<prefix>-get``, ``<prefix>-list``, ...) and one for whatever else it sends (``<prefix>-other``:
other verbs such as deletecollection, and non-resource URLs such as ``/version`` and discovery), with
low ``matchingPrecedence`` values so that they win over the default schemas (``service-accounts`` is
9000, ``global-default`` 9900). They point at an existing PriorityLevelConfiguration; the default,
``workload-low``, is where a service account's requests go anyway, so the client is throttled as it
would be without them.

Requests are counted when they are dispatched (a WATCH once, when it starts), before authorization:
a request the API server refuses with 403 counts too. A request rejected by Priority and Fairness
itself (429) is not dispatched; it is counted in ``apiserver_flowcontrol_rejected_requests_total``,
read here as ``Counts.rejected``.

Usage::

    schemas = FlowSchemaSet("bench-flagger", service_account("flagger-system", "flagger"))
    create_flow_schemas(kubectl, schemas)        # waits until the API server uses them
    before = read_counts(kubectl, schemas)
    ...
    spent = read_counts(kubectl, schemas) - before   # spent.by_verb["get"], spent.total

``kubectl`` is the command prefix of an identity that may manage FlowSchemas and read ``/metrics``
(``[kubectl_binary, "--kubeconfig=<admin kubeconfig>"]``); the admin identity of the local
cluster is in ``system:masters``, whose requests go to the ``exempt`` schema and are never counted
here.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from localcluster.processes import child_environment

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
OTHER = "other"
DEFAULT_PRIORITY_LEVEL = "workload-low"
# Below every default FlowSchema a service account or an ordinary user could fall into; above the
# ones for exempt users, probes, leader election and nodes (which match other subjects anyway).
DEFAULT_PRECEDENCE = 300
ACTIVE_TIMEOUT_SECONDS = 60.0
KUBECTL_TIMEOUT_SECONDS = 120.0

_SAMPLE = re.compile(r"^(apiserver_flowcontrol_(?:dispatched|rejected)_requests_total)\{([^}]*)\}\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class ApiCountError(RuntimeError):
    """A FlowSchema could not be created, did not take effect, or /metrics could not be read."""


def service_account(namespace: str, name: str) -> dict[str, Any]:
    """The FlowSchema subject for a service account."""
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


def user(name: str) -> dict[str, Any]:
    """The FlowSchema subject for a user (a client certificate's common name, a token's user)."""
    return {"kind": "User", "user": {"name": name}}


def impersonation_name(subject: dict[str, Any]) -> str:
    """The user name a request must carry to match ``subject`` (for ``kubectl --as``)."""
    if subject["kind"] == "ServiceAccount":
        account = subject["serviceAccount"]
        return f"system:serviceaccount:{account['namespace']}:{account['name']}"
    if subject["kind"] == "User":
        return str(subject["user"]["name"])
    raise ValueError(f"cannot impersonate a {subject['kind']} subject")


@dataclass(frozen=True)
class FlowSchemaSet:
    """The FlowSchemas that count one client's requests, one per verb and one for the rest."""

    prefix: str
    subject: dict[str, Any]
    priority_level: str = DEFAULT_PRIORITY_LEVEL
    precedence: int = DEFAULT_PRECEDENCE
    verbs: tuple[str, ...] = VERBS

    def name(self, verb: str) -> str:
        return f"{self.prefix}-{verb}"

    @property
    def names(self) -> dict[str, str]:
        """FlowSchema name -> the verb (or ``other``) it counts."""
        return {self.name(verb): verb for verb in (*self.verbs, OTHER)}

    def manifests(self) -> list[dict[str, Any]]:
        def schema(verb: str, precedence: int, rule: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": self.name(verb), "labels": {"serin.dev/apicount": self.prefix}},
                "spec": {
                    "priorityLevelConfiguration": {"name": self.priority_level},
                    "matchingPrecedence": precedence,
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [{"subjects": [self.subject], **rule}],
                },
            }

        def resources(verbs: list[str]) -> dict[str, Any]:
            return {
                "resourceRules": [
                    {"verbs": verbs, "apiGroups": ["*"], "resources": ["*"], "clusterScope": True, "namespaces": ["*"]}
                ]
            }

        items = [schema(verb, self.precedence + index, resources([verb])) for index, verb in enumerate(self.verbs)]
        rest = resources(["*"]) | {"nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}
        items.append(schema(OTHER, self.precedence + len(self.verbs), rest))
        return items


@dataclass(frozen=True)
class Counts:
    """Requests dispatched per verb (``other``: the rest), and requests rejected with 429."""

    by_verb: dict[str, float] = field(default_factory=dict)
    rejected: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.by_verb.values())

    def __sub__(self, earlier: Counts) -> Counts:
        verbs = set(self.by_verb) | set(earlier.by_verb)
        return Counts(
            {verb: self.by_verb.get(verb, 0.0) - earlier.by_verb.get(verb, 0.0) for verb in sorted(verbs)},
            self.rejected - earlier.rejected,
        )


def _kubectl(kubectl: Sequence[str], *args: str, input_text: str | None = None) -> str:
    try:
        done = subprocess.run(
            [*kubectl, *args],
            input=input_text,
            capture_output=True,
            text=True,
            env=child_environment(),
            timeout=KUBECTL_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        raise ApiCountError(f"kubectl {' '.join(args)}: no answer in {KUBECTL_TIMEOUT_SECONDS:.0f}s") from error
    if done.returncode != 0:
        raise ApiCountError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def parse_counts(metrics_text: str, schemas: FlowSchemaSet) -> Counts:
    """The counters of ``schemas`` in the API server's /metrics text (summed over priority levels)."""
    names = schemas.names
    by_verb = dict.fromkeys(names.values(), 0.0)
    rejected = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_flowcontrol_"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        verb = names.get(labels.get("flow_schema", ""))
        if verb is None:
            continue
        if match.group(1).startswith("apiserver_flowcontrol_dispatched"):
            by_verb[verb] += float(match.group(3))
        else:
            rejected += float(match.group(3))
    return Counts(by_verb, rejected)


def read_counts(kubectl: Sequence[str], schemas: FlowSchemaSet) -> Counts:
    """The client's requests so far (counters start when the FlowSchemas do; subtract two readings)."""
    return parse_counts(_kubectl(kubectl, "get", "--raw", "/metrics"), schemas)


def create_flow_schemas(kubectl: Sequence[str], schemas: FlowSchemaSet, probe: bool = True) -> None:
    """Create (or update) the FlowSchemas and wait until the API server classifies requests with them.

    With ``probe``, sends ``GET /version`` as the subject (impersonated, so ``kubectl`` must be allowed
    to impersonate it) until ``<prefix>-other`` counts it; without, only waits until every schema has
    its ``Dangling`` condition (written once the API server has taken the new configuration in).
    """
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": schemas.manifests()})
    _kubectl(kubectl, "apply", "--server-side", "--field-manager=serin-apicount", "-f", "-", input_text=document)
    deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
    pending = set(schemas.names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            status = json.loads(_kubectl(kubectl, "get", "flowschema", name, "-o", "json")).get("status") or {}
            dangling = [c for c in status.get("conditions") or [] if c.get("type") == "Dangling"]
            if dangling and dangling[0].get("status") == "True":
                raise ApiCountError(f"FlowSchema {name}: no PriorityLevelConfiguration {schemas.priority_level}")
            if dangling:
                pending.discard(name)
        if pending:
            time.sleep(0.5)
    if pending:
        raise ApiCountError(f"FlowSchemas {sorted(pending)} got no status in {ACTIVE_TIMEOUT_SECONDS:.0f}s")
    if not probe:
        return
    as_subject = f"--as={impersonation_name(schemas.subject)}"
    before = read_counts(kubectl, schemas).by_verb[OTHER]
    while time.monotonic() < deadline:
        _kubectl(kubectl, as_subject, "get", "--raw", "/version")
        if read_counts(kubectl, schemas).by_verb[OTHER] > before:
            return
        time.sleep(0.5)
    raise ApiCountError(f"requests as {as_subject[5:]} not counted by {schemas.name(OTHER)} after the FlowSchemas")


def delete_flow_schemas(kubectl: Sequence[str], schemas: FlowSchemaSet) -> None:
    """Remove the FlowSchemas (best effort: a cluster that is going away anyway may not answer)."""
    with contextlib.suppress(ApiCountError):
        _kubectl(kubectl, "delete", "flowschema", "--ignore-not-found", "--wait=false", *schemas.names)
