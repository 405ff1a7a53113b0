"""Who is calling, and may they tick? Asked of the API server (TokenReview, SubjectAccessReview).

Serin keeps no credentials of its own: a caller proves itself with a Kubernetes token, and the
cluster's RBAC says whether it may update Canaries where it wants to tick (or get them, to replay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serin.kube.store import KubeStore
from serin.model import API_GROUP


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


def authenticate(store: KubeStore, token: str) -> Identity | None:
    """The token's identity, or None when the API server does not accept the token."""
    review = store.request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        what="token review",
    )
    status = review.get("status", {})
    if not status.get("authenticated"):
        return None
    user = status.get("user", {})
    return Identity(
        username=user.get("username", ""),
        uid=user.get("uid", ""),
        groups=tuple(user.get("groups") or ()),
        extra={key: list(value) for key, value in (user.get("extra") or {}).items()},
    )


def may_on_canaries(store: KubeStore, identity: Identity, verb: str, namespace: str | None) -> tuple[bool, str]:
    """Whether ``identity`` may ``verb`` canaries.serin.dev in ``namespace`` (None: in every
    namespace), and the authorizer's reason."""
    spec: dict[str, Any] = {
        "user": identity.username,
        "uid": identity.uid,
        "groups": list(identity.groups),
        "extra": identity.extra,
        "resourceAttributes": {
            "group": API_GROUP,
            "resource": "canaries",
            "verb": verb,
            "namespace": namespace or "",
        },
    }
    review = store.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        what="subject access review",
    )
    status = review.get("status", {})
    return bool(status.get("allowed")), str(status.get("reason", ""))
