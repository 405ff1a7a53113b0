"""Nothing a user, a race, a crash or a deleted object does can corrupt a release: on the local control
plane, with the real API server's optimistic concurrency, garbage collector and Deployment controller."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import json
import time
from typing import Any

import pytest

from localcluster.testing import ClusterHandle, eventually
from serin.config import Settings
from serin.decide import MIN_FORCED_STEP_SECONDS
from serin.engine import build_engine
from serin.model import parse_canary
from tests.integration.helpers import (
    METRICS,
    SerinServer,
    canary,
    canary_exists,
    canary_status,
    deployment,
    drive,
    events,
    initialized,
    podinfo,
    routes,
    set_image,
    tick,
    tick_until,
)

pytestmark = pytest.mark.integration

QUICK = {"interval": "10s", "threshold": 1, "stepWeights": [20, 40]}
# The Events a release's steps record, one each (and none for a step that only waits).
LIFECYCLE_EVENTS = (
    "New revision detected!",
    "Starting canary analysis",
    "Advance ",
    "Copying ",
    "Routing all traffic",
    "Promotion completed!",
    "Rolling back",
    "Canary failed!",
)


def image_of(cluster: ClusterHandle, namespace: str, name: str) -> str:
    return str(deployment(cluster, namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"])


def split(cluster: ClusterHandle, namespace: str) -> tuple[int, int]:
    (primary, primary_weight), (_, canary_weight) = routes(cluster, namespace)
    assert primary == "podinfo-primary"
    return primary_weight, canary_weight


def resource_version(cluster: ClusterHandle, namespace: str) -> str:
    return str(cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["metadata"]["resourceVersion"])


def users_virtual_service(namespace: str, name: str) -> dict[str, Any]:
    """A VirtualService the user made before any Canary: routes to a Service of their own."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "web"}},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": f"{name}-v1"}}], "timeout": "3s"}]},
    }


