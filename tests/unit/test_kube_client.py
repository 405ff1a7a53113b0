"""The connection to the API server: built from the kubernetes package's configuration and REST
transport as its ApiClient builds it, and the server imports no more of that package than it uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from serin.kube.client import KubeConnection

REPO = Path(__file__).resolve().parents[2]


def configuration(token: str | None) -> Any:
    made = client.Configuration(host="https://10.0.0.1:6443")
    if token is not None:
        made.api_key = {"authorization": token}
        made.api_key_prefix = {"authorization": "Bearer"}
    return made


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "token"),
    [
        pytest.param("GET", "/api/v1/namespaces/shop/services/web", [], None, "t0k3n", id="get"),
        pytest.param(
            "GET",
            "/apis/serin.dev/v1beta1/namespaces/shop/canaries",
            [("fieldSelector", "spec.targetRef.name=web\\,x"), ("labelSelector", "serin.dev/canary"), ("limit", "500")],
            None,
            "t0k3n",
            id="selectors",
        ),
        pytest.param(
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            [("fieldManager", "serin"), ("force", "true")],
            {"metadata": {"name": "web", "labels": {"a": "b c"}}, "spec": {"replicas": 0}},
            None,
            id="apply-without-a-token",
        ),
    ],
)
def test_a_request_is_built_as_the_packages_api_client_builds_it(
    method: str, path: str, query: list[tuple[str, str]], body: Any, token: str | None
) -> None:
    headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body else {})}
    parts = {"query_params": query, "header_params": dict(headers), "body": body, "auth_settings": ["BearerToken"]}
    theirs = client.ApiClient(configuration(token)).param_serialize(method=method, resource_path=path, **parts)
    parts["header_params"] = dict(headers)
    ours: Any = KubeConnection(configuration(token)).param_serialize(method=method, resource_path=path, **parts)
    assert ours == theirs


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code`` (run from the repository, as gunicorn runs)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {"PATH": "/usr/bin:/bin", "SERIN_ADMISSION_AUTHENTICATION": "none", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


# The parts of the kubernetes package Serin does not use, and what they would bring with them.
UNUSED = {
    "kubernetes.dynamic",
    "kubernetes.watch",
    "kubernetes.stream",
    "kubernetes.informer",
    "kubernetes.leaderelection",
    "kubernetes.utils.create_from_yaml",
    "kubernetes.client.api_client",
    "kubernetes.config.kube_config",
    "pydantic",
    "websocket",
    "oauthlib",
    "yaml",
}


def test_the_server_imports_only_the_parts_of_the_kubernetes_package_it_uses() -> None:
    """The app's modules, all of them, as gunicorn's worker imports them before the app is built;
    building it in a Pod then adds only the in-cluster loader."""
    modules = imported_by("import handlers")
    assert {"kubernetes.client.configuration", "kubernetes.client.rest", "flask"} <= modules
    assert sorted(UNUSED & modules) == []


def test_the_rest_of_the_package_is_there_for_whoever_asks() -> None:
    code = (
        "import serin.kube.client\n"
        "import kubernetes\n"
        "from kubernetes import config, utils\n"
        "assert callable(config.load_kube_config) and callable(config.new_client_from_config)\n"
        "assert utils.parse_quantity('1Ki') == 1024 and kubernetes.__version__\n"
        "from kubernetes.watch import Watch\n"
        "from kubernetes.config import ConfigException\n"
    )
    assert {"kubernetes.config.kube_config", "kubernetes.watch"} <= imported_by(code)
