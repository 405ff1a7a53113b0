"""Metrics for canary analysis: which PromQL to ask (``builtin``) and a Prometheus client that asks it."""

from serin.metrics.builtin import BUILTIN_QUERIES, query_for, render, template_variables
from serin.metrics.prometheus import PrometheusProvider

__all__ = ["BUILTIN_QUERIES", "PrometheusProvider", "query_for", "render", "template_variables"]
