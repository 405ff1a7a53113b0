"""Requests to addresses a tenant chose: metrics backends, hooks, alert providers.

Serin calls them from its own network position, for every team in the cluster, so each request is
held to what the install allows and to what one team may cost the others:

* **Where.** The address is resolved here and each resolved IP checked against the install's
  ``Destinations`` (``serin/destinations.py``) before any packet is sent (a name that resolves to
  a denied address is denied, and so is a redirect: redirects are never followed).
* **How long.** One deadline for the whole request, connecting, sending, the head and the body:
  a watchdog shuts the socket down when it passes, however slowly the peer drips its bytes
  (a per-read timeout alone never ends a peer that sends a byte a second).
* **How much.** The answer is read raw (``Accept-Encoding: identity``, never decompressed) and
  refused past ``MAX_ANSWER_BYTES``.
* **What comes back.** Failures are a short reason (``connection refused``, ``not an HTTP server``);
  an answer's body is never quoted back whole (``excerpt``), since it would reach Events, status
  and the page of whoever pointed Serin at it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import http.cookiejar
import ipaddress
import itertools
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# The policy is defined apart, so that the server's settings are read without the HTTP stack.
from serin.destinations import Destinations

MAX_ANSWER_BYTES = 8 * 1024 * 1024
EXCERPT_CHARS = 200
_CHUNK = 64 * 1024


class EgressError(Exception):
    """A request to a tenant's address that could not be made or answered; ``str`` is safe to show."""

    temporary = True


class Denied(EgressError):
    """The install's policy does not let Serin reach that address."""

    temporary = False


class NoAnswerInTime(EgressError):
    pass


class Unreachable(EgressError):
    def __init__(self, message: str, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class InvalidAddress(EgressError):
    temporary = False


class TooLarge(EgressError):
    temporary = False


_policy = Destinations()


def use(policy: Destinations) -> None:
    """The policy every later request is held to (set once, when the server starts)."""
    global _policy
    _policy = policy


def policy() -> Destinations:
    return _policy


# ---- the deadline --------------------------------------------------------------------------------


class _Watchdog:
    """One thread that shuts a socket down when the request using it runs past its deadline: a
    blocked read then returns at once, however long its own timeout."""

    def __init__(self) -> None:
        self._watched: dict[int, tuple[float, socket.socket]] = {}
        self._heap: list[tuple[float, int]] = []
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._wake:
            key = next(self._ids)
            self._watched[key] = (deadline, sock)
            heapq.heappush(self._heap, (deadline, key))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="serin-egress-deadline", daemon=True)
                self._thread.start()
            self._wake.notify()
        return key

    def forget(self, key: int) -> None:
        with self._wake:
            self._watched.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][1] not in self._watched:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, key = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                _, sock = self._watched.pop(key)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


class _Request(threading.local):
    """The deadline of the request this thread is making, and the sockets it has watched."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.watched: list[int] = []
        self.expired = False


_current = _Request()


def _watch(sock: socket.socket | None) -> None:
    if sock is not None and _current.deadline is not None:
        _current.watched.append(_WATCHDOG.watch(sock, _current.deadline))


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[_Request]:
    _current.deadline, _current.watched, _current.expired = time.monotonic() + seconds, [], False
    try:
        yield _current
    finally:
        _current.expired = time.monotonic() >= (_current.deadline or 0)
        for key in _current.watched:
            _WATCHDOG.forget(key)
        _current.deadline, _current.watched = None, []


# ---- connections that check where they go --------------------------------------------------------


def _connect(connection: HTTPConnection) -> socket.socket:
    """A socket to the first permitted address the connection's host resolves to."""
    host, port = connection._dns_host, connection.port or 80  # the name, without a trailing dot
    try:
        resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise urllib3.exceptions.NameResolutionError(host, connection, error) from error
    candidates = []
    for family, kind, proto, _, sockaddr in resolved:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if _policy.permits(address, port):
            candidates.append((family, kind, proto, sockaddr))
    if not candidates:
        raise Denied(f"{host}:{port} is an address the install does not let Serin reach")
    last: OSError | None = None
    for family, kind, proto, sockaddr in candidates:
        sock = socket.socket(family, kind, proto)
        try:
            for option in connection.socket_options or ():
                sock.setsockopt(*option)
            if connection.timeout is not None:
                sock.settimeout(connection.timeout)
            sock.connect(sockaddr)
        except TimeoutError as error:
            sock.close()
            raise urllib3.exceptions.ConnectTimeoutError(connection, f"connecting to {host} timed out") from error
        except OSError as error:
            sock.close()
            last = error
            continue
        _watch(sock)
        return sock
    raise urllib3.exceptions.NewConnectionError(connection, f"cannot connect: {last}") from last


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection gets this request's deadline too
        super().request(*args, **kwargs)


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """requests' adapter over connections that check each address against the policy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_CHECKED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy, the proxy is what Serin connects to: its address is the one checked.
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_CHECKED_POOLS)
        return manager


_CHECKED_POOLS = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}


def session(adapter: HTTPAdapter | None = None) -> requests.Session:
    """A session whose every connection is checked (``adapter``: with retries of its own)."""
    made = requests.Session()
    # One session serves many tenants' addresses: a cookie one sets must not go to the next.
    made.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    mounted = adapter or CheckedAdapter()
    made.mount("http://", mounted)
    made.mount("https://", mounted)
    return made


# ---- one request ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    content_type: str
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclasses.dataclass
class Stream:
    """An answer being read: its head, and its body a chunk at a time (``chunks``)."""

    status: int
    reason: str
    content_type: str
    _response: requests.Response
    _max_bytes: int
    _deadline: float

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, raw; TooLarge once past the cap."""
        declared = self._response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise TooLarge(f"answered with {int(declared)} bytes, more than the {self._max_bytes} read")
        read = 0
        while chunk := self._response.raw.read(_CHUNK, decode_content=False):
            read += len(chunk)
            if read > self._max_bytes:
                raise TooLarge(f"answered with more than the {self._max_bytes} bytes read")
            yield chunk
        if time.monotonic() >= self._deadline:
            # The watchdog's shutdown reads as the end of a body without a declared length.
            raise NoAnswerInTime("the answer did not end in time")

    def whole(self) -> Answer:
        return Answer(self.status, self.reason, self.content_type, b"".join(self.chunks()))


