"""The pods' network of one local cluster: addresses that a real proxy on the host can call.

kwok gives every pod an address from the cluster's pod range, but nothing answers there, and the
API server refuses loopback addresses in EndpointSlices, so the range cannot simply be loopback.
Each cluster therefore gets a range of its own, ``10.<N>.0.0/16``, and a network namespace,
``serin-pods-<N>``, in which the whole range is local (a ``local`` route on its loopback device,
so a server there may bind any pod's address). A veth pair joins it to the host, and one host
route sends the range into it: the host's processes (Traefik, Prometheus, the tests) reach a
pod's address and nothing else changes on the host. Traffic only ever goes to loopback or to
this namespace.

N is taken from a small registry under the cache folder, one file per range naming the state
folder of the cluster that holds it; a range whose cluster no longer runs is taken back. Making
the namespace needs CAP_NET_ADMIN; without it the cluster still runs, on a range nothing serves,
and ``available`` says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from localcluster import processes
from localcluster.paths import cache_dir

# Second octets of the ranges handed out: clear of the Service range (10.0.0.0/16) and of the
# 10.244.0.0/16 many tools assume.
RANGE_OCTETS = range(100, 200)
# Without a namespace of its own (no CAP_NET_ADMIN) a cluster keeps this range.
FALLBACK_CIDR = "10.244.0.0/16"
IP_TIMEOUT = 10.0


class PodNetworkError(RuntimeError):
    """The namespace or its links could not be made; the message has ip's own words."""


@dataclass(frozen=True)
class PodNetwork:
    octet: int

    @property
    def cidr(self) -> str:
        return f"10.{self.octet}.0.0/16"

    @property
    def namespace(self) -> str:
        return f"serin-pods-{self.octet}"

    @property
    def host_link(self) -> str:
        return f"serin-{self.octet}-h"

    @property
    def pod_link(self) -> str:
        return f"serin-{self.octet}-p"

    @property
    def host_address(self) -> str:
        """The host's end of the link: a /30 of its own, outside every pod range."""
        return f"172.31.{self.octet}.1"

    @property
    def pod_side_address(self) -> str:
        return f"172.31.{self.octet}.2"

    @property
    def namespace_path(self) -> Path:
        return Path("/run/netns") / self.namespace

    def contains(self, address: str) -> bool:
        parts = address.split(".")
        return len(parts) == 4 and parts[0] == "10" and parts[1] == str(self.octet)


def _registry() -> Path:
    return cache_dir() / "podnets"


def _holder_runs(state_dir: Path) -> bool:
    try:
        state = processes.ClusterState.load(state_dir)
    except (OSError, ValueError, json.JSONDecodeError):
        return False
    pid, begun = state.processes.get("kube-apiserver", (0, 0))
    return bool(pid) and processes.is_alive(pid, begun)


@contextlib.contextmanager
def _locked_registry() -> Iterator[Path]:
    registry = _registry()
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield registry


def allocate(state_dir: Path) -> PodNetwork:
    """The range of the cluster in ``state_dir``: the one it holds, else the first free one.
    Called before its API server starts, so a range is also free when its holder is ``state_dir``."""
    state_dir = state_dir.resolve()
    with _locked_registry() as registry:
        free: int | None = None
        for octet in RANGE_OCTETS:
            entry = registry / str(octet)
            holder = Path(entry.read_text().strip()) if entry.exists() else None
            if holder == state_dir:
                return PodNetwork(octet)
            if free is None and (holder is None or not _holder_runs(holder)):
                free = octet
        if free is None:
            raise PodNetworkError(f"every pod range 10.{RANGE_OCTETS.start}-{RANGE_OCTETS.stop - 1}.0.0/16 is held")
        (registry / str(free)).write_text(f"{state_dir}\n")
        return PodNetwork(free)


def release(network: PodNetwork, state_dir: Path) -> None:
    with _locked_registry() as registry:
        entry = registry / str(network.octet)
        if entry.exists() and Path(entry.read_text().strip()) == state_dir.resolve():
            entry.unlink()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def create(network: PodNetwork) -> None:
    """Make (again) the namespace, its link and the host's route; what a crashed run left is removed first."""
    delete(network)
    _ip("netns", "add", network.namespace)
    in_namespace = ("-n", network.namespace)
    _ip(*in_namespace, "link", "set", "lo", "up")
    _ip("link", "add", network.host_link, "type", "veth", "peer", "name", network.pod_link)
    _ip("link", "set", network.pod_link, "netns", network.namespace)
    _ip("addr", "add", f"{network.host_address}/30", "dev", network.host_link)
    _ip(*in_namespace, "addr", "add", f"{network.pod_side_address}/30", "dev", network.pod_link)
    _ip("link", "set", network.host_link, "up")
    _ip(*in_namespace, "link", "set", network.pod_link, "up")
    # Every address of the range is the namespace's own: a server there binds any pod's address.
    _ip(*in_namespace, "route", "add", "local", network.cidr, "dev", "lo")
    _ip(*in_namespace, "route", "add", "default", "via", network.host_address)
    _ip("route", "add", network.cidr, "via", network.pod_side_address, "dev", network.host_link)


def delete(network: PodNetwork) -> None:
    """Remove the namespace, the link (its host end goes with its peer) and the route; missing parts are fine."""
    _ip("route", "del", network.cidr, check=False)
    _ip("link", "del", network.host_link, check=False)
    _ip("netns", "del", network.namespace, check=False)


def exists(network: PodNetwork) -> bool:
    return network.namespace_path.exists()


def unavailable_reason() -> str | None:
    """Why no pod network can be made on this machine, or None when one can."""
    probe = PodNetwork(RANGE_OCTETS.stop)  # an octet never handed out
    try:
        _ip("netns", "add", probe.namespace)
    except (PodNetworkError, OSError, subprocess.SubprocessError) as error:
        return f"cannot make a network namespace ({error}); the real data plane needs CAP_NET_ADMIN and iproute2"
    _ip("netns", "del", probe.namespace, check=False)
    return None
