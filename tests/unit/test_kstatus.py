"""Serin's Canary status as Flux reads it.

Flux's kustomize-controller decides `wait` and `healthChecks` with kstatus (its fork of
sigs.k8s.io/cli-utils). localcluster/kstatus runs kstatus's own ``Compute`` on each object given, so
these tests check what Flux sees, not a reading of kstatus's rules. The reader is built by
``python -m localcluster build``; without it the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.build import CLI_UTILS_MODULE, CLI_UTILS_VERSION, KSTATUS_SOURCE, cached_kstatus
from localcluster.testing import in_ci
from serin.model import FINALIZER, parse_canary
from serin.status import CanaryStatus, Phase

REPO = Path(__file__).resolve().parents[2]
FLUX_EXAMPLE = REPO / "examples" / "flux" / "kustomization.yaml"
CANARY_CRD = REPO / "k8s" / "crds" / "canaries.yaml"

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)
GENERATION = 3


def kstatus_binary() -> Path:
    found = cached_kstatus()
    if found is None:
        message = "kstatus reader not built: run `python -m localcluster build`"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def read_with_kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus's ``{"status", "message"}`` for each object, in one run of the reader."""
    ran = subprocess.run(
        [str(kstatus_binary())], input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, f"kstatus reader failed ({ran.returncode}):\n{ran.stdout}{ran.stderr}"
    readings = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(readings) == len(objects)
    return readings


def canary(status: dict[str, Any] | None, generation: int = GENERATION, **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "generation": generation, **metadata},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def status_of(*phases: Phase, observed: int = GENERATION) -> dict[str, Any]:
    """The stored status after moving through ``phases``, a few minutes apart, at generation ``observed``."""
    status = CanaryStatus(observed_generation=observed)
    for index, phase in enumerate(phases):
        status = status.with_phase(phase, START + datetime.timedelta(minutes=5 * index))
    return status.to_dict()


def crd_status_default() -> dict[str, Any]:
    """What the API server fills in for a Canary stored without a status: the CRD's defaults."""
    crd = yaml.safe_load(CANARY_CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status: dict[str, Any] = dict(schema["default"])
    for name, field in schema["properties"].items():
        if "default" in field:
            status[name] = field["default"]
    return status


NOT_OBSERVED = crd_status_default()
IN_PROGRESS = "InProgress"
# kstatus's own messages; otherwise it passes on the Reconciling or Stalled condition's, which are Flagger's.
READY = "Resource is Ready"

# (case, Canary, kstatus's status, its message)
CANARIES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "Initializing",
        canary(status_of(Phase.INITIALIZING)),
        IN_PROGRESS,
        "New Deployment detected, starting initialization.",
    ),
    ("Initialized", canary(status_of(Phase.INITIALIZING, Phase.INITIALIZED)), "Current", READY),
    ("Waiting", canary(status_of(Phase.SUCCEEDED, Phase.WAITING)), IN_PROGRESS, "Waiting for approval."),
    (
        "Progressing",
        canary(status_of(Phase.SUCCEEDED, Phase.PROGRESSING)),
        IN_PROGRESS,
        "New revision detected, progressing canary analysis.",
    ),
    (
        "WaitingPromotion",
        canary(status_of(Phase.PROGRESSING, Phase.WAITING_PROMOTION)),
        IN_PROGRESS,
        "Waiting for approval.",
    ),
    (
        "Promoting",
        canary(status_of(Phase.PROGRESSING, Phase.PROMOTING)),
        IN_PROGRESS,
        "Canary analysis completed, starting primary rolling update.",
    ),
    (
        "Finalising",
        canary(status_of(Phase.PROMOTING, Phase.FINALISING)),
        IN_PROGRESS,
        "Canary analysis completed, routing all traffic to primary.",
    ),
    # Reconciling, true while the release ran, is gone, not left behind False or True.
    ("Succeeded", canary(status_of(Phase.PROGRESSING, Phase.FINALISING, Phase.SUCCEEDED)), "Current", READY),
    (
        "Failed",
        canary(status_of(Phase.PROGRESSING, Phase.FAILED)),
        "Failed",
        "Canary analysis failed, Deployment scaled to zero.",
    ),
    # A new revision after a rollback: Stalled is gone, else kstatus would still say Failed.
    (
        "Progressing after Failed",
        canary(status_of(Phase.FAILED, Phase.PROGRESSING)),
        IN_PROGRESS,
        "New revision detected, progressing canary analysis.",
    ),
    # Flagger's phases of a deletion, which Serin does not enter (a Canary being deleted reads
    # Terminating from its deletionTimestamp, below).
    (
        "Terminating",
        canary(status_of(Phase.SUCCEEDED, Phase.TERMINATING)),
        IN_PROGRESS,
        "Canary is being deleted, handing traffic back to the Deployment.",
    ),
    (
        "Terminated",
        canary(status_of(Phase.TERMINATING, Phase.TERMINATED)),
        IN_PROGRESS,
        "Canary deleted, traffic handed back to the Deployment.",
    ),
    # Not yet seen by Serin: the API server serves the CRD's default status, which no tick observed.
    (
        "no status",
        canary(NOT_OBSERVED),
        IN_PROGRESS,
        f"Canary generation is {GENERATION}, but latest observed generation is 0",
    ),
    # Without that default kstatus would take it for done, as it does any object with no conditions.
    ("no status at all", canary(None), "Current", "Resource is current"),
    # A spec change Serin has not seen yet: the conditions are those of the previous generation.
    (
        "Succeeded, generation not observed",
        canary(status_of(Phase.SUCCEEDED), generation=GENERATION + 1),
        IN_PROGRESS,
        f"Canary generation is {GENERATION + 1}, but latest observed generation is {GENERATION}",
    ),
    (
        "being deleted",
        canary(status_of(Phase.SUCCEEDED), deletionTimestamp="2026-03-02T10:00:00Z", finalizers=[FINALIZER]),
        "Terminating",
        "Resource scheduled for deletion",
    ),
]


