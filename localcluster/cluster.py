"""Run one local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok's simulated nodes, plus Prometheus, the traffic simulator that plays the mesh, and an external
metrics API (``metrics_adapter``) from which kube-controller-manager's HPA controller gets values.

Everything listens on 127.0.0.1 on ports chosen free at start, so several clusters (each with its
own state folder) can run side by side. ``up`` returns once the API server is ready and the nodes
are Ready; the processes keep running until ``down``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from localcluster import metrics_adapter, podnet, processes
from localcluster.build import Binaries, ensure_binaries
from localcluster.paths import REPO_ROOT
from localcluster.pki import Pki, ensure_pki, ensure_serving_pair
from localcluster.processes import ClusterState
from localcluster.prometheus import ensure_prometheus

NODE_COUNT = 3
# A /16: every Canary has three Services, so a /24 ran out at about 83 Canaries.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
STARTUP_TIMEOUT = 120.0
# The aggregator checks a new APIService within a second or two; a minute means it never will.
APISERVICE_TIMEOUT = 60.0
# A kubectl call that outlasts this has hung (an apply of every CRD takes a few seconds).
KUBECTL_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """The local cluster could not be started or reached; the message says what to look at."""


def _log(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise ClusterError(f"{what} not ready after {timeout:.0f}s{hint}")


@dataclass(frozen=True)
class LocalCluster:
    """One cluster, identified by its state folder."""

    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Pki:
        return Pki(self.state_dir / "pki")

    def state(self) -> ClusterState:
        return ClusterState.load(self.state_dir)

    def log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    # ---- lifecycle -------------------------------------------------------------------------

    def up(self, binaries: Binaries | None = None, with_extras: bool = True, with_serin: bool = False) -> ClusterState:
        """Start whatever is not running yet and wait until the cluster is usable."""
        binaries = binaries or ensure_binaries()
        started = time.monotonic()
        state = self.state()
        running = {name for name, (pid, begun) in state.processes.items() if processes.is_alive(pid, begun)}
        if running and "kube-apiserver" in running:
            _log(f"already running: {', '.join(sorted(running))}")
        else:
            processes.stop_all(self.state_dir)
            state = ClusterState()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            pki = ensure_pki(self.state_dir / "pki")
            self._start_etcd(binaries, state)
            self._start_apiserver(binaries, pki, state)
            self._write_kubeconfigs(pki, state)
            self._start_controllers(binaries, pki, state)
            self._make_pod_network(state)
            self._start_kwok(binaries, state)
            self._create_nodes(binaries)
            self._apply(binaries, binaries.crds)
            self._wait_nodes_ready(binaries)
        state.paths["kubectl_dir"] = str(binaries.kubectl.parent)
        if with_extras:
            self._ensure_simulator(state)
            ensure_prometheus(self.state_dir, binaries.prometheus, state, [state.urls["simulator"]])
            self._ensure_metrics_adapter(binaries, state)
        # Checked last: the CRDs are being established while the rest starts.
        self.wait_crds_established(binaries)
        if with_serin:
            from localcluster.serin_server import ensure_serin

            ensure_serin(self, binaries, state)
        state.save(self.state_dir)
        _log(f"ready in {time.monotonic() - started:.1f}s")
        return state

    def down(self) -> list[str]:
        state = self.state()
        stopped = processes.stop_all(self.state_dir)
        if "pod_range" in state.paths:
            network = podnet.PodNetwork(int(state.paths["pod_range"]))
            if state.paths.get("pod_netns"):
                podnet.delete(network)
            podnet.release(network, self.state_dir)
        # etcd's data is disposable: a fresh `up` starts from an empty cluster.
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        return stopped

    def stop(self, name: str) -> bool:
        """Stop one component (``prometheus``, ``serin``, ...), leaving the rest running."""
        return processes.stop_one(name, self.state_dir)

    def start(self, name: str) -> None:
        """Start a stopped component again, on the same port, so every URL stays valid."""
        processes.start_again(name, self.state_dir)

    def status(self) -> dict[str, bool]:
        return {name: processes.is_alive(pid, begun) for name, (pid, begun) in self.state().processes.items()}

    def env_lines(self) -> list[str]:
        state = self.state()
        lines = [f"export KUBECONFIG={self.kubeconfig}"]
        if "prometheus" in state.urls:
            lines.append(f"export PROMETHEUS_URL={state.urls['prometheus']}")
        if "simulator" in state.urls:
            lines.append(f"export SIMULATOR_URL={state.urls['simulator']}")
        if "traefik" in state.urls:
            lines.append(f"export TRAEFIK_URL={state.urls['traefik']}")
        from localcluster.serin_server import env_lines as serin_env_lines

        lines += serin_env_lines(state)
        # kubectl, and next to this Python the serin command and its kubectl plugin (kubectl serin).
        tools = [state.paths.get("kubectl_dir"), str(Path(sys.executable).parent)]
        lines.append(f'export PATH="{":".join(tool for tool in tools if tool)}:$PATH"')
        return lines

    # ---- components ------------------------------------------------------------------------

    def _start_etcd(self, binaries: Binaries, state: ClusterState) -> None:
        client, peer = processes.free_port(), processes.free_port()
        state.ports.update(etcd=client, etcd_peer=peer)
        data = self.state_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        processes.start(
            "etcd",
            [
                str(binaries.etcd),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.state_dir,
            state,
        )
        wait_for(
            "etcd",
            lambda: requests.get(f"http://127.0.0.1:{client}/health", timeout=1).json().get("health") == "true",
            30,
            self.log("etcd"),
        )

    def _start_apiserver(self, binaries: Binaries, pki: Pki, state: ClusterState) -> None:
        port = processes.free_port()
        state.ports["kube-apiserver"] = port
        state.urls["kube-apiserver"] = f"https://127.0.0.1:{port}"
        processes.start(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # Nothing serves kubelet ports here; the endpoint reconciler would only log noise.
                "--endpoint-reconciler-type=none",
                # The API server presents a client certificate to every admission webhook.
                f"--admission-control-config-file={self._admission_config(pki)}",
            ],
            self.state_dir,
            state,
        )
        wait_for("kube-apiserver", lambda: self._readyz(port, pki), STARTUP_TIMEOUT, self.log("kube-apiserver"))

    def _admission_config(self, pki: Pki) -> Path:
        """The API server's admission configuration: a client certificate for every webhook it calls."""
        kubeconfig = self.state_dir / "webhook-client.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "users": [
                        {
                            "name": "*",
                            "user": {
                                "client-certificate": str(pki.webhook_client_cert),
                                "client-key": str(pki.webhook_client_key),
                            },
                        }
                    ],
                }
            )
        )
        webhooks = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig),
        }
        config = self.state_dir / "admission-config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AdmissionConfiguration",
                    "plugins": [
                        {"name": "ValidatingAdmissionWebhook", "configuration": webhooks},
                        {"name": "MutatingAdmissionWebhook", "configuration": webhooks},
                    ],
                }
            )
        )
        return config

    @staticmethod
    def _readyz(port: int, pki: Pki) -> bool:
        response = requests.get(
            f"https://127.0.0.1:{port}/readyz",
            cert=(str(pki.client_cert("admin")), str(pki.client_key("admin"))),
            verify=str(pki.ca_cert),
            timeout=2,
        )
        return response.status_code == 200

    def _kubeconfig(self, pki: Pki, identity: str, server: str) -> str:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "serin-local", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}
            ],
            "users": [
                {
                    "name": identity,
                    "user": {
                        "client-certificate-data": b64(pki.client_cert(identity)),
                        "client-key-data": b64(pki.client_key(identity)),
                    },
                }
            ],
            "contexts": [{"name": "serin-local", "context": {"cluster": "serin-local", "user": identity}}],
            "current-context": "serin-local",
        }
        return yaml.safe_dump(config)

    def _write_kubeconfigs(self, pki: Pki, state: ClusterState) -> None:
        server = state.urls["kube-apiserver"]
        self.kubeconfig.write_text(self._kubeconfig(pki, "admin", server))
        self.kubeconfig.chmod(0o600)
        for identity in ("controller-manager", "scheduler"):
            path = self.state_dir / f"{identity}.kubeconfig"
            path.write_text(self._kubeconfig(pki, identity, server))
            path.chmod(0o600)

    def _start_controllers(self, binaries: Binaries, pki: Pki, state: ClusterState) -> None:
        self._start_component(
            "kube-controller-manager",
            binaries.kube_controller_manager,
            "controller-manager",
            state,
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # Tests watch an HPA react to a new metric value; the default 15s per sync is too slow.
            "--horizontal-pod-autoscaler-sync-period=2s",
            # Benchmarks roll out a thousand Deployments at once: at the default 20 requests a
            # second the controllers would take minutes to make their ReplicaSets and Pods.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
        )
        self._start_component(
            "kube-scheduler", binaries.kube_scheduler, "scheduler", state, "--kube-api-qps=200", "--kube-api-burst=400"
        )

    def _start_component(self, name: str, binary: Path, identity: str, state: ClusterState, *extra: str) -> None:
        """Controller-manager and scheduler: own identity, loopback serving port, no leader election."""
        kubeconfig = self.state_dir / f"{identity}.kubeconfig"
        port = processes.free_port()
        state.ports[name] = port
        command = [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            *extra,
        ]
        processes.start(name, command, self.state_dir, state)

    def _make_pod_network(self, state: ClusterState) -> None:
        """A pod range of this cluster's own and, where the machine allows, the namespace that
        serves it (``localcluster.podnet``); the real data plane needs the namespace."""
        network = podnet.allocate(self.state_dir)
        state.paths["pod_range"] = str(network.octet)
        state.paths["pod_cidr"] = network.cidr
        try:
            podnet.create(network)
        except (podnet.PodNetworkError, OSError, subprocess.SubprocessError) as error:
            state.paths["pod_netns"] = ""
            state.paths["pod_netns_error"] = str(error)
            _log(f"pods' addresses are not served: {error}")
        else:
            state.paths["pod_netns"] = network.namespace

    def _start_kwok(self, binaries: Binaries, state: ClusterState) -> None:
        port = processes.free_port()
        state.ports["kwok"] = port
        processes.start(
            "kwok",
            [
                str(binaries.kwok),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={binaries.kwok.parent / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{port}",
                f"--cidr={state.paths.get('pod_cidr', podnet.FALLBACK_CIDR)}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
            self.state_dir,
            state,
        )

    def _ensure_simulator(self, state: ClusterState) -> None:
        """The simulator plays the mesh's data plane for every namespace of this cluster."""
        pid, begun = state.processes.get("simulator", (0, 0))
        if pid and processes.is_alive(pid, begun) and "simulator" in state.urls:
            return
        port = processes.free_port()
        state.ports["simulator"] = port
        state.urls["simulator"] = f"http://127.0.0.1:{port}"
        processes.start(
            "simulator",
            [
                sys.executable,
                "-m",
                "localcluster.simulator",
                f"--kubeconfig={self.kubeconfig}",
                f"--listen=127.0.0.1:{port}",
                "--rps=50",
                "--max-duration=86400",
            ],
            self.state_dir,
            state,
            measured=False,
        )
        wait_for(
            "traffic simulator",
            lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok,
            30,
            self.log("simulator"),
        )

    def _ensure_metrics_adapter(self, binaries: Binaries, state: ClusterState) -> None:
        """The external metrics API the HPA controller reads, registered with an APIService."""
        name = "metrics-adapter"
        pid, begun = state.processes.get(name, (0, 0))
        if pid and processes.is_alive(pid, begun) and name in state.urls:
            return
        # The aggregator dials 127.0.0.1 but verifies the Service's host name; our own probe uses the IP.
        cert, key, ca = ensure_serving_pair(
            self.state_dir / "pki" / name,
            metrics_adapter.SERVICE_NAME,
            [metrics_adapter.SERVICE_HOST],
            ["127.0.0.1"],
        )
        port = processes.free_port()
        url = f"https://127.0.0.1:{port}"
        state.ports[name] = port
        state.urls[name] = url
        processes.start(
            name,
            [
                sys.executable,
                "-m",
                "localcluster.metrics_adapter",
                f"--kubeconfig={self.kubeconfig}",
                f"--listen=127.0.0.1:{port}",
                f"--cert={cert}",
                f"--key={key}",
            ],
            self.state_dir,
            state,
            measured=False,
        )
        wait_for(
            "external metrics adapter",
            lambda: requests.get(f"{url}/healthz", verify=str(ca), timeout=1).ok,
            30,
            self.log(name),
        )
        # Applied on every start: the APIService carries this start's port and CA.
        manifest = self.state_dir / "external-metrics-apiservice.json"
        items = metrics_adapter.manifests(port, ca.read_bytes())
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self._apply(binaries, manifest)
        self._wait_apiservice_available(binaries, metrics_adapter.APISERVICE_NAME, self.log(name))

    def _wait_apiservice_available(self, binaries: Binaries, name: str, log: Path) -> None:
        """Until the aggregator has reached the APIService's server; until then it answers 503."""
        deadline = time.monotonic() + APISERVICE_TIMEOUT
        condition: dict[str, str] = {}
        while time.monotonic() < deadline:
            apiservice = json.loads(self.kubectl(binaries, "get", "apiservice", name, "-o", "json"))
            conditions = apiservice.get("status", {}).get("conditions", [])
            condition = next((c for c in conditions if c.get("type") == "Available"), {})
            if condition.get("status") == "True":
                return
            time.sleep(0.2)
        seen = f"{condition.get('reason')}: {condition.get('message')}" if condition else "no Available condition"
        raise ClusterError(
            f"APIService {name} not Available after {APISERVICE_TIMEOUT:.0f}s ({seen}); "
            f"see {log} and {self.log('kube-apiserver')}"
        )

    def kubectl(self, binaries: Binaries, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            [str(binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            env=processes.child_environment(),
            timeout=KUBECTL_TIMEOUT,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _apply(self, binaries: Binaries, manifest: Path) -> None:
        # Right after /readyz a few API groups may still be registering; retry briefly.
        last_error: ClusterError | None = None
        for _ in range(50):
            try:
                self.kubectl(binaries, "apply", "--server-side", "-f", str(manifest))
                return
            except ClusterError as error:
                last_error = error
                time.sleep(0.2)
        assert last_error is not None
        raise last_error

    def _create_nodes(self, binaries: Binaries) -> None:
        nodes = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{index}",
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": f"kwok-node-{index}",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": f"local-{index}",
                    },
                },
                # Room for the thousands of pods a scale benchmark runs (kwok's pods cost nothing).
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "3000"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "3000"},
                },
            }
            for index in range(NODE_COUNT)
        ]
        manifest = self.state_dir / "nodes.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
        self._apply(binaries, manifest)

    def wait_crds_established(self, binaries: Binaries) -> None:
        # One list, not `kubectl wait ... crd --all`: that gets each CRD in turn under kubectl's
        # client-side rate limit, four seconds for forty CRDs that are long established. A CRD
        # created a moment ago has no conditions yet, which counts as not established.
        def all_established() -> bool:
            crds = json.loads(self.kubectl(binaries, "get", "crd", "-o", "json"))["items"]
            return bool(crds) and all(
                any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
                for conditions in (crd.get("status", {}).get("conditions") or [] for crd in crds)
            )

        wait_for("the CRDs to be established", all_established, 60, self.log("kube-apiserver"))

    def _wait_nodes_ready(self, binaries: Binaries) -> None:
        def ready() -> bool:
            items = json.loads(self.kubectl(binaries, "get", "nodes", "-o", "json"))["items"]
            ready_nodes = [
                node
                for node in items
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
            ]
            return len(ready_nodes) >= NODE_COUNT

        wait_for("kwok nodes", ready, 60, self.log("kwok"))


def default_cluster() -> LocalCluster:
    return LocalCluster(REPO_ROOT / ".localcluster")