def test_a_new_image_set_before_the_first_tick_is_analysed(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """The webhook creates the primary from 6.0.0 on apply; 6.0.1 comes before any tick. The Canary
    must record what the primary runs (6.0.0), so 6.0.1 is a new revision, analysed and promoted."""
    token = tokens["ticker"]
    local_cluster.apply(podinfo(namespace))
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    local_cluster.apply(canary(namespace, QUICK))
    eventually(lambda: deployment(local_cluster, namespace, "podinfo")["metadata"]["labels"].get("serin.dev/canary"))
    set_image(local_cluster, namespace, "6.0.1")

    drive(local_cluster, serin_server, token, namespace, "Initialized")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.0")
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert report["phase"] == "Progressing", report
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.1")


def test_a_deleted_primary_is_rebuilt_from_the_promoted_revision(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Deleted during the analysis of a bad release, before any promotion, the primary comes back
    running 6.0.0 (what was promoted), not the unanalysed target: after the rollback all traffic is
    on a healthy primary."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis={**QUICK, "threshold": 2, "metrics": METRICS})
    bad = podinfo(namespace, "ghcr.io/stefanprodan/podinfo:6.0.2", **{"simulator.serin.dev/error-rate": "0.5"})
    bad["spec"]["replicas"] = 0
    local_cluster.apply(bad)
    tick_until(local_cluster, serin_server, token, namespace, lambda s: s.get("canaryWeight") == 20)

    local_cluster.kubectl("delete", "deployment", "podinfo-primary", "-n", namespace, "--wait=true")
    tick(serin_server, token, namespace)
    rebuilt = deployment(local_cluster, namespace, "podinfo-primary")
    assert rebuilt["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":6.0.0")
    assert "simulator.serin.dev/error-rate" not in (rebuilt["spec"]["template"]["metadata"].get("annotations") or {})

    status = drive(local_cluster, serin_server, token, namespace, "Failed")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.0")
    assert split(local_cluster, namespace) == (100, 0)
    assert status["lastPromotedSpec"] != status["lastAppliedSpec"]
    # The webhook recorded the first revision before the Canary was stored, so without an owner;
    # it is the Canary's now (the garbage collector removes it with the Canary), and no record is
    # left without one.
    uid = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", namespace)["metadata"]["uid"]
    records = local_cluster.get_json("controllerrevisions", "-n", namespace, "-l", "serin.dev/managed-for=podinfo")
    owners = [[ref["uid"] for ref in item["metadata"].get("ownerReferences", [])] for item in records["items"]]
    assert owners == [[uid]], records


def test_a_bad_release_right_after_a_good_one_is_judged_on_its_own_traffic(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """The builtin queries match every pod of the target, the previous release's too: a window
    that reaches back before the bad release's first weight holds the good release's requests.
    Ticked 2s after that weight, the step waits for a window of its own; judged on it, the bad
    release fails, where the mixed window would have passed it (about 80% against 40%)."""
    token = tokens["ticker"]
    success_rate = {"name": "request-success-rate", "interval": "20s", "thresholdRange": {"min": 70}}
    analysis = {"interval": "10s", "threshold": 1, "stepWeight": 50, "maxWeight": 50, "metrics": [success_rate]}
    initialized(local_cluster, serin_server, token, namespace, analysis=analysis)
    set_image(local_cluster, namespace, "6.0.1")
    drive(local_cluster, serin_server, token, namespace, "Succeeded")
    bad = podinfo(namespace, "ghcr.io/stefanprodan/podinfo:6.0.2", **{"simulator.serin.dev/error-rate": "0.6"})
    local_cluster.apply(bad)
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 50)
    time.sleep(2)
    response = serin_server.tick(token, namespace=namespace, name="podinfo", force="true")
    report = response.json()["canaries"][0]
    assert (report["phase"], report["weight"], report["failedChecks"]) == ("Progressing", 50, 0), report
    assert "for the metric window" in report["summary"], report
    assert 15 < report["nextStepInSeconds"] <= 18, report
    drive(local_cluster, serin_server, token, namespace, "Failed")
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.1")
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


def test_an_edited_primary_is_put_back_with_an_event(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Someone edits the primary (here even dropping the label the Deployment webhook guards by): the
    next check finds it no longer runs the promoted revision and puts it back, saying so."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=QUICK)
    local_cluster.kubectl("label", "deployment", "podinfo-primary", "-n", namespace, "app.kubernetes.io/managed-by-")
    local_cluster.kubectl(
        "set", "image", "deployment/podinfo-primary", "podinfod=ghcr.io/stefanprodan/podinfo:9.9.9", "-n", namespace
    )
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert "the primary drifted: restored" in report["summary"], report
    assert image_of(local_cluster, namespace, "podinfo-primary").endswith(":6.0.0")
    assert any(
        message.startswith(f"podinfo-primary.{namespace} drifted from the promoted revision")
        for message in events(local_cluster, namespace)
    )
    # Checked once per change of the primary's spec: now it is as promoted, nothing more is written.
    tick(serin_server, token, namespace)
    version = resource_version(local_cluster, namespace)
    tick(serin_server, token, namespace)
    assert resource_version(local_cluster, namespace) == version


def test_deleted_routes_and_services_come_back_as_the_status_says(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A VirtualService deleted mid-analysis comes back with the split the status records (not 100/0,
    which would starve the canary of traffic and fail a healthy release); so do the Services."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis={**QUICK, "stepWeights": [20, 40, 60]})
    set_image(local_cluster, namespace, "6.0.1")
    tick_until(local_cluster, serin_server, token, namespace, lambda s: s.get("canaryWeight") == 40)

    local_cluster.kubectl("delete", "virtualservice", "podinfo", "-n", namespace)
    local_cluster.kubectl("delete", "service", "podinfo-canary", "podinfo", "-n", namespace)
    report = tick(serin_server, token, namespace)["canaries"][0]
    assert split(local_cluster, namespace) == (60, 40), report
    assert report["summary"].startswith("holding (1/4): routes restored to 60/40"), report
    for name, selected in (("podinfo", "podinfo-primary"), ("podinfo-canary", "podinfo")):
        assert local_cluster.get_json("service", name, "-n", namespace)["spec"]["selector"] == {"app": selected}
    drive(local_cluster, serin_server, token, namespace, "Succeeded")


def test_a_changed_service_port_moves_services_and_routes_together(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Services are reconciled whole: a new ``service.port`` reaches all three Services in the same
    check, and the routes, which name each Service by host only (as Flagger's do), follow it."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=QUICK)
    local_cluster.apply(canary(namespace, QUICK, service={"port": 8080, "targetPort": 9898}))
    tick(serin_server, token, namespace)

    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        ports = local_cluster.get_json("service", name, "-n", namespace)["spec"]["ports"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [("http", 8080, 9898)], name
    http = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)["spec"]["http"]
    assert [d["destination"] for route in http for d in route["route"]] == [
        {"host": "podinfo-primary"},
        {"host": "podinfo-canary"},
    ]


def test_status_is_written_whole(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A ConfigMap no longer used leaves trackedConfigs, instead of looking changed on every tick."""
    token = tokens["ticker"]
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    local_cluster.apply({**settings, "data": {"greeting": "hello"}})
    app = podinfo(namespace)
    app["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    local_cluster.apply(app)
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    local_cluster.apply(canary(namespace, QUICK))
    drive(local_cluster, serin_server, token, namespace, "Initialized")
    assert set(canary_status(local_cluster, namespace)["trackedConfigs"]) == {"configmap/settings"}

    app["spec"]["template"]["spec"]["containers"][0].pop("envFrom")
    app["spec"]["replicas"] = 0
    local_cluster.apply(app)
    status = drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert status["trackedConfigs"] == {}
    # Nothing is left to look changed: later ticks start nothing.
    for _ in range(2):
        assert tick(serin_server, token, namespace)["canaries"][0]["phase"] == "Succeeded"


def test_an_idle_canary_costs_no_write(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=QUICK)
    tick(serin_server, token, namespace)
    version = resource_version(local_cluster, namespace)
    for _ in range(3):
        time.sleep(1.1)  # a check each second or so: Kubernetes times have seconds
        report = tick(serin_server, token, namespace)["canaries"][0]
        assert report["summary"] == "no new revision", report
    assert resource_version(local_cluster, namespace) == version


def test_concurrent_forced_ticks_take_each_step_once(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """20 forced ticks at once, round after round through a whole release: every step is taken
    exactly once, and after each round the routes, the canary's replicas and the status agree.
    A round takes one step, or more only if it outlasted the gap forced steps keep between them
    (on a loaded machine twenty requests may take longer than that)."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis={**QUICK, "stepWeights": [10, 20, 30]})
    set_image(local_cluster, namespace, "6.0.1")

    def round_of_ticks() -> tuple[list[dict[str, Any]], float]:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(
                pool.map(
                    lambda _: serin_server.tick(token, namespace=namespace, name="podinfo", force="true"), range(20)
                )
            )
        assert all(answer.status_code == 200 for answer in answers)
        return [answer.json()["canaries"][0] for answer in answers], time.monotonic() - started

    # The Deployment webhook saw the revision and scaled the canary up: the rounds start once it is ready.
    local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    lifecycle: list[str] = []
    for _ in range(12):
        reports, seconds = round_of_ticks()
        assert all(report["error"] is None for report in reports), reports
        # A step of the release, not a step that waited (for readiness, say) and said so.
        stepped = [
            [event for event in report["events"] if event.startswith(LIFECYCLE_EVENTS)]
            for report in reports
            if report["applied"]
        ]
        stepped = [events_ for events_ in stepped if events_]
        assert 1 <= len(stepped) <= 1 + seconds // MIN_FORCED_STEP_SECONDS, (stepped, seconds)
        lifecycle += [event.replace(namespace, "NS") for events_ in stepped for event in events_]
        status = canary_status(local_cluster, namespace)
        # Routes and replicas are what the status says.
        expected = 100 - status["canaryWeight"], status["canaryWeight"]
        if status["phase"] in ("Progressing", "Promoting"):
            assert split(local_cluster, namespace) == expected, (status, reports)
        else:
            assert split(local_cluster, namespace) == (100, 0), (status, reports)
        if status["phase"] == "Succeeded":
            assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
            break
        local_cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
        local_cluster.kubectl("rollout", "status", "deployment/podinfo-primary", "-n", namespace, "--timeout=60s")
        time.sleep(MIN_FORCED_STEP_SECONDS + 0.2)  # the next round may take a step
    # Within a round the answers come in any order: as a multiset, each step once, none skipped;
    # and the Canary's Events say the same (the new revision, the Deployment webhook saw).
    detected = "New revision detected! Scaling up podinfo.NS"
    release = collections.Counter(
        [
            "Starting canary analysis for podinfo.NS",
            "Advance podinfo.NS canary weight 10",
            "Advance podinfo.NS canary weight 20",
            "Advance podinfo.NS canary weight 30",
            "Copying podinfo.NS template spec to podinfo-primary.NS",
            "Routing all traffic to primary",
            "Promotion completed! Scaling down podinfo.NS",
        ]
    )
    assert collections.Counter(lifecycle) == release, lifecycle
    recorded = [message.replace(namespace, "NS") for message in events(local_cluster, namespace)]
    steps = collections.Counter(message for message in recorded if message.startswith(LIFECYCLE_EVENTS))
    assert steps == release + collections.Counter([detected])


def test_objects_made_for_a_canary_never_stored_are_removed(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Admission creates a Canary's objects before the Canary is stored; if another webhook then
    refuses it, they would stay forever. A sweep every ten minutes removes them (once five old)."""
    token = tokens["ticker"]
    initialized(local_cluster, serin_server, token, namespace, analysis=QUICK)
    ghost = {"app.kubernetes.io/managed-by": "serin", "serin.dev/managed-for": "ghost"}
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost-settings-primary", "namespace": namespace, "labels": ghost},
    }
    primary = podinfo(namespace)
    primary["metadata"] = {"name": "ghost-primary", "namespace": namespace, "labels": {"app": "ghost-primary", **ghost}}
    primary["spec"]["selector"] = {"matchLabels": {"app": "ghost-primary"}}
    primary["spec"]["template"]["metadata"]["labels"] = {"app": "ghost-primary"}
    primary["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
        {"configMapRef": {"name": config["metadata"]["name"]}}
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ghost", "namespace": namespace, "labels": ghost},
        "spec": {"selector": {"app": "ghost-primary"}, "ports": [{"port": 80}]},
    }
    # The user's own Service and VirtualService, taken over for the ghost as admission would.
    users_service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ghost-web", "namespace": namespace, "labels": {"serin.dev/managed-for": "ghost"}},
        "spec": {"selector": {"app": "ghost-primary"}, "ports": [{"port": 80}]},
    }
    users_service["metadata"]["annotations"] = {"serin.dev/original-selector": json.dumps({"app": "web"})}
    local_cluster.apply([config, primary, service, users_service, users_virtual_service(namespace, "ghost")])
    engine = build_engine(Settings(kubeconfig=str(local_cluster.kubeconfig)))
    never_stored = canary(namespace, QUICK)
    never_stored["metadata"]["name"] = "ghost"
    never_stored["spec"]["service"]["name"] = "ghost"
    engine.reconciler.router_for("istio").set_routes(parse_canary(never_stored), 100, 0)
    assert local_cluster.get_json("virtualservice", "ghost", "-n", namespace)["spec"]["http"][0]["route"][0] == {
        "destination": {"host": "ghost-primary"},
        "weight": 100,
    }

    # The existing Canary's primary without its owner reference (an edit, a restore from a backup):
    # made for a name a Canary has, it is that Canary's, and stays.
    unowned = json.dumps([{"op": "remove", "path": "/metadata/ownerReferences"}])
    local_cluster.kubectl("patch", "deployment", "podinfo-primary", "-n", namespace, "--type=json", "-p", unowned)

    # In-process, with a clock at a sweep time (a whole ten minutes) at least ten minutes ahead, so
    # that the objects are past their grace period whatever the time now.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20)
    sweep_time = later.replace(minute=later.minute // 10 * 10, second=5, microsecond=0)
    engine.reconciler.clock = lambda: sweep_time
    engine.reconciler.tick(namespace=namespace, window=60)
    left = local_cluster.get_json(
        "deployments,services,configmaps,virtualservices,destinationrules",
        "-n",
        namespace,
        "-l",
        "serin.dev/managed-for=ghost",
    )
    assert left["items"] == []
    # What was the user's is given back, not deleted.
    assert local_cluster.get_json("service", "ghost-web", "-n", namespace)["spec"]["selector"] == {"app": "web"}
    given_back = local_cluster.get_json("virtualservice", "ghost", "-n", namespace)
    assert given_back["spec"] == users_virtual_service(namespace, "ghost")["spec"]
    assert given_back["metadata"]["labels"] == {"team": "web"}
    # The Canary that exists keeps everything, and its step in that tick gave its primary its owner again.
    primary = deployment(local_cluster, namespace, "podinfo-primary")
    assert primary["metadata"]["labels"]["serin.dev/managed-for"] == "podinfo"
    assert [owner["name"] for owner in primary["metadata"]["ownerReferences"]] == ["podinfo"]
    local_cluster.get_json("service", "podinfo", "-n", namespace)


@pytest.mark.compat
def test_a_revision_refused_after_admission_is_undone(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """Serin's Deployment webhook records a revision before the API server stores the update; a
    policy evaluated after it refuses the update. The tick puts the status back as it was, instead
    of analysing the promoted revision as if it were new."""
    token = tokens["ticker"]
    policy = f"serin-tests-refuse-{namespace}"
    local_cluster.apply(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": policy},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": ["UPDATE"],
                                "resources": ["deployments"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": "!has(object.metadata.annotations) || "
                            "!('tests.serin.dev/refuse' in object.metadata.annotations)",
                            "message": "refused by policy",
                        }
                    ],
                },
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": policy},
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                    },
                },
            },
        ]
    )
    try:
        initialized(local_cluster, serin_server, token, namespace, analysis=QUICK)
        before = canary_status(local_cluster, namespace)["lastAppliedSpec"]
        patch = {
            "metadata": {"annotations": {"tests.serin.dev/refuse": "yes"}},
            "spec": {"template": {"metadata": {"annotations": {"version": "2"}}}},
        }

        def refused(*dry_run: str) -> bool:
            done = local_cluster.kubectl(
                "patch",
                "deployment",
                "podinfo",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                json.dumps(patch),
                *dry_run,
                check=False,
            )
            return done.returncode != 0 and "refused by policy" in done.stderr

        # The API server takes a moment to start enforcing a new policy; a real update sent before
        # then would be stored. Probe with dry runs, which Serin's webhook does not record.
        eventually(lambda: refused("--dry-run=server"), what="the policy to refuse the update")
        assert refused()
        status = canary_status(local_cluster, namespace)
        assert status["phase"] == "Progressing" and status["serin"]["unconfirmed"]["revision"] != before

        report = tick(serin_server, token, namespace)["canaries"][0]
        status = canary_status(local_cluster, namespace)
        assert (status["phase"], status["lastAppliedSpec"]) == ("Initialized", before), report
        assert "unconfirmed" not in status.get("serin", {})
        assert deployment(local_cluster, namespace, "podinfo")["spec"]["replicas"] == 0
    finally:
        local_cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy)


def test_the_users_own_service_and_virtual_service_are_given_back(
    local_cluster: ClusterHandle, serin_server: SerinServer, tokens: dict[str, str], namespace: str
) -> None:
    """A Service and a VirtualService the user had before the Canary are taken over (the Service's
    selector, the VirtualService's spec), with what they were recorded on them and no owner;
    deleting the Canary (revertOnDeletion) gives them back, and the garbage collector leaves them."""
    token = tokens["ticker"]
    local_cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "podinfo", "namespace": namespace},
                "spec": {"selector": {"app": "podinfo", "tier": "web"}, "ports": [{"port": 9898}]},
            },
            users_virtual_service(namespace, "podinfo"),
        ]
    )
    initialized(local_cluster, serin_server, token, namespace, analysis=QUICK, revertOnDeletion=True)
    routed = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    assert [d["destination"]["host"] for d in routed["spec"]["http"][0]["route"]] == [
        "podinfo-primary",
        "podinfo-canary",
    ]
    assert (
        json.loads(routed["metadata"]["annotations"]["serin.dev/original-spec"])
        == (users_virtual_service(namespace, "podinfo")["spec"])
    )
    assert "ownerReferences" not in routed["metadata"]
    taken = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert taken["spec"]["selector"] == {"app": "podinfo-primary"}
    assert json.loads(taken["metadata"]["annotations"]["serin.dev/original-selector"]) == {
        "app": "podinfo",
        "tier": "web",
    }
    assert "ownerReferences" not in taken["metadata"], "never owned, so never deleted with the Canary"

    local_cluster.kubectl("delete", "canaries.serin.dev", "podinfo", "-n", namespace, "--wait=false")
    eventually(
        lambda: tick(serin_server, token, namespace)["canaries"][0]["summary"].startswith("deleted:"), timeout=60
    )
    given_back = local_cluster.get_json("service", "podinfo", "-n", namespace)
    assert given_back["spec"]["selector"] == {"app": "podinfo", "tier": "web"}
    assert "serin.dev/original-selector" not in (given_back["metadata"].get("annotations") or {})
    # Once the Canary is gone and the garbage collector has removed Serin's own objects:
    eventually(lambda: not canary_exists(local_cluster, namespace))
    eventually(
        lambda: (
            local_cluster.kubectl("get", "service", "podinfo-primary", "-n", namespace, check=False).returncode != 0
        ),
        what="the garbage collector to remove podinfo-primary",
    )
    vs = local_cluster.get_json("virtualservice", "podinfo", "-n", namespace)
    assert vs["spec"] == users_virtual_service(namespace, "podinfo")["spec"]
    assert vs["metadata"]["labels"] == {"team": "web"}
    assert "serin.dev/original-spec" not in (vs["metadata"].get("annotations") or {})
