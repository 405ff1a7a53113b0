"""gunicorn's settings for Serin, read at start from the working directory (the image's /app).

What the command line cannot say:

* Serin's own metrics are kept across worker processes (prometheus-client's multiprocess mode):
  each worker writes its counters to files in a fresh folder that ``/metrics`` reads whole, and a
  worker that exits is marked dead so its live values stop counting.
* Admission reviews come from the API server only (``SERIN_ADMISSION_AUTHENTICATION``, by
  default ``client-certificate``): TLS clients may present a certificate, which the CA in
  ``SERIN_ADMISSION_CLIENT_CA`` must have signed; the admission handlers require one, issued to
  ``SERIN_ADMISSION_CLIENT_SUBJECT``. Settings that cannot work stop the server at start.
* Logs, gunicorn's own and its access log included, are one JSON object per line (or text, as
  ``SERIN_LOG_FORMAT`` says; ``serin/logs.py``); the access log leaves out the admission reviews
  answered allowed as they are, unless ``SERIN_ACCESS_LOG`` says otherwise (``serin/access_log.py``).
* Requests gunicorn itself refuses before Serin sees them (a request line or headers too long, a
  malformed request) are answered with JSON, like every answer of Serin's, not an HTML page.
* Idle connections stay open longer than the API server keeps them for its next review.
* The master imports no more than it needs, and what it holds stays shared with its worker.
"""

from __future__ import annotations

import gc
import json
import os
import ssl
import tempfile
from typing import Any

from gunicorn import util

from serin import logs
from serin.config import Settings

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before any worker imports prometheus_client, which reads it at import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="serin-metrics-")


try:
    # Checked before any worker starts: a setting that cannot work stops the server with one line.
    _settings = Settings.from_env()
except ValueError as error:
    raise SystemExit(f"serin: {error}") from None

if _settings.admission_client_ca:
    ca_certs = os.environ["SERIN_ADMISSION_CLIENT_CA"]
    # Optional for the connection (the tick's callers have none), required by /mutate and /validate.
    cert_reqs = ssl.CERT_OPTIONAL


# The API server keeps an idle connection to a webhook for up to 90 s (Go's default) and then
# reuses it. Closed by gunicorn before that (its default is 2 s), the review sent on it fails
# ("write: broken pipe"; a POST is never retried), and a Deployment's webhook fails open. So idle
# connections are kept longer than the API server keeps them; in gthread workers an idle one
# waits in the worker's poller and holds no thread.
keepalive = 120

# Also turns the access log on (to stderr, with everything else), for the requests it shows.
try:
    logconfig_dict = logs.dict_config()
except ValueError as error:
    # A clear line instead of gunicorn's traceback of its configuration file.
    raise SystemExit(f"serin: {error}") from None
logger_class = "serin.access_log.AccessLog"


def pre_fork(server: Any, worker: Any) -> None:
    # What the master holds is shared with the worker it forks until either writes to it, and the
    # worker's first full garbage collection would write to every object it can reach: frozen,
    # the master's objects are left out of the worker's collections, and their pages stay shared.
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin1")
    util.write_nonblock(sock, head + body)


# gunicorn writes the pages of requests it refuses through this one function.
util.write_error = _json_error
