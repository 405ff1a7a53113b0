"""pytest fixtures over the local control plane: one cluster per test session, one namespace per test.

On a laptop without the built binaries the integration tests skip with a hint; with ``CI=true``
a missing binary or a cluster that does not start is an error, never a skip. Set
``SERIN_KUBECONFIG`` to reuse a cluster that ``python -m localcluster up`` already runs (faster
while iterating); otherwise the session starts its own cluster in a temporary folder and stops
it at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localcluster import processes, reads
from localcluster.build import Binaries, BuildError, cached_binaries, ensure_binaries
from localcluster.cluster import ClusterError, LocalCluster


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class ClusterHandle:
    """What a test needs to talk to the cluster the way users and Serin do."""

    kubeconfig: Path
    kubectl_binary: Path
    urls: dict[str, str]
    state_dir: Path
    api: client.ApiClient = field(repr=False)
    reader: reads.Reader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reader = reads.Reader(self.api)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=processes.child_environment(),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]], *flags: str) -> subprocess.CompletedProcess[str]:
        items = manifest if isinstance(manifest, list) else [manifest]
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", *flags, input_text=document)

    def get_json(self, *args: str) -> dict[str, Any]:
        """What ``kubectl get ARGS -o json`` prints (read through the API client where it can be)."""
        answered = self.reader.get(args)
        if answered is not None:
            return answered
        data: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return data


def eventually(
    check: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.2,
    what: str = "condition",
    errors: tuple[type[Exception], ...] = (),
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value or error.

    ``errors``: more exceptions that mean "not yet" (assertions, API errors and missing keys do).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    expected: tuple[type[Exception], ...] = (AssertionError, client.ApiException, KeyError, *errors)
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except expected as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")


def deployment(name: str, namespace: str, replicas: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment whose pods kwok runs; ``annotations`` go on the pod template (simulator behaviour)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.7.0"}]},
            },
        },
    }


def service(name: str, namespace: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 9898}]},
    }


def binaries_or_skip() -> Binaries:
    """The built binaries; outside CI a test skips when they are not built, in CI they are built."""
    try:
        if in_ci():
            return ensure_binaries()
        # Outside CI never start an hour-long build from inside pytest: `make test` builds first.
        found = cached_binaries()
        if found is None:
            pytest.skip("local control plane not built: run `python -m localcluster build` (or `make test`)")
        return found
    except BuildError as error:
        pytest.fail(f"could not build the local control plane: {error}")


def start_or_fail(cluster: LocalCluster, binaries: Binaries, with_extras: bool = True) -> None:
    try:
        cluster.up(binaries, with_extras=with_extras)
    except ClusterError as error:
        cluster.down()
        pytest.fail(f"local control plane did not start: {error}")


@contextlib.contextmanager
def cluster_handle(cluster: LocalCluster, binaries: Binaries) -> Iterator[ClusterHandle]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield ClusterHandle(
            kubeconfig=cluster.kubeconfig,
            kubectl_binary=binaries.kubectl,
            urls=cluster.state().urls,
            state_dir=cluster.state_dir,
            api=api,
        )
    finally:
        api.close()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    binaries = binaries_or_skip()
    reuse = os.environ.get("SERIN_KUBECONFIG")
    own: LocalCluster | None = None
    if reuse:
        cluster = LocalCluster(Path(reuse).resolve().parent)
    else:
        own = cluster = LocalCluster(tmp_path_factory.mktemp("localcluster"))
        start_or_fail(cluster, binaries)
    try:
        with cluster_handle(cluster, binaries) as handle:
            yield handle
    finally:
        if own is not None:
            own.down()


@contextlib.contextmanager
def fresh_namespace(
    cluster: ClusterHandle, request: pytest.FixtureRequest, labels: dict[str, str] | None = None
) -> Iterator[str]:
    """A new namespace named after the test, with ``labels`` from its creation on; deleted
    (without waiting) when the block ends."""
    # A session's fixture has no test to be named after: it is named after the fixture.
    source = request.node.name or request.fixturename or "test"
    base = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def namespace_without_webhooks(local_cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that no admission webhook of Serin's acts in."""
    with fresh_namespace(local_cluster, request) as name:
        yield name
