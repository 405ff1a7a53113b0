"""Google Chat incoming webhooks: one card, the message then one section per field, as Flagger posts it.

Payload (JSON; ``GREY`` stands for ``<font color="#848484">``)::

    {"cards": [{
      "header": {"title": "Serin", "subtitle": "<canary>.<namespace>"},
      "sections": [
        {"widgets": [{"textParagraph": {"text": "GREY<strong><message></strong></font>"}}]},
        {"widgets": [{"textParagraph": {"text": "<title><br>GREY<strong><value></strong></font>"}}]},
        ...
      ]
    }]}

Text paragraphs are Google Chat's HTML subset, so the message, titles and values are HTML-escaped
(a ``<`` in a reason must not swallow the rest of the card). Flagger titles the card "Flagger" with
its favicon; Serin titles it "Serin" and has no image to show. Cards carry no colour, so severity
shows only in the message. The channel and username of the provider do not apply.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from serin.notify.alerts import Alert, Destination, post_json

TITLE = "Serin"
GREY = "#848484"


def _paragraph(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


def _grey(text: str) -> str:
    return f'<font color="{GREY}"><strong>{html.escape(text, quote=False)}</strong></font>'


def gchat_payload(alert: Alert) -> dict[str, Any]:
    sections = [_paragraph(_grey(alert.message))]
    sections += [_paragraph(f"{html.escape(title, quote=False)}<br>{_grey(value)}") for title, value in alert.fields]
    return {"cards": [{"header": {"title": TITLE, "subtitle": alert.subject}, "sections": sections}]}


@dataclass(frozen=True)
class GChat:
    destination: Destination

    def payload(self, alert: Alert) -> dict[str, Any]:
        return gchat_payload(alert)

    def send(self, alert: Alert) -> None:
        destination = self.destination
        post_json(destination.address, self.payload(alert), destination.proxy, destination.timeout)


def build(destination: Destination) -> GChat:
    return GChat(destination)
