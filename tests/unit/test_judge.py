"""The canary-versus-primary judge: the verdict and its sentence, its error rates on the
simulator's latency distribution, and how the decision core uses it."""

from __future__ import annotations

import random

import pytest

from localcluster.simulator.traffic import draw_latency_ms
from serin.decide import MetricReading, metric_checks
from serin.judge import judge
from serin.model import Canary, Compare, InvalidCanary
from serin.status import MetricCheck
from tests.unit.test_decide import make_canary

PRIMARY = [float(value) for value in range(90, 110)]  # median 99.5, no ties
SLOWER = [value + 30 for value in PRIMARY]  # every difference is 30 + (i - j): Hodges-Lehmann 30
# At m = n = 20, the two-sided 2% critical value of U is 114: the 98% interval runs from the 115th
# to the 286th of the 400 sorted differences, 30 - 5 and 30 + 5.
INTERVAL = "(98% CI +25%..+35%)"


@pytest.mark.parametrize(
    ("compare", "canary", "passed", "message"),
    [
        pytest.param(
            Compare(tolerance=0.1),
            SLOWER,
            False,
            f"canary request-duration 129.5 ms vs primary 99.5 ms, +30% {INTERVAL}, worse beyond tolerance 10%: failed",
            id="slower-beyond-tolerance",
        ),
        pytest.param(
            Compare(tolerance=0.3),
            SLOWER,
            True,
            f"canary request-duration 129.5 ms vs primary 99.5 ms, +30% {INTERVAL}, within tolerance 30%: passed",
            id="slower-within-tolerance",
        ),
        pytest.param(
            Compare(tolerance=0.1, direction="decrease"),
            SLOWER,
            True,
            f"canary request-duration 129.5 ms vs primary 99.5 ms, +30% {INTERVAL}, better beyond tolerance 10%: "
            "passed",
            id="higher-is-better",
        ),
        pytest.param(
            Compare(tolerance=0.1, direction="either"),
            SLOWER,
            False,
            f"canary request-duration 129.5 ms vs primary 99.5 ms, +30% {INTERVAL}, worse beyond tolerance 10%: failed",
            id="either-way",
        ),
        pytest.param(
            Compare(tolerance=0.0),
            list(reversed(PRIMARY)),
            True,
            "canary request-duration 99.5 ms vs primary 99.5 ms, the same samples: passed",
            id="same-samples",
        ),
        pytest.param(
            Compare(),
            [130.0],
            False,
            "canary request-duration 130 ms vs primary 99.5 ms: 1 and 20 samples are too few to judge at 98% "
            "confidence: failed",
            id="too-few",
        ),
    ],
)
def test_judgement(compare: Compare, canary: list[float], passed: bool, message: str) -> None:
    judgement = judge("request-duration", compare, canary, PRIMARY)
    assert (judgement.passed, judgement.message) == (passed, message)


