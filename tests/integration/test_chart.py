"""Serin's Helm chart (charts/serin): it lints, k8s/ is what it renders, every value reaches its
object, the API server accepts every variant, and a real `helm install`, `helm upgrade` and
`helm uninstall` on a control plane of their own leave what they should (and uninstall no webhook
configuration: a dangling fail-closed webhook would block every Canary in the cluster)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import chart, processes
from localcluster.cluster import LocalCluster
from localcluster.testing import ClusterHandle, binaries_or_skip, cluster_handle, start_or_fail

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
Key = tuple[str, str]

RELEASE = "serin"
CERT_MANAGER = ["certManager.enabled=true"]
# What the certificate tool needs, and what cert-manager replaces.
CERTIFICATE_JOB_OBJECTS = {
    ("ServiceAccount", "serin-certs"),
    ("Role", "serin-certs"),
    ("RoleBinding", "serin-certs"),
    ("ClusterRole", "serin-certs"),
    ("ClusterRoleBinding", "serin-certs"),
    ("Job", "serin-certs"),
    ("CronJob", "serin-certs-renew"),
}
SERIN_CRDS = {"canaries.serin.dev", "metrictemplates.serin.dev", "alertproviders.serin.dev"}
CERT_MANAGER_OBJECTS = {
    ("Issuer", "serin-selfsigned"),
    ("Certificate", "serin-ca"),
    ("Issuer", "serin-ca"),
    ("Certificate", "serin-webhook"),
    # The API server's client certificate for the webhooks.
    ("Certificate", "serin-apiserver-client"),
}
# The NetworkPolicy turned on: two API server addresses, a Prometheus, one rule of the user's own.
NETWORK_POLICY = [
    "networkPolicy.enabled=true",
    "networkPolicy.apiServerCIDRs={10.0.0.1/32,fd00::1/128}",
    "networkPolicy.prometheus.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    "networkPolicy.prometheus.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
    "networkPolicy.extraIngress[0].from[0].ipBlock.cidr=192.168.7.0/24",
    "networkPolicy.extraIngress[0].ports[0].port=8443",
]
# A namespaced install: Serin serves these two namespaces only.
NAMESPACED = ["watchNamespaces={team-a,team-b}"]


@pytest.fixture(scope="module")
def helm_path() -> Path:
    return binaries_or_skip().helm


def helm(
    helm_path: Path, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """helm with its own configuration and cache folders (never the user's), against `kubeconfig`;
    with `check`, it must succeed."""
    # One per test worker: two helm processes must not share a cache being written.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"serin-helm-home-{worker}"
    env = processes.child_environment()
    env.update({f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")})
    command = [str(helm_path), *args] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert not check or result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


def template(helm_path: Path, sets: Sequence[str] = (), namespace: str = chart.NAMESPACE) -> list[Obj]:
    arguments = ["template", RELEASE, str(chart.CHART), "--namespace", namespace, "--include-crds"]
    for value in sets:
        arguments += ["--set", value]
    return [o for o in yaml.safe_load_all(helm(helm_path, *arguments).stdout) if o]


def by_key(objects: list[Obj]) -> dict[Key, Obj]:
    keyed = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects of the same kind and name"
    return keyed


def container(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    first: Obj = spec["template"]["spec"]["containers"][0]
    return first


# ---- rendering --------------------------------------------------------------------------------


def test_k8s_is_what_the_chart_renders(helm_path: Path) -> None:
    assert chart.stale(helm_path) == [], "k8s/ differs from the chart: run `make manifests`"


@pytest.mark.parametrize(
    "sets",
    [
        [],
        CERT_MANAGER,
        [*CERT_MANAGER, "certManager.issuerRef.name=corporate", "certManager.issuerRef.kind=ClusterIssuer"],
        NETWORK_POLICY,
        NAMESPACED,
    ],
    ids=["defaults", "cert-manager", "cert-manager-with-an-issuer", "network-policy", "namespaced"],
)
def test_the_chart_lints(helm_path: Path, sets: list[str]) -> None:
    arguments = ["lint", "--strict", str(chart.CHART)]
    for value in sets:
        arguments += ["--set", value]
    assert "1 chart(s) linted, 0 chart(s) failed" in helm(helm_path, *arguments).stdout


# Cluster-scoped kinds newer than the API schema kustomize carries: it gives them the namespace.
KINDS_KUSTOMIZE_THINKS_NAMESPACED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize(
    ("kustomization", "sets"),
    [(chart.K8S, []), (chart.CERT_MANAGER_OVERLAY, CERT_MANAGER)],
    ids=["k8s", "cert-manager-overlay"],
)
def test_kustomize_installs_what_helm_installs(
    local_cluster: ClusterHandle, helm_path: Path, kustomization: Path, sets: list[str]
) -> None:
    kustomized = [o for o in yaml.safe_load_all(local_cluster.kubectl("kustomize", str(kustomization)).stdout) if o]
    from_helm = by_key(template(helm_path, sets))
    from_kustomize = by_key(kustomized)
    namespace = from_kustomize.pop(("Namespace", chart.NAMESPACE))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert sorted(from_kustomize) == sorted(from_helm)
    for key in from_kustomize:
        if key[0] in KINDS_KUSTOMIZE_THINKS_NAMESPACED:
            # The API server drops a namespace given to a cluster-scoped object.
            from_kustomize[key]["metadata"].pop("namespace")
    for key, obj in from_helm.items():
        assert from_kustomize[key] == obj, key


def test_the_variants_install_different_certificate_machinery(helm_path: Path) -> None:
    own = by_key(template(helm_path))
    managed = by_key(template(helm_path, CERT_MANAGER))
    assert set(own) - set(managed) == CERTIFICATE_JOB_OBJECTS
    assert set(managed) - set(own) == CERT_MANAGER_OBJECTS
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert "annotations" not in own[(kind, "serin")]["metadata"]
        assert managed[(kind, "serin")]["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "serin-system/serin-webhook"
        }
    certificate = managed[("Certificate", "serin-webhook")]["spec"]
    assert certificate["secretName"] == "serin-webhook-tls"
    assert certificate["dnsNames"] == ["serin.serin-system.svc", "serin.serin-system.svc.cluster.local"]
    assert certificate["issuerRef"] == {"name": "serin-ca", "kind": "Issuer"}
    # Helm runs the certificate Job after install and upgrade, replacing the previous one.
    assert own[("Job", "serin-certs")]["metadata"]["annotations"] == {
        "helm.sh/hook": "post-install,post-upgrade",
        "helm.sh/hook-delete-policy": "before-hook-creation",
    }


def pod_spec(obj: Obj) -> dict[str, Any]:
    """The pod template's spec of a Deployment, Job or CronJob; empty for other kinds."""
    spec: dict[str, Any] = obj.get("spec") or {}
    job: dict[str, Any] = (spec.get("jobTemplate") or {}).get("spec") or spec
    found: dict[str, Any] = (job.get("template") or {}).get("spec") or {}
    return found


def test_a_digest_names_the_image_whatever_the_tag(helm_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    objects = template(
        helm_path, ["image.repository=registry.example/serin", "image.tag=1.2.3", f"image.digest={digest}"]
    )
    images = {
        (obj["kind"], obj["metadata"]["name"]): container["image"]
        for obj in objects
        for container in pod_spec(obj).get("containers", [])
    }
    assert images and set(images.values()) == {f"registry.example/serin@{digest}"}, images


def test_every_value_reaches_its_object(helm_path: Path) -> None:
    objects = by_key(
        template(
            helm_path,
            [
                "image.repository=registry.example/serin",
                "image.tag=1.2.3",
                "image.pullPolicy=Always",
                "imagePullSecrets[0].name=pull",
                "commonLabels.team=platform",
                "server.replicas=3",
                "server.workers=2",
                "server.threads=4",
                "server.resources.limits.memory=512Mi",
                "server.minAvailable=2",
                "server.nodeSelector.pool=system",
                "server.priorityClassName=platform-critical",
                "server.extraEnv[0].name=SERIN_NOTIFIER_USERNAME",
                "server.extraEnv[0].value=serin-bot",
                "admission.clientSubject=apiserver-webhooks",
                "metricsServer=http://prometheus.monitoring:9090",
                "defaultProvider=gatewayapi:v1",
                "egress.allowed=10.0.0.0/8",
                "tokenAudience=serin.platform",
                "metrics.authenticated=false",
                "metrics.tokenAudience=serin.platform",
                "egress.denied=169.254.0.0/16\\,10.0.0.2:6443",
                "logs.format=text",
                "logs.level=DEBUG",
                "logs.access=all",
                "alerts.secretName=slack",
                "alerts.type=msteams",
                "alerts.channel=releases",
                "alerts.clusterName=prod-eu",
                "tick.schedule=*/2 * * * *",
                "tick.periodSeconds=120",
                "tick.shards=3",
                "webhooks.excludeNamespaces={kube-system,istio-system}",
                "webhooks.timeoutSeconds=10",
                "certificates.renewSchedule=0 4 * * *",
            ],
            namespace="platform",
        )
    )
    deployment = objects[("Deployment", "serin")]
    server = container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert server["image"] == "registry.example/serin:1.2.3"
    assert server["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["priorityClassName"] == "platform-critical"
    assert server["args"] == [
        "--worker-class",
        "serin.worker.GuardedThreadWorker",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-tmp-dir",
        "/tmp",
    ]
    assert server["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert server["env"] == [
        {"name": "SERIN_METRICS_SERVER", "value": "http://prometheus.monitoring:9090"},
        {"name": "SERIN_DEFAULT_PROVIDER", "value": "gatewayapi:v1"},
        {"name": "SERIN_EGRESS_ALLOWED", "value": "10.0.0.0/8"},
        {"name": "SERIN_EGRESS_DENIED", "value": "169.254.0.0/16,10.0.0.2:6443"},
        {"name": "SERIN_TOKEN_AUDIENCE", "value": "serin.platform"},
        {"name": "SERIN_METRICS_AUTH", "value": "false"},
        {"name": "SERIN_METRICS_TOKEN_AUDIENCE", "value": "serin.platform"},
        {"name": "SERIN_LOG_FORMAT", "value": "text"},
        {"name": "SERIN_LOG_LEVEL", "value": "DEBUG"},
        {"name": "SERIN_ACCESS_LOG", "value": "all"},
        {
            "name": "SERIN_NOTIFIER_URL",
            "valueFrom": {"secretKeyRef": {"name": "slack", "key": "address", "optional": True}},
        },
        {"name": "SERIN_CLUSTER_NAME", "value": "prod-eu"},
        {"name": "SERIN_NOTIFIER_CHANNEL", "value": "releases"},
        {"name": "SERIN_NOTIFIER_TYPE", "value": "msteams"},
        {"name": "SERIN_ADMISSION_AUTHENTICATION", "value": "client-certificate"},
        {"name": "SERIN_ADMISSION_CLIENT_CA", "value": "/etc/serin/tls/ca.crt"},
        {"name": "SERIN_ADMISSION_CLIENT_SUBJECT", "value": "apiserver-webhooks"},
        {"name": "SERIN_NOTIFIER_USERNAME", "value": "serin-bot"},
    ]
    assert objects[("PodDisruptionBudget", "serin")]["spec"]["minAvailable"] == 2

    tick = objects[("CronJob", "serin-tick")]
    assert tick["spec"]["schedule"] == "*/2 * * * *"
    assert tick["spec"]["jobTemplate"]["spec"]["completions"] == 3
    assert tick["spec"]["jobTemplate"]["spec"]["parallelism"] == 3
    assert {e["name"]: e["value"] for e in container(tick)["env"]} == {
        "SERIN_TICK_URL": "https://serin.platform.svc/tick",
        "SERIN_TICK_TOKEN_FILE": "/var/run/secrets/serin/token",
        "SERIN_TICK_CA_FILE": "/etc/serin/tls/ca.crt",
        "SERIN_TICK_TIMEOUT_SECONDS": "240",
        "SERIN_TICK_PERIOD_SECONDS": "120",
        "SERIN_TICK_SHARDS": "3",
    }
    (projected,) = [
        v for v in tick["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "token"
    ]
    assert projected["projected"]["sources"] == [
        {"serviceAccountToken": {"path": "token", "audience": "serin.platform", "expirationSeconds": 600}}
    ]
    assert objects[("CronJob", "serin-certs-renew")]["spec"]["schedule"] == "0 4 * * *"
    assert container(objects[("Job", "serin-certs")])["command"][2:4] == ["--namespace", "platform"]

    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for webhook in objects[(kind, "serin")]["webhooks"]:
            assert webhook["timeoutSeconds"] == 10
            assert webhook["clientConfig"]["service"]["namespace"] == "platform"
            assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == [
                "kube-system",
                "istio-system",
                "platform",
            ]
    for (kind, name), obj in objects.items():
        if kind == "CustomResourceDefinition":
            continue  # Helm installs the crds/ folder as it is, untemplated.
        assert obj["metadata"]["labels"]["team"] == "platform", (kind, name)
        if not kind.startswith(("Cluster", "Mutating", "Validating")):
            assert obj["metadata"]["namespace"] == "platform", (kind, name)
        for box in [container(obj)] if kind in ("Deployment", "Job", "CronJob") else []:
            assert box["image"] == "registry.example/serin:1.2.3", (kind, name)
    assert "CronJob" not in {kind for kind, _ in by_key(template(helm_path, ["tick.enabled=false", *CERT_MANAGER]))}


@pytest.mark.parametrize("sets", [[], ["server.priorityClassName="]], ids=["default", "empty"])
def test_the_server_has_no_priority_class_unless_given_one(helm_path: Path, sets: list[str]) -> None:
    """The system-* classes are refused outside kube-system where the cluster limits them (GKE
    does by default): a Deployment given one would start no Pod at all."""
    deployment = by_key(template(helm_path, sets))[("Deployment", "serin")]
    assert "priorityClassName" not in deployment["spec"]["template"]["spec"]


def test_the_network_policy_lets_in_only_the_api_server_the_tick_and_prometheus(helm_path: Path) -> None:
    objects = by_key(template(helm_path, [*NETWORK_POLICY, "commonLabels.team=platform"], namespace="platform"))
    # The port the policy opens is the server's container port (a policy sees the Pod's port, not
    # the Service's 443).
    assert container(objects[("Deployment", "serin")])["ports"] == [
        {"name": "https", "containerPort": 8443, "protocol": "TCP"}
    ]
    server_port = [{"port": 8443, "protocol": "TCP"}]
    version = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())["appVersion"]
    assert objects[("NetworkPolicy", "serin")] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "serin",
            "namespace": "platform",
            "labels": {
                "app.kubernetes.io/name": "serin",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/version": version,
                "team": "platform",
                "app.kubernetes.io/component": "server",
            },
        },
        "spec": {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "serin", "app.kubernetes.io/component": "server"}
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}],
                    "ports": server_port,
                },
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {
                                    "app.kubernetes.io/name": "serin",
                                    "app.kubernetes.io/component": "tick",
                                }
                            }
                        }
                    ],
                    "ports": server_port,
                },
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                        }
                    ],
                    "ports": server_port,
                },
                {"from": [{"ipBlock": {"cidr": "192.168.7.0/24"}}], "ports": [{"port": 8443}]},
            ],
        },
    }
    # The selectors are the Deployment's and the tick CronJob's own Pods' labels.
    pods = objects[("Deployment", "serin")]["spec"]["template"]["metadata"]["labels"]
    assert pods == {"app.kubernetes.io/name": "serin", "app.kubernetes.io/component": "server"}
    tick = objects[("CronJob", "serin-tick")]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert tick == {"app.kubernetes.io/name": "serin", "app.kubernetes.io/component": "tick"}


