"""The pure parts of the real data plane: Traefik's build substitutes, the pods' servers' reading
of EndpointSlices, and the registry of pod ranges."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

import pytest

from localcluster import backends, podnet
from localcluster.backends import Endpoint, Pod, ready_endpoints
from localcluster.build import BuildError, without_dns_providers
from localcluster.processes import ClusterState
from localcluster.simulator.cluster import Behaviour

REGISTRY = """package dns

import (
\t"github.com/go-acme/lego/v5/providers/dns/acmedns"
\t"github.com/go-acme/lego/v5/providers/dns/edgedns"
\t"github.com/go-acme/lego/v5/providers/dns/exec"
)

func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
\tswitch name {
\tcase "acme-dns", "acmedns":
\t\treturn acmedns.NewDNSProvider()
\tcase "edgedns", "fastdns":
\t\treturn edgedns.NewDNSProvider()
\tcase "exec":
\t\treturn exec.NewDNSProvider()
\tdefault:
\t\treturn nil, fmt.Errorf("unrecognized DNS provider: %s", name)
\t}
}
"""


def test_a_dns_provider_without_its_sdk_is_left_out_of_legos_registry() -> None:
    expected = REGISTRY.replace('\t"github.com/go-acme/lego/v5/providers/dns/edgedns"\n', "").replace(
        '\tcase "edgedns", "fastdns":\n\t\treturn edgedns.NewDNSProvider()\n', ""
    )
    assert without_dns_providers(REGISTRY, ("edgedns",)) == expected


def test_a_registry_that_no_longer_names_a_provider_stops_the_build() -> None:
    with pytest.raises(BuildError, match="ucloud"):
        without_dns_providers(REGISTRY, ("ucloud",))


def _pod(
    name: str, annotations: dict[str, str] | None = None, image: str = "ghcr.io/stefanprodan/podinfo:6.0.1"
) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": {"containers": [{"image": image}]}}


def _slice(namespace: str, endpoints: list[dict[str, Any]], ports: tuple[int, ...] = (9898,)) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace},
        "ports": [{"port": port} for port in ports],
        "endpoints": endpoints,
    }


def test_every_ready_endpoint_of_a_known_pod_is_served_once_per_port() -> None:
    pods = {
        ("demo", "a"): _pod("a", {"simulator.serin.dev/error-rate": "0.5", "simulator.serin.dev/latency-ms": "7"}),
        ("demo", "b"): _pod("b", image="example/app:next"),
    }
    slices = [
        _slice(
            "demo",
            [
                {"addresses": ["10.100.0.1"], "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "a"}},
                {
                    "addresses": ["10.100.0.2"],
                    "conditions": {"ready": False},
                    "targetRef": {"kind": "Pod", "name": "b"},
                },
                {"addresses": ["10.100.0.3"], "targetRef": {"kind": "Pod", "name": "gone"}},
                {"addresses": ["10.100.0.4"], "targetRef": {"kind": "Node", "name": "b"}},
                {"addresses": ["10.100.0.5"], "targetRef": {"kind": "Pod", "name": "b"}},
            ],
            ports=(9898, 8080),
        ),
        # The same pod in a second slice (another Service selecting it) is served once.
        _slice("demo", [{"addresses": ["10.100.0.1"], "targetRef": {"kind": "Pod", "name": "a"}}]),
    ]
    a = Pod("demo", "a", "6.0.1", Behaviour(error_rate=0.5, latency_ms=7.0))
    b = Pod("demo", "b", "next", Behaviour())
    assert ready_endpoints(slices, pods) == [
        Endpoint("10.100.0.1", 9898, a),
        Endpoint("10.100.0.1", 8080, a),
        Endpoint("10.100.0.5", 9898, b),
        Endpoint("10.100.0.5", 8080, b),
    ]


def test_pod_ranges_are_one_per_running_cluster_and_taken_back_from_stopped_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERIN_CACHE", str(tmp_path / "cache"))
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for state_dir in (first, second, third):
        state_dir.mkdir()
    assert podnet.allocate(first).octet == podnet.RANGE_OCTETS.start
    # Its API server runs (this process stands in for it): the range stays its own.
    ClusterState(processes={"kube-apiserver": [_own_pid(), _own_start()]}).save(first)
    assert podnet.allocate(first).octet == podnet.RANGE_OCTETS.start
    assert podnet.allocate(second).octet == podnet.RANGE_OCTETS.start + 1
    assert podnet.allocate(second).octet == podnet.RANGE_OCTETS.start + 1
    # The second never started: the third takes its range back.
    assert podnet.allocate(third).octet == podnet.RANGE_OCTETS.start + 1
    podnet.release(podnet.PodNetwork(podnet.RANGE_OCTETS.start), first)
    assert podnet.allocate(second).octet == podnet.RANGE_OCTETS.start


def test_a_pod_network_is_named_after_its_range() -> None:
    network = podnet.PodNetwork(142)
    assert (network.cidr, network.namespace, network.host_link, network.pod_link) == (
        "10.142.0.0/16",
        "serin-pods-142",
        "serin-142-h",
        "serin-142-p",
    )
    assert (network.host_address, network.pod_side_address) == ("172.31.142.1", "172.31.142.2")
    assert [network.contains(address) for address in ("10.142.3.4", "10.143.3.4", "10.142.3")] == [True, False, False]


def _own_pid() -> int:
    import os

    return os.getpid()


def _own_start() -> int:
    from localcluster.processes import start_time

    return start_time(_own_pid())


def test_a_server_outlives_its_endpoint_for_a_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a terminating pod answers what a proxy still sends it: an endpoint no longer listed is
    served for GRACE_SECONDS more, then closed; listed again in time, it stays."""
    opened: list[tuple[str, int]] = []

    def loopback_listener(_namespace: str, address: str, port: int) -> socket.socket:
        opened.append((address, port))
        return socket.create_server(("127.0.0.1", 0))

    monkeypatch.setattr(backends, "listener_in_namespace", loopback_listener)
    servers = backends.PodServers("/no/namespace", backends.Served(), random.Random(1))
    endpoint = Endpoint("10.100.0.1", 9898, Pod("demo", "a", "v1", Behaviour()))
    servers.sync([endpoint], now=0.0)
    servers.sync([], now=1.0)
    servers.sync([], now=1.0 + backends.GRACE_SECONDS - 0.1)
    assert servers.serving() == [("10.100.0.1", 9898)]
    servers.sync([endpoint], now=10.0)
    servers.sync([], now=11.0)
    servers.sync([], now=11.0 + backends.GRACE_SECONDS)
    assert (servers.serving(), opened) == ([], [("10.100.0.1", 9898)])
    servers.close()
