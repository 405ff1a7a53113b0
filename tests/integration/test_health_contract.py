"""What GitOps tools and CI pipelines wait on: kstatus's conditions, read by ``kubectl wait`` on the
real API server, with the webhooks on as installed."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from localcluster import processes
from localcluster.build import cached_kstatus
from localcluster.testing import ClusterHandle, in_ci
from tests.integration.helpers import (
    WEIGHTED,
    HookServer,
    SerinServer,
    canary,
    canary_status,
    drive,
    initialized,
    release_errors,
    set_image,
    tick,
)

pytestmark = pytest.mark.integration


def kubectl_wait(cluster: ClusterHandle, namespace: str, condition: str, timeout: str) -> subprocess.Popen[str]:
    """``kubectl wait --for=condition=...`` on the Canary, running beside the test."""
    return subprocess.Popen(
        [
            str(cluster.kubectl_binary),
            f"--kubeconfig={cluster.kubeconfig}",
            "wait",
            f"--for=condition={condition}",
            "canaries.serin.dev/podinfo",
            "-n",
            namespace,
            f"--timeout={timeout}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=processes.child_environment(),
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def test_kubectl_wait_for_ready_returns_when_the_new_revision_is_promoted(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    assert conditions(canary_status(local_cluster, namespace))["Ready"] == ("True", "Initialized")
    set_image(local_cluster, namespace, "6.0.1")
    # The Deployment webhook moved the Canary on as the update was stored: a wait started right
    # after `kubectl set image` returns is not fooled by the previous release's Ready.
    assert conditions(canary_status(local_cluster, namespace)) == {
        "Promoted": ("Unknown", "Progressing"),
        "Ready": ("False", "Progressing"),
        "Reconciling": ("True", "Progressing"),
    }
    waiting = kubectl_wait(local_cluster, namespace, "Ready", "180s")
    try:
        status = drive(local_cluster, serin_server, token, namespace, "Promoting")
        assert waiting.poll() is None, "kubectl wait returned before the promotion finished"
        status = drive(local_cluster, serin_server, token, namespace, "Succeeded")
        assert waiting.wait(timeout=30) == 0, waiting.communicate()
        assert waiting.communicate()[0].strip() == "canary.serin.dev/podinfo condition met"
    finally:
        waiting.kill()
    assert conditions(status) == {"Promoted": ("True", "Succeeded"), "Ready": ("True", "Succeeded")}
    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)
    generation = stored["metadata"]["generation"]
    assert [c.get("observedGeneration") for c in status["conditions"]] == [None, generation]


def test_a_rolled_back_release_is_stalled_and_never_ready(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    release_errors(local_cluster, namespace)
    stalled = kubectl_wait(local_cluster, namespace, "Stalled", "180s")
    try:
        status = drive(local_cluster, serin_server, token, namespace, "Failed")
        # Stalled says at once that the release is over and failed.
        assert stalled.wait(timeout=30) == 0, stalled.communicate()
    finally:
        stalled.kill()
    assert conditions(status) == {
        "Promoted": ("False", "Failed"),
        "Ready": ("False", "Failed"),
        "Stalled": ("True", "Failed"),
    }
    # kubectl wait --for=condition=Ready can only fail at its timeout (it cannot watch for another
    # condition at the same time): it does, and says it timed out.
    ready = local_cluster.kubectl(
        "wait", "--for=condition=Ready", "canaries.serin.dev/podinfo", "-n", namespace, "--timeout=2s", check=False
    )
    assert ready.returncode == 1
    assert "timed out waiting for the condition" in ready.stderr


def test_a_spec_change_is_not_ready_until_a_tick_has_seen_it(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    patch = '{"spec":{"skipAnalysis":true}}'
    local_cluster.kubectl("patch", "canaries.serin.dev", "podinfo", "-n", namespace, "--type=merge", "-p", patch)
    # The Ready condition is True, but of the previous generation: kubectl wait does not take it.
    ready = local_cluster.kubectl(
        "wait", "--for=condition=Ready", "canaries.serin.dev/podinfo", "-n", namespace, "--timeout=1s", check=False
    )
    assert ready.returncode == 1
    serin_server.tick(token, namespace=namespace, name="podinfo", force="true")
    local_cluster.kubectl(
        "wait", "--for=condition=Ready", "canaries.serin.dev/podinfo", "-n", namespace, "--timeout=10s"
    )


def test_a_canary_no_tick_has_seen_reads_as_not_observed_to_flux(local_cluster: ClusterHandle, namespace: str) -> None:
    """Without a status kstatus takes an object for done: the CRD's default status says no tick
    has observed it (generation 0), so Flux waits for Serin's first step."""
    kstatus = cached_kstatus()
    if kstatus is None:
        if in_ci():
            pytest.fail("kstatus reader not built: run `python -m localcluster build`")
        pytest.skip("kstatus reader not built: run `python -m localcluster build`")
    local_cluster.apply(canary(namespace, WEIGHTED))
    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)
    assert stored["status"] == {"observedGeneration": 0}
    read = subprocess.run([str(kstatus)], input=json.dumps([stored]), capture_output=True, text=True, check=True)
    assert json.loads(read.stdout) == {
        "status": "InProgress",
        "message": "Canary generation is 1, but latest observed generation is 0",
    }


def test_a_revision_behind_a_gate_is_not_ready_before_the_tick_asks_the_gate(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """The Deployment webhook leaves confirm-rollout gates to the tick, but marks the release to come
    at once: Ready is the new revision's from the moment the update is stored."""
    token = tokens["ticker"]
    with HookServer() as gate:
        gate.statuses["approve"] = 403
        hooks = [{"name": "approve", "type": "confirm-rollout", "url": gate.url("approve")}]
        initialized(local_cluster, serin_server, token, namespace, analysis={**WEIGHTED, "webhooks": hooks})
        set_image(local_cluster, namespace, "6.0.1")
        status = canary_status(local_cluster, namespace)
        assert status["phase"] == "Initialized"
        assert conditions(status) == {
            "Promoted": ("True", "Initialized"),
            "Ready": ("False", "NewRevision"),
            "Reconciling": ("True", "NewRevision"),
        }
        assert tick(serin_server, token, namespace)["canaries"][0]["phase"] == "Waiting"
        assert conditions(canary_status(local_cluster, namespace))["Ready"] == ("False", "Waiting")
        # Back to the promoted revision: nothing to release, Ready again.
        set_image(local_cluster, namespace, "6.0.0")
        assert tick(serin_server, token, namespace)["canaries"][0]["phase"] == "Succeeded"
        assert conditions(canary_status(local_cluster, namespace)) == {
            "Promoted": ("True", "Succeeded"),
            "Ready": ("True", "Succeeded"),
        }
