"""The API paths the store asks: a namespace or name is always one segment of its own."""

from __future__ import annotations

import pytest

from serin.kube.store import collection_path, object_path


@pytest.mark.parametrize(
    ("namespace", "name", "path"),
    [
        ("shop", "web", "/apis/apps/v1/namespaces/shop/deployments/web"),
        ("shop", "web.v2", "/apis/apps/v1/namespaces/shop/deployments/web.v2"),
        (
            "x/../../../../api/v1/namespaces/kube-system/secrets/foo?",
            "web",
            "/apis/apps/v1/namespaces/x%2F..%2F..%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system%2Fsecrets%2Ffoo%3F"
            "/deployments/web",
        ),
        ("..", "..", "/apis/apps/v1/namespaces/%2E%2E/deployments/%2E%2E"),
        ("shop", ".", "/apis/apps/v1/namespaces/shop/deployments/%2E"),
    ],
)
def test_a_namespace_or_name_cannot_reach_another_path(namespace: str, name: str, path: str) -> None:
    assert object_path("Deployment", namespace, name) == path


def test_without_a_namespace_the_path_is_cluster_wide() -> None:
    assert collection_path("Deployment", None) == "/apis/apps/v1/deployments"
