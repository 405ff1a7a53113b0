"""Routers: one module per mesh provider, each implementing ``serin.ports.Router``.

``router_for`` picks the implementation named by a Canary's ``spec.provider``. To add a provider,
write ``serin/routers/<provider>.py``, register its class in ``_ROUTERS`` below, and say what its
routes can express in ``serin.model.PROVIDERS`` (admission accepts the name from there, and
refuses what the provider cannot do). Modules here talk to the
Kubernetes API only, through ``serin.kube.store``; they never decide weights, that is the engine's job.
"""

from __future__ import annotations

from collections.abc import Callable

from serin.kube.store import KubeStore
from serin.ports import Router
from serin.routers.contour import ContourRouter
from serin.routers.gatewayapi import GatewayAPIRouter
from serin.routers.istio import IstioRouter
from serin.routers.kubernetes import KubernetesRouter
from serin.routers.linkerd import LinkerdRouter
from serin.routers.nginx import NginxRouter
from serin.routers.traefik import TraefikRouter

_ROUTERS: dict[str, Callable[[KubeStore], Router]] = {
    "istio": IstioRouter,
    "gatewayapi:v1": GatewayAPIRouter,
    "gatewayapi:v1beta1": GatewayAPIRouter,
    "nginx": NginxRouter,
    "contour": ContourRouter,
    "traefik": TraefikRouter,
    "linkerd": LinkerdRouter,
    "kubernetes": KubernetesRouter,
}

KNOWN_PROVIDERS = tuple(_ROUTERS)
# Every kind of routing object a router writes, for the sweep of leftovers.
ROUTING_KINDS = tuple(
    dict.fromkeys(
        kind
        for router in (IstioRouter, GatewayAPIRouter, NginxRouter, ContourRouter, TraefikRouter, LinkerdRouter)
        for kind in router.kinds
    )
)


def router_for(provider: str, store: KubeStore) -> Router:
    """The router for ``provider`` talking through ``store``; ValueError for an unknown provider."""
    try:
        factory = _ROUTERS[provider]
    except KeyError:
        known = ", ".join(KNOWN_PROVIDERS)
        raise ValueError(f"unknown router provider {provider!r}; known providers: {known}") from None
    return factory(store)


__all__ = [
    "KNOWN_PROVIDERS",
    "ROUTING_KINDS",
    "ContourRouter",
    "GatewayAPIRouter",
    "IstioRouter",
    "KubernetesRouter",
    "LinkerdRouter",
    "NginxRouter",
    "TraefikRouter",
    "router_for",
]
