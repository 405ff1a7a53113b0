"""Which ``kubectl get`` forms the tests' reader answers itself, and what it asks for."""

from __future__ import annotations

import pytest

from localcluster.reads import Get, Resource, parse


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("deployment", "podinfo", "-n", "ns"), Get("deployment", "podinfo", "ns", {}, False)),
        (("Canaries.serin.dev", "podinfo", "--namespace=ns"), Get("canaries.serin.dev", "podinfo", "ns", {}, False)),
        (("pods", "-n", "ns", "-l", "app=web"), Get("pods", None, "ns", {"labelSelector": "app=web"}, False)),
        (
            ("events", "-n", "ns", "--field-selector", "involvedObject.kind=Canary"),
            Get("events", None, "ns", {"fieldSelector": "involvedObject.kind=Canary"}, False),
        ),
        (("httproute", "p", "-n", "ns", "--show-managed-fields"), Get("httproute", "p", "ns", {}, True)),
        (("crd", "canaries.serin.dev"), Get("crd", "canaries.serin.dev", None, {}, False)),
        # Left to kubectl: several kinds, kind/name, other flags, a selector with a name, a dangling flag.
        (("deploy,svc", "-n", "ns"), None),
        (("deployment/podinfo", "-n", "ns"), None),
        (("pods", "-A"), None),
        (("pods", "-o", "yaml"), None),
        (("pod", "p", "-l", "a=b", "-n", "ns"), None),
        (("pods", "-n"), None),
        ((), None),
        (("a", "b", "c"), None),
    ],
)
def test_parse(args: tuple[str, ...], expected: Get | None) -> None:
    assert parse(args) == expected


@pytest.mark.parametrize(
    ("resource", "namespace", "name", "path"),
    [
        (Resource("v1", "services", "Service", True), "ns", "web", "/api/v1/namespaces/ns/services/web"),
        (Resource("apps/v1", "deployments", "Deployment", True), "ns", None, "/apis/apps/v1/namespaces/ns/deployments"),
        (
            Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
            None,
            "a.b",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b",
        ),
        (Resource("v1", "pods", "Pod", True), "n s", "a/b", "/api/v1/namespaces/n%20s/pods/a%2Fb"),
    ],
)
def test_paths(resource: Resource, namespace: str | None, name: str | None, path: str) -> None:
    assert resource.path(namespace, name) == path
