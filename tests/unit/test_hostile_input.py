"""What a request, a Canary or a backend sends that is built to hurt: the checks that read it are
linear, and a value that is no measurement never passes.

The time each takes is measured against the real server in tests/integration/test_security.py;
here, what each check finds, exactly.
"""

from __future__ import annotations

import math

import pytest

from handlers.params import nested_deeper_than
from serin.decide import MetricReading, metric_checks
from serin.model import PLACEHOLDER
from serin.status import MetricCheck
from tests.unit.test_decide import make_canary


@pytest.mark.parametrize(
    ("body", "limit", "deeper"),
    [
        pytest.param(b"[[[]]]", 3, False, id="at-the-limit"),
        pytest.param(b"[[[[]]]]", 3, True, id="past-the-limit"),
        pytest.param(b'[["[[[[[[", "]]]]"]]', 2, False, id="brackets-in-strings"),
        pytest.param(b'[["\\"[[[[", 1]]', 2, False, id="escaped-quote-in-a-string"),
        pytest.param(b'[[[["\\\\"]]]]', 3, True, id="escaped-backslash-ends-the-string"),
        pytest.param(b"[]" * 10_000, 1, False, id="wide-not-deep"),
        # An opening quote with no end: the body is no JSON, and the rest is not scanned again
        # from every later quote (which took 23 s for 80 KB).
        pytest.param(b'"\\' * 40_000, 3, False, id="unterminated-escapes"),
        pytest.param(b'["' + b"[" * 500, 3, False, id="unterminated-string-then-brackets"),
        pytest.param(b"[" * 5 + b'"\\"' * 30_000, 3, True, id="deep-before-the-bad-string"),
    ],
)
def test_nesting_is_found_in_one_pass(body: bytes, limit: int, deeper: bool) -> None:
    assert nested_deeper_than(body, limit) is deeper


@pytest.mark.parametrize(
    ("query", "found"),
    [
        pytest.param("sum(x{ns='{{ namespace }}', w='{{target}}'})", [" namespace ", "target"], id="two"),
        pytest.param("{{{ target }}}", [" target "], id="extra-braces"),
        pytest.param("{{" * 45_000, [], id="only-openings"),
        pytest.param("{{ a" * 20_000 + "}}", [" a"], id="openings-then-one-end"),
        pytest.param("{{ a }\n}}", [], id="a-brace-inside-is-no-placeholder"),
    ],
)
def test_placeholders_are_found_without_backtracking(query: str, found: list[str]) -> None:
    assert PLACEHOLDER.findall(query) == found


@pytest.mark.parametrize(
    ("value", "threshold_range", "passed", "message"),
    [
        pytest.param(
            math.inf, {"min": 1}, False, "Halt advancement no values found for metric: errors", id="over-a-min"
        ),
        pytest.param(
            -math.inf, {"max": 10}, False, "Halt advancement no values found for metric: errors", id="under-a-max"
        ),
        pytest.param(5.0, {"min": 1}, True, "errors 5 >= 1: passed", id="finite"),
    ],
)
def test_an_infinity_is_no_measurement(
    value: float, threshold_range: dict[str, float], passed: bool, message: str
) -> None:
    """+Inf would pass any minimum, -Inf any maximum."""
    canary = make_canary(
        {
            "interval": "1m",
            "stepWeight": 10,
            "metrics": [{"name": "errors", "query": "y", "thresholdRange": threshold_range}],
        }
    )
    checked = value if passed else None
    assert metric_checks(canary, (MetricReading(value),)) == (MetricCheck("errors", checked, passed, message),)
