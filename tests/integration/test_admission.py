"""The real API server calls Serin's admission webhooks over HTTPS on `kubectl apply`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import webhooks
from localcluster.processes import free_port
from localcluster.testing import ClusterHandle, eventually
from tests.integration.helpers import (
    WEBHOOK_NAMESPACE_LABEL,
    SerinServer,
    canary,
    canary_exists,
    canary_status,
    events,
    podinfo,
)

pytestmark = [pytest.mark.integration, pytest.mark.compat]

ANALYSIS = {
    "interval": "10s",
    "threshold": 2,
    "maxWeight": 40,
    "stepWeight": 20,
    "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "15s"}],
}


def apply(cluster: ClusterHandle, manifest: dict[str, Any], *flags: str, check: bool = True) -> Any:
    return cluster.kubectl("apply", *flags, "-f", "-", input_text=json.dumps(manifest), check=check)


def test_invalid_canary_is_denied_with_every_field(local_cluster: ClusterHandle, namespace: str) -> None:
    bad = canary(
        namespace,
        {
            "interval": "5s",
            "stepWeight": 10,
            "stepWeights": [20, 10],
            "threshold": 0,
            "metrics": [
                {"name": "error-budget"},
                {"name": "latency", "query": "up", "thresholdRange": {"min": 9, "max": 1}},
                {"name": "custom", "templateRef": {"name": "missing"}},
            ],
            "webhooks": [{"name": "load", "type": "sometimes", "url": "gate"}],
        },
    )
    result = apply(local_cluster, bad, check=False)
    assert result.returncode != 0
    stderr = result.stderr
    assert 'admission webhook "canaries.serin.dev" denied the request' in stderr
    for field in (
        "spec.analysis.interval: must be at least 10s",
        "spec.analysis.stepWeights[1]: must be greater than the step before it",
        "spec.analysis: set exactly one strategy",
        "spec.analysis.threshold: must be at least 1",
        "spec.analysis.metrics[0]: 'error-budget' is not a builtin metric",
        "spec.analysis.metrics[1].thresholdRange: min must not be greater than max",
        f"spec.analysis.metrics[2].templateRef: MetricTemplate {namespace}/missing does not exist",
        "spec.analysis.webhooks[0].type: must be one of",
        "spec.analysis.webhooks[0].url: must be an absolute http or https URL",
    ):
        assert field in stderr, f"{field!r} missing from:\n{stderr}"
    assert not canary_exists(local_cluster, namespace)


def test_valid_canary_gets_defaults_and_is_bootstrapped_once_stored(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
    }
    app = podinfo(namespace)
    app["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    local_cluster.apply([{**settings, "data": {"greeting": "hello"}}, app])
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    manifest = canary(namespace, {"stepWeight": 10, "metrics": [{"name": "request-success-rate"}]})
    del manifest["spec"]["progressDeadlineSeconds"]
    created = apply(local_cluster, manifest)
    assert "Warning" not in created.stderr, created.stderr

    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["spec"]
    assert stored["analysis"]["interval"] == "1m"
    assert stored["analysis"]["threshold"] == 1
    assert stored["analysis"]["maxWeight"] == 100
    assert stored["analysis"]["metrics"][0]["interval"] == "1m"
    assert "name" not in stored["service"] and "targetPort" not in stored["service"]
    assert stored["provider"] == "istio"
    assert stored["progressDeadlineSeconds"] == 600

    # No tick has run: the mutating webhook's CREATE had the objects made once the Canary was
    # stored, from the Canary as stored, so owned by it from the start.
    uid = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["metadata"]["uid"]

    def owned_by_canary(kind: str, name: str) -> bool:
        found = local_cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found").stdout
        owners = json.loads(found)["metadata"].get("ownerReferences", []) if found.strip() else []
        return any(owner["uid"] == uid for owner in owners)

    for kind, name in [
        ("deployment", "podinfo-primary"),
        ("configmap", "settings-primary"),
        ("service", "podinfo"),
        ("service", "podinfo-primary"),
        ("service", "podinfo-canary"),
        ("virtualservice", "podinfo"),
    ]:
        eventually(lambda: owned_by_canary(kind, name), timeout=10, what=f"{kind} {name} made")  # noqa: B023
    target = local_cluster.get_json("deployment", "podinfo", "-n", namespace)
    assert target["metadata"]["labels"]["serin.dev/canary"] == "podinfo"
    assert "phase" not in canary_status(local_cluster, namespace)


def test_second_canary_for_one_target_is_denied(local_cluster: ClusterHandle, namespace: str) -> None:
    local_cluster.apply(podinfo(namespace))
    apply(local_cluster, canary(namespace, ANALYSIS))
    second = canary(namespace, ANALYSIS)
    second["metadata"]["name"] = "podinfo-again"
    result = apply(local_cluster, second, check=False)
    assert result.returncode != 0
    assert "spec.targetRef: Deployment podinfo is already the target of canary podinfo" in result.stderr


def test_a_canary_may_not_target_anothers_primary_or_take_its_services(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    """Through the real API server: both are denied naming the other Canary, and nothing of the
    first Canary's changes (its primary keeps its replicas, its Services their selectors)."""
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    apply(local_cluster, canary(namespace, ANALYSIS))
    eventually(  # made once the Canary is stored
        lambda: local_cluster.kubectl(
            "get", "deployment", "podinfo-primary", "-n", namespace, "--ignore-not-found"
        ).stdout.strip(),
        timeout=10,
        what="the primary",
    )
    before = replicas_and_selectors(local_cluster, namespace)

    def denial(name: str, target: str, service_name: str) -> str:
        other = canary(namespace, ANALYSIS)
        other["metadata"]["name"] = name
        other["spec"]["targetRef"]["name"] = target
        other["spec"]["service"]["name"] = service_name
        result = apply(local_cluster, other, check=False)
        assert result.returncode != 0, f"canary {name} was admitted"
        return str(result.stderr)

    assert (
        "spec.targetRef: Deployment podinfo-primary and canary podinfo's target podinfo: one is the other's primary"
        in denial("on-primary", "podinfo-primary", "elsewhere")
    )
    shop = podinfo(namespace)
    shop["metadata"]["name"] = "shop"
    local_cluster.apply(shop)
    assert "spec.service.name: the Services of 'podinfo' would be those of canary podinfo ('podinfo')" in denial(
        "shop", "shop", "podinfo"
    )
    after = replicas_and_selectors(local_cluster, namespace)
    assert {key: value for key, value in after.items() if key in before} == before


