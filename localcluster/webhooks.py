"""Point Serin's webhook configurations (k8s/webhooks.yaml) at a server outside the cluster.

In a cluster the API server reaches Serin through its Service; locally Serin runs on the host, so
each webhook's ``clientConfig.service`` becomes ``url: https://127.0.0.1:PORT/path`` with the
caBundle of the certificate that server presents. Everything else (rules, selectors, match
conditions, failure policies) stays as shipped, so local runs and tests exercise the real
configuration.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from localcluster.paths import REPO_ROOT

WEBHOOKS_MANIFEST = REPO_ROOT / "k8s" / "webhooks.yaml"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def load_manifest(path: Path = WEBHOOKS_MANIFEST) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") in WEBHOOK_KINDS]


def for_url(
    configurations: list[dict[str, Any]],
    base_url: str,
    ca_bundle: bytes,
    name: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Copies reaching ``base_url``; ``namespace_labels`` narrows them to namespaces so labelled."""
    result = []
    for configuration in configurations:
        changed = copy.deepcopy(configuration)
        if name:
            changed["metadata"] = {"name": name, "labels": changed.get("metadata", {}).get("labels", {})}
        for webhook in changed.get("webhooks", []):
            path = webhook["clientConfig"].get("service", {}).get("path", "/")
            webhook["clientConfig"] = {
                "url": base_url.rstrip("/") + path,
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            if namespace_labels:
                selector = webhook.setdefault("namespaceSelector", {})
                selector.setdefault("matchLabels", {}).update(namespace_labels)
        result.append(changed)
    return result
