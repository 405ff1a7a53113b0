"""The ``kubernetes`` provider: no mesh, so no routing object and no traffic to shift.

Flagger's answer for clusters without a mesh or gateway: the apex Service always selects the
primary's pods, the canary is reached only through its own ``<service>-canary`` Service (by load
testers and the analysis), and promotion changes nothing but the primary's template. Only
blue/green is possible; admission refuses weights and matches for this provider
(``serin.model.PROVIDERS``). The Services themselves are the reconciler's, as for every provider.

Since no object holds a split, the split is whatever the Canary's status says it is: the
reconciler does not ask this router (``shifts_traffic`` is false) and writing a split is a no-op.
"""

from __future__ import annotations

from serin.kube.store import KubeStore
from serin.model import Canary
from serin.ports import Routes


class KubernetesRouter:
    shifts_traffic = False
    kinds: tuple[str, ...] = ()

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def reconcile(
        self, canary: Canary, split: tuple[int, int] = (100, 0), session: str | None = None, mirror: bool = False
    ) -> None:
        """Nothing to create: the Services are all there is."""

    def get_routes(self, canary: Canary) -> Routes | None:
        """No routing object, so none to read (see the module docstring)."""
        return None

    def set_routes(
        self, canary: Canary, primary_weight: int, canary_weight: int, session: str | None = None, mirror: bool = False
    ) -> None:
        """No traffic to move."""

    def finalize(self, canary: Canary) -> None:
        """Nothing of the user's was taken over by a router."""
