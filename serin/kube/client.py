"""Build the connection to the Kubernetes API: the Pod's service account in a cluster, else a kubeconfig.

The ``kubernetes`` package configures it (its loaders: in-cluster, or the kubeconfig's clusters,
users, exec plugins and token refresh) and carries its requests (its REST transport, urllib3's
pool). Its ``ApiClient`` is not used: what ``KubeStore`` asks of one, building a request and
sending it, is done here over the same two parts, while the ``ApiClient`` module imports pydantic
for the typed models and answers that Serin never uses (it speaks plain dicts). In a Pod, the
kubeconfig loader (with oauthlib, YAML and requests behind it) is not imported either.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from kubernetes import client as kubernetes_client
from kubernetes.client import configuration as kubernetes_configuration
from kubernetes.client import rest


class Connection(Protocol):
    """What ``KubeStore`` asks of an API client: the two methods of the kubernetes package's
    ``ApiClient`` it calls (which a real ``ApiClient`` has too, as the tests give it)."""

    @property
    def param_serialize(self) -> Callable[..., tuple[Any, ...]]: ...

    @property
    def call_api(self) -> Callable[..., Any]: ...


class KubeConnection:
    """A request built and sent as the package's ``ApiClient`` does, from its configuration."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration
        self.rest_client = rest.RESTClientObject(configuration)
        # What the package's ApiClient says it is.
        self.user_agent = f"OpenAPI-Generator/{kubernetes_client.__version__}/python"

    def param_serialize(
        self,
        method: str,
        resource_path: str,
        query_params: Iterable[tuple[str, str]] = (),
        header_params: dict[str, str] | None = None,
        body: Any = None,
        auth_settings: Iterable[str] = (),
        **_: Any,
    ) -> tuple[str, str, dict[str, str], Any, None]:
        headers = {"User-Agent": self.user_agent, **(header_params or {})}
        # The settings' token, refreshed first when it expires (an exec plugin's, a Pod's).
        settings = self.configuration.auth_settings()
        for name in auth_settings:
            setting = settings.get(name)
            if setting and setting["in"] == "header":
                headers[setting["key"]] = setting["value"]
        url = self.configuration.host + resource_path
        query = "&".join(f"{key}={urllib.parse.quote(str(value))}" for key, value in query_params)
        return method, f"{url}?{query}" if query else url, headers, body, None

    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: float | None = None,
    ) -> Any:
        return self.rest_client.request(  # type: ignore[no-untyped-call]
            method, url, headers=header_params, body=body, _request_timeout=_request_timeout
        )


def api_client(kubeconfig: str | None = None) -> KubeConnection:
    configuration = kubernetes_configuration.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        from kubernetes.config import incluster_config

        incluster_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        # As new_client_from_config does: refreshed credentials are written back to the file.
        from kubernetes.config import kube_config

        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration, persist_config=True
        )
    return KubeConnection(configuration)