def test_a_primary_at_zero_is_compared_in_absolute_terms() -> None:
    """The 36 differences are 1 once, 2..6 six times each and 7 five times: their median is 4. The
    pooled sample has ties (normal method): sigma 6.02, so c = floor(18 - 0.5 - 2.326 * 6.02) = 3,
    and the interval runs from the 4th difference (2) to the 33rd (7)."""
    judgement = judge("errors", Compare(tolerance=0.5), [2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [0.0] * 5 + [1.0])
    assert (judgement.passed, judgement.message) == (
        False,
        "canary errors 4.5 vs primary 0, +4 (98% CI +2..+7), worse beyond tolerance 50%: failed",
    )


TRIALS = 500


def _trials(canary_mean: float, samples: int, compare: Compare) -> float:
    """The share of seeded trials that pass, each with ``samples`` latencies of each version drawn
    as the traffic simulator draws them (gamma, coefficient of variation 1/3)."""
    passed = 0
    for seed in range(TRIALS):
        rng = random.Random(seed)
        primary = [draw_latency_ms(100.0, rng) for _ in range(samples)]
        canary = [draw_latency_ms(canary_mean, rng) for _ in range(samples)]
        passed += judge("request-duration", compare, canary, primary).passed
    return passed / TRIALS


def test_equal_noisy_versions_pass_at_the_configured_confidence() -> None:
    """With no tolerance at all, only chance can fail an equal canary: at 98% confidence, one-sided,
    that happens in about 1% of trials."""
    assert _trials(100.0, 20, Compare(tolerance=0.0, confidence=0.98)) >= 0.98
    assert _trials(100.0, 200, Compare(tolerance=0.0, confidence=0.98)) >= 0.98


def test_lower_confidence_fails_equal_versions_more_often() -> None:
    """The confidence is what bounds false failures: at 60% they are common."""
    assert _trials(100.0, 20, Compare(tolerance=0.0, confidence=0.6)) < 0.9


def test_a_slower_canary_fails_when_the_samples_can_show_it() -> None:
    assert _trials(130.0, 200, Compare(tolerance=0.1, confidence=0.98)) <= 0.02


COMPARED: dict[str, object] = {"name": "request-duration", "interval": "1m", "compare": {"tolerance": 0.1}}


def _canary(*metrics: dict[str, object]) -> Canary:
    return make_canary({"interval": "1m", "stepWeight": 10, "metrics": list(metrics)})


def test_each_metric_of_a_step_is_explained() -> None:
    canary = _canary(
        COMPARED,
        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
        {"name": "latency", "query": 'x{w="{{ target }}"}', "compare": {}},
        {"name": "errors", "query": "y", "thresholdRange": {"max": 1}},
    )
    checks = metric_checks(
        canary,
        (
            MetricReading(None, canary_samples=tuple(SLOWER), primary_samples=tuple(PRIMARY)),
            MetricReading(99.5),
            MetricReading(None),
            MetricReading(None, "unavailable", "prometheus at http://p unreachable"),
        ),
    )
    assert checks == (
        MetricCheck(
            "request-duration",
            129.5,
            False,
            "Halt podinfo.test advancement canary request-duration 129.5 ms vs primary 99.5 ms, "
            f"+30% {INTERVAL}, worse beyond tolerance 10%: failed",
        ),
        MetricCheck("request-success-rate", 99.5, True, "request-success-rate 99.5 >= 99: passed"),
        MetricCheck("latency", None, False, "Halt advancement no values found for metric: latency"),
        MetricCheck(
            "errors", None, None, "Halt advancement errors could not be measured: prometheus at http://p unreachable"
        ),
    )


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        pytest.param({"name": "request-duration", "compare": {}}, Compare(), id="defaults"),
        pytest.param(
            {"name": "request-success-rate", "compare": {}}, Compare(direction="decrease"), id="success-rate-decreases"
        ),
        pytest.param(
            {
                "name": "p50",
                "query": "q{w='{{target}}'}",
                "compare": {
                    "against": "primary",
                    "test": "mann-whitney",
                    "direction": "either",
                    "tolerance": 0,
                    "confidence": 0.9,
                },
            },
            Compare(direction="either", tolerance=0.0, confidence=0.9),
            id="all-set",
        ),
    ],
)
def test_compare_is_parsed_with_its_defaults(metric: dict[str, object], expected: Compare) -> None:
    parsed = _canary(metric)
    assert parsed.analysis.metrics[0].compare == expected


def test_every_problem_of_a_compare_is_reported_with_its_path() -> None:
    with pytest.raises(InvalidCanary) as raised:
        _canary(
            {
                "name": "p50",
                "query": "q",
                "thresholdRange": {"max": 1},
                "compare": {
                    "against": "baseline",
                    "test": "t-test",
                    "direction": "up",
                    "tolerance": -1,
                    "confidence": 1,
                },
            }
        )
    assert [str(error) for error in raised.value.errors] == [
        "spec.analysis.metrics[0].compare.against: must be one of primary (got 'baseline')",
        "spec.analysis.metrics[0].compare.test: must be one of mann-whitney (got 't-test')",
        "spec.analysis.metrics[0].compare.direction: must be one of increase, decrease, either (got 'up')",
        "spec.analysis.metrics[0].compare.tolerance: must be a share of the primary's median, 0 to 10 (got -1)",
        "spec.analysis.metrics[0].compare.confidence: must be 0.5 or more, below 1 (got 1)",
        "spec.analysis.metrics[0].compare: judges the canary against the primary: set either compare or "
        "thresholdRange (threshold), not both",
        "spec.analysis.metrics[0].query: must select the workload with {{ target }}: compare runs it once for the "
        "canary and once for the primary",
    ]


def test_blue_green_cannot_compare() -> None:
    """Its last checks run with every request on the canary: the primary has no samples then."""
    with pytest.raises(InvalidCanary) as raised:
        make_canary({"interval": "1m", "metrics": [{"name": "request-duration", "compare": {}}]}, provider="kubernetes")
    assert [str(error) for error in raised.value.errors] == [
        "spec.analysis.metrics[0].compare: cannot judge blue/green: its last checks run with all traffic on the "
        "canary, when the primary has no samples to compare with; use thresholdRange"
    ]
