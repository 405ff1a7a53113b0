"""Serin's log lines: JSON with the Canary and the review they are about, gunicorn's access log
in the same shape, text for people, and a configuration that refuses what it does not know."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

import pytest

from serin import logs

# 2026-12-05T08:30:01.250Z
CREATED = 1796459401.25


def record(
    message: str = "advanced to weight %d",
    args: Any = (20,),
    name: str = "serin.reconcile",
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: str,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    made.created = CREATED
    made.__dict__.update(extra)
    return made


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonFormatter().format(made)
    assert "\n" not in line, "one line per record"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_line_has_time_level_logger_and_message() -> None:
    assert as_json(record()) == {
        "time": "2026-12-05T08:30:01.250Z",
        "level": "info",
        "logger": "serin.reconcile",
        "msg": "advanced to weight 20",
    }


def test_the_context_names_the_canary_and_the_review() -> None:
    with logs.context(canary="podinfo", namespace="test"), logs.context(request_id="0df28fbd"):
        inside = as_json(record(level=logging.WARNING))
    assert inside == {
        "time": "2026-12-05T08:30:01.250Z",
        "level": "warning",
        "logger": "serin.reconcile",
        "msg": "advanced to weight 20",
        "canary": "podinfo",
        "namespace": "test",
        "request_id": "0df28fbd",
    }
    assert "canary" not in as_json(record()), "the context ends with its block"


def test_empty_context_values_are_left_out_and_extra_fields_win() -> None:
    with logs.context(canary="", namespace="test"):
        assert as_json(record(namespace="other")) == {
            "time": "2026-12-05T08:30:01.250Z",
            "level": "info",
            "logger": "serin.reconcile",
            "msg": "advanced to weight 20",
            "namespace": "other",
        }


def test_an_exception_travels_inside_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = as_json(record("tick failed", (), level=logging.ERROR, exc_info=sys.exc_info()))
    assert line["msg"] == "tick failed"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: boom")


ATOMS = {
    "h": "10.0.0.7",
    "m": "POST",
    "U": "/validate",
    "q": "timeout=5s",
    "s": "200",
    "M": 12,
    "a": "kube-apiserver-admission",
    "r": "POST /validate?timeout=5s HTTP/1.1",
    "b": "-",
}


def test_gunicorns_access_log_is_named_fields() -> None:
    access = record('%(h)s "%(r)s" %(s)s', ATOMS, name="gunicorn.access")
    assert as_json(access) == {
        "time": "2026-12-05T08:30:01.250Z",
        "level": "info",
        "logger": "gunicorn.access",
        "msg": "POST /validate 200",
        "method": "POST",
        "path": "/validate",
        "query": "timeout=5s",
        "status": 200,
        "duration_ms": 12,
        "remote": "10.0.0.7",
        "user_agent": "kube-apiserver-admission",
    }


def test_text_lines_for_people() -> None:
    with logs.context(canary="podinfo", namespace="test", request_id="0df28fbd"):
        line = logs.TextFormatter().format(record())
    assert line.endswith(" INFO serin.reconcile [podinfo.test] 0df28fbd advanced to weight 20")
    plain = record()
    assert logs.TextFormatter().format(plain).endswith(" INFO serin.reconcile advanced to weight 20")
    assert plain.getMessage() == "advanced to weight 20", "the record is left as it was"


@pytest.mark.parametrize(
    ("environ", "formatter", "level"),
    [
        ({}, "serin.logs.JsonFormatter", "INFO"),
        ({"SERIN_LOG_FORMAT": "text", "SERIN_LOG_LEVEL": "debug"}, "serin.logs.TextFormatter", "DEBUG"),
        ({"SERIN_LOG_FORMAT": "JSON", "SERIN_LOG_LEVEL": "WARNING"}, "serin.logs.JsonFormatter", "WARNING"),
    ],
)
def test_configuration(environ: dict[str, str], formatter: str, level: str) -> None:
    config = logs.dict_config(environ)
    assert config["formatters"] == {"serin": {"()": formatter}}
    assert config["root"] == {"level": level, "handlers": ["stderr"]}
    assert config["loggers"] == {
        "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    }


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SERIN_LOG_FORMAT": "yaml"}, "SERIN_LOG_FORMAT must be one of json, text, not 'yaml'"),
        ({"SERIN_LOG_LEVEL": "loud"}, "SERIN_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not 'LOUD'"),
        ({"SERIN_ACCESS_LOG": "some"}, "SERIN_ACCESS_LOG must be one of quiet, all, none, not 'some'"),
    ],
)
def test_configuration_refuses_unknown_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        logs.dict_config(environ)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("shown", "quiet", "logged"),
    [
        pytest.param(None, False, True, id="default-shows-a-request"),
        pytest.param(None, True, False, id="default-leaves-out-a-quiet-one"),
        pytest.param("all", True, True, id="all-shows-a-quiet-one-too"),
        pytest.param("none", False, False, id="none-shows-nothing"),
    ],
)
def test_the_access_log_shows_what_serin_access_log_says(
    monkeypatch: pytest.MonkeyPatch, shown: str | None, quiet: bool, logged: bool
) -> None:
    from gunicorn.config import Config

    from serin.access_log import AccessLog

    if shown is None:
        monkeypatch.delenv("SERIN_ACCESS_LOG", raising=False)
    else:
        monkeypatch.setenv("SERIN_ACCESS_LOG", shown)
    config = Config()
    config.set("accesslog", "-")  # on; the records are caught before any handler writes them
    log = AccessLog(config)
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(log.access_log, "handle", records.append)
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "RAW_URI": "/mutate", "SERVER_PROTOCOL": "HTTP/1.1"}
    environ["PATH_INFO"] = "/mutate"
    if quiet:
        environ[logs.QUIET] = True

    class Answer:
        status, headers, sent = "200 OK", [("Content-Type", "application/json")], 120

    log.access(Answer(), [], environ, datetime.timedelta(milliseconds=3))
    assert [(record.args or {}).get("U") for record in records] == (["/mutate"] if logged else [])  # type: ignore[union-attr]
