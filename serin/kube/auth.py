"""Who is calling, and may they tick? Asked of the API server (TokenReview, SubjectAccessReview).

Serin keeps no credentials of its own: a caller proves itself with a Kubernetes token, and the
cluster's RBAC says whether it may ``tick`` Canaries where it wants to tick (a verb of Serin's own,
which lets a ticker act through Serin without being allowed to change Canaries), or ``get`` them
to replay and to look, or ``get`` a path of Serin's own such as ``/metrics`` (a non-resource URL,
as kube-rbac-proxy asks). A token is checked for the audience the caller names, Serin's for
``/tick``, so that no token sent there is one the API server itself would take.
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


def authenticate(store: KubeStore, token: str, audience: str = "") -> Identity | None:
    """The token's identity, or None when the API server does not accept the token (for
    ``audience``, when given)."""
    spec: dict[str, Any] = {"token": token}
    if audience:
        spec["audiences"] = [audience]
    review = store.request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        what="token review",
    )
    status = review.get("status", {})
    if not status.get("authenticated") or (audience and audience not in (status.get("audiences") or ())):
        return None
    user = status.get("user", {})
    return Identity(
        username=user.get("username", ""),
        uid=user.get("uid", ""),
        groups=tuple(user.get("groups") or ()),
        extra={key: list(value) for key, value in (user.get("extra") or {}).items()},
    )


def may_on_canaries(
    store: KubeStore, identity: Identity, verb: str, namespace: str | None, name: str | None = None
) -> tuple[bool, str]:
    """Whether ``identity`` may ``verb`` canaries.serin.dev in ``namespace`` (None: in every
    namespace), the Canary ``name`` when given (so that a grant by resourceNames counts), and the
    authorizer's reason."""
    attributes = {
        "group": API_GROUP,
        "resource": "canaries",
        "verb": verb,
        "namespace": namespace or "",
        **({"name": name} if name else {}),
    }
    return _access_review(store, identity, {"resourceAttributes": attributes})


def may_on_path(store: KubeStore, identity: Identity, verb: str, path: str) -> tuple[bool, str]:
    """Whether ``identity`` may ``verb`` the non-resource URL ``path`` (what RBAC grants with
    ``nonResourceURLs``), and the authorizer's reason."""
    return _access_review(store, identity, {"nonResourceAttributes": {"path": path, "verb": verb}})


def _access_review(store: KubeStore, identity: Identity, attributes: dict[str, Any]) -> tuple[bool, str]:
    spec: dict[str, Any] = {
        "user": identity.username,
        "uid": identity.uid,
        "groups": list(identity.groups),
        "extra": identity.extra,
        **attributes,
    }
    review = store.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        what="subject access review",
    )
    status = review.get("status", {})
    return bool(status.get("allowed")), str(status.get("reason", ""))
