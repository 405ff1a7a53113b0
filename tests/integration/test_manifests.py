"""The install manifests (k8s/): they render, the API server accepts every object, and they keep
the rules that make Serin safe to install (hardened Pods, fail-open Deployment webhooks, least
privilege), and the tick CronJob's client really ticks."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.pki import write_serving_pair
from localcluster.testing import ClusterHandle
from tests.integration.helpers import SerinServer, analysis_started, canary_status

pytestmark = [pytest.mark.integration, pytest.mark.compat]

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SYSTEM_NAMESPACE = "serin-system"
IMAGE = "ghcr.io/serin-dev/serin:0.1.0"

EXPECTED = {
    ("Namespace", SYSTEM_NAMESPACE),
    ("CustomResourceDefinition", "canaries.serin.dev"),
    ("CustomResourceDefinition", "metrictemplates.serin.dev"),
    ("CustomResourceDefinition", "alertproviders.serin.dev"),
    ("ServiceAccount", "serin"),
    ("ServiceAccount", "serin-certs"),
    ("ServiceAccount", "serin-ticker"),
    ("ClusterRole", "serin"),
    ("ClusterRole", "serin-certs"),
    ("ClusterRole", "serin-tick"),
    ("ClusterRole", "serin-metrics-reader"),
    ("ClusterRoleBinding", "serin"),
    ("ClusterRoleBinding", "serin-certs"),
    ("ClusterRoleBinding", "serin-tick"),
    ("Role", "serin-certs"),
    ("RoleBinding", "serin-certs"),
    ("Deployment", "serin"),
    ("PodDisruptionBudget", "serin"),
    ("Service", "serin"),
    ("MutatingWebhookConfiguration", "serin"),
    ("ValidatingWebhookConfiguration", "serin"),
    ("Job", "serin-certs"),
    ("CronJob", "serin-certs-renew"),
    ("CronJob", "serin-tick"),
}

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

MUTATING_WEBHOOKS = {"canaries.serin.dev", "targets.workloads.serin.dev"}
VALIDATING_WEBHOOKS = {"canaries.serin.dev", "deletions.canaries.serin.dev", "primaries.workloads.serin.dev"}


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(local_cluster: ClusterHandle) -> list[Obj]:
    """Every object of the install, as `kubectl kustomize k8s/` renders it."""
    output = local_cluster.kubectl("kustomize", str(K8S)).stdout
    return [document for document in yaml.safe_load_all(output) if document]


@pytest.fixture(scope="module")
def system_namespace(local_cluster: ClusterHandle) -> Iterator[str]:
    """serin-system, created from namespace.yaml for real (a server dry run of namespaced objects
    needs it); deleted afterwards only if this test created it."""
    found = local_cluster.kubectl("get", "namespace", SYSTEM_NAMESPACE, "--ignore-not-found", "-o", "json").stdout
    existed = bool(found.strip())
    if existed and json.loads(found).get("status", {}).get("phase") == "Terminating":
        # Left behind by an earlier run (deleted without waiting): nothing can be created in it.
        local_cluster.kubectl("wait", "--for=delete", f"namespace/{SYSTEM_NAMESPACE}", "--timeout=120s", timeout=130)
        existed = False
    local_cluster.kubectl("apply", "-f", str(K8S / "namespace.yaml"))
    try:
        yield SYSTEM_NAMESPACE
    finally:
        if not existed:
            local_cluster.kubectl("delete", "namespace", SYSTEM_NAMESPACE, "--wait=false", "--ignore-not-found")


# ---- helpers ----------------------------------------------------------------------------------


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: Obj) -> Obj:
    """The Pod template's spec of a Deployment, Job or CronJob."""
    spec: Obj = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Obj = spec["template"]["spec"]
    return template


def pod_labels(obj: Obj) -> dict[str, str]:
    spec: Obj = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    labels: dict[str, str] = spec["template"]["metadata"].get("labels", {})
    return labels


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job", "CronJob")]


def applied_name(obj: Obj) -> str:
    """How `kubectl apply` names an object in its output: `deployment.apps/serin`, `service/serin`."""
    group = obj["apiVersion"].rpartition("/")[0]
    resource = obj["kind"].lower() + (f".{group}" if group else "")
    return f"{resource}/{obj['metadata']['name']}"


