"""Admission envelopes, defaults and the decisions that need no API request."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import jsonpatch
import pytest
from flask.testing import FlaskClient

from handlers.admission import MUTATORS, _allowed_as_is, _answered
from serin import logs
from serin.admission import Admission, Bootstraps, Verdict, clash_selectors, defaults_patch
from serin.kube.store import KubeRejected
from serin.model import SHARED_WITH
from serin.scope import Scope

CANARY: dict[str, Any] = {
    "apiVersion": "serin.dev/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {
            "stepWeight": 10,
            "metrics": [{"name": "request-success-rate"}],
            "webhooks": [{"name": "load", "url": "http://loadtester/"}],
        },
    },
}


class NoApi:
    """A store that fails the test if the handler makes any API request."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected API call: {name}")


def review(request: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def deployment(image: str, replicas: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "a", "image": image}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {"name": "podinfo", "namespace": "test", "labels": {"serin.dev/canary": "podinfo"}},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        pytest.param(
            b"{not json",
            "application/json",
            "body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            id="not-json",
        ),
        pytest.param(b"{}", "text/plain", "Content-Type must be application/json, not 'text/plain'", id="content-type"),
        pytest.param(b"[]", "application/json", "body must be a JSON object (an AdmissionReview)", id="array"),
        pytest.param(
            json.dumps({"kind": "Pod"}).encode(),
            "application/json",
            "expected kind AdmissionReview, apiVersion admission.k8s.io/v1",
            id="wrong-kind",
        ),
        pytest.param(
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
            "application/json",
            "AdmissionReview has no request",
            id="no-request",
        ),
        pytest.param(
            json.dumps(review({"kind": {"kind": "Canary"}})).encode(),
            "application/json",
            "request.uid is missing",
            id="no-uid",
        ),
        pytest.param(
            json.dumps(review({"uid": "1", "operation": "CREATE", "kind": {"group": "", "kind": "Pod"}})).encode(),
            "application/json",
            "cannot review kind 'Pod' of group ''; this webhook reviews Canary (serin.dev), Deployment (apps), "
            "DaemonSet (apps), StatefulSet (apps)",
            id="unknown-kind",
        ),
        pytest.param(
            json.dumps(review({"uid": "1", "operation": "CREATE", "kind": {"kind": "Canary"}, "object": [1]})).encode(),
            "application/json",
            "request.object must be an object, not list",
            id="object-not-object",
        ),
        pytest.param(
            json.dumps(
                review({"uid": "1", "operation": "UPDATE", "kind": {"group": [], "kind": "Deployment"}, "object": {}})
            ).encode(),
            "application/json",
            "request.kind.group must be a string, not list",
            id="group-not-a-string",
        ),
        pytest.param(
            json.dumps(
                review(
                    {
                        "uid": "1",
                        "operation": "UPDATE",
                        "kind": {"group": "apps", "kind": "Deployment"},
                        "object": {"metadata": {"labels": {"app": 3}}},
                    }
                )
            ).encode(),
            "application/json",
            "request.object.metadata.labels.app must be a string, not int",
            id="label-not-a-string",
        ),
        pytest.param(
            json.dumps(
                review(
                    {
                        "uid": "1",
                        "operation": "UPDATE",
                        "namespace": "test/canaries?x=",
                        "kind": {"group": "apps", "kind": "Deployment"},
                    }
                )
            ).encode(),
            "application/json",
            "request.namespace must be a namespace name, not 'test/canaries?x='",
            id="namespace-not-a-name",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/mutate", "/validate"])
def test_malformed_reviews_get_a_400(
    app_client: FlaskClient, path: str, body: bytes, content_type: str, message: str
) -> None:
    response = app_client.post(path, data=body, content_type=content_type)
    assert response.status_code == 400
    assert response.is_json
    assert response.get_json() == {"error": message}


@pytest.mark.parametrize("path", ["/mutate", "/validate", "/tick"])
def test_a_body_over_the_limit_gets_a_413(app_client: FlaskClient, path: str) -> None:
    response = app_client.post(path, data=b"x" * (4 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert "body is larger than" in response.get_json()["error"]


def test_an_error_inside_a_handler_is_a_500_that_says_nothing_of_it(
    app_client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """User mistakes are 400s; a bug is a 500 with a generic message, and its traceback is logged."""

    def broken(admission: Any, request: Any) -> Any:
        raise KeyError("a secret detail")

    monkeypatch.setitem(MUTATORS, ("serin.dev", "Canary"), broken)
    response = app_client.post(
        "/mutate",
        json=review(
            {"uid": "1", "operation": "CREATE", "kind": {"group": "serin.dev", "kind": "Canary"}, "object": {}}
        ),
    )
    assert (response.status_code, response.get_json()) == (500, {"error": "internal error"})
    assert "a secret detail" in caplog.text and "Traceback" in caplog.text


def test_mutate_canary_answers_with_defaults_as_json_patch(app_client: FlaskClient) -> None:
    response = app_client.post(
        "/mutate",
        json=review(
            {"uid": "abc", "operation": "CREATE", "kind": {"group": "serin.dev", "kind": "Canary"}, "object": CANARY}
        ),
    )
    assert response.status_code == 200
    answer = response.get_json()["response"]
    assert answer["uid"] == "abc" and answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(CANARY, json.loads(base64.b64decode(answer["patch"])))
    analysis = patched["spec"]["analysis"]
    assert (analysis["interval"], analysis["threshold"], analysis["maxWeight"]) == ("1m", 1, 100)
    assert analysis["metrics"][0]["interval"] == "1m"
    assert analysis["webhooks"][0] == {"name": "load", "url": "http://loadtester/", "type": "rollout", "timeout": "10s"}
    # Derived defaults stay unwritten, so they follow the field they come from when it changes.
    assert "name" not in patched["spec"]["service"] and "targetPort" not in patched["spec"]["service"]


def test_a_metric_interval_is_never_derived_from_the_analysis_interval() -> None:
    """Written as 30s it would stay 30s after the analysis interval changes: 1m, as in Flagger."""
    custom = json.loads(json.dumps(CANARY))
    custom["spec"]["analysis"]["interval"] = "30s"
    applied = jsonpatch.apply_patch(custom, defaults_patch(custom, "istio"))
    assert applied["spec"]["analysis"]["metrics"][0]["interval"] == "1m"


def test_defaults_never_override_what_is_set() -> None:
    custom = json.loads(json.dumps(CANARY))
    custom["spec"]["analysis"].update(interval="30s", threshold=5, maxWeight=50)
    custom["spec"]["service"]["name"] = "frontend"
    applied = jsonpatch.apply_patch(custom, defaults_patch(custom, "istio"))
    assert applied["spec"]["analysis"]["interval"] == "30s"
    assert applied["spec"]["analysis"]["maxWeight"] == 50
    assert applied["spec"]["service"]["name"] == "frontend"
    assert defaults_patch(applied, "istio") == []


class StoredCanaries:
    """Only Canary lookups, of the Canaries given by name (in namespace ``test``)."""

    def __init__(self, canaries: dict[str, dict[str, Any]]) -> None:
        self.canaries = canaries
        self.asked: list[str] = []

    def get_canary(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.asked.append(f"{namespace}/{name}")
        return self.canaries.get(name) if namespace == "test" else None


def make_admission(store: Any = None) -> Admission:
    store = NoApi() if store is None else store
    return Admission(store, store, "istio", own_username=lambda: "system:serviceaccount:serin-system:serin")


def targeting(kind: str, name: str) -> dict[str, Any]:
    canary: dict[str, Any] = json.loads(json.dumps(CANARY))
    canary["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": kind, "name": name}
    return canary


@pytest.mark.parametrize(
    ("canaries", "patch", "warnings"),
    [
        pytest.param(
            {"podinfo": targeting("Deployment", "podinfo")},
            [{"op": "replace", "path": "/spec/replicas", "value": 0}],
            [
                "Deployment podinfo is the target of canary podinfo: it stays at 0 replicas between releases (the "
                "primary serves); change its pod template to release"
            ],
            id="its-canary",
        ),
        pytest.param({}, [], [], id="canary-deleted"),
        pytest.param({"podinfo": targeting("Deployment", "frontend")}, [], [], id="canary-targets-another"),
        pytest.param({"podinfo": targeting("StatefulSet", "podinfo")}, [], [], id="canary-targets-another-kind"),
    ],
)
def test_a_target_is_held_at_zero_only_while_its_canary_targets_it(
    canaries: dict[str, dict[str, Any]], patch: list[dict[str, Any]], warnings: list[str]
) -> None:
    """A Canary deleted without revertOnDeletion leaves its target at 0 and labelled: scaling it up
    by hand must work then."""
    store = StoredCanaries(canaries)
    verdict = make_admission(store).mutate_workload(
        {
            "operation": "UPDATE",
            "object": {**deployment("podinfo:1", 3), "kind": "Deployment"},
            "oldObject": {**deployment("podinfo:1", 0), "kind": "Deployment"},
            "userInfo": {"username": "alice"},
        }
    )
    assert (verdict.allowed, verdict.patch, verdict.warnings, store.asked) == (True, patch, warnings, ["test/podinfo"])


@pytest.mark.parametrize(
    ("old_replicas", "new_replicas", "expected"),
    [
        pytest.param(0, 2, [{"op": "replace", "path": "/spec/replicas", "value": 0}], id="idle-target-stays-at-zero"),
        pytest.param(0, None, [{"op": "add", "path": "/spec/replicas", "value": 0}], id="replicas-omitted"),
        pytest.param(2, 2, [], id="running-canary-untouched"),
        pytest.param(0, 0, [], id="already-zero"),
    ],
)
def test_an_unchanged_template_needs_no_api_request_but_to_hold_a_target_at_zero(
    old_replicas: int, new_replicas: int | None, expected: list[dict[str, Any]]
) -> None:
    store = StoredCanaries({"podinfo": targeting("Deployment", "podinfo")}) if expected else None
    verdict = make_admission(store).mutate_workload(
        {
            "operation": "UPDATE",
            "object": deployment("podinfo:1", new_replicas),
            "oldObject": deployment("podinfo:1", old_replicas),
        }
    )
    assert verdict.allowed and verdict.patch == expected


def test_primary_template_change_by_someone_else_is_denied() -> None:
    old, new = deployment("podinfo:1", 2), deployment("podinfo:2", 2)
    for obj in (old, new):
        obj["metadata"] = {"name": "podinfo-primary", "labels": {"app.kubernetes.io/managed-by": "serin"}}
    admission = make_admission()
    denied = admission.validate_workload(
        {"operation": "UPDATE", "object": new, "oldObject": old, "userInfo": {"username": "alice"}}
    )
    assert not denied.allowed and "edit Deployment podinfo instead" in denied.message
    allowed = admission.validate_workload(
        {
            "operation": "UPDATE",
            "object": new,
            "oldObject": old,
            "userInfo": {"username": "system:serviceaccount:serin-system:serin"},
        }
    )
    assert allowed.allowed
    scaled = deployment("podinfo:1", 5)
    scaled["metadata"] = old["metadata"]
    assert admission.validate_workload(
        {"operation": "UPDATE", "object": scaled, "oldObject": old, "userInfo": {"username": "hpa"}}
    ).allowed


def test_a_primary_template_change_that_drops_the_label_is_denied_too() -> None:
    old, new = deployment("podinfo:1", 2), deployment("podinfo:2", 2)
    old["metadata"] = {"name": "podinfo-primary", "labels": {"app.kubernetes.io/managed-by": "serin"}}
    new["metadata"] = {"name": "podinfo-primary", "labels": {}}
    denied = make_admission().validate_workload(
        {"operation": "UPDATE", "object": new, "oldObject": old, "userInfo": {"username": "alice"}}
    )
    assert (denied.allowed, denied.code) == (False, 403)


def test_serin_itself_may_scale_an_idle_target_up() -> None:
    verdict = make_admission().mutate_workload(
        {
            "operation": "UPDATE",
            "object": deployment("podinfo:1", 2),
            "oldObject": deployment("podinfo:1", 0),
            "userInfo": {"username": "system:serviceaccount:serin-system:serin"},
        }
    )
    assert verdict.allowed and verdict.patch == []


def daemonset(node_selector: dict[str, str] | None, template_spec: bool = True) -> dict[str, Any]:
    obj = deployment("podinfo:1", None)
    obj["kind"] = "DaemonSet"
    if node_selector is not None:
        obj["spec"]["template"]["spec"]["nodeSelector"] = node_selector
    if not template_spec:
        del obj["spec"]["template"]["spec"]
    return obj


HELD = {"serin.dev/scale-to-zero": "true"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            daemonset(HELD),
            daemonset(None),
            [{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": HELD}],
            id="applied-without-selectors",
        ),
        pytest.param(
            daemonset({**HELD, "disk": "ssd"}),
            daemonset({"disk": "ssd"}),
            [{"op": "add", "path": "/spec/template/spec/nodeSelector/serin.dev~1scale-to-zero", "value": "true"}],
            id="applied-with-its-own-selector",
        ),
        pytest.param(daemonset(HELD), daemonset(HELD), [], id="still-held"),
        pytest.param(daemonset(None), daemonset(None), [], id="running-canary-untouched"),
    ],
)
def test_an_idle_daemonset_target_stays_held_on_no_node(
    old: dict[str, Any], new: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    store = StoredCanaries({"podinfo": targeting("DaemonSet", "podinfo")}) if expected else None
    verdict = make_admission(store).mutate_workload({"operation": "UPDATE", "object": new, "oldObject": old})
    assert verdict.allowed and verdict.patch == expected
    if expected:
        assert verdict.warnings == [
            "DaemonSet podinfo is the target of canary podinfo: it runs on no node between releases (the primary "
            "serves); change its pod template to release"
        ]


def test_a_statefulset_target_cannot_change_its_volume_claims() -> None:
    def statefulset(size: str) -> dict[str, Any]:
        obj = deployment("podinfo:1", 0)
        obj["kind"] = "StatefulSet"
        claim = {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": size}}}}
        obj["spec"]["volumeClaimTemplates"] = [claim]
        return obj

    verdict = make_admission().mutate_workload(
        {"operation": "UPDATE", "object": statefulset("5Gi"), "oldObject": statefulset("1Gi")}
    )
    assert (verdict.allowed, verdict.code) == (False, 422)
    assert verdict.message == (
        "StatefulSet podinfo is the target of canary podinfo: its volumeClaimTemplates cannot change (changed data), "
        "and podinfo-primary could not be given them either; to change them, delete the Canary, recreate podinfo "
        "with them, and create the Canary again"
    )


def selected(canary: dict[str, Any], field: str) -> str:
    """A Canary's selectable field as the API server reads it: an absent one is empty."""
    value: Any = canary
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return str(value or "")


class CanaryList:
    """Only the lookups Canary validation makes: the Canaries of a namespace by field selector
    (each asked recorded; a list of them all fails the test), no MetricTemplates, and a target
    that exists."""

    def __init__(self, canaries: list[dict[str, Any]]) -> None:
        self.canaries = canaries
        self.asked: list[str] = []

    def first_canaries(self, namespace: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        self.asked.append(f"limit={limit}")
        return self.canaries[:limit], len(self.canaries) > limit

    def canaries_with(self, namespace: str, field: str, value: str) -> list[dict[str, Any]]:
        self.asked.append(f"{field}={value}")
        return [canary for canary in self.canaries if selected(canary, field) == value]

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        raise AssertionError("listed every Canary of the namespace")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return {"kind": kind, "metadata": {"name": name, "namespace": namespace}}


def validation(request: dict[str, Any], canaries: list[dict[str, Any]] | None = None) -> Any:
    store: Any = CanaryList(canaries or [])
    admission = Admission(store, store, "istio", own_username=lambda: "serin")
    return admission.validate_canary({"namespace": "test", "dryRun": True, **request})


class SharedNamespace(CanaryList):
    """Namespace ``ops`` holds a MetricTemplate and an AlertProvider, annotated with ``shared_with``."""

    def __init__(self, shared_with: str | None) -> None:
        super().__init__([])
        self.annotations = {} if shared_with is None else {SHARED_WITH: shared_with}

    def get_metric_template(self, namespace: str, name: str) -> dict[str, Any]:
        assert namespace == "ops"
        metadata = {"name": name, "namespace": namespace, "annotations": self.annotations}
        return {"metadata": metadata, "spec": {"provider": {"type": "prometheus"}, "query": "up"}}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind != "AlertProvider":
            return super().get(kind, namespace, name)
        assert namespace == "ops"
        return {"metadata": {"name": name, "namespace": namespace, "annotations": self.annotations}, "spec": {}}


@pytest.mark.parametrize(
    ("shared_with", "problems"),
    [
        pytest.param(
            None,
            [
                "spec.analysis.metrics[1].templateRef: MetricTemplate ops/errors is not shared with namespace test: "
                "its annotation serin.dev/allowed-namespaces must name test (or be *)",
                "spec.analysis.alerts[0].providerRef: AlertProvider ops/chat is not shared with namespace test: "
                "its annotation serin.dev/allowed-namespaces must name test (or be *)",
            ],
            id="not-shared",
        ),
        pytest.param("shop, test", [], id="shared"),
    ],
)
def test_another_namespaces_template_or_alert_provider_needs_its_consent(
    shared_with: str | None, problems: list[str]
) -> None:
    canary = json.loads(json.dumps(CANARY))
    canary["spec"]["analysis"]["metrics"].append(
        {"name": "errors", "templateRef": {"name": "errors", "namespace": "ops"}, "thresholdRange": {"max": 1}}
    )
    canary["spec"]["analysis"]["alerts"] = [{"name": "chat", "providerRef": {"name": "chat", "namespace": "ops"}}]
    store: Any = SharedNamespace(shared_with)
    admission = Admission(store, store, "istio", own_username=lambda: "serin")
    verdict = admission.validate_canary({"namespace": "test", "dryRun": True, "operation": "CREATE", "object": canary})
    expected = "\n  ".join(["Canary podinfo is invalid:", *problems]) if problems else ""
    assert (verdict.allowed, verdict.message if problems else "") == (not problems, expected)


class NoTemplates(CanaryList):
    """Canary validation's lookups, failing the test if a MetricTemplate or AlertProvider is read."""

    def get_metric_template(self, namespace: str, name: str) -> dict[str, Any]:
        raise AssertionError(f"MetricTemplate {namespace}/{name} read")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind != "AlertProvider", f"AlertProvider {namespace}/{name} read"
        return super().get(kind, namespace, name)


def test_a_template_or_alert_provider_in_a_namespace_the_install_does_not_serve_is_denied() -> None:
    """Denied with the field path, and not read: a namespaced install reads nothing elsewhere."""
    canary = json.loads(json.dumps(CANARY))
    canary["spec"]["analysis"]["metrics"].append(
        {"name": "errors", "templateRef": {"name": "errors", "namespace": "ops"}, "thresholdRange": {"max": 1}}
    )
    canary["spec"]["analysis"]["alerts"] = [{"name": "chat", "providerRef": {"name": "chat", "namespace": "ops"}}]
    store: Any = NoTemplates([])
    admission = Admission(store, store, "istio", own_username=lambda: "serin", scope=Scope(("test", "shop")))
    verdict = admission.validate_canary({"namespace": "test", "dryRun": True, "operation": "CREATE", "object": canary})
    served = (
        "namespace ops is not served by this install of Serin, which serves test, shop only (SERIN_WATCH_NAMESPACES)"
    )
    assert (verdict.allowed, verdict.code, verdict.message) == (
        False,
        422,
        "Canary podinfo is invalid:\n"
        f"  spec.analysis.metrics[1].templateRef: MetricTemplate ops/errors: {served}\n"
        f"  spec.analysis.alerts[0].providerRef: AlertProvider ops/chat: {served}",
    )


def primary_update(namespace: str) -> dict[str, Any]:
    """A hand edit of a primary's pod template: denied in a namespace served (after asking the API
    server who Serin is)."""
    old = deployment("podinfo:1", 2)
    old["metadata"] = {
        "name": "podinfo-primary",
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "serin"},
    }
    new = json.loads(json.dumps(old))
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:2"
    return {"operation": "UPDATE", "kind": {"group": "apps", "kind": "Deployment"}, "object": new, "oldObject": old}


def target_scaled_up(namespace: str) -> dict[str, Any]:
    """An idle target scaled up by hand: held at zero in a namespace served (after asking the API
    server whether its Canary still targets it)."""
    old, new = deployment("podinfo:1", 0), deployment("podinfo:1", 3)
    for side in (old, new):
        side["metadata"]["namespace"] = namespace
    return {"operation": "UPDATE", "kind": {"group": "apps", "kind": "Deployment"}, "object": new, "oldObject": old}


def canary_created(namespace: str) -> dict[str, Any]:
    """A Canary that would be given its defaults, and checked against the cluster."""
    obj = json.loads(json.dumps(CANARY))
    obj["metadata"]["namespace"] = namespace
    return {"operation": "CREATE", "kind": {"group": "serin.dev", "kind": "Canary"}, "object": obj}


@pytest.mark.parametrize(
    ("path", "request_of"),
    [
        pytest.param("/mutate", canary_created, id="canary-defaults"),
        pytest.param("/validate", canary_created, id="canary-validation"),
        pytest.param("/mutate", target_scaled_up, id="target-held-at-zero"),
        pytest.param("/validate", primary_update, id="primary-protection"),
    ],
)
def test_a_review_from_a_namespace_the_install_does_not_serve_is_allowed_untouched(
    namespaced_client: FlaskClient, path: str, request_of: Any
) -> None:
    """Allowed as it is, without a request to the API server (there is none to reach: one would be
    a 500 or a denial). In a namespace served, the same review is worked on as ever."""
    answer = namespaced_client.post(path, json=review({"uid": "r1", "namespace": "team-b", **request_of("team-b")}))
    assert (answer.status_code, answer.get_json()["response"]) == (200, {"uid": "r1", "allowed": True})
    served = namespaced_client.post(path, json=review({"uid": "r2", "namespace": "team-a", **request_of("team-a")}))
    assert served.get_json().get("response") != {"uid": "r2", "allowed": True}, served.get_json()


def test_target_may_not_change_while_progressing() -> None:
    old = json.loads(json.dumps(CANARY))
    old["status"] = {"phase": "Progressing"}
    new = json.loads(json.dumps(CANARY))
    new["spec"]["targetRef"]["name"] = "frontend"
    verdict = validation({"operation": "UPDATE", "object": new, "oldObject": old})
    assert not verdict.allowed
    assert "spec.targetRef: cannot change while the canary is Progressing" in verdict.message
    old["status"] = {"phase": "Succeeded"}
    assert validation({"operation": "UPDATE", "object": new, "oldObject": old}).allowed


def test_short_interval_is_allowed_as_is() -> None:
    """The tick's Pod ticks as often as the Canaries need, down to the 10s minimum."""
    quick = json.loads(json.dumps(CANARY))
    quick["spec"]["analysis"]["interval"] = "10s"
    verdict = validation({"operation": "CREATE", "object": quick})
    assert (verdict.allowed, verdict.warnings) == (True, [])


def test_a_flagger_canary_with_iterations_and_step_weight_is_admitted_with_a_warning() -> None:
    both = json.loads(json.dumps(CANARY))
    both["spec"]["analysis"]["iterations"] = 5
    verdict = validation({"operation": "CREATE", "object": both})
    assert (verdict.allowed, verdict.warnings) == (
        True,
        ["spec.analysis.stepWeight: ignored: iterations take precedence (A/B testing or blue/green)"],
    )


def test_second_canary_for_a_target_is_denied() -> None:
    other = json.loads(json.dumps(CANARY))
    other["metadata"]["name"] = "first"
    verdict = validation({"operation": "CREATE", "object": CANARY}, canaries=[other])
    assert not verdict.allowed
    assert "spec.targetRef: Deployment podinfo is already the target of canary first" in verdict.message


@pytest.mark.parametrize(
    ("mine", "theirs", "message"),
    [
        pytest.param(
            {"targetRef": {"kind": "Deployment", "name": "podinfo-primary"}, "service": {"port": 80, "name": "web"}},
            {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "service": {"port": 80}},
            "spec.targetRef: Deployment podinfo-primary and canary other's target podinfo: one is the other's primary",
            id="targets-the-others-primary",
        ),
        pytest.param(
            {"targetRef": {"kind": "Deployment", "name": "shop"}, "service": {"port": 80, "name": "podinfo"}},
            {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "service": {"port": 80}},
            "spec.service.name: the Services of 'podinfo' would be those of canary other ('podinfo')",
            id="same-service-name",
        ),
        pytest.param(
            {"targetRef": {"kind": "Deployment", "name": "shop"}, "service": {"port": 80, "name": "podinfo-canary"}},
            {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "service": {"port": 80}},
            "spec.service.name: the Services of 'podinfo-canary' would be those of canary other ('podinfo')",
            id="apex-is-the-others-canary-service",
        ),
    ],
)
def test_a_canary_may_not_take_over_another_ones_objects(
    mine: dict[str, Any], theirs: dict[str, Any], message: str
) -> None:
    canary = json.loads(json.dumps(CANARY))
    canary["spec"].update(mine)
    other = {"metadata": {"name": "other", "namespace": "test"}, "spec": {**theirs, "analysis": {"stepWeight": 10}}}
    verdict = validation({"operation": "CREATE", "object": canary}, canaries=[other])
    assert not verdict.allowed
    assert message in verdict.message, verdict.message


class NamedCanaries(StoredCanaries):
    """The lookups a Canary CREATE's defaulting makes: the namespace's Canaries, a page of them (all:
    they are few) and by name."""

    def first_canaries(self, namespace: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        return list(self.canaries.values()), False


def being_deleted(canary: dict[str, Any]) -> dict[str, Any]:
    deleted: dict[str, Any] = json.loads(json.dumps(canary))
    deleted["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    return deleted


@pytest.mark.parametrize(
    ("stored", "dry_run", "bootstrapped"),
    [
        pytest.param({}, False, [("test", "podinfo")], id="a-new-name"),
        pytest.param({"podinfo": targeting("Deployment", "shop")}, False, [], id="the-name-of-another-canary"),
        pytest.param(
            {"podinfo": being_deleted(targeting("Deployment", "podinfo"))},
            False,
            [],
            id="the-name-of-one-being-deleted",
        ),
        pytest.param({}, True, [], id="a-dry-run"),
    ],
)
def test_a_create_whose_name_is_taken_bootstraps_nothing(
    monkeypatch: pytest.MonkeyPatch,
    stored: dict[str, dict[str, Any]],
    dry_run: bool,
    bootstrapped: list[tuple[str, str]],
) -> None:
    """The API server answers such a CREATE with AlreadyExists after the webhooks; bootstrapped by
    name, the Canary that has the name would be acted on for a request that was never its own."""
    submitted: list[tuple[str, str]] = []
    monkeypatch.setattr(Bootstraps, "submit", lambda self, namespace, name: submitted.append((namespace, name)))
    store = NamedCanaries(stored)
    other_target = targeting("Deployment", "debug-shell")
    other_target["spec"]["service"]["name"] = "ledger"
    verdict = make_admission(store).mutate_canary(
        {"operation": "CREATE", "namespace": "test", "object": other_target, "dryRun": dry_run}
    )
    assert (verdict.allowed, submitted) == (True, bootstrapped)


def test_a_canary_deleted_before_its_bootstrap_is_left_to_the_tick() -> None:
    """Stored, then deleted at once: bootstrapping it would undo what its revert gives back."""
    store = StoredCanaries({"podinfo": being_deleted(CANARY)})
    assert make_admission(store)._bootstrap_stored("test", "podinfo") is True
    assert store.asked == ["test/podinfo"]


def other_canaries(count: int, clashing: int) -> list[dict[str, Any]]:
    """``count`` Canaries of their own targets; the one at ``clashing`` would take podinfo's canary Service."""
    others = []
    for index in range(count):
        other = targeting("Deployment", f"app-{index}")
        other["metadata"] = {"name": f"app-{index}", "namespace": "test"}
        others.append(other)
    others[clashing]["spec"]["service"]["name"] = "podinfo-canary"
    return others


TAKES_THE_CANARY_SERVICE = (
    "spec.service.name: the Services of 'podinfo' would be those of canary app-{index} ('podinfo-canary'): give "
    "this Canary another spec.service.name"
)


def test_a_canary_is_checked_against_the_others_with_a_few_requests_however_many_there_are() -> None:
    """At 1,000 Canaries in the namespace, the ones that could share the target or the Services
    are asked for by field selector, six requests each answered with those alone (after a first
    page of 20, which shows that the namespace holds more)."""
    store = CanaryList(other_canaries(1000, clashing=500))
    admission = Admission(cast(Any, store), cast(Any, store), "istio", own_username=lambda: "serin")
    verdict = admission.validate_canary({"namespace": "test", "dryRun": True, "operation": "CREATE", "object": CANARY})
    assert (verdict.allowed, verdict.message) == (
        False,
        "Canary podinfo is invalid:\n  " + TAKES_THE_CANARY_SERVICE.format(index=500),
    )
    assert store.asked == [
        "limit=20",
        "spec.targetRef.name=podinfo",
        "spec.targetRef.name=podinfo-canary",
        "spec.targetRef.name=podinfo-primary",
        "spec.service.name=podinfo",
        "spec.service.name=podinfo-canary",
        "spec.service.name=podinfo-primary",
    ]


def test_a_few_canaries_are_read_in_one_request() -> None:
    store = CanaryList(other_canaries(20, clashing=7))
    admission = Admission(cast(Any, store), cast(Any, store), "istio", own_username=lambda: "serin")
    verdict = admission.validate_canary({"namespace": "test", "dryRun": True, "operation": "CREATE", "object": CANARY})
    assert (verdict.allowed, verdict.message) == (
        False,
        "Canary podinfo is invalid:\n  " + TAKES_THE_CANARY_SERVICE.format(index=7),
    )
    assert store.asked == ["limit=20"]


@pytest.mark.parametrize(
    ("spec", "selectors"),
    [
        pytest.param(
            {"targetRef": {"name": "shop-primary"}, "service": {"name": "web-canary"}},
            [
                ("spec.targetRef.name", "shop"),
                ("spec.targetRef.name", "shop-primary"),
                ("spec.targetRef.name", "shop-primary-primary"),
                ("spec.targetRef.name", "web"),
                ("spec.targetRef.name", "web-canary"),
                ("spec.targetRef.name", "web-canary-canary"),
                ("spec.targetRef.name", "web-canary-primary"),
                ("spec.service.name", "web"),
                ("spec.service.name", "web-canary"),
                ("spec.service.name", "web-canary-canary"),
                ("spec.service.name", "web-canary-primary"),
            ],
            id="names-with-serins-suffixes",
        ),
        pytest.param({"targetRef": {"name": ""}, "service": {}}, [], id="no-names"),
    ],
)
def test_the_canaries_that_could_clash_are_found_by_these_selectors(
    spec: dict[str, Any], selectors: list[tuple[str, str]]
) -> None:
    assert clash_selectors(spec) == selectors


class CanaryListBeforeSelectableFields(CanaryList):
    """An API server whose Canary CRD has no selectableFields yet (not applied since an upgrade)."""

    def canaries_with(self, namespace: str, field: str, value: str) -> list[dict[str, Any]]:
        raise KubeRejected(f"list canaries in {namespace}: 400 field label not supported: {field}")

    def list_canaries(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.asked.append("list")
        return self.canaries


def test_a_crd_without_selectable_fields_is_answered_by_the_list() -> None:
    store = CanaryListBeforeSelectableFields(other_canaries(30, clashing=25))
    admission = Admission(cast(Any, store), cast(Any, store), "istio", own_username=lambda: "serin")
    verdict = admission.validate_canary({"namespace": "test", "dryRun": True, "operation": "CREATE", "object": CANARY})
    assert (verdict.allowed, verdict.message) == (
        False,
        "Canary podinfo is invalid:\n  " + TAKES_THE_CANARY_SERVICE.format(index=25),
    )
    assert store.asked == ["limit=20", "list"]


# ---- what the log keeps ----------------------------------------------------------------------


class JsonLines(logging.Handler):
    """Each record as the server's JSON line, formatted when it is logged (inside its review's context)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        del line["time"]
        self.lines.append(line)


@pytest.fixture
def admission_log() -> Iterator[list[dict[str, Any]]]:
    """The lines of the admission handler, at every level (the server logs at info by default)."""
    logger = logging.getLogger("serin.handlers.admission")
    handler, level = JsonLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def unlabelled_deployment(image: str) -> dict[str, Any]:
    """A Deployment no Canary targets and Serin does not manage (no label of Serin's)."""
    obj = deployment(image, 3)
    obj["metadata"] = {"name": "checkout", "namespace": "test", "labels": {"app": "checkout"}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", **obj}


TOO_FAST = {**CANARY, "spec": {**CANARY["spec"], "analysis": {"interval": "5s", "stepWeight": 10}}}
CANARY_KIND = {"group": "serin.dev", "version": "v1beta1", "kind": "Canary"}
DEPLOYMENT_KIND = {"group": "apps", "version": "v1", "kind": "Deployment"}


@pytest.mark.parametrize(
    ("path", "request_fields", "line", "quiet"),
    [
        pytest.param(
            "/mutate",
            {"operation": "CREATE", "kind": CANARY_KIND, "name": "podinfo", "object": TOO_FAST},
            {
                "level": "info",
                "msg": "CREATE Canary podinfo denied: Canary podinfo is invalid:\n"
                "  spec.analysis.interval: must be at least 10s (got 5s)",
                "canary": "podinfo",
            },
            False,
            id="denied",
        ),
        pytest.param(
            "/mutate",
            {"operation": "CREATE", "kind": CANARY_KIND, "name": "podinfo", "object": CANARY},
            {"level": "info", "msg": "CREATE Canary podinfo allowed, 9 changes", "canary": "podinfo"},
            False,
            id="changed",
        ),
        pytest.param(
            "/mutate",
            {
                "operation": "UPDATE",
                "kind": DEPLOYMENT_KIND,
                "name": "checkout",
                "object": unlabelled_deployment("checkout:2"),
                "oldObject": unlabelled_deployment("checkout:1"),
            },
            {"level": "debug", "msg": "UPDATE Deployment checkout allowed: not Serin's"},
            True,
            id="not-a-target",
        ),
        pytest.param(
            "/validate",
            {
                "operation": "UPDATE",
                "kind": DEPLOYMENT_KIND,
                "name": "checkout",
                "object": unlabelled_deployment("checkout:2"),
                "oldObject": unlabelled_deployment("checkout:1"),
            },
            {"level": "debug", "msg": "UPDATE Deployment checkout allowed: not Serin's"},
            True,
            id="not-a-primary",
        ),
        pytest.param(
            "/mutate",
            {
                "operation": "UPDATE",
                "kind": DEPLOYMENT_KIND,
                "name": "podinfo",
                "object": deployment("podinfo:1", 2),
                "oldObject": deployment("podinfo:1", 2),
            },
            {"level": "debug", "msg": "UPDATE Deployment podinfo allowed"},
            True,
            id="a-target-allowed-as-it-is",
        ),
    ],
)
def test_the_log_keeps_denials_and_changes_at_info_with_the_review_uid(
    app_client: FlaskClient,
    admission_log: list[dict[str, Any]],
    path: str,
    request_fields: dict[str, Any],
    line: dict[str, Any],
    quiet: bool,
) -> None:
    """A review allowed as it is (most of them: every Deployment update the selectors let
    through) is logged at debug only, and left out of the access log (``SERIN_ACCESS_LOG``)."""
    app: Any = app_client.application
    environs: list[dict[str, Any]] = []
    serve = app.wsgi_app

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        environs.append(environ)  # as gunicorn hands it to its access log after the answer
        return serve(environ, start_response)

    app.wsgi_app = recording
    response = app_client.post(path, json=review({"uid": "7c1e", "namespace": "test", **request_fields}))
    assert response.status_code == 200
    expected = {"logger": "serin.handlers.admission", "request_id": "7c1e", "namespace": "test", **line}
    assert admission_log == [expected]
    assert [environ.get(logs.QUIET, False) for environ in environs] == [quiet]


@pytest.mark.parametrize("uid", ["7c1e", 'a"b\\c\u00e9'])
def test_the_answer_to_a_review_allowed_as_it_is_is_what_jsonify_writes(app_client: FlaskClient, uid: str) -> None:
    """Written without the JSON provider, byte for byte what it would write."""
    app: Any = app_client.application
    with app.test_request_context():
        assert _allowed_as_is(uid)[0].get_data() == _answered(uid, Verdict())[0].get_data()
