"""Requests to tenants' addresses: a policy on where, one deadline for the whole request, a cap on
what is read, and failures that quote nothing the peer sent."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from serin import egress
from serin.destinations import Destinations
from serin.egress import Answer, Denied, NoAnswerInTime, TooLarge, Unreachable

# Long enough to see a deadline kept, short enough for a unit test.
DEADLINE = 0.8


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket], None], connections: int = 4) -> Iterator[tuple[str, list[int]]]:
    """A TCP server on loopback whose every connection ``serve`` handles; yields its origin and a
    count of connections accepted. At most ``connections`` are served."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set() and len(accepted) < connections:
            try:
                peer, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            threading.Thread(target=_serve_then_close, args=(serve, peer, stop), daemon=True).start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _serve_then_close(serve: Callable[[socket.socket], None], peer: socket.socket, stop: threading.Event) -> None:
    with contextlib.suppress(OSError), peer:
        peer.settimeout(5)
        peer.recv(65536)
        serve(peer)


def drip(data: bytes, every: float = 0.2, limit: int = 60) -> Callable[[socket.socket], None]:
    """Send ``data`` a byte at a time, for at most ``limit`` bytes (a bounded stress loop)."""

    def serve(peer: socket.socket) -> None:
        for byte in data[:limit]:
            peer.sendall(bytes([byte]))
            time.sleep(every)

    return serve


def answer(head: bytes, body: bytes = b"") -> Callable[[socket.socket], None]:
    return lambda peer: peer.sendall(head + body)


def fetch(url: str, seconds: float = DEADLINE, **kwargs: object) -> Answer:
    return egress.fetch(egress.session(), "GET", url, seconds, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "served",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 50, id="a body dripped"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 50, id="a head dripped"),
    ],
)
def test_a_peer_that_drips_is_cut_off_at_the_deadline(served: bytes) -> None:
    with raw_server(drip(served)) as (url, _):
        started = time.monotonic()
        with pytest.raises(NoAnswerInTime, match=f"no answer within {DEADLINE:g}s"):
            fetch(url)
        took = time.monotonic() - started
    assert DEADLINE <= took < DEADLINE + 0.5, took


def test_an_address_the_policy_denies_is_never_connected_to() -> None:
    egress.use(Destinations())  # the defaults: loopback is denied
    with raw_server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (url, accepted):
        with pytest.raises(Denied, match=r"^127\.0\.0\.1:\d+ is an address the install does not let Serin reach$"):
            fetch(url)
        with pytest.raises(Denied):
            fetch(url.replace("127.0.0.1", "localhost"))
    assert accepted == []


def test_a_redirect_is_answered_not_followed() -> None:
    head = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n"
    with raw_server(answer(head)) as (url, accepted):
        got = fetch(url)
    assert (got.status, got.body, len(accepted)) == (302, b"", 1)


@pytest.mark.parametrize(
    ("head", "body"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", b"x" * 2000, id="declared"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x" * 2000, id="undeclared"),
    ],
)
def test_an_answer_past_the_cap_is_refused(head: bytes, body: bytes) -> None:
    with raw_server(answer(head, body)) as (url, _), pytest.raises(TooLarge):
        fetch(url, max_bytes=1000)


def test_a_compressed_answer_is_not_inflated() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    with raw_server(answer(head, bomb)) as (url, _):
        got = fetch(url)
    assert got.body == bomb


def test_what_a_peer_that_is_not_http_says_is_not_repeated() -> None:
    with (
        raw_server(answer(b"SSH-2.0-OpenSSH_9.6p1 internal-bastion\r\n")) as (url, _),
        pytest.raises(Unreachable) as raised,
    ):
        fetch(url)
    assert str(raised.value) == "not an HTTP server, or the connection broke off"


def test_a_refused_connection_says_so() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(Unreachable, match=r"^connection refused$"):
        fetch(f"http://127.0.0.1:{port}/")


def test_a_kept_alive_connection_gets_the_next_requests_deadline() -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve(peer: socket.socket) -> None:
        peer.sendall(first)
        peer.recv(65536)  # the second request, on the same connection
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"z" * 40)(peer)

    client = egress.session()
    with raw_server(serve) as (url, accepted):
        assert egress.fetch(client, "GET", url, DEADLINE).body == b"ok"
        started = time.monotonic()
        with pytest.raises(NoAnswerInTime):
            egress.fetch(client, "GET", url, DEADLINE)
        took = time.monotonic() - started
    assert (len(accepted), DEADLINE <= took < DEADLINE + 0.5) == (1, True), took


