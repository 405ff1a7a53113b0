"""Serin's access to the Kubernetes API, over the official ``kubernetes`` package.

That package's ``__init__`` imports every part of it whenever any part is imported: its dynamic
client, watches, streams (websocket-client), informers, leader election and utilities, and its
config package the kubeconfig loader, with pydantic, oauthlib, YAML and requests behind it. Serin
uses three parts, the configuration, the REST transport and the config loaders, and a replica
would carry the rest idle, in every worker. So the package and those of its subpackages whose
``__init__`` imports the rest are made importable without running it: their modules are
imported as asked for (``kubernetes.client.rest``), and a name the ``__init__`` itself defines
(``kubernetes.config.load_kube_config``) runs it on first use, so every other user of the package
in the process sees it whole.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

# The packages whose __init__ imports what Serin does not use.
DEFERRED_PACKAGES = ("kubernetes", "kubernetes.config", "kubernetes.utils")


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs the first time a name it defines is asked for."""

    _lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__"):
            try:
                return importlib.import_module(f"{self.__name__}.{name}")
            except ModuleNotFoundError as missing:
                if missing.name != f"{self.__name__}.{name}":
                    raise
        with self._lock:
            if not self.__dict__.get("_serin_initialised"):
                self.__dict__["_serin_initialised"] = True
                self.__spec__.loader.exec_module(self)  # type: ignore[union-attr]
        if name in self.__dict__:
            return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _defer(name: str) -> None:
    if name in sys.modules:
        return  # imported already, whole: nothing to save
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return
    module = _DeferredPackage(name)
    module.__spec__, module.__path__ = spec, list(spec.submodule_search_locations)
    module.__file__, module.__package__, module.__loader__ = spec.origin, name, spec.loader
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


for _package in DEFERRED_PACKAGES:
    _defer(_package)
