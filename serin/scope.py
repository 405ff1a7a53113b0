"""Which namespaces one install of Serin serves: every one (the default), or only those
``SERIN_WATCH_NAMESPACES`` lists (the chart's ``watchNamespaces``, which then grants Serin's
account Roles in those namespaces and no cluster-wide access to their objects).

A namespaced install lists per namespace where a cluster-wide one lists once, and acts on nothing
elsewhere: the tick, the page and replays refuse another namespace, admission lets its reviews
through untouched, and a Canary may not name a template or alert provider there. This module only
says what is served; it makes no request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A namespace's name is a DNS-1123 label.
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Scope:
    """The namespaces served: ``namespaces`` empty means every namespace of the cluster."""

    namespaces: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Scope:
        """A comma-separated list of namespaces (blank: every namespace); ValueError naming each
        entry that is not a namespace name."""
        entries = [entry.strip() for entry in text.split(",")]
        wrong = [entry for entry in entries if entry and not _NAMESPACE_NAME.fullmatch(entry)]
        if wrong:
            raise ValueError(
                "must be namespace names (DNS-1123 labels) separated by commas, not "
                + ", ".join(repr(entry[:100]) for entry in wrong)
            )
        return cls(tuple(dict.fromkeys(entry for entry in entries if entry)))

    @property
    def whole_cluster(self) -> bool:
        return not self.namespaces

    def serves(self, namespace: str) -> bool:
        return self.whole_cluster or namespace in self.namespaces

    def lists(self, namespace: str | None) -> tuple[str | None, ...]:
        """Where to list to find what ``namespace`` holds (None: every namespace served): one list
        of the whole cluster (None), one per namespace served, or none for a namespace not served."""
        if namespace is not None:
            return (namespace,) if self.serves(namespace) else ()
        return (None,) if self.whole_cluster else self.namespaces

    def refusal(self, namespace: str) -> str | None:
        """Why this install does not act in ``namespace``; None when it does."""
        if self.serves(namespace):
            return None
        return (
            f"namespace {namespace} is not served by this install of Serin, which serves "
            f"{', '.join(self.namespaces)} only (SERIN_WATCH_NAMESPACES)"
        )


WHOLE_CLUSTER = Scope()
