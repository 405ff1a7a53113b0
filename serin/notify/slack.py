"""Slack incoming webhooks: one message attachment per alert, as Flagger posts it.

Payload (JSON)::

    {
      "channel": "<channel>", "username": "<username>", "icon_emoji": ":rocket:",
      "attachments": [{
        "color": "good" | "warning" | "danger",     # info | warn | error
        "author_name": "<canary>.<namespace>",
        "text": "<message>",
        "mrkdwn_in": ["text"],
        "fields": [{"title": "<title>", "value": "<value>", "short": false}, ...]
      }]
    }

Flagger colours warn alerts "good" like info; Serin gives them Slack's "warning" so a halted
release does not look like a healthy one. ``channel`` and ``username`` only take effect with
legacy webhooks (a Slack app's webhook posts where and as it was installed), as with Flagger.
Discord and Rocket.Chat take the same shape (``serin.notify.discord``, ``serin.notify.rocket``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serin.notify.alerts import Alert, Destination, post_json

COLOURS: Mapping[str, str] = {"info": "good", "warn": "warning", "error": "danger"}
ICON_EMOJI = ":rocket:"


def slack_payload(alert: Alert, channel: str, username: str, colours: Mapping[str, str] = COLOURS) -> dict[str, Any]:
    """The Slack-compatible message for ``alert``; ``colours`` maps its severity to the attachment's colour."""
    return {
        "channel": channel,
        "username": username,
        "icon_emoji": ICON_EMOJI,
        "attachments": [
            {
                "color": colours[alert.severity],
                "author_name": alert.subject,
                "text": alert.message,
                "mrkdwn_in": ["text"],
                "fields": [{"title": title, "value": value, "short": False} for title, value in alert.fields],
            }
        ],
    }


@dataclass(frozen=True)
class Slack:
    """Posts alerts to a Slack incoming webhook, with the provider's bearer token if it has one."""

    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert, self.destination.channel, self.destination.username)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(
            destination.address, self.payload(alert), destination.proxy, destination.timeout, token=destination.token
        )


def build(destination: Destination) -> Slack:
    return Slack(destination)
