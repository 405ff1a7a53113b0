"""The tick CronJob's client: POST /tick, and again whenever a Canary is next due, until its period ends.

A CronJob fires at most once a minute, but an analysis interval may be as short as 10s. So the
Job's Pod ticks, reads in the answer when the next Canary is due (``nextStepInSeconds``), sleeps
until then and ticks again, and exits before its period is over: no process outlives its minute.
Two Pods overlapping (a slow tick, a clock skew) do no harm: the CronJob forbids concurrent Jobs,
and two ticks at once advance a Canary once.

Standard library only: it starts in a fraction of a second in Serin's image and imports nothing of
the server. Each answer is printed as one JSON line for ``kubectl logs``, failures go to stderr, and
the exit status is 1 when any tick failed, so failures show as failed Jobs. A server that cannot be
reached or answers 5xx is asked again a little later within the period; a refusal (4xx, a
certificate the CA did not sign) ends the Job at once: asking again would change nothing.

Settings (environment): ``SERIN_TICK_URL``, ``SERIN_TICK_TOKEN_FILE`` (re-read before every tick:
the kubelet rotates it), ``SERIN_TICK_CA_FILE``, ``SERIN_TICK_TIMEOUT_SECONDS`` (one request, 240),
``SERIN_TICK_PERIOD_SECONDS`` (the CronJob's period, 60; 0 ticks once), ``SERIN_TICK_SHARDS``
(pods of the Indexed tick Job, 1; each ticks the shard of its ``JOB_COMPLETION_INDEX``).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

# Stop this long before the period ends, so the next Job finds this one finished.
PERIOD_MARGIN_SECONDS = 5.0
# Never tick more often than this (a Canary that stays due, a server that keeps failing).
MIN_WAIT_SECONDS = 1.0
# After a failed tick, the next try comes no sooner than this.
RETRY_SECONDS = 5.0
DEFAULT_PERIOD_SECONDS = 60.0


@dataclass(frozen=True)
class Settings:
    url: str
    token_file: str
    ca_file: str | None
    timeout: float
    period: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            url=sharded(env["SERIN_TICK_URL"], env.get("JOB_COMPLETION_INDEX"), env.get("SERIN_TICK_SHARDS")),
            token_file=env["SERIN_TICK_TOKEN_FILE"],
            ca_file=env.get("SERIN_TICK_CA_FILE") or None,
            timeout=float(env.get("SERIN_TICK_TIMEOUT_SECONDS", "240")),
            period=float(env.get("SERIN_TICK_PERIOD_SECONDS", str(DEFAULT_PERIOD_SECONDS))),
        )


@dataclass(frozen=True)
class Answer:
    """One tick's outcome: the HTTP status (0 when there was no answer) and body, or the problem."""

    status: int
    body: bytes = b""
    problem: str = ""

    @property
    def worth_retrying(self) -> bool:
        return self.status == 0 or self.status >= 500 or self.status == 429


def sharded(url: str, index: str | None, shards: str | None) -> str:
    """The tick URL of one pod of the tick Job: with ``SERIN_TICK_SHARDS`` above 1 the Job is
    Indexed, and pod ``JOB_COMPLETION_INDEX`` asks for its shard of the Canaries only."""
    count = int(shards or "1")
    if count <= 1:
        return url
    if index is None:
        raise SystemExit("SERIN_TICK_SHARDS is above 1 but JOB_COMPLETION_INDEX is not set: run as an Indexed Job")
    parts = urllib.parse.urlsplit(url)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(parts.query) if key not in ("shard", "shards")]
    query += [("shard", str(int(index))), ("shards", str(count))]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def with_window(url: str, window: float) -> str:
    """The tick URL telling the server how long ago the previous tick was (``window``)."""
    parts = urllib.parse.urlsplit(url)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(parts.query) if key != "window"]
    query.append(("window", f"{window:.3f}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def post_tick(settings: Settings, window: float) -> Answer:
    """One POST /tick; ``window``: seconds since the previous one (idle Canaries due since then are checked)."""
    with open(settings.token_file) as file:
        token = file.read().strip()
    context = ssl.create_default_context(cafile=settings.ca_file)
    request = urllib.request.Request(
        with_window(settings.url, window), data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=settings.timeout) as answer:
            return Answer(answer.status, answer.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), f"HTTP {error.code}")
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            # Not the server the CA vouches for: no token was sent, and none will be.
            return Answer(-1, problem=f"refusing {settings.url}: {error.reason}")
        return Answer(0, problem=f"cannot reach {settings.url}: {error.reason}")
    except OSError as error:
        return Answer(0, problem=f"cannot reach {settings.url}: {error}")


def next_step_in(body: bytes) -> float | None:
    """When the answer says the next Canary is due, in seconds; None when none will be."""
    try:
        value = json.loads(body).get("nextStepInSeconds")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def run(
    settings: Settings,
    tick: Callable[[Settings, float], Answer] = post_tick,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Tick until the period is over; 0 when every tick answered 200, else 1."""
    deadline = clock() + settings.period - PERIOD_MARGIN_SECONDS
    failed = False
    # The first tick covers the time since the previous Job's start: one period.
    window, previous = settings.period if settings.period > 0 else DEFAULT_PERIOD_SECONDS, None
    while True:
        started = clock()
        if previous is not None:
            window = max(MIN_WAIT_SECONDS, started - previous)
        previous = started
        answer = tick(settings, window)
        if answer.body:
            out(answer.body.decode("utf-8", "replace").strip())
        wait: float | None
        if answer.status == 200:
            wait = next_step_in(answer.body)
        else:
            failed = True
            err(f"tick failed: {answer.problem or f'HTTP {answer.status}'}")
            wait = RETRY_SECONDS if answer.worth_retrying else None
        if wait is None:
            break
        wake = clock() + max(MIN_WAIT_SECONDS, wait)
        if wake >= deadline:
            break
        sleep(max(0.0, wake - clock()))
    return 1 if failed else 0


def main() -> int:
    return run(
        Settings.from_env(),
        out=lambda line: print(line, flush=True),
        err=lambda line: print(line, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    sys.exit(main())
