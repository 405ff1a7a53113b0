"""The ``serin`` command line on the local control plane, run as people run it: ``kubectl serin``
(the plugin found on the PATH) with the cluster's kubeconfig, against the real API server and the
Serin server. Every command, and what the tick makes of each request."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localcluster.testing import ClusterHandle
from serin.model import REQUEST_ANNOTATION
from tests.integration.helpers import (
    WEIGHTED,
    SerinServer,
    canary_status,
    drive,
    events,
    initialized,
    release_errors,
    routes,
    set_image,
    tick,
    tick_until,
)

pytestmark = pytest.mark.integration

# Slow enough that only forced ticks and requests move it.
ANALYSIS = {"interval": "1m", "threshold": 2, "maxWeight": 60, "stepWeight": 20, "metrics": []}


def plugin_environment(cluster: ClusterHandle, server: SerinServer | None, token: str | None) -> dict[str, str]:
    """What ``kubectl serin`` runs with: the plugin next to this Python, as after ``pip install``."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    for key in ("SERIN_URL", "SERIN_TOKEN", "SERIN_CA"):
        env.pop(key, None)
    if server is not None:
        env |= {"SERIN_URL": server.url, "SERIN_CA": str(server.ca_bundle)}
    if token is not None:
        env["SERIN_TOKEN"] = token
    return env


