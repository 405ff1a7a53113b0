"""A tiny external metrics API for the local control plane, so that a HorizontalPodAutoscaler
really scales: kube-controller-manager's HPA controller asks ``external.metrics.k8s.io/v1beta1``
(the API KEDA's metrics server serves) and this process answers.

Values come from ConfigMaps: metric ``M`` in namespace ``N`` is ``data[M]`` of the ConfigMap
``external-metrics`` in ``N``, a Kubernetes quantity such as ``"3"`` or ``"500m"``. A test sets the
value and the HPA follows ``desired = ceil(value / averageValue)``; unlike CPU metrics this needs no
pod requests, readiness windows or initialization period. The metric's label selector is ignored.
A missing ConfigMap or key is a 404, which the HPA reports as ``FailedGetExternalMetric``.

How the API server reaches it (see ``manifests``): an ``APIService`` names the Service
``kube-system/serin-external-metrics``, of type ExternalName with ``externalName: 127.0.0.1``. With
aggregator routing off, the aggregator resolves an ExternalName Service to
``https://<externalName>:<APIService's service.port>`` (no kube-proxy, no endpoints needed) and
verifies the serving certificate against the APIService's ``caBundle`` for the host name
``serin-external-metrics.kube-system.svc``.

What the API server asks, all answered here: ``/apis/external.metrics.k8s.io/v1beta1`` (its
availability check, five probes at a time, and discovery), ``/apis`` (aggregated discovery; a
plain APIGroupList makes it fall back to the group version), ``/openapi/v2`` and ``/openapi/v3``,
and the metric reads of the HPA controller. The aggregator proxies without a client certificate
(the API server has no ``--proxy-client-*`` flags), so the adapter authenticates nobody: it listens
on 127.0.0.1 only and reveals nothing but ``external-metrics`` ConfigMaps.

``python -m localcluster.metrics_adapter --kubeconfig=F --listen=127.0.0.1:PORT --cert=F --key=F``
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.server
import ipaddress
import json
import re
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, cast

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
APISERVICE_NAME = f"{VERSION}.{GROUP}"
SERVICE_NAME = "serin-external-metrics"
SERVICE_NAMESPACE = "kube-system"
# The name the aggregator checks the serving certificate against (it dials the ExternalName).
SERVICE_HOST = f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc"
CONFIGMAP_NAME = "external-metrics"

HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
API_TIMEOUT_SECONDS = 5.0
# A client that connects and never finishes its TLS handshake must not keep a thread forever.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# The aggregator keeps connections open between HPA syncs; close them when idle this long.
IDLE_TIMEOUT_SECONDS = 60.0

# Kubernetes' quantity grammar (k8s.io/apimachinery resource.ParseQuantity): a signed decimal
# number, then a binary SI suffix, a decimal SI suffix or a decimal exponent. The HPA decodes the
# whole list as quantities, so a value it would reject must be refused here with a clear message.
QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")


class SourceError(RuntimeError):
    """The API server could not be asked for a ConfigMap (not: the ConfigMap does not exist)."""


# Namespace -> data of its ``external-metrics`` ConfigMap, None when there is no such ConfigMap.
Reader = Callable[[str], Mapping[str, str] | None]


def is_quantity(text: str) -> bool:
    return QUANTITY.fullmatch(text) is not None


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``Status`` as the API server writes one, so clients show the message, not just the code."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [version], "preferredVersion": version}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def api_resource_list() -> dict[str, Any]:
    """Discovery for the group version: what the aggregator's availability check requires (a 2xx)
    and its discovery merges; shaped like KEDA's, one namespaced resource standing for any metric."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": "externalmetrics",
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
        ],
    }


def openapi_v2() -> dict[str, Any]:
    """An empty but valid OpenAPI v2 document: the aggregator's OpenAPI v2 controller takes a 404
    for an error and retries it forever, logging each time (its v3 controller accepts the 404)."""
    return {"swagger": "2.0", "info": {"title": SERVICE_NAME, "version": VERSION}, "paths": {}}


def metric_value_list(metric: str, value: str, now: datetime.datetime) -> dict[str, Any]:
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "metricName": metric,
                "metricLabels": {},
                "timestamp": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": value,
            }
        ],
    }