def test_in_a_namespace_of_many_canaries_the_ones_that_clash_are_found_by_field_selector(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    """Past 20 Canaries in a namespace, validation asks the API server for the Canaries that could
    clash by the CRD's selectable fields (an API server that did not serve them would have the
    whole list read instead, which the unit tests count): both kinds of clash are still found."""
    others = []
    for index in range(21):
        other = canary(namespace, ANALYSIS)
        other["metadata"]["name"] = f"app-{index}"
        other["spec"]["targetRef"]["name"] = f"app-{index}"
        others.append(other)
    others[12]["spec"]["service"]["name"] = "web"
    local_cluster.kubectl(
        "apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": others})
    )
    selected = local_cluster.get_json(
        "canaries.serin.dev", "-n", namespace, "--field-selector", "spec.targetRef.name=app-7"
    )["items"]
    assert [item["metadata"]["name"] for item in selected] == ["app-7"]

    def denial(target: str, service_name: str) -> str:
        late = canary(namespace, ANALYSIS)
        late["metadata"]["name"] = "late"
        late["spec"]["targetRef"]["name"] = target
        late["spec"]["service"]["name"] = service_name
        result = apply(local_cluster, late, check=False)
        assert result.returncode != 0, "canary late was admitted"
        return str(result.stderr)

    assert "spec.targetRef: Deployment app-7 is already the target of canary app-7" in denial("app-7", "late")
    assert "spec.service.name: the Services of 'web-canary' would be those of canary app-12 ('web')" in denial(
        "shop", "web-canary"
    )


def replicas_and_selectors(cluster: ClusterHandle, namespace: str) -> dict[tuple[str, str], Any]:
    listed = cluster.get_json("deployments,services", "-n", namespace)["items"]
    return {
        (item["kind"], item["metadata"]["name"]): (item["spec"].get("replicas"), item["spec"].get("selector"))
        for item in listed
    }


def initialized(local_cluster: ClusterHandle, server: SerinServer, token: str, namespace: str) -> None:
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    apply(local_cluster, canary(namespace, ANALYSIS))
    eventually(
        lambda: (
            server.tick(token, namespace=namespace, name="podinfo", force="true").ok
            and canary_status(local_cluster, namespace).get("phase") == "Initialized"
        ),
        timeout=60,
        what="initialization",
    )