def kubectl_serin(
    cluster: ClusterHandle, server: SerinServer | None, token: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """``kubectl serin ARGS``: kubectl finds the plugin next to this Python, as after ``pip install``."""
    return subprocess.run(
        [str(cluster.kubectl_binary), "serin", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=plugin_environment(cluster, server, token),
    )


def serin_wait(cluster: ClusterHandle, namespace: str, timeout: str) -> subprocess.Popen[str]:
    """``kubectl serin wait NS/podinfo``, running beside the test, as a CI job runs it."""
    return subprocess.Popen(
        [str(cluster.kubectl_binary), "serin", "wait", f"{namespace}/podinfo", f"--timeout={timeout}", "--interval=1s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plugin_environment(cluster, None, None),
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def request_of(cluster: ClusterHandle, namespace: str) -> str | None:
    annotations = (
        cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["metadata"].get("annotations") or {}
    )
    value: str | None = annotations.get(REQUEST_ANNOTATION)
    return value


def test_status_pause_resume_plan_tick_and_promote(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=ANALYSIS)

    listed = ok(kubectl_serin(local_cluster, None, None, "status", "-n", namespace)).splitlines()
    assert listed[0].split() == [
        "NAMESPACE",
        "NAME",
        "STATUS",
        "WEIGHT",
        "FAILED",
        "LAST",
        "TRANSITION",
        "REQUEST",
        "METRICS",
    ]
    assert listed[1].split()[:5] == [namespace, "podinfo", "Initialized", "0", "0"]
    assert len(listed) == 2

    assert ok(kubectl_serin(local_cluster, None, None, "pause", f"{namespace}/podinfo")) == (
        f"canary {namespace}/podinfo paused: no step is taken until it is resumed\n"
    )
    assert local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["spec"]["suspend"] is True
    assert "Initialized (suspended)" in ok(kubectl_serin(local_cluster, None, None, "status", "-n", namespace))
    planned = ok(kubectl_serin(local_cluster, serin_server, token, "plan", f"{namespace}/podinfo"))
    assert "suspended: spec.suspend is true" in planned, planned
    assert ok(kubectl_serin(local_cluster, None, None, "resume", "podinfo", "-n", namespace)) == (
        f"canary {namespace}/podinfo resumed\n"
    )
    assert local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["spec"]["suspend"] is False

    # A new revision; forced ticks through the CLI take the first steps.
    set_image(local_cluster, namespace, "6.0.1")
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    stepped = ok(kubectl_serin(local_cluster, serin_server, token, "tick", f"{namespace}/podinfo", "--force"))
    assert stepped.splitlines()[:2] == [
        "NAMESPACE" + " " * (len(namespace) - 6) + "NAME      PHASE         WEIGHT   SUMMARY",
        f"{namespace}   podinfo   Progressing   20       canary weight 20",
    ], stepped
    assert canary_status(local_cluster, namespace)["canaryWeight"] == 20

    planned = ok(kubectl_serin(local_cluster, serin_server, token, "plan", f"{namespace}/podinfo", "-o", "json"))
    assert '"dryRun": true' in planned

    # Promote: skips the remaining steps (20 -> 40 -> 60) at the next tick, which removes the request.
    assert ok(kubectl_serin(local_cluster, None, None, "promote", f"{namespace}/podinfo")) == (
        f"promotion of canary {namespace}/podinfo requested: the next tick acts on it ({REQUEST_ANNOTATION}=promote)\n"
    )
    assert request_of(local_cluster, namespace) == "promote"
    detail = ok(kubectl_serin(local_cluster, None, None, "status", f"{namespace}/podinfo"))
    assert "Request:          promote (waiting for the next tick)" in detail, detail
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert report["phase"] == "Promoting", report
    assert f"Promotion requested! Skipping the remaining steps of podinfo.{namespace}" in report["events"]
    assert request_of(local_cluster, namespace) is None
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    image = local_cluster.get_json("deployment", "podinfo-primary", "-n", namespace)["spec"]["template"]["spec"]
    assert image["containers"][0]["image"].endswith(":6.0.1")

    detail = ok(kubectl_serin(local_cluster, None, None, "status", f"{namespace}/podinfo"))
    assert f"Canary:           {namespace}/podinfo" in detail
    assert "Phase:            Succeeded" in detail
    assert "Promotion requested! Skipping the remaining steps" in detail
    assert "Request:" not in detail


def test_abort_then_retry(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=ANALYSIS)
    set_image(local_cluster, namespace, "6.0.1")
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)

    ok(kubectl_serin(local_cluster, None, None, "abort", f"{namespace}/podinfo"))
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert report["phase"] == "Failed", report
    assert report["events"] == [
        f"Rolling back podinfo.{namespace} abort requested",
        f"Canary failed! Scaling down podinfo.{namespace}",
    ]
    assert request_of(local_cluster, namespace) is None
    assert routes(local_cluster, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    primary = local_cluster.get_json("deployment", "podinfo-primary", "-n", namespace)["spec"]["template"]["spec"]
    assert primary["containers"][0]["image"].endswith(":6.0.0")

    # A request that does not fit the phase is turned down, with a Warning, and removed.
    ok(kubectl_serin(local_cluster, None, None, "promote", f"{namespace}/podinfo"))
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert report["events"] == [
        f"promote requested, but podinfo.{namespace} has no release under analysis (phase Failed): nothing done"
    ]
    assert request_of(local_cluster, namespace) is None

    ok(kubectl_serin(local_cluster, None, None, "retry", f"{namespace}/podinfo"))
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert (report["phase"], report["events"]) == (
        "Progressing",
        [f"Retry requested! Restarting analysis for podinfo.{namespace}"],
    )
    assert f"Retry requested! Restarting analysis for podinfo.{namespace}" in events(local_cluster, namespace)
    drive(local_cluster, serin_server, token, namespace, "Succeeded", max_ticks=40)
    assert (
        canary_status(local_cluster, namespace)["lastPromotedSpec"]
        == canary_status(local_cluster, namespace)["lastAppliedSpec"]
    )


def test_replay_and_what_goes_wrong(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=ANALYSIS)
    start = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    replayed = ok(kubectl_serin(local_cluster, serin_server, token, "replay", f"{namespace}/podinfo", "--from", start))
    lines = replayed.splitlines()
    assert lines[0].startswith(f"replay of {namespace}/podinfo from {start} to ")
    assert lines[1].split() == ["TIME", "PHASE", "WEIGHT", "FAILED", "SUMMARY"]
    assert lines[2].split()[1:3] == ["Progressing", "0"]
    assert lines[-1].startswith("outcome: ")

    # An unknown request is denied by admission, naming the annotation.
    denied = local_cluster.kubectl(
        "annotate", "canaries.serin.dev", "podinfo", "-n", namespace, f"{REQUEST_ANNOTATION}=rollback", check=False
    )
    assert denied.returncode != 0
    assert f"metadata.annotations[{REQUEST_ANNOTATION}]: must be one of promote, abort, retry" in denied.stderr

    missing = kubectl_serin(local_cluster, None, None, "promote", f"{namespace}/nothing")
    assert (missing.returncode, missing.stderr) == (1, f"serin: no canary {namespace}/nothing\n")
    no_server = kubectl_serin(local_cluster, None, None, "tick", f"{namespace}/podinfo")
    assert (no_server.returncode, no_server.stderr) == (
        1,
        "serin: say where Serin is: --server https://HOST:PORT or SERIN_URL\n",
    )
    stranger = kubectl_serin(local_cluster, serin_server, tokens["stranger"], "plan", f"{namespace}/podinfo")
    assert stranger.returncode == 1
    assert stranger.stderr.startswith("serin: Serin answered 403: "), stranger.stderr
    bad_name = kubectl_serin(local_cluster, None, None, "abort", "a/b/c")
    assert (bad_name.returncode, bad_name.stderr) == (
        1,
        "serin: name a Canary as NAME or NAMESPACE/NAME, not 'a/b/c'\n",
    )
    nothing: Any = ok(kubectl_serin(local_cluster, None, None, "status", "-n", f"{namespace}-none"))
    assert nothing == f"no canary in namespace {namespace}-none\n"


def test_serin_wait_exits_0_on_promotion_1_on_rollback_and_2_on_timeout(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=WEIGHTED)
    set_image(local_cluster, namespace, "6.0.1")
    waiting = serin_wait(local_cluster, namespace, "5m")
    try:
        drive(local_cluster, serin_server, token, namespace, "Succeeded")
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    lines = out.splitlines()
    assert waiting.returncode == 0, (out, err)
    assert any(" Progressing weight 20 " in line for line in lines), lines
    promoted = canary_status(local_cluster, namespace)["lastPromotedSpec"]
    assert lines[-1].endswith(
        f"{namespace}/podinfo succeeded, revision {promoted} promoted: "
        "Canary analysis completed successfully, promotion finished."
    ), lines

    release_errors(local_cluster, namespace)
    waiting = serin_wait(local_cluster, namespace, "5m")
    try:
        drive(local_cluster, serin_server, token, namespace, "Failed")
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 1, (out, err)
    assert "podinfo failed, revision " in out.splitlines()[-1], out
    assert "Last failed check: request-success-rate" in out.splitlines()[-1], out

    set_image(local_cluster, namespace, "6.0.3")
    timed_out = kubectl_serin(local_cluster, None, None, "wait", f"{namespace}/podinfo", "--timeout=3s")
    assert timed_out.returncode == 2, timed_out
    assert f"{namespace}/podinfo timed out after 3s: Progressing" in timed_out.stdout.splitlines()[-1]
