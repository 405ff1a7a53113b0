"""The reviews Serin asks of the API server about a caller, and what it makes of the answers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from handlers.params import denied
from serin.config import Settings
from serin.kube.auth import Identity, authenticate, may_on_canaries, may_on_path
from serin.scope import WHOLE_CLUSTER, Scope


class Reviews:
    """Answers each review with ``status``; keeps what was asked."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.asked: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        self.asked.append(body)
        return {**body, "status": self.status}


ALICE = {"username": "alice", "uid": "u-1", "groups": ["team-a"]}


@pytest.mark.parametrize(
    ("status", "identity"),
    [
        pytest.param(
            {"authenticated": True, "user": ALICE, "audiences": ["serin"]},
            Identity("alice", "u-1", ("team-a",)),
            id="issued-for-serin",
        ),
        pytest.param({"authenticated": True, "user": ALICE, "audiences": []}, None, id="for-another-audience"),
        pytest.param({"authenticated": True, "user": ALICE}, None, id="audiences-unsaid"),
        pytest.param({"authenticated": False, "error": "token expired"}, None, id="not-accepted"),
    ],
)
def test_a_token_counts_only_when_it_was_issued_for_serin(status: dict[str, Any], identity: Identity | None) -> None:
    reviews = Reviews(status)
    assert authenticate(reviews, "t0ken", "serin") == identity  # type: ignore[arg-type]
    assert reviews.asked == [
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "t0ken", "audiences": ["serin"]},
        }
    ]


def test_without_an_audience_any_token_the_api_server_takes_counts() -> None:
    reviews = Reviews({"authenticated": True, "user": ALICE})
    assert authenticate(reviews, "t0ken") == Identity("alice", "u-1", ("team-a",))  # type: ignore[arg-type]
    assert reviews.asked[0]["spec"] == {"token": "t0ken"}


@pytest.mark.parametrize(
    ("namespace", "name", "attributes"),
    [
        (
            "shop",
            "web",
            {"group": "serin.dev", "resource": "canaries", "verb": "tick", "namespace": "shop", "name": "web"},
        ),
        ("shop", None, {"group": "serin.dev", "resource": "canaries", "verb": "tick", "namespace": "shop"}),
        (None, None, {"group": "serin.dev", "resource": "canaries", "verb": "tick", "namespace": ""}),
    ],
)
def test_the_access_review_names_the_canary_when_one_is_asked_for(
    namespace: str | None, name: str | None, attributes: dict[str, str]
) -> None:
    """So that a grant limited by resourceNames lets its holder tick that Canary."""
    reviews = Reviews({"allowed": False, "reason": "no binding"})
    alice = Identity("alice", "u-1", ("team-a",))
    assert may_on_canaries(reviews, alice, "tick", namespace, name) == (False, "no binding")  # type: ignore[arg-type]
    assert reviews.asked[0]["spec"] == {
        "user": "alice",
        "uid": "u-1",
        "groups": ["team-a"],
        "extra": {},
        "resourceAttributes": attributes,
    }


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        pytest.param({"allowed": True}, (True, ""), id="granted"),
        pytest.param({"allowed": False, "reason": "no binding"}, (False, "no binding"), id="refused"),
    ],
)
def test_the_access_review_of_a_path_asks_about_that_non_resource_url(
    status: dict[str, Any], answer: tuple[bool, str]
) -> None:
    """What RBAC grants with ``nonResourceURLs: ["/metrics"], verbs: ["get"]``."""
    reviews = Reviews(status)
    alice = Identity("alice", "u-1", ("team-a",), {"scopes": ["read"]})
    assert may_on_path(reviews, alice, "get", "/metrics") == answer  # type: ignore[arg-type]
    assert reviews.asked == [
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "alice",
                "uid": "u-1",
                "groups": ["team-a"],
                "extra": {"scopes": ["read"]},
                "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            },
        }
    ]


class PerNamespace:
    """Accepts any token as alice's; allows her to tick in the ``allowed`` namespaces only."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.asked: list[str] = []

    def request(self, method: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        if body["kind"] == "TokenReview":
            return {"status": {"authenticated": True, "user": ALICE, "audiences": ["serin"]}}
        namespace = body["spec"]["resourceAttributes"]["namespace"]
        self.asked.append(namespace or "*")
        allowed = namespace in self.allowed
        return {"status": {"allowed": allowed, "reason": "" if allowed else "no binding"}}


@pytest.mark.parametrize(
    ("scope", "allowed", "asked", "denial"),
    [
        pytest.param(WHOLE_CLUSTER, {""}, ["*"], None, id="whole-cluster"),
        pytest.param(Scope(("team-a", "team-b")), {"team-a", "team-b"}, ["team-a", "team-b"], None, id="namespaced"),
        pytest.param(
            Scope(("team-a", "team-b")),
            {"team-a"},
            ["team-a", "team-b"],
            (403, "alice may not tick canaries.serin.dev in namespace team-b (no binding)"),
            id="namespaced-one-denied",
        ),
    ],
)
def test_every_namespace_of_a_namespaced_install_is_each_namespace_it_serves(
    scope: Scope, allowed: set[str], asked: list[str], denial: tuple[int, str] | None
) -> None:
    """A whole tick of an install that serves some namespaces needs the verb in each of them,
    which a RoleBinding per namespace grants, not in every namespace of the cluster."""
    store = PerNamespace(allowed)
    engine = SimpleNamespace(settings=Settings(scope=scope), store=store)
    assert denied(engine, "t0ken", "tick", None) == denial  # type: ignore[arg-type]
    assert store.asked == asked
