"""The serin-certs tool against a real API server: the Secret, the caBundle injection, renewal,
two runs at once, and the RBAC its README promises to be enough."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.testing import ClusterHandle, eventually
from serin import tls

pytestmark = [pytest.mark.integration, pytest.mark.compat]

REPO = Path(__file__).resolve().parents[2]
# The tool as the image runs it (serin-certs), with this interpreter.
TOOL = [sys.executable, "-m", "serin.certs"]
SECRET = "serin-webhook-tls"
KEYS = {"ca.crt", "ca.key", "tls.crt", "tls.key", "client.crt", "client.key"}
KINDS = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")


def webhook(name: str) -> dict[str, Any]:
    """A webhook that is never called: it matches ConfigMaps in namespaces that no namespace is."""
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 1,
        "clientConfig": {"url": "https://127.0.0.1:1/x"},
        "namespaceSelector": {"matchLabels": {"serin.dev/no-such-namespace": "true"}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
    }


@pytest.fixture
def configurations(local_cluster: ClusterHandle, namespace: str) -> Iterator[str]:
    """A mutating (two webhooks) and a validating (one) configuration, both without caBundle."""
    name = f"serin-certs-{namespace}"
    local_cluster.apply(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [webhook("first.certs.serin.dev"), webhook("second.certs.serin.dev")],
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [webhook("only.certs.serin.dev")],
            },
        ]
    )
    try:
        yield name
    finally:
        local_cluster.kubectl("delete", "--ignore-not-found", *(f"{kind}/{name}" for kind in KINDS))


def run_tool(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOOL, *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # the tool finds the serin package by its own path, not by the working directory
    )


def ensure(local_cluster: ClusterHandle, namespace: str, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    result = run_tool(
        local_cluster.kubeconfig,
        "ensure",
        "--namespace",
        namespace,
        "--service",
        "serin",
        "--secret",
        SECRET,
        "--webhook-config",
        name,
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return result


def ca_bundles(local_cluster: ClusterHandle, name: str) -> list[str | None]:
    return [
        hook["clientConfig"].get("caBundle")
        for kind in KINDS
        for hook in local_cluster.get_json(kind, name)["webhooks"]
    ]


def test_ensure_creates_the_secret_injects_the_ca_and_renews_only_when_due(
    local_cluster: ClusterHandle, namespace: str, configurations: str
) -> None:
    created = ensure(local_cluster, namespace, configurations)
    assert f"created secret {namespace}/{SECRET}: certificate expires in 365 days" in created.stdout
    for kind in KINDS:
        assert f"caBundle injected into {kind}/{configurations}" in created.stdout

    secret = local_cluster.get_json("secret", SECRET, "-n", namespace)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == KEYS
    pems = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    service_names = ["serin", f"serin.{namespace}", f"serin.{namespace}.svc", f"serin.{namespace}.svc.cluster.local"]
    now = tls.load_cert(pems["tls.crt"]).not_valid_before_utc + tls.BACKDATE
    assert tls.needs_renewal(pems["tls.crt"], pems["ca.crt"], service_names, [], now) is None
    assert tls.key_matches(tls.load_cert(pems["tls.crt"]), tls.load_key(pems["tls.key"]))
    assert ca_bundles(local_cluster, configurations) == [secret["data"]["ca.crt"]] * 3

    again = ensure(local_cluster, namespace, configurations)
    assert again.stdout.splitlines() == [
        f"up to date: secret {namespace}/{SECRET} (certificate expires in 365 days)",
        f"up to date: mutatingwebhookconfiguration/{configurations} (2 webhooks)",
        f"up to date: validatingwebhookconfiguration/{configurations} (1 webhook)",
    ]
    unchanged = local_cluster.get_json("secret", SECRET, "-n", namespace)
    assert unchanged["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]

    # Renewal is due when the remaining lifetime is within --renew-before: longer than the validity forces it.
    renewed = ensure(local_cluster, namespace, configurations, "--renew-before", "9000h")
    assert f"renewed certificate in secret {namespace}/{SECRET}: expires in 365 days" in renewed.stdout
    after = local_cluster.get_json("secret", SECRET, "-n", namespace)
    assert after["data"]["tls.crt"] != secret["data"]["tls.crt"]
    assert after["data"]["tls.key"] != secret["data"]["tls.key"]
    assert after["data"]["ca.crt"] == secret["data"]["ca.crt"]
    assert after["data"]["ca.key"] == secret["data"]["ca.key"]
    assert f"up to date: validatingwebhookconfiguration/{configurations} (1 webhook)" in renewed.stdout
    assert ca_bundles(local_cluster, configurations) == [secret["data"]["ca.crt"]] * 3


def test_a_changed_ca_bundle_is_corrected_and_a_missing_configuration_only_reported(
    local_cluster: ClusterHandle, namespace: str, configurations: str
) -> None:
    ensure(local_cluster, namespace, configurations)
    local_cluster.kubectl("delete", f"validatingwebhookconfiguration/{configurations}")
    stale = base64.b64encode(b"stale").decode()
    patch = f'[{{"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "{stale}"}}]'
    local_cluster.kubectl("patch", f"mutatingwebhookconfiguration/{configurations}", "--type=json", "-p", patch)

    result = ensure(local_cluster, namespace, configurations)

    assert f"caBundle injected into mutatingwebhookconfiguration/{configurations} (1 of 2 webhooks)" in result.stdout
    assert f"not found: validatingwebhookconfiguration/{configurations}" in result.stderr
    secret = local_cluster.get_json("secret", SECRET, "-n", namespace)
    hooks = local_cluster.get_json("mutatingwebhookconfiguration", configurations)["webhooks"]
    assert [hook["clientConfig"]["caBundle"] for hook in hooks] == [secret["data"]["ca.crt"]] * 2


def test_two_runs_at_once_create_one_secret_that_both_agree_on(
    local_cluster: ClusterHandle, namespace: str, configurations: str
) -> None:
    command = [*TOOL, "ensure", "--namespace", namespace, "--webhook-config", configurations]
    command += ["--kubeconfig", str(local_cluster.kubeconfig)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=60) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert sum(out.count("created secret") for out, _ in outputs) == 1
    secret = local_cluster.get_json("secret", "serin-webhook-tls", "-n", namespace)
    assert ca_bundles(local_cluster, configurations) == [secret["data"]["ca.crt"]] * 3


def token_kubeconfig(local_cluster: ClusterHandle, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the service account ``account``: the same server, a token instead of the admin's certificate."""
    admin = yaml.safe_load(local_cluster.kubeconfig.read_text())
    token = local_cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def test_the_documented_rbac_is_enough_and_a_missing_permission_is_named(
    local_cluster: ClusterHandle, namespace: str, configurations: str, tmp_path: Path
) -> None:
    rbac = "rbac.authorization.k8s.io"
    role: dict[str, Any] = {
        "apiVersion": f"{rbac}/v1",
        "kind": "Role",
        "metadata": {"name": "serin-certs", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get", "update"]}],
    }
    cluster_role: dict[str, Any] = {
        "apiVersion": f"{rbac}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": configurations},
        "rules": [
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                "resourceNames": [configurations],
                "verbs": ["get", "patch"],
            }
        ],
    }
    subject = [{"kind": "ServiceAccount", "name": "serin-certs", "namespace": namespace}]
    local_cluster.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "serin-certs", "namespace": namespace}},
            role,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "serin-certs", "namespace": namespace},
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "serin-certs"},
                "subjects": subject,
            },
            cluster_role,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": configurations},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": configurations},
                "subjects": subject,
            },
        ]
    )
    try:
        kubeconfig = token_kubeconfig(local_cluster, namespace, "serin-certs", tmp_path / "kubeconfig")
        args = ["ensure", "--namespace", namespace, "--secret", SECRET, "--webhook-config", configurations]

        def refused() -> subprocess.CompletedProcess[str] | None:
            result = run_tool(kubeconfig, *args)
            return result if result.returncode == 1 and "verb 'create'" in result.stderr else None

        result = eventually(refused, what="the tool to be refused 'create' on secrets")
        assert f"needs RBAC verb 'create' on secrets in namespace {namespace}" in result.stderr

        # Exactly the rules of docs/certificates.md: create cannot be limited to a name, the rest is.
        role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]})
        local_cluster.apply(role)
        result = eventually(
            lambda: (r := run_tool(kubeconfig, *args)) and r.returncode == 0 and r, what="the tool to succeed"
        )
        assert f"created secret {namespace}/{SECRET}" in result.stdout
        assert f"caBundle injected into validatingwebhookconfiguration/{configurations}" in result.stdout
        renewed = run_tool(kubeconfig, *args, "--renew-before", "9000h")
        assert renewed.returncode == 0, renewed.stderr
        assert "renewed certificate" in renewed.stdout
    finally:
        local_cluster.kubectl(
            "delete", "--ignore-not-found", f"clusterrole/{configurations}", f"clusterrolebinding/{configurations}"
        )