@pytest.fixture(scope="module")
def canary_readings() -> dict[str, dict[str, str]]:
    readings = read_with_kstatus([obj for _, obj, _, _ in CANARIES])
    return {case: reading for (case, _, _, _), reading in zip(CANARIES, readings, strict=True)}


def test_every_phase_is_read() -> None:
    assert {case for case, _, _, _ in CANARIES} >= {phase.value for phase in Phase}


@pytest.mark.parametrize(
    ("case", "expected", "message"), [(c, s, m) for c, _, s, m in CANARIES], ids=[c for c, *_ in CANARIES]
)
def test_kstatus_reads_the_canary(
    canary_readings: dict[str, dict[str, str]], case: str, expected: str, message: str
) -> None:
    assert canary_readings[case] == {"status": expected, "message": message}


def deployment(generation: int, observed: int, updated: int, progressing: tuple[str, str]) -> dict[str, Any]:
    """A Deployment of two replicas, ``updated`` of them of its current template."""
    status, reason = progressing
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 600},
        "status": {
            "observedGeneration": observed,
            "replicas": 2,
            "updatedReplicas": updated,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": status, "reason": reason},
            ],
        },
    }


def test_a_deployment_is_read_by_kstatus_rules_for_deployments() -> None:
    """A built-in kind, read by kstatus's rules for Deployments (replica counts, the progress
    deadline): messages that only kstatus itself gives, so the reader runs the real thing."""
    readings = read_with_kstatus(
        [
            deployment(2, 2, 2, ("True", "NewReplicaSetAvailable")),
            deployment(2, 2, 1, ("True", "ReplicaSetUpdated")),
            deployment(3, 2, 2, ("True", "NewReplicaSetAvailable")),
            deployment(2, 2, 1, ("False", "ProgressDeadlineExceeded")),
        ]
    )
    assert readings == [
        {"status": "Current", "message": "Deployment is available. Replicas: 2"},
        {"status": IN_PROGRESS, "message": "Updated: 1/2"},
        {"status": IN_PROGRESS, "message": "Deployment generation is 3, but latest observed generation is 2"},
        {"status": "Failed", "message": "Progress deadline exceeded"},
    ]


