"""The PromQL behind each metric of a Canary's analysis: builtin templates and placeholder rendering.

Turns a ``Metric`` of a ``Canary`` into the exact query to send: a builtin metric (``request-success-rate``,
``request-duration``) becomes the mesh provider's template, a custom ``query`` or a MetricTemplate's
``spec.query`` is rendered with the Canary's names. Placeholders use Flagger's ``{{ namespace }}`` form,
with or without the spaces, and ``{{ variables.x }}`` for a metric's ``templateVariables``.

This module is pure: it must not fetch MetricTemplates, talk to Prometheus or read a clock. The caller
fetches a MetricTemplate and passes its query in.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from serin.model import PLACEHOLDER, VARIABLES_PREFIX, Canary, Metric, selects_target
from serin.ports import InvalidQuery

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"

_ISTIO = MappingProxyType(
    {
        # Percent of requests that did not end in a 5xx.
        REQUEST_SUCCESS_RATE: (
            "sum(rate(istio_requests_total{"
            'reporter="destination", destination_workload_namespace="{{ namespace }}", '
            'destination_workload=~"{{ target }}", response_code!~"5.*"'
            "}[{{ interval }}]))"
            " / "
            "sum(rate(istio_requests_total{"
            'reporter="destination", destination_workload_namespace="{{ namespace }}", '
            'destination_workload=~"{{ target }}"'
            "}[{{ interval }}]))"
            " * 100"
        ),
        # p99 latency in milliseconds.
        REQUEST_DURATION: (
            "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
            'reporter="destination", destination_workload_namespace="{{ namespace }}", '
            'destination_workload=~"{{ target }}"'
            "}[{{ interval }}])) by (le))"
        ),
    }
)

# What the application reports itself, as Flagger reads it when no mesh reports for it (its
# HttpObserver, for the kubernetes and gatewayapi providers): ``http_request_duration_seconds``
# with the labels Prometheus's pod discovery gives it. Pod names of the target's Deployment are
# ``<target>-<template hash>-<suffix>``; the primary's (``<target>-primary-...``) do not match.
_APP_SELECTOR = (
    'kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
)
_APPLICATION = MappingProxyType(
    {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(http_request_duration_seconds_count{{{_APP_SELECTOR}, status!~"5.*"}}[{{{{ interval }}}}]))'
            " / "
            f"sum(rate(http_request_duration_seconds_count{{{_APP_SELECTOR}}}[{{{{ interval }}}}]))"
            " * 100"
        ),
        # p99 in milliseconds, as every builtin duration (Flagger converts this one from seconds).
        REQUEST_DURATION: (
            "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{"
            f"{_APP_SELECTOR}"
            "}[{{ interval }}])) by (le)) * 1000"
        ),
    }
)

# What the NGINX ingress controller reports for requests its canary Ingress sent to the canary
# (``canary`` names the canary upstream; it is empty for the rest).
_NGINX_SELECTOR = 'namespace="{{ namespace }}", ingress="{{ ingress }}", canary!=""'
_NGINX_LATENCY = "nginx_ingress_controller_ingress_upstream_latency_seconds"
_NGINX = MappingProxyType(
    {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(nginx_ingress_controller_requests{{{_NGINX_SELECTOR}, status!~"5.*"}}[{{{{ interval }}}}]))'
            " / "
            f"sum(rate(nginx_ingress_controller_requests{{{_NGINX_SELECTOR}}}[{{{{ interval }}}}]))"
            " * 100"
        ),
        # Mean upstream latency in milliseconds, as Flagger measures it for NGINX.
        REQUEST_DURATION: (
            f"sum(rate({_NGINX_LATENCY}_sum{{{_NGINX_SELECTOR}}}[{{{{ interval }}}}]))"
            " / "
            f"sum(rate({_NGINX_LATENCY}_count{{{_NGINX_SELECTOR}}}[{{{{ interval }}}}]))"
            " * 1000"
        ),
    }
)

_WINDOW = "[{{ interval }}]"
# What Envoy reports for the canary's cluster, as Contour names it (``<namespace>_<service>_<port>``).
_CONTOUR_SELECTOR = 'envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+"'
_CONTOUR = MappingProxyType(
    {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(envoy_cluster_upstream_rq{{{_CONTOUR_SELECTOR}, envoy_response_code!~"5.*"}}{_WINDOW}))'
            " / "
            f"sum(rate(envoy_cluster_upstream_rq{{{_CONTOUR_SELECTOR}}}[{{{{ interval }}}}]))"
            " * 100"
        ),
        REQUEST_DURATION: (
            "histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{"
            f"{_CONTOUR_SELECTOR}"
            "}[{{ interval }}])) by (le))"
        ),
    }
)

# What Traefik reports for the canary's Kubernetes service (``<namespace>-<name>-<port>@kubernetescrd``).
# (Flagger names it after ``{{ target }}``; the canary Service is named after the service.)
_TRAEFIK_SELECTOR = 'service=~"{{ namespace }}-{{ service }}-canary-[0-9a-zA-Z-]+@kubernetescrd"'
_TRAEFIK_REQUESTS = "traefik_service_request_duration_seconds_bucket"
_TRAEFIK = MappingProxyType(
    {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate({_TRAEFIK_REQUESTS}{{{_TRAEFIK_SELECTOR}, code!~"5..", le="+Inf"}}[{{{{ interval }}}}]))'
            " / "
            f'sum(rate({_TRAEFIK_REQUESTS}{{{_TRAEFIK_SELECTOR}, le="+Inf"}}[{{{{ interval }}}}]))'
            " * 100"
        ),
        REQUEST_DURATION: (
            f"histogram_quantile(0.99, sum(rate({_TRAEFIK_REQUESTS}{{{_TRAEFIK_SELECTOR}}}{_WINDOW})) by (le)) * 1000"
        ),
    }
)

# What Linkerd's proxies report for inbound requests to the target's pods.
_LINKERD_SELECTOR = 'namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound"'
_LINKERD = MappingProxyType(
    {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(response_total{{{_LINKERD_SELECTOR}, classification!="failure"}}{_WINDOW}))'
            " / "
            f"sum(rate(response_total{{{_LINKERD_SELECTOR}}}{_WINDOW}))"
            " * 100"
        ),
        REQUEST_DURATION: (
            f"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{{{_LINKERD_SELECTOR}}}{_WINDOW})) by (le))"
        ),
    }
)

BUILTIN_QUERIES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "linkerd": _LINKERD,
        "contour": _CONTOUR,
        "traefik": _TRAEFIK,
        "istio": _ISTIO,
        "nginx": _NGINX,
        "gatewayapi:v1": _APPLICATION,
        "gatewayapi:v1beta1": _APPLICATION,
        "kubernetes": _APPLICATION,
    }
)
"""Provider name -> builtin metric name -> query template."""

# Anything between double braces is a placeholder (``serin.model.PLACEHOLDER``), so a misspelt or
# Go-template-only form (``{{ .Namespace }}``) is reported instead of reaching Prometheus as a
# syntax error.
_PLACEHOLDER = PLACEHOLDER


def render(template: str, variables: Mapping[str, str]) -> str:
    """Replace each ``{{ name }}`` (or ``{{name}}``) with ``variables[name]``.

    Raises InvalidQuery naming every placeholder that has no value, so one fix covers them all.
    """
    unknown = sorted({match.strip() for match in _PLACEHOLDER.findall(template) if match.strip() not in variables})
    if unknown:
        known = ", ".join(sorted(variables)) or "none"
        raise InvalidQuery(f"unknown placeholder(s) {', '.join(unknown)} in query (known: {known})")
    return _PLACEHOLDER.sub(lambda match: variables[match.group(1).strip()], template)


def template_variables(metric: Metric, canary: Canary, target: str | None = None) -> dict[str, str]:
    """The values a query of this metric may use, keyed by placeholder name. ``target``: the
    workload ``{{ target }}`` names instead of the Canary's target (its primary, to compare)."""
    values = {
        "name": canary.name,
        "namespace": canary.namespace,
        "target": target or canary.target_ref.name,
        "service": canary.service.name,
        "ingress": canary.ingress_ref.name if canary.ingress_ref else canary.target_ref.name,
        "interval": metric.interval,
    }
    values.update({f"{VARIABLES_PREFIX}{key}": value for key, value in metric.template_variables.items()})
    return values


