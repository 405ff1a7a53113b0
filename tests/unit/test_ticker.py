"""The tick CronJob's client: when it ticks within its period, and when it stops (fake clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from serin.ticker import Answer, Settings, next_step_in, run, sharded, with_window

SETTINGS = Settings(url="https://serin/tick", token_file="/dev/null", ca_file=None, timeout=10, period=60)


class Script:
    """Answers the ticks in turn, on a clock that only sleeping moves."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.now = 0.0
        self.ticked_at: list[float] = []
        self.windows: list[float] = []
        self.errors: list[str] = []

    def tick(self, settings: Settings, window: float) -> Answer:
        self.ticked_at.append(self.now)
        self.windows.append(window)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def run(self, settings: Settings = SETTINGS) -> int:
        return run(settings, self.tick, lambda: self.now, self.sleep, lambda line: None, self.errors.append)


def due_in(seconds: float | None, **extra: Any) -> Answer:
    return Answer(200, json.dumps({"nextStepInSeconds": seconds, "canaries": [], **extra}).encode())


def test_ticks_again_when_the_next_canary_is_due_until_the_period_is_nearly_over() -> None:
    script = Script(due_in(10.0))
    assert script.run() == 0
    # 60s period, stopping 5s before its end: the Job of the next minute takes over from there.
    assert script.ticked_at == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    # Each tick tells the server how long ago the previous one was (the first: one period).
    assert script.windows == [60.0, 10.0, 10.0, 10.0, 10.0, 10.0]


def test_a_canary_due_at_once_is_ticked_at_most_once_a_second() -> None:
    script = Script(due_in(0.0), due_in(0.0), due_in(None))
    assert script.run() == 0
    assert script.ticked_at == [0.0, 1.0, 2.0]


def test_nothing_due_in_the_period_means_one_tick() -> None:
    script = Script(due_in(None))
    assert (script.run(), script.ticked_at) == (0, [0.0])
    script = Script(due_in(70.0))
    assert (script.run(), script.ticked_at) == (0, [0.0])


def test_period_zero_ticks_once() -> None:
    script = Script(due_in(10.0))
    settings = Settings(url=SETTINGS.url, token_file="/dev/null", ca_file=None, timeout=10, period=0)
    assert (script.run(settings), script.ticked_at) == (0, [0.0])


@pytest.mark.parametrize(
    ("answer", "ticks", "error"),
    [
        pytest.param(Answer(403, b'{"error": "no"}', "HTTP 403"), [0.0], "tick failed: HTTP 403", id="refused"),
        pytest.param(
            Answer(-1, problem="refusing https://serin/tick: certificate verify failed"),
            [0.0],
            "tick failed: refusing https://serin/tick: certificate verify failed",
            id="untrusted-server",
        ),
        pytest.param(
            Answer(0, problem="cannot reach https://serin/tick: connection refused"),
            [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0],
            "tick failed: cannot reach https://serin/tick: connection refused",
            id="unreachable-is-asked-again",
        ),
        pytest.param(
            Answer(503, b'{"error": "busy"}', "HTTP 503"),
            [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0],
            "tick failed: HTTP 503",
            id="server-error-is-asked-again",
        ),
    ],
)
def test_failures_fail_the_job(answer: Answer, ticks: list[float], error: str) -> None:
    script = Script(answer)
    assert script.run() == 1
    assert script.ticked_at == ticks
    assert set(script.errors) == {error}


def test_one_failure_among_good_ticks_still_fails_the_job() -> None:
    script = Script(Answer(502, b"", "HTTP 502"), due_in(None))
    assert (script.run(), script.ticked_at) == (1, [0.0, 5.0])


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        pytest.param(b'{"nextStepInSeconds": 9.5}', 9.5, id="seconds"),
        pytest.param(b'{"nextStepInSeconds": null}', None, id="none-due"),
        pytest.param(b'{"nextStepInSeconds": "soon"}', None, id="not-a-number"),
        pytest.param(b"[]", None, id="not-an-object"),
        pytest.param(b"<html>", None, id="not-json"),
    ],
)
def test_next_step_in(body: bytes, seconds: float | None) -> None:
    assert next_step_in(body) == seconds


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://serin/tick", "https://serin/tick?window=12.500", id="plain"),
        pytest.param("https://serin/tick?namespace=test", "https://serin/tick?namespace=test&window=12.500", id="ns"),
        pytest.param("https://serin/tick?window=1", "https://serin/tick?window=12.500", id="replaced"),
    ],
)
def test_with_window(url: str, expected: str) -> None:
    assert with_window(url, 12.5) == expected


@pytest.mark.parametrize(
    ("index", "shards", "expected"),
    [
        pytest.param(None, None, "https://serin/tick?namespace=a", id="one-pod"),
        pytest.param("0", "1", "https://serin/tick?namespace=a", id="one-shard"),
        pytest.param("2", "4", "https://serin/tick?namespace=a&shard=2&shards=4", id="pod-2-of-4"),
    ],
)
def test_each_pod_of_an_indexed_tick_job_asks_for_its_shard(
    index: str | None, shards: str | None, expected: str
) -> None:
    assert sharded("https://serin/tick?namespace=a", index, shards) == expected
    assert with_window(expected, 1.0).startswith(expected)


def test_shards_without_an_index_is_a_configuration_error() -> None:
    with pytest.raises(SystemExit, match="JOB_COMPLETION_INDEX is not set"):
        sharded("https://serin/tick", None, "3")
