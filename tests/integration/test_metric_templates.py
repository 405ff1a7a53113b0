"""A release judged by a MetricTemplate on a backend other than Prometheus: the Serin server asks a
Datadog API of the test's own (``tests.unit.test_metrics_datadog.FakeDatadog``, written from
Datadog's API reference) with the keys of a Secret in another namespace than the Canary's, and the
real tick promotes a release whose error rate is low and rolls back one whose rate is high."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.testing import ClusterHandle
from tests.integration.helpers import (
    SerinServer,
    drive,
    events,
    initialized,
    podinfo,
    set_image,
)
from tests.unit.servers import serving
from tests.unit.test_metrics_datadog import API_KEY, APPLICATION_KEY, FakeDatadog

pytestmark = pytest.mark.integration

QUERY = "sum:http.errors{kube_namespace:{{ namespace }},kube_deployment:{{ target }}}.as_count()"


@pytest.fixture
def datadog() -> Iterator[FakeDatadog]:
    server = FakeDatadog()
    with serving(server):
        yield server
        server.release.set()


def template(namespace: str, address: str, shared_with: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "datadog", "namespace": namespace},
            "stringData": {"datadog_api_key": API_KEY, "datadog_application_key": APPLICATION_KEY},
        },
        {
            "apiVersion": "serin.dev/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {
                "name": "error-count",
                "namespace": namespace,
                "annotations": {"serin.dev/allowed-namespaces": shared_with},
            },
            "spec": {
                "provider": {"type": "datadog", "address": address, "secretRef": {"name": "datadog"}},
                "query": QUERY,
            },
        },
    ]


def test_a_datadog_template_promotes_a_good_release_and_rolls_back_a_bad_one(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    datadog: FakeDatadog,
) -> None:
    token = tokens["ticker"]
    shared = f"{namespace}-m"
    local_cluster.kubectl("create", "namespace", shared)
    try:
        local_cluster.apply(template(shared, datadog.url, shared_with=namespace))
        rendered = QUERY.replace("{{ namespace }}", namespace).replace("{{ target }}", "podinfo")
        analysis = {
            "interval": "10s",
            "threshold": 2,
            "maxWeight": 40,
            "stepWeight": 20,
            "metrics": [
                {
                    "name": "errors",
                    "interval": "5s",
                    "templateRef": {"name": "error-count", "namespace": shared},
                    "thresholdRange": {"max": 5},
                }
            ],
        }
        initialized(local_cluster, serin_server, token, namespace, analysis=analysis)

        datadog.series[rendered] = [[[1_700_000_000_000, 1.0]]]
        set_image(local_cluster, namespace, "6.0.1")
        drive(local_cluster, serin_server, token, namespace, "Succeeded")
        asked = [sent for sent in datadog.received if sent.params.get("query") == rendered]
        assert asked and all(sent.headers["DD-API-KEY"] == API_KEY for sent in asked)

        datadog.series[rendered] = [[[1_700_000_000_000, 40.0]]]
        bad = podinfo(namespace, "ghcr.io/stefanprodan/podinfo:6.0.2")
        bad["spec"]["replicas"] = 0
        local_cluster.apply(bad)
        drive(local_cluster, serin_server, token, namespace, "Failed")
        history = events(local_cluster, namespace)
        assert f"Halt podinfo.{namespace} advancement errors 40.00 > 5" in history
        assert f"Rolling back podinfo.{namespace} failed checks threshold reached 2" in history
        assert not any(API_KEY in message or APPLICATION_KEY in message for message in history)
    finally:
        local_cluster.kubectl("delete", "namespace", shared, "--wait=false")


PROVIDER_EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "providers").glob("*.yaml"))


def examples_in(namespace: str, example: Path) -> list[dict[str, Any]]:
    documents = [document for document in yaml.safe_load_all(example.read_text()) if document]
    for document in documents:
        document["metadata"]["namespace"] = namespace
    return documents


@pytest.mark.parametrize("example", PROVIDER_EXAMPLES, ids=[path.name for path in PROVIDER_EXAMPLES])
def test_the_provider_examples_fit_the_crds(
    local_cluster: ClusterHandle, serin_crds: None, namespace: str, example: Path
) -> None:
    """Each example, applied as the README says: the MetricTemplates first (the alerting
    example's Canary uses one of them, and admission checks that it exists)."""
    templates = [
        document
        for document in examples_in(namespace, example.parent / "metric-templates.yaml")
        if document["kind"] == "MetricTemplate"
    ]
    local_cluster.apply(templates)
    documents = examples_in(namespace, example)
    kinds = {document["kind"] for document in documents}
    assert kinds >= {"MetricTemplate"} or kinds >= {"AlertProvider", "Canary"}, kinds
    applied = local_cluster.apply(documents, "--dry-run=server")
    assert applied.stdout.count("(server dry run)") == len(documents), applied.stdout