def allows(role: Obj, group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and not rule.get("resourceNames")
        for rule in role.get("rules", [])
    )


def container(obj: Obj, name: str) -> Obj:
    found: Obj = next(c for c in pod_spec(obj)["containers"] if c["name"] == name)
    return found


def dockerfile_instructions() -> dict[str, list[str]]:
    """Each instruction of the Dockerfile (continuation lines joined) by keyword, in order."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    instructions: dict[str, list[str]] = {}
    for line in lines:
        keyword, _, rest = line.partition(" ")
        instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


# ---- the API server's verdict -----------------------------------------------------------------


def test_api_server_accepts_every_object(
    local_cluster: ClusterHandle, system_namespace: str, rendered: list[Obj]
) -> None:
    # The CRDs for real (other tests may have installed them already: same content, same manager).
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(K8S / "crds"))
    result = local_cluster.kubectl("apply", "-k", str(K8S), "--dry-run=server")

    missing = EXPECTED - {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert not missing, f"not rendered: {sorted(missing)}"
    for obj in rendered:
        assert f"{applied_name(obj)} " in result.stdout, f"{applied_name(obj)} missing from:\n{result.stdout}"
    assert result.stdout.count("(server dry run)") == len(rendered)
    # serin-system enforces the restricted Pod Security Standard: no workload may violate it.
    assert "PodSecurity" not in result.stderr, result.stderr


def test_everything_is_labelled_and_in_serin_system(rendered: list[Obj]) -> None:
    for obj in rendered:
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "serin", applied_name(obj)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == SYSTEM_NAMESPACE, applied_name(obj)


# ---- Pods -------------------------------------------------------------------------------------


def test_every_pod_is_locked_down(rendered: list[Obj]) -> None:
    assert {o["metadata"]["name"] for o in workloads(rendered)} == {
        "serin",
        "serin-certs",
        "serin-certs-renew",
        "serin-tick",
    }
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        where = applied_name(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        for box in [*spec.get("initContainers", []), *spec["containers"]]:
            context = box["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, f"{where} {box['name']}"
            assert context["allowPrivilegeEscalation"] is False, f"{where} {box['name']}"
            assert context["capabilities"]["drop"] == ["ALL"], f"{where} {box['name']}"
            assert "add" not in context["capabilities"], f"{where} {box['name']}"
            assert box["image"] == IMAGE, f"{where} {box['name']}: the kustomization's images entry applies"
            assert "memory" in box["resources"]["limits"], f"{where} {box['name']}"


def test_server_deployment(rendered: list[Obj]) -> None:
    deployment = find(rendered, "Deployment", "serin")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == "serin"
    server = container(deployment, "serin")
    assert server["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert server[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert {e["name"]: e.get("value") or e.get("valueFrom") for e in server["env"]} == {
        "SERIN_METRICS_SERVER": "http://prometheus.istio-system:9090",
        "SERIN_DEFAULT_PROVIDER": "istio",
        # Callers' tokens must be made for Serin, so that none is any use against the API server.
        "SERIN_TOKEN_AUDIENCE": "serin",
        # /metrics names every tenant's Canaries: scrapers need a token and get on /metrics.
        "SERIN_METRICS_AUTH": "true",
        "SERIN_LOG_FORMAT": "json",
        "SERIN_LOG_LEVEL": "INFO",
        # The access log leaves out the admission reviews allowed as they are.
        "SERIN_ACCESS_LOG": "quiet",
        # The global notifier's webhook URL carries a token: from a Secret, which may not exist.
        "SERIN_NOTIFIER_URL": {"secretKeyRef": {"name": "serin-notifier", "key": "address", "optional": True}},
        # Admission reviews from the API server only, by the client certificate the install issues it.
        "SERIN_ADMISSION_AUTHENTICATION": "client-certificate",
        "SERIN_ADMISSION_CLIENT_CA": "/etc/serin/tls/ca.crt",
        "SERIN_ADMISSION_CLIENT_SUBJECT": "kube-apiserver",
    }
    assert server["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    args = server["args"]
    assert args[args.index("--worker-tmp-dir") + 1] == "/tmp"
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["/etc/serin/tls"]["readOnly"] is True
    tls = volumes[mounts["/etc/serin/tls"]["name"]]["secret"]
    assert tls["secretName"] == "serin-webhook-tls"
    assert {item["key"] for item in tls["items"]} == {"tls.crt", "tls.key", "ca.crt"}, "keys stay out of the server"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]

    service = find(rendered, "Service", "serin")
    assert service["spec"]["ports"][0]["port"] == 443
    assert service["spec"]["ports"][0]["targetPort"] == "https"
    template_labels = pod_labels(deployment)
    assert service["spec"]["selector"].items() <= template_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    budget = find(rendered, "PodDisruptionBudget", "serin")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # Other Serin Pods (jobs) carry app.kubernetes.io/name too: the Service must not select them.
    for other in workloads(rendered):
        if other is not deployment:
            assert not service["spec"]["selector"].items() <= pod_labels(other).items(), applied_name(other)


def test_image_runs_what_the_manifests_expect(rendered: list[Obj]) -> None:
    instructions = dockerfile_instructions()
    entrypoint: list[str] = json.loads(instructions["ENTRYPOINT"][-1])
    cmd: list[str] = json.loads(instructions["CMD"][-1])
    assert entrypoint[0] == "gunicorn"
    assert instructions["USER"][-1].split(":")[0] == "10001"
    assert instructions["WORKDIR"][-1] == "/app"
    deployment = find(rendered, "Deployment", "serin")
    server = container(deployment, "serin")
    assert "command" not in server, "the image's ENTRYPOINT starts the server"
    assert server["args"] == cmd, "deployment.yaml spells out the image's CMD"
    for flag, name in (("--certfile", "tls.crt"), ("--keyfile", "tls.key")):
        assert entrypoint[entrypoint.index(flag) + 1] == f"/etc/serin/tls/{name}"
    assert "0.0.0.0:8443" in entrypoint
    # The certificate jobs run a console script of the package the image installs.
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["serin-certs"] == "serin.certs:main"
    # ... built from the sources and installed into the server's venv, with nothing from an index.
    assert any(
        "--python /opt/venv/bin/python install --no-index --no-deps /src/dist/serin-" in run
        for run in instructions["RUN"]
    ), instructions["RUN"]
    for name in ("serin-certs", "serin-certs-renew"):
        kind = "Job" if name == "serin-certs" else "CronJob"
        command = container(find(rendered, kind, name), "certs")["command"]
        assert command == [
            "serin-certs",
            "ensure",
            "--namespace",
            SYSTEM_NAMESPACE,
            "--service",
            "serin",
            "--secret",
            "serin-webhook-tls",
            "--webhook-config",
            "serin",
            "--client-name",
            "kube-apiserver",
        ]
        assert pod_spec(find(rendered, kind, name))["serviceAccountName"] == "serin-certs"


# ---- webhooks ---------------------------------------------------------------------------------


def test_webhooks(rendered: list[Obj]) -> None:
    for kind, path, names in (
        ("MutatingWebhookConfiguration", "/mutate", MUTATING_WEBHOOKS),
        ("ValidatingWebhookConfiguration", "/validate", VALIDATING_WEBHOOKS),
    ):
        webhooks = find(rendered, kind, "serin")["webhooks"]
        assert {w["name"] for w in webhooks} == names
        for webhook in webhooks:
            where = f"{kind} {webhook['name']}"
            expected_policy = "Fail" if webhook["name"].startswith("canaries.") else "Ignore"
            assert webhook["failurePolicy"] == expected_policy, where
            assert webhook["sideEffects"] == "NoneOnDryRun", where
            assert webhook["admissionReviewVersions"] == ["v1"], where
            assert webhook["timeoutSeconds"] == 5, where
            assert webhook["matchPolicy"] == "Equivalent", where
            assert webhook["clientConfig"] == {
                "service": {"name": "serin", "namespace": SYSTEM_NAMESPACE, "path": path, "port": 443}
            }, f"{where}: no caBundle (the certificate job injects it)"
            assert webhook["namespaceSelector"] == {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": ["kube-system", SYSTEM_NAMESPACE],
                    }
                ]
            }, where
            if kind.startswith("Mutating"):
                assert webhook["reinvocationPolicy"] == "Never", where
            # Only what fails closed needs narrowing to the requests Serin must judge.
            if expected_policy == "Fail":
                assert [c["name"] for c in webhook["matchConditions"]] == ["changes-what-serin-judges"], where
            else:
                assert "matchConditions" not in webhook, where
            resources = {(r["apiGroups"][0], resource) for r in webhook["rules"] for resource in r["resources"]}
            if webhook["name"].endswith("canaries.serin.dev"):
                assert resources == {("serin.dev", "canaries")}, where
            else:
                assert resources == {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets")}, where
            if webhook["name"].startswith("targets."):
                assert webhook["objectSelector"] == {
                    "matchExpressions": [{"key": "serin.dev/canary", "operator": "Exists"}]
                }, where
            if webhook["name"].startswith("primaries."):
                assert webhook["objectSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "serin"}}, where


# ---- RBAC -------------------------------------------------------------------------------------


def test_rbac_grants_what_is_needed_and_no_wildcards(rendered: list[Obj]) -> None:
    for role in (o for o in rendered if o["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"{applied_name(role)} grants * in {key}"
            if role["metadata"]["name"] != "serin-metrics-reader":
                assert "nonResourceURLs" not in rule, applied_name(role)

    server = find(rendered, "ClusterRole", "serin")
    assert allows(server, "serin.dev", "canaries", "update")
    assert allows(server, "serin.dev", "canaries", "list")
    assert allows(server, "serin.dev", "canaries/status", "patch")
    assert allows(server, "authentication.k8s.io", "tokenreviews", "create")
    assert allows(server, "authorization.k8s.io", "subjectaccessreviews", "create")
    assert allows(server, "apps", "deployments", "update")
    assert allows(server, "networking.istio.io", "virtualservices", "update")
    # The primary's autoscaler is written by server-side apply; a ScaledObject is paused by patch.
    assert allows(server, "autoscaling", "horizontalpodautoscalers", "patch")
    assert allows(server, "keda.sh", "scaledobjects", "patch")
    for verb in ("list", "watch"):
        assert not allows(server, "", "secrets", verb), f"the server never needs to {verb} Secrets"
    # What the orphan sweep finds by label and deletes.
    for group, resource in (
        ("apps", "deployments"),
        ("", "services"),
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "destinationrules"),
        ("apps", "controllerrevisions"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("keda.sh", "scaledobjects"),
    ):
        assert allows(server, group, resource, "list") and allows(server, group, resource, "delete"), resource

    tick = find(rendered, "ClusterRole", "serin-tick")
    assert allows(tick, "serin.dev", "canaries", "tick"), "what POST /tick's SubjectAccessReview checks"
    assert not allows(tick, "serin.dev", "canaries", "update"), "a ticker cannot change Canaries"
    assert not any("status" in r for rule in tick["rules"] for r in rule["resources"])

    # What GET /metrics's SubjectAccessReview checks, and nothing else; bound to no one by the install.
    reader = find(rendered, "ClusterRole", "serin-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    bindings = [o for o in rendered if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert [b for b in bindings if b["roleRef"]["name"] == "serin-metrics-reader"] == []

    certs = find(rendered, "ClusterRole", "serin-certs")
    assert all(rule.get("resourceNames") == ["serin"] for rule in certs["rules"])

    for binding, account in (
        (find(rendered, "ClusterRoleBinding", "serin"), "serin"),
        (find(rendered, "ClusterRoleBinding", "serin-tick"), "serin-ticker"),
        (find(rendered, "ClusterRoleBinding", "serin-certs"), "serin-certs"),
        (find(rendered, "RoleBinding", "serin-certs"), "serin-certs"),
    ):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": SYSTEM_NAMESPACE}]


# ---- the tick CronJob -------------------------------------------------------------------------


def test_tick_cronjob(rendered: list[Obj]) -> None:
    cronjob = find(rendered, "CronJob", "serin-tick")
    assert cronjob["spec"]["schedule"] == "* * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 1
    assert cronjob["spec"]["failedJobsHistoryLimit"] == 3
    assert 0 < cronjob["spec"]["startingDeadlineSeconds"] < 60
    spec = pod_spec(cronjob)
    assert spec["serviceAccountName"] == "serin-ticker"
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container(cronjob, "tick")["volumeMounts"]}
    assert all(m["readOnly"] for m in mounts.values())
    token = volumes[mounts["/var/run/secrets/serin"]["name"]]["projected"]["sources"]
    assert token == [{"serviceAccountToken": {"path": "token", "audience": "serin", "expirationSeconds": 600}}]
    ca = volumes[mounts["/etc/serin/tls"]["name"]]["secret"]
    assert ca["secretName"] == "serin-webhook-tls"
    assert ca["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    env = {e["name"]: e["value"] for e in container(cronjob, "tick")["env"]}
    assert env["SERIN_TICK_URL"] == f"https://serin.{SYSTEM_NAMESPACE}.svc/tick"
    assert env["SERIN_TICK_TOKEN_FILE"] == "/var/run/secrets/serin/token"
    assert env["SERIN_TICK_CA_FILE"] == "/etc/serin/tls/ca.crt"
    assert env["SERIN_TICK_PERIOD_SECONDS"] == "60", "the Pod ticks until its minute is over"
    # An Indexed Job of one pod per shard: the three numbers must agree.
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == int(env["SERIN_TICK_SHARDS"]) == 1


def run_tick_script(
    cronjob: Obj, url: str, token: str, ca_file: Path, tmp_path: Path, **overrides: str
) -> subprocess.CompletedProcess[str]:
    """The CronJob container's own command, with its paths pointed at a local server and files."""
    job = container(cronjob, "tick")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    env = {e["name"]: e["value"] for e in job["env"]}
    env |= {"SERIN_TICK_URL": url, "SERIN_TICK_TOKEN_FILE": str(token_file), "SERIN_TICK_CA_FILE": str(ca_file)}
    env |= {"PYTHONPATH": str(REPO), **overrides}
    assert job["command"][0] == "python"
    command = [sys.executable, *job["command"][1:], *job.get("args", [])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=90, check=False)


