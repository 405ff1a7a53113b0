"""Serin's logs: one JSON object per line by default, which every log pipeline parses, or plain text
for a person at a terminal (``SERIN_LOG_FORMAT=text``).

Each line has ``time`` (UTC, RFC 3339), ``level``, ``logger`` and ``msg``; the Canary a line is
about (``canary``, ``namespace``) and the admission review it answers (``request_id``, the
review's uid) come from ``context()``, set once by the code that starts that work, so that no
log call has to repeat them. gunicorn's access log is written in the same format, its fields
named (``method``, ``path``, ``status``, ``duration_ms``, ...), for the requests
``SERIN_ACCESS_LOG`` says: by default every one but the admission reviews answered allowed as
they are, which every Deployment update of the cluster may send (``serin/access_log.py``).

Standard library only: the server, gunicorn's configuration and the tests import it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

FORMATS = ("json", "text")
# What a line carries besides time, level, logger and msg, from context() or a call's `extra=`.
CONTEXT_FIELDS = ("canary", "namespace", "request_id")
# gunicorn's access log atoms (its access_log_format letters) and the names a JSON line gives them.
ACCESS_FIELDS = {
    "m": "method",
    "U": "path",
    "q": "query",
    "s": "status",
    "M": "duration_ms",
    "h": "remote",
    "a": "user_agent",
}

# SERIN_ACCESS_LOG: which requests gunicorn's access log shows. "quiet": every one but those a
# handler marked quiet; "all"; "none".
ACCESS_LOGS = ("quiet", "all", "none")
# The key of a request's WSGI environ by which a handler marks it quiet: an answer that changed
# nothing and said nothing (an admission review allowed as it is).
QUIET = "serin.quiet"

_context: ContextVar[Mapping[str, str]] = ContextVar("serin_log_context", default=MappingProxyType({}))


@contextlib.contextmanager
def context(**fields: str) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block (in this thread or task)."""
    token = _context.set({**_context.get(), **{key: value for key, value in fields.items() if value}})
    try:
        yield
    finally:
        _context.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_context.get())
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value:
            fields[key] = value
    return fields


def _access(record: logging.LogRecord) -> tuple[str, dict[str, Any]] | None:
    """gunicorn's access records carry their atoms as the record's args: a message and fields."""
    atoms = record.args
    if record.name != "gunicorn.access" or not isinstance(atoms, Mapping):
        return None
    fields: dict[str, Any] = {
        name: atoms[atom] for atom, name in ACCESS_FIELDS.items() if atoms.get(atom) not in (None, "", "-")
    }
    for number in ("status", "duration_ms"):
        if number in fields:
            with contextlib.suppress(TypeError, ValueError):
                fields[number] = int(fields[number])
    return f"{atoms.get('m', '-')} {atoms.get('U', '-')} {atoms.get('s', '-')}", fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        access = _access(record)
        message, extra = access if access else (record.getMessage(), {})
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
            **_fields(record),
            **extra,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``2026-12-05 08:30:01,123 WARNING serin.reconcile [podinfo.test] msg``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        where = ".".join(fields[key] for key in ("canary", "namespace") if key in fields)
        tags = " ".join(filter(None, (f"[{where}]" if where else "", fields.get("request_id", ""))))
        original = record.msg, record.args
        if tags:
            record.msg, record.args = f"{tags} {record.getMessage()}", None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = original


def access_log(environ: Mapping[str, str] | None = None) -> str:
    """Which requests the access log shows, as ``SERIN_ACCESS_LOG`` says (one of ``ACCESS_LOGS``)."""
    environ = os.environ if environ is None else environ
    shown = environ.get("SERIN_ACCESS_LOG", ACCESS_LOGS[0]).lower()
    if shown not in ACCESS_LOGS:
        raise ValueError(f"SERIN_ACCESS_LOG must be one of {', '.join(ACCESS_LOGS)}, not {shown!r}")
    return shown


def dict_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and gunicorn (its ``logconfig_dict``), as
    ``SERIN_LOG_FORMAT`` (json, text) and ``SERIN_LOG_LEVEL`` (INFO) say; ValueError for a
    value of those or of ``SERIN_ACCESS_LOG`` that is not known."""
    environ = os.environ if environ is None else environ
    access_log(environ)
    chosen = environ.get("SERIN_LOG_FORMAT", "json").lower()
    if chosen not in FORMATS:
        raise ValueError(f"SERIN_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    level = environ.get("SERIN_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"SERIN_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    formatter = JsonFormatter if chosen == "json" else TextFormatter
    # gunicorn's own loggers write through the same handler and do not propagate, so each line is
    # written once.
    own = {"level": level, "handlers": ["stderr"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"serin": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "serin", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": own, "gunicorn.access": {**own, "level": "INFO"}},
    }
