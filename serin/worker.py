"""gunicorn's threaded worker, made to hold a thread only for a request that has fully arrived.

gunicorn's gthread worker hands every new connection to a pool thread at once: the thread waits
up to 5 s for a first byte, then runs the TLS handshake and reads the request head on a blocking
socket with no timeout. A few connections that send nothing, or one byte, would hold every
thread of the fail-closed webhook server, and the API server's reviews would wait behind them.

Here the worker's own loop, which waits on every socket at once, does that part: it runs the TLS
handshake and reads the request head without blocking, as bytes arrive, and hands the connection
to a thread only once the head is whole (the blank line after the headers), with the bytes it
read. A connection gets ``HEAD_SECONDS`` in all for that, and is closed past them. Kept-alive
connections go the same way for their next request. The body is read in the thread; each read
and write there gives up after ``STALLED_SECONDS`` without progress (``SO_RCVTIMEO`` and
``SO_SNDTIMEO``, which gunicorn's switching between blocking and non-blocking leaves alone).

Its thread pool counts the requests that wait for a thread (``POOL``), which ``/readyz`` reads.

Use it as ``--worker-class serin.worker.GuardedThreadWorker`` (the image, the chart and the
local control plane do).
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_SECONDS = 10.0
STALLED_SECONDS = 5.0
# Past this much without the blank line, the head is handed on for gunicorn's parser to refuse
# (its limits on the request line and headers are far smaller).
MAX_HEAD_BYTES = 64 * 1024
END_OF_HEAD = b"\r\n\r\n"

_STALLED = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, TimeoutError)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class CountingPool(ThreadPoolExecutor):
    """A thread pool that knows how many of its jobs wait for a thread."""

    def __init__(self, threads: int) -> None:
        super().__init__(max_workers=threads)
        self.threads = threads
        self.waiting = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.waiting += 1
        return super().submit(self._started, fn, *args, **kwargs)

    def _started(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.waiting -= 1
        return fn(*args, **kwargs)


# This process's pool, once its worker made it (None outside gunicorn).
POOL: CountingPool | None = None


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    def get_thread_pool(self) -> CountingPool:
        global POOL
        POOL = CountingPool(self.cfg.threads)
        return POOL

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(STALLED_SECONDS))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(STALLED_SECONDS))
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        conn.head = b""
        conn.handshaken = not self.cfg.is_ssl
        self._wait_for_head(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request: its head arrives here too, not in a thread."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.head = b""
        self._wait_for_head(conn)

    def _wait_for_head(self, conn: Any) -> None:
        # Every connection waits the same time, so the queue stays in the order it expires in
        # (gunicorn's murder_pending closes from its head).
        conn.timeout = time.monotonic() + HEAD_SECONDS
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn: Any, client: Any) -> None:
        try:
            whole = self._read_head(conn)
        except (OSError, ValueError):  # reset, refused handshake, closed: nothing to answer
            whole, failed = False, True
        else:
            failed = False
        if not (whole or failed):
            return
        self.poller.unregister(conn.sock)
        self.pending_conns.remove(conn)
        if failed:
            self.nr_conns -= 1
            conn.close()
            return
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(conn.head)
        conn.initialized = conn.data_ready = True
        self.enqueue_req(conn)

    def _read_head(self, conn: Any) -> bool:
        """Whether the head is whole after reading what has arrived (never blocks)."""
        if not conn.handshaken:
            if not isinstance(conn.sock, ssl.SSLSocket):
                conn.sock = gunicorn_sock.ssl_wrap_socket(conn.sock, self.cfg)
            try:
                conn.sock.do_handshake()
            except ssl.SSLWantReadError:
                return False
            conn.handshaken = True
        while True:
            try:
                data = conn.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            if not data:
                raise ValueError("closed before its request was whole")
            conn.head += data
            if END_OF_HEAD in conn.head or len(conn.head) > MAX_HEAD_BYTES:
                return True

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, _STALLED):
            self.log.debug("closing a connection that stalled for %.0fs", STALLED_SECONDS)
            return
        super().handle_error(req, client, addr, exc)