def test_tick_cronjob_command_ticks_with_its_token(
    rendered: list[Obj],
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    cronjob = find(rendered, "CronJob", "serin-tick")
    # Scoped to this test's (empty) namespace, so Canaries of other tests are left alone.
    url = f"{serin_server.url}/tick?namespace={namespace}"

    allowed = run_tick_script(cronjob, url, tokens["ticker"], serin_server.ca_bundle, tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["canaries"] == []

    refused = run_tick_script(cronjob, url, tokens["stranger"], serin_server.ca_bundle, tmp_path)
    assert refused.returncode == 1
    assert "may not tick canaries.serin.dev" in json.loads(refused.stdout)["error"]
    assert "HTTP 403" in refused.stderr

    # A server whose certificate the mounted CA did not sign is refused before the token is sent.
    _, _, other_ca = write_serving_pair(tmp_path / "other", ["127.0.0.1"])
    other_ca_file = tmp_path / "other-ca.crt"
    other_ca_file.write_bytes(other_ca)
    untrusted = run_tick_script(cronjob, url, tokens["ticker"], other_ca_file, tmp_path)
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_tick_cronjob_pod_takes_every_step_of_a_10s_canary_within_its_period(
    rendered: list[Obj],
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    """A CronJob fires once a minute; its Pod ticks whenever a Canary is next due, so a 10s interval
    is honoured. Shortened to a 40s period here: the Pod stops 5s before the period is over."""
    token = tokens["ticker"]
    analysis_started(
        local_cluster, serin_server, token, namespace, {"interval": "10s", "stepWeights": [10, 20, 30, 40, 50]}
    )

    cronjob = find(rendered, "CronJob", "serin-tick")
    url = f"{serin_server.url}/tick?namespace={namespace}"
    ran = run_tick_script(cronjob, url, token, serin_server.ca_bundle, tmp_path, SERIN_TICK_PERIOD_SECONDS="40")
    assert ran.returncode == 0, ran.stderr
    answers = [json.loads(line)["canaries"][0] for line in ran.stdout.splitlines()]
    weights = [answer["weight"] for answer in answers if answer["applied"]]
    assert weights == [20, 30, 40], answers
    assert canary_status(local_cluster, namespace)["canaryWeight"] == 40
