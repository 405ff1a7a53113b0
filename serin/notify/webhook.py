"""A generic alert webhook: the alert as a plain JSON object, for receivers of the user's own
(an incident tool, a bot, a relay to a chat Serin has no module for).

Payload (JSON)::

    {
      "name": "<canary>",
      "namespace": "<namespace>",
      "severity": "info" | "warn" | "error",
      "message": "<message>",
      "fields": [{"title": "<title>", "value": "<value>"}, ...]
    }

``fields`` is a list, not an object, because its order is meaningful (the order chats show them
in) and titles are display text, not keys. The provider's bearer token, if any, is sent in the
``Authorization`` header; its channel and username are not sent. Any 2xx is success.

This is not Flagger's ``event`` webhook of an analysis (``serin.notify.webhooks``), which sends
every Event, with the Canary's phase and checksum, to a gate's URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serin.notify.alerts import Alert, Destination, post_json


def webhook_payload(alert: Alert) -> dict[str, Any]:
    return {
        "name": alert.name,
        "namespace": alert.namespace,
        "severity": alert.severity,
        "message": alert.message,
        "fields": [{"title": title, "value": value} for title, value in alert.fields],
    }


@dataclass(frozen=True)
class Webhook:
    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return webhook_payload(alert)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(
            destination.address, self.payload(alert), destination.proxy, destination.timeout, token=destination.token
        )


def build(destination: Destination) -> Webhook:
    return Webhook(destination)
