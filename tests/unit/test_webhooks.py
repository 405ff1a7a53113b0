"""Webhook gates against a real HTTP server on loopback: what passes, what fails, what is retried, what is sent."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from serin.model import Canary, HookType, Webhook, parse_canary
from serin.notify.webhooks import HttpHookCaller, event_payload, hook_payload
from tests.unit.servers import serving


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    delay: float = 0.0
    content_type: str | None = None
    location: str = ""
    # Seconds between the body's bytes, sent one at a time after the head (0: all at once).
    drip: float = 0.0


@dataclass
class Received:
    path: str
    content_type: str
    body: Any
    idempotency_key: str | None = None


class HookServer(http.server.ThreadingHTTPServer):
    """Answers the n-th POST with ``answers[n]`` (the last one once they run out) and records what it got."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HookHandler)
        self.answers: list[Answer] = [Answer()]
        self.received: list[Received] = []
        self.lock = threading.Lock()

    def url(self, path: str = "/gate") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def record(self, received: Received) -> Answer:
        with self.lock:
            self.received.append(received)
            return self.answers[min(len(self.received), len(self.answers)) - 1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hung up on a deliberately slow answer: expected, not worth a traceback.
        pass


class HookHandler(http.server.BaseHTTPRequestHandler):
    server: HookServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = self.server.record(
            Received(
                self.path, self.headers.get("Content-Type", ""), json.loads(raw), self.headers.get("Idempotency-Key")
            )
        )
        time.sleep(answer.delay)
        data = answer.body.encode()
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        if answer.location:
            self.send_header("Location", answer.location)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not answer.drip:
            self.wfile.write(data)
            return
        self.wfile.flush()
        for index in range(len(data)):
            time.sleep(answer.drip)
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[HookServer]:
    with serving(HookServer()) as running:
        yield running


@pytest.fixture
def canary() -> Canary:
    return parse_canary(
        {
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {"interval": "1m", "stepWeight": 10},
            },
        }
    )


def make_hook(url: str, timeout: float = 2.0, retries: int = 0, **metadata: str) -> Webhook:
    return Webhook(
        name="gate", type=HookType.PRE_ROLLOUT, url=url, timeout_seconds=timeout, metadata=metadata, retries=retries
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CALLER = HttpHookCaller(backoff_seconds=0.01)


@pytest.mark.parametrize("status", [pytest.param(200, id="200"), pytest.param(202, id="202")])
def test_status_up_to_202_passes(server: HookServer, status: int) -> None:
    server.answers = [Answer(status, "approved")]
    result = CALLER.call(make_hook(server.url()), {"name": "podinfo"})
    assert result.ok
    assert result.name == "gate"
    assert result.message == f"status {status}"


JSON = "application/json"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(Answer(203, "partial"), "status 203: 7 bytes of no content type", id="203"),
        pytest.param(
            Answer(500, "load test failed: p99 too high\n", content_type="text/plain; charset=utf-8"),
            "status 500: 31 bytes of text/plain",
            id="500-text-not-quoted",
        ),
        pytest.param(Answer(404, ""), "status 404", id="404-empty-body"),
        pytest.param(Answer(500, "x" * 300), "status 500: 300 bytes of no content type", id="300-bytes"),
        pytest.param(
            Answer(500, json.dumps({"error": "load test failed:\n  p99 too high"}), content_type=JSON),
            "status 500: load test failed: p99 too high",
            id="json-error-on-one-line",
        ),
        pytest.param(
            Answer(422, json.dumps({"error": {"message": "canary not ready", "code": 7}}), content_type=JSON),
            "status 422: canary not ready",
            id="json-error-message",
        ),
        pytest.param(
            Answer(500, json.dumps({"errors": [{"message": "p99 too high"}, "ignored"]}), content_type=JSON),
            "status 500: p99 too high",
            id="json-first-of-errors",
        ),
        pytest.param(
            Answer(500, json.dumps({"error": "x" * 300}), content_type=JSON),
            "status 500: " + "x" * 197 + "...",
            id="json-error-cut-at-200",
        ),
        pytest.param(
            Answer(500, json.dumps({"detail": "internal"}), content_type=JSON),
            "status 500: 22 bytes of application/json",
            id="json-without-error",
        ),
    ],
)
def test_status_above_202_fails_with_the_json_error_or_the_size(
    server: HookServer, answer: Answer, message: str
) -> None:
    # The body of an answer that is not a yes is never quoted back: only a JSON error's text.
    server.answers = [answer]
    result = CALLER.call(make_hook(server.url()), {})
    assert not result.ok
    assert result.message == message


