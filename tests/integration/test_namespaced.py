"""A namespaced install (``SERIN_WATCH_NAMESPACES``, the chart's ``watchNamespaces``) on the local
control plane, run as a cluster would run it: the server acts as an account of its own that holds
only what the chart renders for one namespace (its Role and RoleBinding there, and the ClusterRole
of token reviews), under a copy of the shipped admission policy, and the ticker holds only the
chart's RoleBinding there. A release in that namespace completes; a Canary of another namespace is
neither bootstrapped nor ticked, and asking for it is refused by the tick, replays, the page and
the command line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from localcluster import chart
from localcluster.serin_server import TOKEN_AUDIENCE
from localcluster.testing import ClusterHandle, binaries_or_skip, eventually, fresh_namespace
from tests.integration.conftest import running_serin, webhooks_to
from tests.integration.helpers import (
    SerinServer,
    canary,
    canary_status,
    deployment,
    drive,
    events,
    initialized,
    podinfo,
    routes,
    set_image,
)
from tests.integration.test_cli import kubectl_serin

# One worker runs them in order: the release of the first gives the other namespace's Canary time
# to have been bootstrapped, were it going to be.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("namespaced")]

# The namespaces this install's webhooks are sent: both of the test's, so that the server itself
# must leave the one it does not serve alone (the chart's namespaceSelector would not even send it).
WEBHOOK_LABEL = {"serin.dev/test-namespaced-webhooks": "enabled"}
# No metrics: each forced tick takes the next step, whatever Prometheus has scraped.
ANALYSIS = {"interval": "10s", "threshold": 2, "maxWeight": 40, "stepWeight": 20}
# What the chart renders for one namespace served, and what the release namespace holds.
CHART_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@dataclass(frozen=True)
class Install:
    server: SerinServer
    served: str
    other: str
    # The tick CronJob's token: bound to the chart's serin-tick role in the served namespace only.
    ticker: str
    # The server's own identity, to ask the API server what it may do.
    kubeconfig: Path


def rendered_for(release: str, served: str) -> list[dict[str, Any]]:
    """The chart's accounts, roles, bindings and admission policy for an install into namespace
    ``release`` that serves ``served``; cluster-scoped names carry ``release``, so that nothing
    collides with the other tests' objects."""
    result = chart.helm(
        "template",
        "serin",
        str(chart.CHART),
        "--namespace",
        release,
        "--set",
        f"watchNamespaces={{{served}}}",
        helm_path=binaries_or_skip().helm,
    )
    objects = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] in (*CHART_KINDS, *POLICY_KINDS)]
    for obj in objects:
        if "namespace" not in obj["metadata"]:
            obj["metadata"]["name"] = f"{release}-{obj['metadata']['name']}"
        ref = obj.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            ref["name"] = f"{release}-{ref['name']}"
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            obj["spec"]["policyName"] = f"{release}-{obj['spec']['policyName']}"
    return objects


def kubeconfig_of(cluster: ClusterHandle, account: str, namespace: str, folder: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def install(
    local_cluster: ClusterHandle,
    serin_crds: None,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Install]:
    with contextlib.ExitStack() as stack:
        release = stack.enter_context(fresh_namespace(local_cluster, request))
        served = stack.enter_context(fresh_namespace(local_cluster, request, WEBHOOK_LABEL))
        other = stack.enter_context(fresh_namespace(local_cluster, request, WEBHOOK_LABEL))
        objects = rendered_for(release, served)
        local_cluster.apply(objects)

        def delete_cluster_scoped() -> None:
            for obj in objects:
                if "namespace" not in obj["metadata"]:
                    name = obj["metadata"]["name"]
                    local_cluster.kubectl("delete", obj["kind"].lower(), name, "--ignore-not-found")

        stack.callback(delete_cluster_scoped)
        kubeconfig = kubeconfig_of(local_cluster, "serin", release, tmp_path_factory.mktemp("namespaced-identity"))
        server = stack.enter_context(
            running_serin(
                local_cluster,
                kubeconfig,
                tmp_path_factory.mktemp("namespaced-serin"),
                env={"SERIN_WATCH_NAMESPACES": served},
            )
        )
        stack.enter_context(webhooks_to(local_cluster, server, f"{release}-webhooks", WEBHOOK_LABEL))
        probe = canary(served, {})
        # Configurations take effect asynchronously: wait until an invalid Canary is denied by this server.
        eventually(
            lambda: (
                "set exactly one strategy"
                in local_cluster.kubectl(
                    "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(probe), check=False
                ).stderr
            ),
            timeout=30,
            what="the namespaced install's webhooks to be called",
        )
        ticker = local_cluster.kubectl(
            "create", "token", "serin-ticker", "-n", release, "--duration=2h", f"--audience={TOKEN_AUDIENCE}"
        ).stdout.strip()
        yield Install(server, served, other, ticker, kubeconfig)


def may(cluster: ClusterHandle, kubeconfig: Path, *question: str) -> bool:
    """``kubectl auth can-i QUESTION`` as the server's own account."""
    answer = cluster.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *question, check=False)
    return answer.stdout.strip() == "yes"