@pytest.mark.parametrize(
    ("allowed", "denied", "address", "port", "permitted"),
    [
        ("", None, "10.0.0.7", 80, True),
        ("", None, "127.0.0.1", 9090, False),
        ("", None, "169.254.169.254", 80, False),
        ("", None, "::1", 80, False),
        ("", None, "fe80::1", 80, False),
        ("", None, "0.0.0.0", 80, False),
        ("", None, "fd00:ec2::254", 80, False),
        ("10.0.0.0/8", None, "10.1.2.3", 80, True),
        ("10.0.0.0/8", None, "192.168.1.1", 80, False),
        ("10.0.0.0/8", None, "fd00::1", 80, False),
        ("", "10.96.0.1:443", "10.96.0.1", 443, False),
        ("", "10.96.0.1:443", "10.96.0.1", 80, True),
        ("", "10.96.0.1:443", "127.0.0.1", 80, True),
        ("", "[fd00::1]:443", "fd00::1", 443, False),
        ("", "fd00::1", "fd00::1", 80, False),
        ("", "", "127.0.0.1", 80, True),
    ],
)
def test_which_destinations_a_policy_permits(
    allowed: str, denied: str | None, address: str, port: int, permitted: bool
) -> None:
    assert Destinations.parse(allowed, denied).permits(ipaddress.ip_address(address), port) is permitted


@pytest.mark.parametrize(
    ("allowed", "denied", "problem"),
    [
        ("10.0.0.0/33", None, "'10.0.0.0/33' is not a network (10.0.0.0/8), an address or an address:port"),
        ("", "example.com:443", "'example.com:443' is not a network (10.0.0.0/8), an address or an address:port"),
        ("", "nothing", "'nothing' is not a network (10.0.0.0/8), an address or an address:port"),
    ],
)
def test_a_policy_entry_that_is_not_an_address_is_named(allowed: str, denied: str | None, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        Destinations.parse(allowed, denied)
    assert str(raised.value) == problem


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("application/json", b'{"status":"error","error":"parse error at char 4"}', "parse error at char 4"),
        ("application/json", b'{"error":"line one\\n\\tline two"}', "line one line two"),
        ("application/json", b'{"error":"' + b"e" * 300 + b'"}', "e" * 197 + "..."),
        ("application/json", b'{"message":"internal: password=hunter2"}', "40 bytes of application/json"),
        ("application/json", b'{"error":{"code":400,"message":"bad selector"}}', "bad selector"),
        ("application/json", b'{"errors":["bad query: avg(x"]}', "bad query: avg(x"),
        ("application/json", b'{"errors":[{"message":"NRQL syntax error"}]}', "NRQL syntax error"),
        ("application/json", b'{"error":42}', "12 bytes of application/json"),
        ("application/json", b"[1, 2]", "6 bytes of application/json"),
        ("text/plain", b'{"error":"not said: the answer does not say it is JSON"}', "56 bytes of text/plain"),
        ("text/html; charset=utf-8", b"<html>admin console</html>", "26 bytes of text/html"),
        ("", b"SSH-2.0", "7 bytes of no content type"),
    ],
)
def test_an_excerpt_says_only_an_error_field_or_a_size(content_type: str, body: bytes, said: str) -> None:
    assert egress.excerpt(Answer(400, "Bad Request", content_type, body)) == said


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://prometheus.istio-system:9090", "http://prometheus.istio-system:9090"),
        ("https://ops:hunter2@thanos.example/prometheus?x=1#top", "https://thanos.example/prometheus"),
        ("http://token@[fd00::1]:9090/", "http://[fd00::1]:9090/"),
        ("http://prometheus:port/", "an address that is not a URL"),
    ],
)
def test_an_address_is_shown_without_user_info(url: str, said: str) -> None:
    assert egress.shown(url) == said


def test_a_cookie_one_peer_sets_is_never_kept() -> None:
    """One session serves every tenant's hooks: a kept cookie would carry one tenant's state to another's."""

    def set_cookie(peer: socket.socket) -> None:
        peer.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: tenant=a; Path=/\r\nContent-Length: 0\r\n\r\n")

    with raw_server(set_cookie) as (origin, _), contextlib.closing(egress.session()) as client:
        assert egress.fetch(client, "GET", origin, DEADLINE).status == 200
        assert list(client.cookies) == []
