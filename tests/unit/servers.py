"""Small HTTP servers of the unit tests' own, run on loopback for the length of a block.

The fake APIs of the metric providers and the alert receivers all need the same plumbing: a
threaded server on a free loopback port, a record of what each request carried (the tests'
assertions are about what was sent), a way to hold an answer back (the timeout tests), and a
handler that writes an answer and keeps quiet on stderr. That plumbing lives here; what each fake
answers, which is what makes it a fake of one particular API, stays in its test module.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

Server = TypeVar("Server", bound=socketserver.BaseServer)
RequestT = TypeVar("RequestT")


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Run ``server`` in a thread for the duration of the block, then close it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Received:
    """One request as a fake API read it: what the tests assert the client sent.

    ``params`` keeps the first value of each query parameter, since the clients under test send
    each one once and the assertions compare plain strings; ``body`` is whatever the handler made
    of the payload (parsed JSON, say), or None for a request without one.
    """

    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any = None

    @classmethod
    def of(cls, request: http.server.BaseHTTPRequestHandler, body: Any = None) -> Received:
        """The request ``request`` is handling, split into path and parameters."""
        parts = urlsplit(request.path)
        params = {name: values[0] for name, values in parse_qs(parts.query).items()}
        return cls(parts.path, params, dict(request.headers), body)


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server on a free port of 127.0.0.1.

    Port 0 lets the OS pick the port, so tests running side by side never collide; daemon handler
    threads (not waited for on close) mean that a handler still stalling for a timeout test cannot
    keep the test, or the interpreter, from finishing.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``, without a path."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeApi(LoopbackServer):
    """A fake of an API that a client is configured with the base address of."""

    @property
    def url(self) -> str:
        """The address to configure the client under test with."""
        return self.origin


class RecordingApi(FakeApi, Generic[RequestT]):
    """A fake API that records every request, and can hold an answer back until it is released.

    ``received`` is what the tests assert on. ``release`` is for the timeout tests: a handler that
    waits on it answers nothing until the client has given up; it is set when the server shuts
    down, so no handler is left waiting once the test is over.
    """

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(handler)
        self.received: list[RequestT] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    def record(self, request: RequestT) -> RequestT:
        """Add ``request`` to ``received`` (handlers run in threads of their own) and return it."""
        with self.lock:
            self.received.append(request)
        return request

    def shutdown(self) -> None:
        """Let any answer held back go first, so that ``serving`` closes without waiting on it."""
        self.release.set()
        super().shutdown()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that writes whole answers and logs nothing.

    The default handler logs every request to stderr, which would only bury a failing test's
    output; and a client under test that gave up waiting (the timeout tests) has closed the
    connection, so writing its answer fails: that is the expected end of such a request, not an
    error of the fake.
    """

    def read_body(self) -> bytes:
        """The request's payload, as long as its ``Content-Length`` says (none without one)."""
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send(self, status: int, data: bytes, content_type: str | None = None) -> None:
        """Answer ``status`` with ``data`` (and a ``Content-Type``, unless None)."""
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class JsonHandler(QuietHandler):
    """A quiet handler whose answers are JSON, as the APIs faked here answer (errors included)."""

    # What the API says its JSON is, and how compactly it writes it, where that differs.
    json_type: ClassVar[str] = "application/json"
    json_separators: ClassVar[tuple[str, str] | None] = None

    def answer(self, status: int, body: Any) -> None:
        """Answer ``status`` with ``body`` as JSON."""
        self.send(status, json.dumps(body, separators=self.json_separators).encode(), self.json_type)