def test_slow_hook_times_out(server: HookServer) -> None:
    server.answers = [Answer(200, delay=0.6)]
    started = time.monotonic()
    result = CALLER.call(make_hook(server.url(), timeout=0.2), {})
    assert not result.ok
    # What is left of the timeout when the attempt starts, a hair under 0.2s.
    assert re.fullmatch(rf"timed out after 0\.\d{{1,3}}s calling {re.escape(server.url())}", result.message)
    assert time.monotonic() - started < 0.5


def test_an_answer_dripping_past_the_timeout_times_out(server: HookServer) -> None:
    # The head arrives at once and each byte well within a read timeout: only a deadline ends it.
    server.answers = [Answer(200, "x" * 20, drip=0.05)]
    started = time.monotonic()
    result = CALLER.call(make_hook(server.url(), timeout=0.3), {})
    assert not result.ok
    assert re.fullmatch(rf"timed out after 0\.\d{{1,3}}s calling {re.escape(server.url())}", result.message)
    assert time.monotonic() - started < 0.8


def test_a_redirect_is_not_followed(server: HookServer) -> None:
    # Followed, it would take the payload (and Serin) wherever the hook points.
    server.answers = [Answer(307, location=server.url("/elsewhere")), Answer(200)]
    result = CALLER.call(make_hook(server.url(), retries=2), {})
    assert not result.ok
    assert result.message == "status 307"
    assert [received.path for received in server.received] == ["/gate"]


def test_refused_connection_fails() -> None:
    url = f"http://127.0.0.1:{free_port()}/gate"
    result = CALLER.call(make_hook(url), {})
    assert not result.ok
    assert result.message == f"cannot reach {url}: connection refused"
    assert result.temporary


def test_refused_connection_is_retried() -> None:
    result = CALLER.call(make_hook(f"http://127.0.0.1:{free_port()}/", retries=2), {})
    assert not result.ok
    assert result.message.endswith("(after 3 attempts)")


def test_invalid_url_fails_without_raising() -> None:
    result = CALLER.call(make_hook("http://", retries=2), {})
    assert not result.ok
    assert result.message == "cannot reach http://: not a valid URL"
    assert not result.temporary


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param({"when": object()}, "Object of type object is not JSON serializable", id="object"),
        pytest.param({"value": float("nan")}, "Out of range float values are not JSON compliant", id="nan"),
    ],
)
def test_payload_json_cannot_carry_fails_at_once(server: HookServer, payload: dict[str, Any], problem: str) -> None:
    result = CALLER.call(make_hook(server.url(), retries=2), payload)
    assert not result.ok
    assert not result.temporary
    assert result.message == f"cannot call {server.url()}: {problem}"
    assert server.received == []


def test_server_receives_the_payload_as_json(server: HookServer, canary: Canary) -> None:
    hook = make_hook(server.url("/approve"), cmd="hey -z 1m http://podinfo.shop/")
    payload = hook_payload(canary, "Progressing", "abc123", hook, "6f1c9a52-0d4e-5b7a-9c3e-2a8b4d6e1f00")
    assert CALLER.call(hook, payload).ok
    [received] = server.received
    assert received.path == "/approve"
    assert received.content_type == "application/json"
    # Flagger's fields as Flagger sends them, and the key, in the body and as the draft's header.
    assert received.body == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "abc123",
        "metadata": {"cmd": "hey -z 1m http://podinfo.shop/"},
        "idempotencyKey": "6f1c9a52-0d4e-5b7a-9c3e-2a8b4d6e1f00",
    }
    assert received.idempotency_key == '"6f1c9a52-0d4e-5b7a-9c3e-2a8b4d6e1f00"'