def test_a_release_completes_with_only_the_roles_the_chart_renders(
    local_cluster: ClusterHandle, install: Install
) -> None:
    served, other, token = install.served, install.other, install.ticker
    # The account holds what the chart grants in the served namespace, and nothing elsewhere.
    assert may(local_cluster, install.kubeconfig, "update", "deployments", "-n", served)
    for question in (
        ("get", "secrets", "-n", other),
        ("update", "deployments", "-n", other),
        ("list", "canaries.serin.dev", "--all-namespaces"),
        ("get", "secrets", "-n", "kube-system"),
    ):
        assert not may(local_cluster, install.kubeconfig, *question), question

    # Another namespace's Canary, applied first: it has had the whole release to be acted on.
    local_cluster.apply([podinfo(other), canary(other, ANALYSIS)])
    whole = install.server.tick(token)
    assert whole.status_code == 200, whole.text
    assert [f"{report['namespace']}/{report['name']}" for report in whole.json()["canaries"]] == []

    initialized(local_cluster, install.server, token, served, analysis=ANALYSIS)
    set_image(local_cluster, served, "6.0.1")
    status = drive(local_cluster, install.server, token, served, "Succeeded")
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    primary = deployment(local_cluster, served, "podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("podinfo:6.0.1")
    assert routes(local_cluster, served) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert f"Promotion completed! Scaling down podinfo.{served}" in events(local_cluster, served)

    # A whole tick steps the served namespace's Canary only.
    whole = install.server.tick(token, force="true")
    assert whole.status_code == 200, whole.text
    assert [f"{report['namespace']}/{report['name']}" for report in whole.json()["canaries"]] == [f"{served}/podinfo"]

    # The API server did send its reviews (the webhooks are sent both namespaces), and the server
    # let them through untouched: the other Canary is as it was applied, with no defaults, no
    # status but the CRD's default (never observed), no primary and no Event.
    assert install.server.log is not None
    assert f"CREATE Canary podinfo allowed untouched: namespace {other} is not served" in install.server.log.read_text()
    stored = local_cluster.get_json("canaries.serin.dev", "podinfo", "-n", other)
    assert stored["spec"] == canary(other, ANALYSIS)["spec"]
    assert canary_status(local_cluster, other) == {"observedGeneration": 0}
    listed = local_cluster.kubectl("get", "deployments,services", "-n", other, "-o", "name").stdout.split()
    assert listed == ["deployment.apps/podinfo"]
    assert deployment(local_cluster, other, "podinfo")["spec"]["replicas"] == 2
    assert events(local_cluster, other) == []


def test_another_namespace_is_refused_by_the_tick_replay_page_and_command_line(
    local_cluster: ClusterHandle, install: Install
) -> None:
    other, token = install.other, install.ticker
    refusal = (
        f"namespace {other} is not served by this install of Serin, which serves {install.served} only "
        "(SERIN_WATCH_NAMESPACES)"
    )
    for params in ({"namespace": other}, {"namespace": other, "name": "podinfo", "dry_run": "true"}):
        answer = install.server.tick(token, **params)
        assert (answer.status_code, answer.json()) == (404, {"error": refusal}), params
    replay = requests.post(
        f"{install.server.url}/replay",
        params={"namespace": other, "name": "podinfo", "from": "1"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(install.server.ca_bundle),
        timeout=30,
    )
    assert (replay.status_code, replay.json()) == (404, {"error": refusal})

    def page(path: str) -> requests.Response:
        return requests.get(
            f"{install.server.url}{path}",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(install.server.ca_bundle),
            timeout=30,
        )

    elsewhere = page(f"/ui/{other}/podinfo")
    assert elsewhere.status_code == 404 and refusal in elsewhere.text
    # The list of every namespace is the served one's: the ticker may list Canaries there. A Canary
    # in each namespace, whichever test of the module ran first.
    for namespace in (install.served, other):
        if not local_cluster.kubectl("get", "canaries.serin.dev", "-n", namespace, "-o", "name").stdout.strip():
            local_cluster.apply([podinfo(namespace), canary(namespace, ANALYSIS)])
    listing = page("/ui?refresh=0")
    assert listing.status_code == 200, listing.text
    assert install.served in listing.text and other not in listing.text

    for command in (
        ("tick", f"{other}/podinfo"),
        ("plan", f"{other}/podinfo"),
        ("replay", f"{other}/podinfo", "--from", "1"),
    ):
        refused = kubectl_serin(local_cluster, install.server, token, *command)
        assert (refused.returncode, refused.stderr) == (1, f"serin: Serin answered 404: {refusal}\n"), command
