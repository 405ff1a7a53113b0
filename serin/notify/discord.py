"""Discord webhooks, through their Slack-compatible endpoint (``<webhook URL>/slack``), as Flagger does.

Discord's own format (embeds) would need a second rendering of every alert; its ``/slack``
endpoint takes the Slack payload of ``serin.notify.slack`` unchanged, colours included::

    {"channel": ..., "username": ..., "icon_emoji": ":rocket:",
     "attachments": [{"color": "good" | "warning" | "danger", "author_name": "<canary>.<namespace>",
                      "text": "<message>", "mrkdwn_in": ["text"],
                      "fields": [{"title": ..., "value": ..., "short": false}, ...]}]}

The address is the webhook URL as Discord gives it; ``/slack`` is appended to its path unless it
is there already (a query such as ``?thread_id=`` is kept). No bearer token is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from serin.notify.alerts import Alert, Destination, post_json
from serin.notify.slack import slack_payload


def slack_endpoint(address: str) -> str:
    """The Slack-compatible endpoint of a Discord webhook URL."""
    parts = urlsplit(address)
    if parts.path.endswith("/slack"):
        return address
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/slack"))


@dataclass(frozen=True)
class Discord:
    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert, self.destination.channel, self.destination.username)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(slack_endpoint(destination.address), self.payload(alert), destination.proxy, destination.timeout)


def build(destination: Destination) -> Discord:
    return Discord(destination)