def test_a_retry_carries_the_same_key(server: HookServer, canary: Canary) -> None:
    server.answers = [Answer(503, "busy"), Answer(200)]
    hook = make_hook(server.url(), retries=1)
    assert CALLER.call(hook, hook_payload(canary, "Progressing", "abc123", hook, "key-1")).ok
    assert [(r.idempotency_key, r.body["idempotencyKey"]) for r in server.received] == [('"key-1"', "key-1")] * 2


def test_a_payload_without_a_key_is_sent_without_the_header(server: HookServer) -> None:
    assert CALLER.call(make_hook(server.url()), {"name": "podinfo"}).ok
    assert [r.idempotency_key for r in server.received] == [None]


@pytest.mark.parametrize(
    ("failures", "retries", "ok", "calls"),
    [
        pytest.param(2, 2, True, 3, id="enough-retries"),
        pytest.param(2, 1, False, 2, id="too-few-retries"),
        pytest.param(1, 0, False, 1, id="no-retries"),
        pytest.param(0, 3, True, 1, id="no-retry-after-success"),
    ],
)
def test_retries_are_honoured(server: HookServer, failures: int, retries: int, ok: bool, calls: int) -> None:
    server.answers = [Answer(500, "not yet")] * failures + [Answer(200)]
    result = CALLER.call(make_hook(server.url(), retries=retries), {})
    assert result.ok is ok
    assert len(server.received) == calls
    if not ok:
        expected = "status 500: 7 bytes of no content type" + (f" (after {calls} attempts)" if calls > 1 else "")
        assert result.message == expected


@pytest.mark.parametrize(
    "status", [pytest.param(203, id="203"), pytest.param(403, id="403"), pytest.param(501, id="501")]
)
def test_answers_that_will_not_change_are_not_retried(server: HookServer, status: int) -> None:
    server.answers = [Answer(status, "no")]
    result = CALLER.call(make_hook(server.url(), retries=3), {})
    assert not result.ok
    assert len(server.received) == 1


def test_timeout_bounds_the_whole_call_with_its_retries(server: HookServer) -> None:
    server.answers = [Answer(503, "busy", delay=0.1)]
    started = time.monotonic()
    result = CALLER.call(make_hook(server.url(), timeout=0.35, retries=10), {})
    assert not result.ok
    assert time.monotonic() - started < 0.6
    assert 2 <= len(server.received) <= 4


@pytest.mark.parametrize(
    ("extra", "metadata"),
    [
        pytest.param(None, {"team": "web", "env": "prod"}, id="hook-metadata"),
        pytest.param({"env": "staging", "x": "1"}, {"team": "web", "env": "staging", "x": "1"}, id="extra-wins"),
    ],
)
def test_hook_payload(canary: Canary, extra: dict[str, str] | None, metadata: dict[str, str]) -> None:
    hook = make_hook("http://example.test/", team="web", env="prod")
    assert hook_payload(canary, "Waiting", "sum", hook, "key-1", extra) == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Waiting",
        "checksum": "sum",
        "metadata": metadata,
        "idempotencyKey": "key-1",
    }


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC), id="aware-utc"),
        pytest.param(datetime(2024, 5, 1, 14, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2))), id="aware-offset"),
        pytest.param(datetime(2024, 5, 1, 12, 0, 0, 123000), id="naive-is-utc"),
        pytest.param(1714564800.123, id="unix-seconds"),
    ],
)
def test_event_payload(canary: Canary, timestamp: datetime | float) -> None:
    hook = Webhook(
        name="events",
        type=HookType.EVENT,
        url="http://example.test/",
        timeout_seconds=5,
        metadata={"team": "web", "eventType": "ignored"},
    )
    payload = event_payload(
        canary, "Progressing", "sum", hook, "Advance podinfo.shop canary weight 10", "Normal", timestamp, "key-1"
    )
    assert payload["metadata"] == {
        "team": "web",
        "eventMessage": "Advance podinfo.shop canary weight 10",
        "eventType": "Normal",
        "timestamp": "1714564800123",
    }
    assert {key: payload[key] for key in ("name", "namespace", "phase", "checksum", "idempotencyKey")} == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "sum",
        "idempotencyKey": "key-1",
    }
