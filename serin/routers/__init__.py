"""Routers: one module per mesh provider, each implementing ``serin.ports.Router``.

``router_for`` picks the implementation named by a Canary's ``spec.provider``. To add a provider,
write ``serin/routers/<provider>.py`` and register its class in ``_ROUTERS`` below (and in
``serin.model.KNOWN_PROVIDERS``, so that admission accepts the name). Modules here talk to the
Kubernetes API only, through ``serin.kube.store``; they never decide weights, that is the engine's job.
"""

from __future__ import annotations

from collections.abc import Callable

from serin.kube.store import KubeStore
from serin.ports import Router
from serin.routers.istio import IstioRouter

_ROUTERS: dict[str, Callable[[KubeStore], Router]] = {
    "istio": IstioRouter,
}

KNOWN_PROVIDERS = tuple(sorted(_ROUTERS))


def router_for(provider: str, store: KubeStore) -> Router:
    """The router for ``provider`` talking through ``store``; ValueError for an unknown provider."""
    try:
        factory = _ROUTERS[provider]
    except KeyError:
        known = ", ".join(KNOWN_PROVIDERS)
        raise ValueError(f"unknown router provider {provider!r}; known providers: {known}") from None
    return factory(store)


__all__ = ["KNOWN_PROVIDERS", "IstioRouter", "router_for"]
