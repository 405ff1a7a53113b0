"""The canary-versus-primary judge: is the canary worse than the primary, beyond a tolerance, with
a given confidence?

As Kayenta's NetflixACAJudge (its Mann-Whitney classifier) judges a metric: the shift between the
canary's samples and the primary's is estimated (Hodges-Lehmann, with the confidence interval of
the Mann-Whitney U test, ``serin.stats``), and set against a tolerance band around zero whose
half-width is ``tolerance`` times the primary's median. The canary fails when the whole interval
lies beyond the band on the side ``direction`` calls worse: a difference that is real but small,
or large but uncertain, passes. Few samples give a wide interval, so they cannot fail a canary on
chance; too few to bound it at all are reported, and never pass (missing data never promotes).

Pure: the samples come in, a verdict and the sentence that explains it go out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from serin.model import Compare
from serin.stats import Shift, shift

# The builtin metrics' units, for the explanation.
UNITS = {"request-duration": " ms", "request-success-rate": "%"}


@dataclass(frozen=True)
class Judgement:
    passed: bool
    # One sentence: both medians, the relative shift with its interval, and the verdict.
    message: str
    canary_median: float
    primary_median: float
    shift: Shift | None = None


def judge(name: str, compare: Compare, canary: Sequence[float], primary: Sequence[float]) -> Judgement:
    """The verdict on metric ``name`` from the canary's and the primary's samples (both non-empty)."""
    canary_median, primary_median = statistics.median(canary), statistics.median(primary)
    unit = UNITS.get(name, "")
    medians = f"canary {name} {_number(canary_median)}{unit} vs primary {_number(primary_median)}{unit}"
    if sorted(canary) == sorted(primary):
        return Judgement(True, f"{medians}, the same samples: passed", canary_median, primary_median)
    estimate = shift(canary, primary, compare.confidence)
    level = f"{compare.confidence * 100:g}%"
    tolerance = f"tolerance {compare.tolerance * 100:g}%"
    if math.isinf(estimate.low) or math.isinf(estimate.high):
        message = (
            f"{medians}: {len(canary)} and {len(primary)} samples are too few to judge at {level} confidence: failed"
        )
        return Judgement(False, message, canary_median, primary_median, estimate)
    band = compare.tolerance * abs(primary_median)
    higher, lower = estimate.low > band, estimate.high < -band
    worse = (higher and compare.direction in ("increase", "either")) or (
        lower and compare.direction in ("decrease", "either")
    )
    if worse:
        verdict = f"worse beyond {tolerance}: failed"
    elif higher or lower:
        verdict = f"better beyond {tolerance}: passed"
    else:
        verdict = f"within {tolerance}: passed"
    relative = _relative if primary_median else _absolute
    change = f"{relative(estimate.estimate, primary_median)} ({level} CI "
    change += f"{relative(estimate.low, primary_median)}..{relative(estimate.high, primary_median)})"
    return Judgement(not worse, f"{medians}, {change}, {verdict}", canary_median, primary_median, estimate)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _relative(value: float, base: float) -> str:
    percent = value / abs(base) * 100
    return f"{percent:+.0f}%" if abs(percent) >= 10 else f"{percent:+.1f}%"


def _absolute(value: float, _base: float) -> str:
    """A shift from a primary whose median is zero: no percentage means anything, so the value."""
    return f"{value:+.4g}"
