"""Where Serin may connect for a tenant: the install's policy of allowed and denied addresses.

Read from the settings when the server starts (``SERIN_EGRESS_ALLOWED``, ``SERIN_EGRESS_DENIED``)
and held by ``serin.egress`` to every request to a metrics backend, hook or alert provider.
Standard library only: gunicorn's configuration reads the settings in its master process, which
serves nothing and so needs no HTTP client.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Denied unless the install says otherwise: the node's and the cloud's metadata services
# (link-local), Serin's own pod (loopback) and addresses that mean "this host".
DEFAULT_DENIED = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128", "fd00:ec2::254/128")
EVERYWHERE = ("0.0.0.0/0", "::/0")


@dataclasses.dataclass(frozen=True)
class Destinations:
    """Which addresses Serin may call for a tenant: in ``allowed`` and not in ``denied``.

    An entry is a network (``10.0.0.0/8``, ``fd00::/8``, one address) or one address and port
    (``10.96.0.1:443``, ``[fd00::1]:443``), so that one service can be denied on a host whose others
    are allowed.
    """

    allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in EVERYWHERE)
    denied: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in DEFAULT_DENIED)
    denied_endpoints: frozenset[tuple[Address, int]] = frozenset()

    @classmethod
    def parse(cls, allowed: str = "", denied: str | None = None) -> Destinations:
        """From comma-separated entries (``denied`` None: the defaults); ValueError names a bad one."""
        allow = [_network(entry) for entry in _entries(allowed)] or [ipaddress.ip_network(n) for n in EVERYWHERE]
        networks: list[Network] = []
        endpoints: set[tuple[Address, int]] = set()
        for entry in _entries(",".join(DEFAULT_DENIED) if denied is None else denied):
            endpoint = _endpoint(entry)
            if endpoint is not None:
                endpoints.add(endpoint)
            else:
                networks.append(_network(entry))
        return cls(tuple(allow), tuple(networks), frozenset(endpoints))

    def permits(self, address: Address, port: int) -> bool:
        if (address, port) in self.denied_endpoints:
            return False
        if any(address in network for network in self.denied if network.version == address.version):
            return False
        return any(address in network for network in self.allowed if network.version == address.version)

    def describe(self) -> str:
        denied = [str(n) for n in self.denied] + [_show(a, p) for a, p in sorted(self.denied_endpoints, key=str)]
        return f"allowed {', '.join(str(n) for n in self.allowed)}; denied {', '.join(denied) or 'nothing'}"


def _entries(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def _network(entry: str) -> Network:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not a network (10.0.0.0/8), an address or an address:port") from None


def _endpoint(entry: str) -> tuple[Address, int] | None:
    host, separator, port = entry.rpartition(":")
    if not separator or not port.isdigit() or "/" in entry:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # a bare IPv6 address, not address:port
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        raise ValueError(f"{entry!r} is not a network (10.0.0.0/8), an address or an address:port") from None


def _show(address: Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def denied_in_cluster(environ: Mapping[str, str]) -> str:
    """The default denials, and the API server's Service when running in a Pod."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST", ""), environ.get("KUBERNETES_SERVICE_PORT", "")
    entries = list(DEFAULT_DENIED)
    if host and port.isdigit():
        entries.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return ",".join(entries)