def answer(path: str, read: Reader, now: datetime.datetime) -> tuple[int, dict[str, Any]]:
    """The status code and JSON document for a GET of ``path`` (without its query)."""
    parts = [part for part in path.split("/") if part]
    if parts == ["apis"]:
        return 200, api_group_list()
    if parts == ["openapi", "v2"]:
        return 200, openapi_v2()
    if parts == ["apis", GROUP]:
        return 200, {"kind": "APIGroup", "apiVersion": "v1", **api_group()}
    if parts == ["apis", GROUP, VERSION]:
        return 200, api_resource_list()
    if len(parts) != 6 or parts[:4] != ["apis", GROUP, VERSION, "namespaces"]:
        return 404, status(404, "NotFound", f"the server could not find the requested resource {path}")
    namespace, metric = (urllib.parse.unquote(part) for part in parts[4:])
    try:
        data = read(namespace)
    except SourceError as error:
        return 503, status(503, "ServiceUnavailable", f"reading ConfigMap {namespace}/{CONFIGMAP_NAME}: {error}")
    if data is None:
        return 404, status(404, "NotFound", f"no ConfigMap {namespace}/{CONFIGMAP_NAME} to read metric {metric!r} from")
    value = data.get(metric)
    if value is None:
        return 404, status(404, "NotFound", f"ConfigMap {namespace}/{CONFIGMAP_NAME} has no key {metric!r}")
    value = value.strip()
    if not is_quantity(value):
        message = f"ConfigMap {namespace}/{CONFIGMAP_NAME}: {metric}={value!r} is not a Kubernetes quantity"
        return 500, status(500, "InternalError", message)
    return 200, metric_value_list(metric, value, now)


class ConfigMapReader:
    """Reads ``external-metrics`` ConfigMaps through the API server, afresh on every request, so a
    test's change is seen at the HPA's next sync."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self._client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(self._client)

    def __call__(self, namespace: str) -> Mapping[str, str] | None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            configmap = self._core.read_namespaced_config_map(
                CONFIGMAP_NAME, namespace, _request_timeout=API_TIMEOUT_SECONDS
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise SourceError(f"HTTP {error.status} {error.reason}") from error
        except (HTTPError, OSError) as error:
            raise SourceError(f"{type(error).__name__}: {error}") from error
        data: Mapping[str, str] = configmap.data or {}
        return data


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the aggregator's connection open between HPA syncs (every reply has a length).
    protocol_version = "HTTP/1.1"
    server_version = "serin-external-metrics"
    timeout = IDLE_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in HEALTH_PATHS:
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        server = cast(AdapterServer, self.server)
        code, document = answer(path, server.read, datetime.datetime.now(datetime.UTC))
        self._send(code, json.dumps(document).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class AdapterServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], read: Reader, context: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.read = read
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow or broken client
        # never holds up accept() for the others.
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            print(f"{client_address[0]} TLS handshake failed: {error}", file=sys.stderr, flush=True)
            return
        with connection:
            super().finish_request(connection, client_address)


def manifests(port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The Service and APIService that route ``external.metrics.k8s.io`` to the adapter on ``port``."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
        # Nothing routes ClusterIPs here (no kube-proxy); the aggregator dials an ExternalName as is.
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    apiservice = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return [service, apiservice]


def _loopback_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 127.0.0.1:PORT, got {text!r}") from None
    if not loopback:
        # It reads ConfigMaps as the cluster admin and asks nobody who calls it: loopback only.
        raise argparse.ArgumentTypeError(f"{host} is not a loopback address")
    return host, number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.metrics_adapter",
        description=f"Serve {GROUP_VERSION} from ConfigMaps named {CONFIGMAP_NAME!r}.",
    )
    parser.add_argument("--kubeconfig", required=True, help="whose identity reads the ConfigMaps")
    parser.add_argument("--listen", required=True, type=_loopback_address, help="127.0.0.1:PORT")
    parser.add_argument("--cert", required=True, help="serving certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    args = parser.parse_args(argv)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    server = AdapterServer(args.listen, ConfigMapReader(args.kubeconfig), context)
    host, port = server.server_address[:2]
    print(f"serving {GROUP_VERSION} on https://{host!s}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
