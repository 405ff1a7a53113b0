"""Which module answers each MetricTemplate ``spec.provider.type``, imported when first used (a
server whose Canaries only use Prometheus never loads the others).

Each module has ``build(config, store) -> MetricsProvider``; ``store`` is for backends that live
in the cluster itself (Keptn's metrics are custom resources).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from serin.kube.store import KubeStore
from serin.ports import InvalidQuery, MetricsProvider, ProviderConfig

# Every type of Flagger's MetricTemplate, and the module that queries it.
PROVIDER_MODULES: Mapping[str, str] = {
    "prometheus": "serin.metrics.prometheus",
    "datadog": "serin.metrics.datadog",
    "newrelic": "serin.metrics.newrelic",
    "cloudwatch": "serin.metrics.cloudwatch",
    "graphite": "serin.metrics.graphite",
    "influxdb": "serin.metrics.influxdb",
    "dynatrace": "serin.metrics.dynatrace",
    "stackdriver": "serin.metrics.stackdriver",
    "splunk": "serin.metrics.splunk",
    "keptn": "serin.metrics.keptn",
}


def provider_for(config: ProviderConfig, store: KubeStore) -> MetricsProvider:
    """The provider for ``config``; InvalidQuery for a type Serin cannot query."""
    name = PROVIDER_MODULES.get(config.type)
    if name is None:
        raise InvalidQuery(
            f"metrics provider type {config.type!r} is not supported (supported: {', '.join(PROVIDER_MODULES)})"
        )
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        raise InvalidQuery(f"metrics provider type {config.type!r} is not supported yet") from None
    provider: MetricsProvider = module.build(config, store)
    return provider