def query_template(metric: Metric, canary: Canary, template_query: str | None = None) -> str:
    """The metric's query before its placeholders are filled in.

    ``template_query`` is the referenced MetricTemplate's ``spec.query`` and is required when the
    metric has a ``templateRef``. Raises InvalidQuery for an unknown provider, or a metric with neither a
    query nor a builtin name.
    """
    if metric.query is not None:
        return metric.query
    if metric.template_ref is not None:
        if template_query is None:
            raise InvalidQuery(
                f"metric {metric.name!r} refers to MetricTemplate {metric.template_ref.name!r}: its query is needed"
            )
        return template_query
    provider = BUILTIN_QUERIES.get(canary.provider)
    if provider is None:
        raise InvalidQuery(
            f"no builtin metrics for provider {canary.provider!r} (known: {', '.join(sorted(BUILTIN_QUERIES))})"
        )
    template = provider.get(metric.name)
    if template is None:
        raise InvalidQuery(
            f"{metric.name!r} is not a builtin metric of provider {canary.provider!r} "
            f"({', '.join(sorted(provider))}): give it a query or a templateRef"
        )
    return template


def query_for(metric: Metric, canary: Canary, template_query: str | None = None, target: str | None = None) -> str:
    """The rendered PromQL for one metric of a Canary (``{{ target }}`` naming ``target`` if given).

    Raises InvalidQuery as ``query_template`` does, and for a placeholder without a value.
    """
    return render(query_template(metric, canary, template_query), template_variables(metric, canary, target))


def compare_problem(metric: Metric, canary: Canary, template_query: str | None = None) -> str | None:
    """Why this metric cannot compare the canary with the primary (None: it can): its query must
    select the workload with ``{{ target }}``, so that it can run once for each."""
    query = query_template(metric, canary, template_query)
    if selects_target(query):
        return None
    if metric.is_builtin:
        what = f"the builtin {metric.name} of provider {canary.provider}"
        return f"{what} does not select the workload by {{{{ target }}}}: give a query that does"
    ref = metric.template_ref
    source = f"MetricTemplate {ref.namespace or canary.namespace}/{ref.name}" if ref else "the query"
    return (
        f"{source} does not select the workload by {{{{ target }}}}: compare runs its query once for the canary "
        "and once for the primary"
    )
