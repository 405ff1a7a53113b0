"""Microsoft Teams incoming webhooks (Office 365 connectors): a legacy ``MessageCard``, as Flagger posts it.

Payload (JSON)::

    {
      "@type": "MessageCard",
      "@context": "http://schema.org/extensions",
      "themeColor": "0076D7" | "FFA500" | "FF0000",      # info | warn | error
      "summary": "<canary>.<namespace>",
      "sections": [{
        "activityTitle": "<message>",
        "activitySubtitle": "<canary>.<namespace>",
        "facts": [{"name": "<title>", "value": "<value>"}, ...]
      }]
    }

Flagger colours warn alerts blue like info; Serin makes them orange. The channel and username of
the provider do not apply: a connector posts to the channel it was made for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serin.notify.alerts import Alert, Destination, post_json

COLOURS: Mapping[str, str] = {"info": "0076D7", "warn": "FFA500", "error": "FF0000"}


def teams_payload(alert: Alert) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": COLOURS[alert.severity],
        "summary": alert.subject,
        "sections": [
            {
                "activityTitle": alert.message,
                "activitySubtitle": alert.subject,
                "facts": [{"name": title, "value": value} for title, value in alert.fields],
            }
        ],
    }


@dataclass(frozen=True)
class MSTeams:
    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return teams_payload(alert)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(destination.address, self.payload(alert), destination.proxy, destination.timeout)


def build(destination: Destination) -> MSTeams:
    return MSTeams(destination)