def test_the_network_policy_opens_nothing_it_is_not_given(helm_path: Path) -> None:
    """Off by default; on, an empty Prometheus selector (which would match every Pod) adds no rule,
    no tick means no rule for its Pods, and without the API server's addresses nothing renders:
    the API server could not call the webhooks, and no Canary could be written."""
    for sets in ([], CERT_MANAGER):
        assert "NetworkPolicy" not in {kind for kind, _ in by_key(template(helm_path, sets))}
    bare_sets = ["networkPolicy.enabled=true", "networkPolicy.apiServerCIDRs={10.0.0.1/32}"]
    bare = by_key(template(helm_path, bare_sets))
    server_port = [{"port": 8443, "protocol": "TCP"}]
    assert bare[("NetworkPolicy", "serin")]["spec"]["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": server_port},
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/name": "serin", "app.kubernetes.io/component": "tick"}
                    }
                }
            ],
            "ports": server_port,
        },
    ]
    tickless = by_key(template(helm_path, [*bare_sets, "tick.enabled=false"]))
    assert tickless[("NetworkPolicy", "serin")]["spec"]["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": server_port}
    ]
    refused = helm(helm_path, "template", RELEASE, str(chart.CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert refused.returncode != 0
    assert "networkPolicy.apiServerCIDRs" in refused.stderr


def by_place(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    """Objects by kind, namespace ("" for cluster-scoped ones) and name."""
    keyed = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects of the same kind, namespace and name"
    return keyed


def test_a_namespaced_install_grants_roles_in_its_namespaces_and_nothing_on_their_objects_cluster_wide(
    helm_path: Path,
) -> None:
    """watchNamespaces: what the server does in a namespace is granted by a Role there, and the one
    ClusterRole of its own creates TokenReviews and SubjectAccessReviews only (for callers of
    /tick, /replay and /ui); the tick CronJob is bound in each namespace; the webhooks are sent
    those namespaces only; the admission policy holding Serin's writes is installed as ever."""
    whole = by_place(template(helm_path))
    namespaced = by_place(template(helm_path, NAMESPACED))
    system = chart.NAMESPACE
    per_namespace = {
        (kind, namespace, name)
        for namespace in ("team-a", "team-b")
        for kind, name in (("Role", "serin"), ("RoleBinding", "serin"), ("RoleBinding", "serin-tick"))
    }
    assert set(namespaced) - set(whole) == per_namespace
    assert set(whole) - set(namespaced) == {("ClusterRoleBinding", "", "serin-tick")}

    review_rules = [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    everything = whole[("ClusterRole", "", "serin")]["rules"]
    assert everything[-2:] == review_rules
    assert namespaced[("ClusterRole", "", "serin")]["rules"] == review_rules
    # No ClusterRole grants anything on workloads, Secrets, Services, routes or Events: only the
    # reviews, the tick role's own verb on Canaries, the certificate job's two webhook
    # configurations (by name), and reading Serin's /metrics (bound to no one).
    rules = [rule for (kind, _, _), role in namespaced.items() if kind == "ClusterRole" for rule in role["rules"]]
    granted = {
        (group, resource) for rule in rules for group in rule.get("apiGroups", []) for resource in rule["resources"]
    }
    assert [rule for rule in rules if "apiGroups" not in rule] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert granted == {
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("serin.dev", "canaries"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    }
    assert namespaced[("ClusterRole", "", "serin-tick")] == whole[("ClusterRole", "", "serin-tick")]
    assert namespaced[("ClusterRoleBinding", "", "serin")]["roleRef"]["name"] == "serin"
    for namespace in ("team-a", "team-b"):
        role = namespaced[("Role", namespace, "serin")]
        assert role["rules"] == everything[:-2], namespace
        assert role["metadata"]["labels"] == whole[("ClusterRole", "", "serin")]["metadata"]["labels"]
        for name, account, role_ref in (
            ("serin", "serin", {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "serin"}),
            (
                "serin-tick",
                "serin-ticker",
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "serin-tick"},
            ),
        ):
            binding = namespaced[("RoleBinding", namespace, name)]
            assert binding["roleRef"] == role_ref, (namespace, name)
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": system}]

    env = container(namespaced[("Deployment", system, "serin")])["env"]
    assert {"name": "SERIN_WATCH_NAMESPACES", "value": "team-a,team-b"} in env
    assert "SERIN_WATCH_NAMESPACES" not in {e["name"] for e in container(whole[("Deployment", system, "serin")])["env"]}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for webhook in namespaced[(kind, "", "serin")]["webhooks"]:
            assert webhook["namespaceSelector"] == {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
                ]
            }, webhook["name"]
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        assert namespaced[(kind, "", "serin-writes")] == whole[(kind, "", "serin-writes")]


@pytest.mark.parametrize("excluded", ["serin-system", "kube-system"])
def test_a_namespaced_install_refuses_a_namespace_the_webhooks_exclude(helm_path: Path, excluded: str) -> None:
    """Serin's own namespace (so that it can always recover) and webhooks.excludeNamespaces are
    never sent to the webhooks: serving one would be a contradiction the chart says at once."""
    refused = helm(
        helm_path,
        "template",
        RELEASE,
        str(chart.CHART),
        "--namespace",
        chart.NAMESPACE,
        "--set",
        f"watchNamespaces={{team-a,{excluded}}}",
        check=False,
    )
    assert refused.returncode != 0
    assert (
        f"watchNamespaces names {excluded}, which Serin never serves: its own namespace and "
        "webhooks.excludeNamespaces are never sent to its webhooks"
    ) in refused.stderr


@pytest.mark.compat
def test_the_api_server_accepts_every_variant(local_cluster: ClusterHandle, helm_path: Path, namespace: str) -> None:
    variants: tuple[list[str], ...] = (
        [],
        CERT_MANAGER,
        [*CERT_MANAGER, "certManager.issuerRef.name=corporate", "certManager.issuerRef.kind=ClusterIssuer"],
        ["imagePullSecrets[0].name=pull", "tick.shards=3", "server.extraEnv[0].name=X", "server.extraEnv[0].value=x"],
        NETWORK_POLICY,
        # The namespaces given Roles must exist.
        ["watchNamespaces={default,kube-public}"],
    )
    for sets in variants:
        # CRDs aside: the cluster has Serin's already, and a dry run cannot create a kind it lacks.
        objects = [o for o in template(helm_path, sets, namespace=namespace) if o["kind"] != "CustomResourceDefinition"]
        result = local_cluster.apply(objects, "--dry-run=server")
        assert result.stdout.count("(server dry run)") == len(objects), (sets, result.stdout)


# ---- install, upgrade, uninstall ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """A control plane for Helm alone: the chart's cluster-wide objects (ClusterRoles, webhook
    configurations named serin) would collide with the ones the other tests' server uses."""
    binaries = binaries_or_skip()
    cluster = LocalCluster(tmp_path_factory.mktemp("helm-cluster"))
    start_or_fail(cluster, binaries, with_extras=False)
    try:
        with cluster_handle(cluster, binaries) as handle:
            yield handle
    finally:
        cluster.down()


def names(cluster: ClusterHandle, resource: str, *args: str) -> set[str]:
    listed = cluster.get_json(resource, *args, "-l", "app.kubernetes.io/name=serin")
    return {item["metadata"]["name"] for item in listed["items"]}


@pytest.mark.compat
def test_install_upgrade_and_uninstall(own_cluster: ClusterHandle, helm_path: Path) -> None:
    kubeconfig = own_cluster.kubeconfig
    ns = ["--namespace", chart.NAMESPACE]
    # Install returns once the certificate Job (a post-install hook) is complete.
    helm(helm_path, "install", RELEASE, str(chart.CHART), *ns, "--create-namespace", kubeconfig=kubeconfig)

    status = json.loads(helm(helm_path, "status", RELEASE, *ns, "-o", "json", kubeconfig=kubeconfig).stdout)
    assert status["info"]["status"] == "deployed"
    assert [hook["name"] for hook in status["hooks"]] == ["serin-certs"]
    assert status["hooks"][0]["last_run"]["phase"] == "Succeeded"
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        assert names(own_cluster, kind) == {"serin"}
    assert names(own_cluster, "clusterroles") == {"serin", "serin-certs", "serin-tick", "serin-metrics-reader"}
    assert names(own_cluster, "deployments", *ns) == {"serin"}
    assert names(own_cluster, "cronjobs", *ns) == {"serin-tick", "serin-certs-renew"}
    assert names(own_cluster, "serviceaccounts", *ns) == {"serin", "serin-certs", "serin-ticker"}
    assert {c["metadata"]["name"] for c in own_cluster.get_json("crd")["items"]} >= SERIN_CRDS

    def upgrade(*sets: str) -> None:
        flags = [flag for value in sets for flag in ("--set", value)]
        helm(helm_path, "upgrade", RELEASE, str(chart.CHART), *ns, "--reuse-values", *flags, kubeconfig=kubeconfig)

    # A value changed in place, then the certificates handed to cert-manager.
    upgrade("server.replicas=3", "tick.schedule=*/2 * * * *", "tick.periodSeconds=120")
    deployment = own_cluster.get_json("deployment", "serin", *ns)
    assert deployment["spec"]["replicas"] == 3
    assert own_cluster.get_json("cronjob", "serin-tick", *ns)["spec"]["schedule"] == "*/2 * * * *"

    upgrade(*CERT_MANAGER)
    assert names(own_cluster, "certificates.cert-manager.io", *ns) == {
        "serin-ca",
        "serin-webhook",
        "serin-apiserver-client",
    }
    assert names(own_cluster, "issuers.cert-manager.io", *ns) == {"serin-selfsigned", "serin-ca"}
    assert names(own_cluster, "cronjobs", *ns) == {"serin-tick"}
    assert names(own_cluster, "clusterroles") == {"serin", "serin-tick", "serin-metrics-reader"}
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        annotations = own_cluster.get_json(kind, "serin")["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "serin-system/serin-webhook"
    history = json.loads(helm(helm_path, "history", RELEASE, *ns, "-o", "json", kubeconfig=kubeconfig).stdout)
    assert [entry["status"] for entry in history] == ["superseded", "superseded", "deployed"]

    helm(helm_path, "uninstall", RELEASE, *ns, "--wait", kubeconfig=kubeconfig)
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        assert own_cluster.get_json(kind)["items"] == [], f"{kind} left behind"
    assert names(own_cluster, "clusterroles") == set()
    assert names(own_cluster, "clusterrolebindings") == set()
    assert names(own_cluster, "deployments", *ns) == set()
    # Helm never deletes the CRDs of its crds/ folder: uninstalling Serin keeps every Canary.
    assert {c["metadata"]["name"] for c in own_cluster.get_json("crd")["items"]} >= SERIN_CRDS


def test_without_client_certificates_the_server_is_told_so(helm_path: Path) -> None:
    """A control plane that cannot present a certificate: the mode is said, never implied, and
    the install issues no client certificate for it."""
    objects = by_key(template(helm_path, ["admission.authentication=none", "certManager.enabled=true"]))
    env = {e["name"]: e.get("value") for e in container(objects[("Deployment", "serin")])["env"]}
    assert env["SERIN_ADMISSION_AUTHENTICATION"] == "none"
    assert "SERIN_ADMISSION_CLIENT_CA" not in env and "SERIN_ADMISSION_CLIENT_SUBJECT" not in env
    assert ("Certificate", "serin-apiserver-client") not in objects
    issued = by_key(template(helm_path, ["certManager.enabled=true", "admission.clientSubject=apiserver-webhooks"]))
    assert issued[("Certificate", "serin-apiserver-client")]["spec"]["commonName"] == "apiserver-webhooks"