def test_an_object_kstatus_cannot_read_fails_the_run() -> None:
    binary = kstatus_binary()
    ran = subprocess.run([str(binary)], input='[{"kind": "Canary"}, 1]', capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    first, second = (json.loads(line) for line in ran.stdout.splitlines())
    assert first == {"status": "Current", "message": "Resource is current"}
    assert second["error"].startswith("object 1: ")


def test_the_reader_is_built_with_the_cli_utils_named_in_build() -> None:
    """The build's folder is named after CLI_UTILS_VERSION: go.mod must require just that."""
    go_mod = (KSTATUS_SOURCE / "go.mod").read_text()
    assert re.search(rf"^\s*{re.escape(CLI_UTILS_MODULE)} {re.escape(CLI_UTILS_VERSION)}$", go_mod, re.M)
    assert f"{CLI_UTILS_MODULE} {CLI_UTILS_VERSION} h1:" in (KSTATUS_SOURCE / "go.sum").read_text()


# What Flux's API says of a Kustomization (kustomize.toolkit.fluxcd.io/v1, KustomizationSpec).
KUSTOMIZATION_FIELDS = {
    "commonMetadata", "dependsOn", "decryption", "interval", "retryInterval", "kubeConfig", "path", "postBuild",
    "prune", "deletionPolicy", "healthChecks", "namePrefix", "nameSuffix", "patches", "images",
    "serviceAccountName", "sourceRef", "suspend", "targetNamespace", "timeout", "force", "wait", "buildMetadata",
    "components", "ignoreMissingComponents", "healthCheckExprs", "ignore",
}  # fmt: skip
KUSTOMIZATION_REQUIRED = {"interval", "prune", "sourceRef"}
# A NamespacedObjectKindReference, the type of each health check.
OBJECT_REFERENCE_FIELDS = {"apiVersion", "kind", "name", "namespace"}
FLUX_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")


def flux_example() -> dict[tuple[str, str], dict[str, Any]]:
    documents = [document for document in yaml.safe_load_all(FLUX_EXAMPLE.read_text()) if document]
    return {(document["apiVersion"], document["kind"]): document for document in documents}


def test_the_flux_example_waits_for_its_canary() -> None:
    example = flux_example()
    kustomization = example["kustomize.toolkit.fluxcd.io/v1", "Kustomization"]
    spec = kustomization["spec"]
    assert set(spec) <= KUSTOMIZATION_FIELDS
    assert set(spec) >= KUSTOMIZATION_REQUIRED | {"timeout"}
    for duration in ("interval", "retryInterval", "timeout"):
        assert FLUX_DURATION.match(spec[duration]), duration
    # With wait: true Flux ignores healthChecks; this example names the Canary instead.
    assert not spec.get("wait")
    source = example["source.toolkit.fluxcd.io/v1", "GitRepository"]["metadata"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["name"]}
    assert source["namespace"] == kustomization["metadata"]["namespace"]

    crd = yaml.safe_load(CANARY_CRD.read_text())["spec"]
    served = [version["name"] for version in crd["versions"] if version["served"]]
    assert all(set(check) == OBJECT_REFERENCE_FIELDS for check in spec["healthChecks"])
    canaries = [check for check in spec["healthChecks"] if check["kind"] == crd["names"]["kind"]]
    assert canaries
    for check in canaries:
        # Flux takes a missing apiVersion for apps/v1, and a missing namespace for none.
        group, _, version = check["apiVersion"].partition("/")
        assert (group, version in served) == (crd["group"], True)
        assert check["namespace"]


def test_the_flux_example_names_the_canary_of_the_app_it_applies() -> None:
    """The app's manifests are examples/podinfo.yaml's: the health checks name that Canary and its
    primary, and the replicas Flux leaves alone are its target's."""
    documents = list(yaml.safe_load_all((REPO / "examples" / "podinfo.yaml").read_text()))
    app = next(document for document in documents if document["kind"] == "Canary")
    target = app["spec"]["targetRef"]
    spec = flux_example()["kustomize.toolkit.fluxcd.io/v1", "Kustomization"]["spec"]
    namespace = app["metadata"]["namespace"]
    assert spec["healthChecks"] == [
        {"apiVersion": app["apiVersion"], "kind": "Canary", "name": app["metadata"]["name"], "namespace": namespace},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": parse_canary(app).primary_name, "namespace": namespace},
    ]
    (rule,) = spec["ignore"]
    assert rule["paths"] == ["/spec/replicas"]
    assert rule["target"] == {
        "group": target["apiVersion"].partition("/")[0],
        "kind": target["kind"],
        "name": target["name"],
        "namespace": namespace,
    }
