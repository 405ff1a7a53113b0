"""Alert notifiers against real HTTP servers on loopback: the exact JSON each chat type receives, what
counts as a temporary or a permanent failure, the proxy, and which alerts each provider wants."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from serin import egress
from serin.destinations import Destinations
from serin.model import Canary, parse_canary
from serin.notify.alerts import (
    Alert,
    Severity,
    alert_fields,
    canary_alert,
    notifier_for,
    post_json,
    wanted,
)
from serin.notify.discord import slack_endpoint
from serin.notify.gchat import gchat_payload
from serin.ports import InvalidCredentials, PermanentError, TemporaryError
from tests.unit.servers import LoopbackServer, QuietHandler, serving

# ---- the receiver and the proxy ------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    delay: float = 0.0
    content_type: str | None = None


@dataclass
class Received:
    # The request target as sent: a path to a server, the absolute URL to a proxy.
    target: str
    headers: dict[str, str]
    body: Any


class Receiver(LoopbackServer):
    """Records every POST and answers it with ``answer``: a chat service, or (since a proxy gets the
    same POST with an absolute URL) a proxy that answers for the service behind it."""

    def __init__(self) -> None:
        super().__init__(ReceiverHandler)
        self.answer = Answer()
        self.received: list[Received] = []
        self.lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"{self.origin}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hung up on a deliberately slow answer: expected, not worth a traceback.
        pass


class ReceiverHandler(QuietHandler):
    server: Receiver

    def do_POST(self) -> None:
        raw = self.read_body()
        with self.server.lock:
            self.server.received.append(Received(self.path, dict(self.headers.items()), json.loads(raw)))
            answer = self.server.answer
        time.sleep(answer.delay)
        self.send(answer.status, answer.body.encode(), answer.content_type)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as running:
        yield running


@pytest.fixture
def proxy() -> Iterator[Receiver]:
    with serving(Receiver()) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---- the alerts and what each type posts for them ------------------------------------------

INFO = Alert(
    "podinfo",
    "shop",
    "New revision detected, progressing canary analysis.",
    "info",
    (
        ("Target", "Deployment/podinfo.shop"),
        ("Failed checks threshold", "5"),
        ("Progress deadline", "600s"),
        ("Traffic routing", "Weight step: 10 max: 50"),
    ),
)
WARN = Alert("podinfo", "shop", "Canary is waiting for approval.", "warn")
ERROR = Alert("podinfo", "shop", "Failed checks threshold reached 5", "error", (("Cluster", "eu-west"),))
ALERTS: dict[str, Alert] = {"info": INFO, "warn": WARN, "error": ERROR}

SLACK_FIELDS: dict[str, list[dict[str, Any]]] = {
    "info": [
        {"title": "Target", "value": "Deployment/podinfo.shop", "short": False},
        {"title": "Failed checks threshold", "value": "5", "short": False},
        {"title": "Progress deadline", "value": "600s", "short": False},
        {"title": "Traffic routing", "value": "Weight step: 10 max: 50", "short": False},
    ],
    "warn": [],
    "error": [{"title": "Cluster", "value": "eu-west", "short": False}],
}


def slack_like(severity: str, colour: str) -> dict[str, Any]:
    """Slack, Discord and Rocket.Chat take one payload; only the colours differ between them."""
    return {
        "channel": "#deploys",
        "username": "release-bot",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": colour,
                "author_name": "podinfo.shop",
                "text": ALERTS[severity].message,
                "mrkdwn_in": ["text"],
                "fields": SLACK_FIELDS[severity],
            }
        ],
    }


TEAMS_FACTS: dict[str, list[dict[str, str]]] = {
    "info": [
        {"name": "Target", "value": "Deployment/podinfo.shop"},
        {"name": "Failed checks threshold", "value": "5"},
        {"name": "Progress deadline", "value": "600s"},
        {"name": "Traffic routing", "value": "Weight step: 10 max: 50"},
    ],
    "warn": [],
    "error": [{"name": "Cluster", "value": "eu-west"}],
}


def teams(severity: str, colour: str) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": colour,
        "summary": "podinfo.shop",
        "sections": [
            {
                "activityTitle": ALERTS[severity].message,
                "activitySubtitle": "podinfo.shop",
                "facts": TEAMS_FACTS[severity],
            }
        ],
    }


GREY = '"#848484"'


def gchat_text(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


GCHAT = {
    "info": {
        "cards": [
            {
                "header": {"title": "Serin", "subtitle": "podinfo.shop"},
                "sections": [
                    gchat_text(f"<font color={GREY}><strong>{INFO.message}</strong></font>"),
                    gchat_text('Target<br><font color="#848484"><strong>Deployment/podinfo.shop</strong></font>'),
                    gchat_text('Failed checks threshold<br><font color="#848484"><strong>5</strong></font>'),
                    gchat_text('Progress deadline<br><font color="#848484"><strong>600s</strong></font>'),
                    gchat_text(
                        'Traffic routing<br><font color="#848484"><strong>Weight step: 10 max: 50</strong></font>'
                    ),
                ],
            }
        ]
    },
    "warn": {
        "cards": [
            {
                "header": {"title": "Serin", "subtitle": "podinfo.shop"},
                "sections": [
                    gchat_text('<font color="#848484"><strong>Canary is waiting for approval.</strong></font>')
                ],
            }
        ]
    },
    "error": {
        "cards": [
            {
                "header": {"title": "Serin", "subtitle": "podinfo.shop"},
                "sections": [
                    gchat_text('<font color="#848484"><strong>Failed checks threshold reached 5</strong></font>'),
                    gchat_text('Cluster<br><font color="#848484"><strong>eu-west</strong></font>'),
                ],
            }
        ]
    },
}

WEBHOOK_FIELDS: dict[str, list[dict[str, str]]] = {
    "info": [
        {"title": "Target", "value": "Deployment/podinfo.shop"},
        {"title": "Failed checks threshold", "value": "5"},
        {"title": "Progress deadline", "value": "600s"},
        {"title": "Traffic routing", "value": "Weight step: 10 max: 50"},
    ],
    "warn": [],
    "error": [{"title": "Cluster", "value": "eu-west"}],
}


def generic(severity: str) -> dict[str, Any]:
    return {
        "name": "podinfo",
        "namespace": "shop",
        "severity": severity,
        "message": ALERTS[severity].message,
        "fields": WEBHOOK_FIELDS[severity],
    }


# (type, severity, the path the address has, the path the POST goes to, the exact body)
PAYLOADS = [
    ("slack", "info", "/services/T0/B0/x", "/services/T0/B0/x", slack_like("info", "good")),
    ("slack", "warn", "/services/T0/B0/x", "/services/T0/B0/x", slack_like("warn", "warning")),
    ("slack", "error", "/services/T0/B0/x", "/services/T0/B0/x", slack_like("error", "danger")),
    ("discord", "info", "/api/webhooks/1/tok", "/api/webhooks/1/tok/slack", slack_like("info", "good")),
    ("discord", "warn", "/api/webhooks/1/tok", "/api/webhooks/1/tok/slack", slack_like("warn", "warning")),
    ("discord", "error", "/api/webhooks/1/tok", "/api/webhooks/1/tok/slack", slack_like("error", "danger")),
    ("rocket", "info", "/hooks/abc/def", "/hooks/abc/def", slack_like("info", "#0076D7")),
    ("rocket", "warn", "/hooks/abc/def", "/hooks/abc/def", slack_like("warn", "#FFA500")),
    ("rocket", "error", "/hooks/abc/def", "/hooks/abc/def", slack_like("error", "#FF0000")),
    ("msteams", "info", "/webhookb2/abc", "/webhookb2/abc", teams("info", "0076D7")),
    ("msteams", "warn", "/webhookb2/abc", "/webhookb2/abc", teams("warn", "FFA500")),
    ("msteams", "error", "/webhookb2/abc", "/webhookb2/abc", teams("error", "FF0000")),
    ("gchat", "info", "/v1/spaces/S/messages?key=k", "/v1/spaces/S/messages?key=k", GCHAT["info"]),
    ("gchat", "warn", "/v1/spaces/S/messages?key=k", "/v1/spaces/S/messages?key=k", GCHAT["warn"]),
    ("gchat", "error", "/v1/spaces/S/messages?key=k", "/v1/spaces/S/messages?key=k", GCHAT["error"]),
    ("webhook", "info", "/alerts", "/alerts", generic("info")),
    ("webhook", "warn", "/alerts", "/alerts", generic("warn")),
    ("webhook", "error", "/alerts", "/alerts", generic("error")),
]


@pytest.mark.parametrize(
    ("kind", "severity", "path", "posted_to", "body"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in PAYLOADS],
)
def test_each_type_posts_its_exact_payload(
    receiver: Receiver, kind: str, severity: str, path: str, posted_to: str, body: dict[str, Any]
) -> None:
    notifier_for(kind, receiver.url(path), channel="#deploys", username="release-bot").send(ALERTS[severity])
    [received] = receiver.received
    assert received.target == posted_to
    assert received.headers["Content-Type"] == "application/json"
    assert received.body == body


def test_slack_defaults_to_flaggers_channel_and_serins_name(receiver: Receiver) -> None:
    notifier_for("slack", receiver.url()).send(WARN)
    body = receiver.received[0].body
    assert (body["channel"], body["username"]) == ("general", "serin")


@pytest.mark.parametrize(
    ("kind", "authorization"),
    [
        ("slack", "Bearer s3cret"),
        ("webhook", "Bearer s3cret"),
        # As in Flagger, only Slack sends the token; the others' URLs carry theirs.
        ("discord", None),
        ("rocket", None),
        ("msteams", None),
        ("gchat", None),
    ],
)
def test_only_slack_and_webhook_send_the_token(receiver: Receiver, kind: str, authorization: str | None) -> None:
    notifier_for(kind, receiver.url(), token="s3cret").send(INFO)
    assert receiver.received[0].headers.get("Authorization") == authorization


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("https://discord.com/api/webhooks/1/tok", "https://discord.com/api/webhooks/1/tok/slack"),
        ("https://discord.com/api/webhooks/1/tok/", "https://discord.com/api/webhooks/1/tok/slack"),
        ("https://discord.com/api/webhooks/1/tok/slack", "https://discord.com/api/webhooks/1/tok/slack"),
        (
            "https://discord.com/api/webhooks/1/tok?thread_id=7",
            "https://discord.com/api/webhooks/1/tok/slack?thread_id=7",
        ),
    ],
)
def test_discord_posts_to_the_slack_endpoint(address: str, endpoint: str) -> None:
    assert slack_endpoint(address) == endpoint


def test_gchat_escapes_html() -> None:
    alert = Alert("podinfo", "shop", "Progress deadline exceeded <canary> & more", "error", (("A<b>", "x&y"),))
    sections = gchat_payload(alert)["cards"][0]["sections"]
    assert sections == [
        gchat_text(
            '<font color="#848484"><strong>Progress deadline exceeded &lt;canary&gt; &amp; more</strong></font>'
        ),
        gchat_text('A&lt;b&gt;<br><font color="#848484"><strong>x&amp;y</strong></font>'),
    ]


# ---- answers, failures, and what an error says ---------------------------------------------


@pytest.mark.parametrize("status", [200, 202, 204])
def test_any_2xx_is_sent(receiver: Receiver, status: int) -> None:
    receiver.answer = Answer(status, "" if status == 204 else "ok")
    post_json(receiver.url(), {"text": "hi"})
    assert receiver.received[0].body == {"text": "hi"}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_service_trouble_is_temporary(receiver: Receiver, status: int) -> None:
    receiver.answer = Answer(status, "try later\n")
    with pytest.raises(TemporaryError) as raised:
        notifier_for("slack", receiver.url("/services/T0/B0/s3cret")).send(INFO)
    assert str(raised.value) == f"{receiver.url('')} answered {status}: 10 bytes of no content type"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentError),
        (404, PermanentError),
        (410, PermanentError),
        (501, PermanentError),
        (401, InvalidCredentials),
        (403, InvalidCredentials),
    ],
)
def test_a_refusal_is_permanent(receiver: Receiver, status: int, error: type[PermanentError]) -> None:
    receiver.answer = Answer(status, "no_service", content_type="text/plain; charset=utf-8")
    with pytest.raises(error) as raised:
        notifier_for("slack", receiver.url("/services/T0/B0/s3cret")).send(INFO)
    assert not isinstance(raised.value, TemporaryError)
    assert str(raised.value) == f"{receiver.url('')} answered {status}: 10 bytes of text/plain"


JSON = "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        pytest.param(
            Answer(400, "<html>internal page</html>", content_type="text/html"), ": 26 bytes of text/html", id="html"
        ),
        pytest.param(
            Answer(400, json.dumps({"error": "invalid_payload:\n  text"}), content_type=JSON),
            ": invalid_payload: text",
            id="error-on-one-line",
        ),
        pytest.param(
            Answer(400, json.dumps({"error": {"message": "channel not found"}}), content_type=JSON),
            ": channel not found",
            id="error-message",
        ),
        pytest.param(
            Answer(400, json.dumps({"errors": ["unknown card"]}), content_type=JSON), ": unknown card", id="errors"
        ),
        pytest.param(
            Answer(400, json.dumps({"error": "y" * 300}), content_type=JSON), ": " + "y" * 197 + "...", id="cut-at-200"
        ),
        pytest.param(
            Answer(400, json.dumps({"ok": False}), content_type=JSON), ": 13 bytes of application/json", id="no-error"
        ),
        pytest.param(Answer(400, "", content_type="text/plain"), "", id="empty"),
    ],
)
def test_a_failure_says_only_the_json_error_or_the_size(receiver: Receiver, answer: Answer, said: str) -> None:
    # The answer's body is never quoted back: it would reach Events and whoever reads them.
    receiver.answer = answer
    with pytest.raises(PermanentError) as raised:
        post_json(receiver.url("/services/T0/B0/s3cret"), {"text": "hi"})
    assert str(raised.value) == f"{receiver.url('')} answered 400{said}"


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    # Following it would turn the POST into a GET: the alert lost, while looking sent.
    receiver.answer = Answer(302, "")
    with pytest.raises(PermanentError, match="a redirect"):
        post_json(receiver.url(), {"text": "hi"})
    assert len(receiver.received) == 1


def test_a_slow_service_times_out_as_temporary(receiver: Receiver) -> None:
    receiver.answer = Answer(delay=0.5)
    with pytest.raises(TemporaryError) as raised:
        notifier_for("msteams", receiver.url("/webhookb2/s3cret"), timeout=0.1).send(ERROR)
    assert str(raised.value) == f"{receiver.url('')} did not answer within 0.1s"


def test_an_unreachable_service_is_temporary_and_the_url_stays_secret() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/s3cret"
    with pytest.raises(TemporaryError) as raised:
        notifier_for("slack", url).send(INFO)
    assert str(raised.value) == f"cannot reach {url.split('/services')[0]}: connection refused"
    # requests' own exception repeats the URL: it is neither the cause nor the context shown.
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_tls_failure_is_permanent_and_the_url_stays_secret(receiver: Receiver) -> None:
    # The receiver speaks plain HTTP: the handshake fails, and will on the next tick too.
    url = receiver.url("/services/T0/B0/s3cret").replace("http://", "https://")
    with pytest.raises(PermanentError) as raised:
        notifier_for("slack", url).send(INFO)
    assert not isinstance(raised.value, TemporaryError)
    assert (
        str(raised.value) == f"cannot reach {receiver.origin.replace('http://', 'https://')}: the TLS handshake failed"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_address_the_install_denies_is_permanent_and_not_called(receiver: Receiver) -> None:
    egress.use(Destinations())  # the defaults: loopback is denied
    with pytest.raises(PermanentError) as raised:
        notifier_for("slack", receiver.url("/services/T0/B0/s3cret")).send(INFO)
    port = receiver.server_address[1]
    assert str(raised.value) == (
        f"cannot reach {receiver.origin}: 127.0.0.1:{port} is an address the install does not let Serin reach"
    )
    assert receiver.received == []


@pytest.mark.parametrize(
    ("kind", "address", "message"),
    [
        ("pagerduty", "https://example.com/x", "alert provider type 'pagerduty' is not supported"),
        ("slack", "", "has no address"),
        ("slack", "hooks.slack.com/services/T0/B0/s3cret", r"not an http\(s\) URL"),
        ("slack", "ftp://example.com/x", r"not an http\(s\) URL"),
        ("slack", "http://example.com:port/x", "not a valid URL"),
    ],
)
def test_a_provider_that_cannot_work_is_refused(kind: str, address: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message) as raised:
        notifier_for(kind, address)
    assert "s3cret" not in str(raised.value)


def test_the_repr_keeps_credentials_out_of_logs() -> None:
    notifier = notifier_for(
        "slack", "https://hooks.slack.com/services/T0/B0/s3cret", proxy="http://u:pw@p:3128", token="tok"
    )
    text = repr(notifier)
    assert "s3cret" not in text and "pw" not in text and "tok" not in text


# ---- the proxy -----------------------------------------------------------------------------


def test_the_proxy_carries_the_alert(proxy: Receiver) -> None:
    # A host that does not resolve: only the proxy can have delivered it.
    address = "http://hooks.chat.invalid/services/T0/B0/x"
    notifier_for("rocket", address, channel="#deploys", username="release-bot", proxy=proxy.url("")).send(INFO)
    [received] = proxy.received
    assert received.target == address
    assert received.body == slack_like("info", "#0076D7")
    assert "Proxy-Authorization" not in received.headers


def test_proxy_credentials_are_sent_to_the_proxy(proxy: Receiver) -> None:
    with_credentials = proxy.url("").replace("http://", "http://relay:pw@")
    notifier_for("webhook", "http://alerts.chat.invalid/in", proxy=with_credentials).send(WARN)
    [received] = proxy.received
    assert received.headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"relay:pw").decode()
    assert received.body == generic("warn")


@pytest.mark.parametrize("proxy", ["relay:3128", "http://relay:port", "ftp://relay:21"])
def test_a_proxy_that_is_not_a_url_is_refused(proxy: str) -> None:
    with pytest.raises(PermanentError) as raised:
        notifier_for("slack", "http://hooks.chat.invalid/services/T0/B0/s3cret", proxy=proxy).send(INFO)
    assert str(raised.value) == "the alert provider's proxy is not a valid URL"


def test_an_unreachable_proxy_is_temporary() -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        TemporaryError,
        match=r"^cannot reach http://hooks\.chat\.invalid through the alert provider's proxy: connection refused$",
    ):
        notifier_for("slack", "http://hooks.chat.invalid/services/T0/B0/x", proxy=proxy).send(INFO)


# ---- which alerts a provider wants ---------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_severity", "provider_severity", "expected"),
    [
        ("info", "info", True),
        ("warn", "info", True),
        ("error", "info", True),
        ("info", "warn", False),
        ("warn", "warn", True),
        ("error", "warn", True),
        ("info", "error", False),
        ("warn", "error", False),
        ("error", "error", True),
        # The CRD's default: unset means info.
        ("info", "", True),
        ("error", "", True),
    ],
)
def test_severity_table(alert_severity: str, provider_severity: str, expected: bool) -> None:
    assert wanted(alert_severity, provider_severity) is expected


@pytest.mark.parametrize(("alert_severity", "provider_severity"), [("fatal", "info"), ("info", "warning")])
def test_an_unknown_severity_is_a_bug(alert_severity: str, provider_severity: str) -> None:
    with pytest.raises(ValueError, match="must be one of info, warn, error"):
        wanted(alert_severity, provider_severity)


def test_an_alert_refuses_an_unknown_severity() -> None:
    bad: Any = "critical"
    with pytest.raises(ValueError, match="critical"):
        Alert("podinfo", "shop", "hello", bad)


# ---- the fields, from the Canary -----------------------------------------------------------


def make_canary(analysis: dict[str, Any], **spec: Any) -> Canary:
    return parse_canary(
        {
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-app"},
                "service": {"port": 80},
                "analysis": {"interval": "1m", **analysis},
                **spec,
            },
        }
    )


@dataclass(frozen=True)
class FieldsCase:
    analysis: dict[str, Any]
    routing: tuple[tuple[str, str], ...] = field(default=())


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            FieldsCase({"stepWeight": 10, "maxWeight": 50}, (("Traffic routing", "Weight step: 10 max: 50"),)),
            id="canary",
        ),
        pytest.param(
            FieldsCase({"stepWeights": [1, 5, 10]}, (("Traffic routing", "Weight steps: 1,5,10 max: 10"),)), id="steps"
        ),
        pytest.param(
            FieldsCase(
                {"iterations": 10, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
                (("Traffic routing", "A/B Testing"),),
            ),
            id="ab-testing",
        ),
        pytest.param(FieldsCase({"iterations": 10}, (("Traffic routing", "Blue/Green"),)), id="blue-green"),
    ],
)
def test_alert_fields_are_flaggers_metadata(case: FieldsCase) -> None:
    canary = make_canary({"threshold": 5, **case.analysis}, progressDeadlineSeconds=300)
    assert alert_fields(canary) == (
        ("Target", "Deployment/podinfo-app.shop"),
        ("Failed checks threshold", "5"),
        ("Progress deadline", "300s"),
        *case.routing,
    )


def test_the_cluster_comes_first_and_alone_without_details() -> None:
    canary = make_canary({"stepWeight": 10})
    assert alert_fields(canary, details=False) == ()
    assert alert_fields(canary, details=False, cluster="eu-west") == (("Cluster", "eu-west"),)
    assert alert_fields(canary, cluster="eu-west")[:2] == (
        ("Cluster", "eu-west"),
        ("Target", "Deployment/podinfo-app.shop"),
    )


def test_canary_alert_names_the_canary() -> None:
    severity: Severity = "info"
    canary = make_canary({"stepWeight": 10, "maxWeight": 50})
    alert = canary_alert(canary, "New revision detected, progressing canary analysis.", severity, details=True)
    assert alert == Alert(
        "podinfo",
        "shop",
        "New revision detected, progressing canary analysis.",
        "info",
        (
            ("Target", "Deployment/podinfo-app.shop"),
            ("Failed checks threshold", "1"),
            ("Progress deadline", "600s"),
            ("Traffic routing", "Weight step: 10 max: 50"),
        ),
    )
    assert alert.subject == "podinfo.shop"