def test_set_image_is_a_new_revision_before_any_tick(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    before = canary_status(local_cluster, namespace)

    local_cluster.kubectl(
        "set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1", "-n", namespace
    )
    # Straight after the command, no tick in between.
    status = canary_status(local_cluster, namespace)
    assert status["phase"] == "Progressing"
    assert status["lastAppliedSpec"] != before["lastAppliedSpec"]
    assert local_cluster.get_json("deployment", "podinfo", "-n", namespace)["spec"]["replicas"] == 2
    assert f"New revision detected! Scaling up podinfo.{namespace}" in events(local_cluster, namespace)

    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    report = serin_server.tick(token, namespace=namespace, name="podinfo", force="true").json()["canaries"][0]
    assert report["weight"] == 20, report


@pytest.mark.parametrize(
    "flags",
    [pytest.param((), id="client-side"), pytest.param(("--server-side", "--force-conflicts"), id="server-side")],
)
def test_reapplying_the_same_manifest_changes_nothing(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    flags: tuple[str, ...],
) -> None:
    initialized(local_cluster, serin_server, tokens["ticker"], namespace)
    status_before = canary_status(local_cluster, namespace)

    result = apply(local_cluster, podinfo(namespace), *flags)
    target = local_cluster.get_json("deployment", "podinfo", "-n", namespace)
    assert target["spec"]["replicas"] == 0, "an idle target stays at zero replicas"
    assert "stays at 0 replicas between releases" in result.stderr
    assert canary_status(local_cluster, namespace) == status_before


def test_primary_template_is_changed_only_by_serin(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    initialized(local_cluster, serin_server, tokens["ticker"], namespace)
    denied = local_cluster.kubectl(
        "set", "image", "deployment/podinfo-primary", "podinfod=evil:1", "-n", namespace, check=False
    )
    assert denied.returncode != 0
    assert "Deployment podinfo-primary is managed by Serin" in denied.stderr
    assert "edit Deployment podinfo instead" in denied.stderr
    # Scaling stays allowed (HPA, kubectl scale).
    local_cluster.kubectl("scale", "deployment/podinfo-primary", "--replicas=3", "-n", namespace)


@contextlib.contextmanager
def serin_down(cluster: ClusterHandle, server: SerinServer, namespace: str) -> Iterator[None]:
    """The shipped configurations, pointed at a port where nothing listens, in ``namespace``
    instead of the live ones; yielded once the API server is seen failing to call them."""
    label = {"serin.dev/test-webhooks-down": namespace}
    dead = webhooks.for_url(
        webhooks.load_manifest(),
        f"https://127.0.0.1:{free_port()}",
        server.ca_bundle.read_bytes(),
        name=f"down-{namespace}",
        namespace_labels=label,
    )
    cluster.apply(dead)
    try:
        # Serin's webhooks go down: the namespace is now only in the dead configurations' reach.
        live = next(iter(WEBHOOK_NAMESPACE_LABEL))
        cluster.kubectl("label", "namespace", namespace, f"{live}-", f"serin.dev/test-webhooks-down={namespace}")
        # A Canary not stored yet, so that kubectl really sends it.
        probe = canary(namespace, ANALYSIS)
        probe["metadata"]["name"] = "probe"
        eventually(
            lambda: "failed calling webhook" in apply(cluster, probe, "--dry-run=server", check=False).stderr,
            timeout=30,
            what="the dead webhooks to take effect",
        )
        yield
    finally:
        for kind in webhooks.WEBHOOK_KINDS:
            cluster.kubectl("delete", kind.lower(), f"down-{namespace}", "--ignore-not-found")


def test_deployment_changes_survive_a_down_webhook(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace)
    with serin_down(local_cluster, serin_server, namespace):
        local_cluster.kubectl(
            "set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1", "-n", namespace
        )
        assert canary_status(local_cluster, namespace)["phase"] == "Initialized"
        report = serin_server.tick(token, namespace=namespace, name="podinfo", force="true").json()["canaries"][0]
        assert report["phase"] == "Progressing", report
        assert f"New revision detected! Scaling up podinfo.{namespace}" in events(local_cluster, namespace)


def test_finalizers_and_labels_can_be_changed_while_serin_is_down(
    local_cluster: ClusterHandle, serin_server: SerinServer, namespace: str
) -> None:
    local_cluster.apply(podinfo(namespace))
    # Created rather than applied, so that it has no annotations at all.
    local_cluster.kubectl(
        "create", "-f", "-", input_text=json.dumps(canary(namespace, ANALYSIS, revertOnDeletion=True))
    )
    stored = ("canaries.serin.dev", "podinfo", "-n", namespace)
    assert local_cluster.get_json(*stored)["metadata"]["finalizers"] == ["serin.dev/revert-on-deletion"]

    def patch(body: dict[str, Any]) -> Any:
        return local_cluster.kubectl("patch", *stored, "--type=merge", "-p", json.dumps(body), check=False)

    def sent_to_serin(result: Any) -> bool:
        """Whether the change was denied because the fail-closed webhooks could not be called."""
        return result.returncode != 0 and "failed calling webhook" in result.stderr

    no_finalizers = {"metadata": {"finalizers": None}}
    with serin_down(local_cluster, serin_server, namespace):
        # Labels are nothing Serin judges or sets.
        local_cluster.kubectl("label", *stored, "team=payments")
        assert local_cluster.get_json(*stored)["metadata"]["labels"] == {"team": "payments"}
        # Still judged, so still refused: the spec, a person's request, and the finalizer of a
        # Canary that is not being deleted (the mutating webhook keeps it while revertOnDeletion is on).
        assert sent_to_serin(patch({"spec": {"skipAnalysis": True}}))
        assert sent_to_serin(local_cluster.kubectl("annotate", *stored, "serin.dev/request=promote", check=False))
        assert sent_to_serin(patch(no_finalizers))

        # Deleted while Serin is down: the finalizer holds it, and no tick comes to lift it.
        local_cluster.kubectl("delete", *stored, "--wait=false")
        deleting = local_cluster.get_json(*stored)["metadata"]
        assert "deletionTimestamp" in deleting and deleting["finalizers"] == ["serin.dev/revert-on-deletion"]
        # The tick reads the spec of a Canary being deleted before it lets it go: still judged.
        assert sent_to_serin(patch({"spec": {"skipAnalysis": True}}))
        # What an administrator does to let a namespace finish terminating.
        removed = patch(no_finalizers)
        assert removed.returncode == 0, removed.stderr
        eventually(lambda: not canary_exists(local_cluster, namespace), what="the canary to be gone")


def test_deleting_a_canary_with_revert_on_deletion_gives_the_target_its_traffic_back(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    apply(local_cluster, canary(namespace, ANALYSIS, revertOnDeletion=True))
    assert local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["metadata"]["finalizers"] == [
        "serin.dev/revert-on-deletion"
    ]
    eventually(
        lambda: (
            serin_server.tick(token, namespace=namespace, name="podinfo", force="true").ok
            and canary_status(local_cluster, namespace).get("phase") == "Initialized"
        ),
        timeout=60,
        what="initialization",
    )
    assert local_cluster.get_json("deployment", "podinfo", "-n", namespace)["spec"]["replicas"] == 0

    local_cluster.kubectl("delete", "canaries.serin.dev", "podinfo", "-n", namespace, "--wait=false")
    # The finalizer holds the Canary; the next tick gives the target its traffic back, from the
    # Canary as stored (the DELETE review itself changes nothing).
    assert local_cluster.get_json("deployment", "podinfo", "-n", namespace)["spec"]["replicas"] == 0
    serin_server.tick(token, namespace=namespace, name="podinfo")
    assert local_cluster.get_json("deployment", "podinfo", "-n", namespace)["spec"]["replicas"] == 2
    apex = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert apex["spec"]["selector"] == {"app": "podinfo"}
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")

    # The tick lifts the finalizer once the target is ready (it may report waiting first).
    eventually(
        lambda: (
            serin_server.tick(token, namespace=namespace, name="podinfo").json()["canaries"][0]["summary"]
            == "deleted: podinfo serves all traffic again"
        ),
        timeout=30,
        what="the tick to finish the deletion",
    )
    eventually(
        lambda: not canary_exists(local_cluster, namespace),
        what="the canary to be gone",
    )
    eventually(
        lambda: (
            local_cluster.kubectl("get", "deployment", "podinfo-primary", "-n", namespace, check=False).returncode != 0
        ),
        timeout=60,
        what="the primary to be garbage-collected",
    )
    # The apex Service stays: clients keep their address, now served by the target.
    assert "ownerReferences" not in local_cluster.get_json("service", "podinfo", "-n", namespace)["metadata"]
    # The target is a Canary's no more.
    assert "serin.dev/canary" not in local_cluster.get_json("deployment", "podinfo", "-n", namespace)["metadata"].get(
        "labels", {}
    )


def test_a_query_prometheus_cannot_parse_is_denied_and_an_unchecked_one_warned(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    metric = {"name": "errors", "query": "sum(rate(istio_requests_total[1m])", "thresholdRange": {"max": 1}}
    manifest = canary(namespace, {"stepWeight": 10, "metrics": [metric]})
    denied = apply(local_cluster, manifest, check=False)
    assert denied.returncode != 0
    expected = 'spec.analysis.metrics[0].query: Prometheus cannot parse it: invalid parameter "query": 1:35: parse'
    assert expected in denied.stderr, denied.stderr

    manifest["spec"]["metricsServer"] = f"http://127.0.0.1:{free_port()}"
    warned = apply(local_cluster, manifest)
    assert (
        "spec.analysis.metrics[0].query: not checked at admission, since spec.metricsServer names the Canary's own "
        "backend; the first analysed step checks it"
    ) in warned.stderr, warned.stderr