@contextlib.contextmanager
def streamed(
    client: requests.Session,
    method: str,
    url: str,
    seconds: float,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Iterator[Stream]:
    """One request, whole within ``seconds`` (reading its body included), its answer read inside the
    block; the EgressError for anything that kept it from an answer.

    ``kwargs`` go to requests (``params``, ``json``, ``data``, ``headers``, ``verify``, ``auth``,
    ``proxies``).
    """
    headers = {**(kwargs.pop("headers", None) or {}), "Accept-Encoding": "identity"}
    with _deadline(seconds) as request:
        try:
            with client.request(
                method, url, headers=headers, timeout=seconds, stream=True, allow_redirects=False, **kwargs
            ) as response:
                yield Stream(
                    response.status_code,
                    response.reason or "",
                    response.headers.get("Content-Type", ""),
                    response,
                    max_bytes,
                    request.deadline or 0.0,
                )
        except EgressError:
            raise
        except requests.exceptions.InvalidJSONError as error:
            # Our own payload, not the peer's doing: a ValueError, like the TypeError json raises.
            raise ValueError(str(error.args[0]) if error.args else "the payload is not JSON") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            if time.monotonic() >= (request.deadline or 0):
                raise NoAnswerInTime(f"no answer within {seconds:g}s") from error
            raise unreachable(error) from error


def fetch(
    client: requests.Session,
    method: str,
    url: str,
    seconds: float,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Answer:
    """One request and its whole answer within ``seconds`` (see ``streamed``)."""
    with streamed(client, method, url, seconds, max_bytes, **kwargs) as stream:
        return stream.whole()


def _chain(error: BaseException) -> list[BaseException]:
    """The error and what caused it, as requests and urllib3 wrap one another (a few deep)."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while isinstance(seen, BaseException) and seen not in chain and len(chain) < 8:
        chain.append(seen)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = getattr(seen, "reason", None) or nested or seen.__cause__ or seen.__context__
    return chain


# What kept a request from an answer, most telling first (urllib3 files a refused connection
# under its connect timeouts, so the refusal must be looked for before any timeout), and whether
# asking again may help: an untrusted certificate stays untrusted.
_REASONS: tuple[tuple[tuple[type[BaseException], ...], str, bool], ...] = (
    ((urllib3.exceptions.NameResolutionError, socket.gaierror), "the name does not resolve", True),
    ((ConnectionRefusedError,), "connection refused", True),
    ((ConnectionResetError,), "the connection was reset", True),
    ((ssl.SSLCertVerificationError,), "its TLS certificate is not trusted", False),
    ((ssl.SSLError, requests.exceptions.SSLError), "the TLS handshake failed", False),
    ((TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout), "timed out", True),
    ((urllib3.exceptions.ProtocolError,), "not an HTTP server, or the connection broke off", True),
)


def unreachable(error: BaseException) -> EgressError:
    """What kept a request from an answer, in a few words that quote nothing the peer sent."""
    chain = _chain(error)
    if any(isinstance(cause, _INVALID) for cause in chain):
        return InvalidAddress("not a valid URL")
    for kinds, text, temporary in _REASONS:
        if any(isinstance(cause, kinds) for cause in chain):
            return Unreachable(text, temporary)
    return Unreachable("cannot connect")


_INVALID = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    urllib3.exceptions.LocationParseError,
)


def shown(url: str) -> str:
    """``url`` as messages may show it: without user info (``user:password@``), a query or a fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an address that is not a URL"
    if ":" in host:
        host = f"[{host}]"
    where = host + (f":{port}" if port is not None else "")
    return urllib.parse.urlunsplit((parts.scheme, where, parts.path, "", ""))


def excerpt(answer: Answer) -> str:
    """What an answer that is not a success says, safe to show anyone: the error text of a JSON
    answer (``error``, as Prometheus and Graphite give it, or ``error.message`` and ``errors[0]``,
    as the hosted APIs do), cut short to one line; else only its size."""
    if "json" in answer.content_type:
        with contextlib.suppress(ValueError):
            said = _error_text(answer.json())
            if said:
                return shortened(said)
    kind = answer.content_type.split(";", 1)[0].strip() or "no content type"
    return f"{len(answer.body)} bytes of {kind}"


def shortened(said: str) -> str:
    """A peer's words on one line, cut at ``EXCERPT_CHARS``."""
    words = " ".join(said.split())
    return words if len(words) <= EXCERPT_CHARS else words[: EXCERPT_CHARS - 3] + "..."


def _error_text(document: Any) -> str:
    if not isinstance(document, Mapping):
        return ""
    error = document.get("error")
    if error is None and isinstance(document.get("errors"), list) and document["errors"]:
        error = document["errors"][0]
    if isinstance(error, Mapping):
        error = error.get("message")
    return error if isinstance(error, str) else ""
