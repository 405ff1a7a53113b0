"""Webhook gates against a real HTTP server on loopback: what passes, what fails, what is retried, what is sent."""

from __future__ import annotations

import http.server
import json
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


@dataclass
class Received:
    path: str
    content_type: str
    body: Any


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
        answer = self.server.record(Received(self.path, self.headers.get("Content-Type", ""), json.loads(raw)))
        time.sleep(answer.delay)
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(Answer(203, "partial"), "status 203: partial", id="203"),
        pytest.param(
            Answer(500, "load test failed: p99 too high\n"), "status 500: load test failed: p99 too high", id="500"
        ),
        pytest.param(Answer(404, ""), "status 404", id="404-empty-body"),
        pytest.param(Answer(500, "x" * 300), "status 500: " + "x" * 200, id="body-cut-at-200"),
    ],
)
def test_status_above_202_fails_with_the_body(server: HookServer, answer: Answer, message: str) -> None:
    server.answers = [answer]
    result = CALLER.call(make_hook(server.url()), {})
    assert not result.ok
    assert result.message == message


def test_slow_hook_times_out(server: HookServer) -> None:
    server.answers = [Answer(200, delay=0.6)]
    started = time.monotonic()
    result = CALLER.call(make_hook(server.url(), timeout=0.2), {})
    assert not result.ok
    assert "timed out" in result.message
    assert server.url() in result.message
    assert time.monotonic() - started < 0.5


def test_refused_connection_fails() -> None:
    url = f"http://127.0.0.1:{free_port()}/gate"
    result = CALLER.call(make_hook(url), {})
    assert not result.ok
    assert result.message.startswith(f"cannot reach {url}: ")
    assert "refused" in result.message.lower()


def test_refused_connection_is_retried() -> None:
    result = CALLER.call(make_hook(f"http://127.0.0.1:{free_port()}/", retries=2), {})
    assert not result.ok
    assert result.message.endswith("(after 3 attempts)")


def test_invalid_url_fails_without_raising() -> None:
    result = CALLER.call(make_hook("http://"), {})
    assert not result.ok
    assert "cannot call http://" in result.message


def test_payload_json_cannot_carry_fails_without_raising(server: HookServer) -> None:
    result = CALLER.call(make_hook(server.url()), {"when": object()})
    assert not result.ok
    assert "not JSON serializable" in result.message
    assert server.received == []


def test_server_receives_the_payload_as_json(server: HookServer, canary: Canary) -> None:
    hook = make_hook(server.url("/approve"), cmd="hey -z 1m http://podinfo.shop/")
    payload = hook_payload(canary, "Progressing", "abc123", hook)
    assert CALLER.call(hook, payload).ok
    [received] = server.received
    assert received.path == "/approve"
    assert received.content_type == "application/json"
    assert received.body == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "abc123",
        "metadata": {"cmd": "hey -z 1m http://podinfo.shop/"},
    }


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
        expected = "status 500: not yet" + (f" (after {calls} attempts)" if calls > 1 else "")
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
    assert hook_payload(canary, "Waiting", "sum", hook, extra) == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Waiting",
        "checksum": "sum",
        "metadata": metadata,
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
        canary, "Progressing", "sum", hook, "Advance podinfo.shop canary weight 10", "Normal", timestamp
    )
    assert payload["metadata"] == {
        "team": "web",
        "eventMessage": "Advance podinfo.shop canary weight 10",
        "eventType": "Normal",
        "timestamp": "1714564800123",
    }
    assert {key: payload[key] for key in ("name", "namespace", "phase", "checksum")} == {
        "name": "podinfo",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "sum",
    }
