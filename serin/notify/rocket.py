"""Rocket.Chat incoming webhooks: the Slack payload of ``serin.notify.slack``, with CSS colours.

Rocket.Chat's attachments take a CSS colour rather than Slack's names, so (as in Flagger) info is
blue and error red; warn, which Flagger shows blue, is orange here::

    {"channel": ..., "username": ..., "icon_emoji": ":rocket:",
     "attachments": [{"color": "#0076D7" | "#FFA500" | "#FF0000", "author_name": "<canary>.<namespace>",
                      "text": "<message>", "mrkdwn_in": ["text"],
                      "fields": [{"title": ..., "value": ..., "short": false}, ...]}]}

No bearer token is sent (the webhook URL carries Rocket.Chat's token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serin.notify.alerts import Alert, Destination, post_json
from serin.notify.slack import slack_payload

COLOURS: Mapping[str, str] = {"info": "#0076D7", "warn": "#FFA500", "error": "#FF0000"}


@dataclass(frozen=True)
class Rocket:
    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert, self.destination.channel, self.destination.username, COLOURS)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(destination.address, self.payload(alert), destination.proxy, destination.timeout)


def build(destination: Destination) -> Rocket:
    return Rocket(destination)
