"""The two-sample Mann-Whitney U test and the Hodges-Lehmann shift estimate with its confidence interval.

These are the numbers R's ``wilcox.test(x, y, conf.int = TRUE)`` reports (two-sided), and they are how a canary's
samples are judged against the primary's: ``mann_whitney`` says whether the two samples plausibly come from the same
distribution, ``shift`` says by how much the canary (``x``) sits above or below the primary (``y``), and how surely.
Rank statistics are used because latency and error samples are skewed and heavy-tailed, where a t-test misleads.

The module is pure (no I/O, no state beyond a cache of exact null distributions) and uses only the standard library:
it is imported by a server where import time matters, so NumPy and SciPy are test-time dependencies only.

Conventions shared with R and SciPy (``scipy.stats.mannwhitneyu``, two-sided):

* The exact null distribution is used when both samples have fewer than 50 values and the pooled sample has no ties;
  otherwise the normal approximation with tie correction and a continuity correction of 0.5.
* Two-sided exact p-value: ``min(1, 2 * P(U <= min(u, m*n - u)))``.

Where this module deliberately differs from R:

* When the samples are too few for any interval to reach the requested confidence, R silently widens the confidence
  (and warns); ``shift`` returns the unbounded interval ``(-inf, inf)`` instead, so a caller cannot mistake it for
  evidence.
* In the normal case R finds the interval ends and the estimate by root finding (``uniroot``, tolerance 1e-4) on the
  asymptotic statistic; here the interval ends are the order statistics of the pairwise differences where that test
  changes its verdict, and the estimate is always the median of the differences (R uses it only in the exact case).
"""

from __future__ import annotations

import functools
import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

__all__ = ["MannWhitney", "Shift", "mann_whitney", "shift"]

Method = Literal["exact", "normal"]

# R's wilcox.test and SciPy's mannwhitneyu(method="auto") switch differently; R's rule is the one this module follows:
# the exact distribution only when both samples are smaller than this and nothing is tied.
EXACT_LIMIT = 50

_SQRT_HALF = math.sqrt(0.5)


@dataclass(frozen=True)
class MannWhitney:
    """The result of a two-sided Mann-Whitney U test of ``x`` against ``y``."""

    u: float
    """U statistic of ``x``: the pairs ``(xi, yj)`` with ``xi > yj``, plus half the pairs with ``xi == yj``."""
    p_value: float
    """Two-sided p-value."""
    method: Method
    """``"exact"`` (the null distribution of U) or ``"normal"`` (its tie-corrected normal approximation)."""


@dataclass(frozen=True)
class Shift:
    """The Hodges-Lehmann estimate of the shift ``x - y`` and the confidence interval from inverting the U test."""

    estimate: float
    """The median of all pairwise differences ``xi - yj``."""
    low: float
    """Lower end of the interval; ``-math.inf`` when the samples are too few to bound it at this confidence."""
    high: float
    """Upper end of the interval; ``math.inf`` when the samples are too few to bound it at this confidence."""
    confidence: float
    """The requested confidence, e.g. 0.95."""
    method: Method
    """How the interval was found: ``"exact"`` or ``"normal"``, chosen as for ``mann_whitney``."""


@dataclass(frozen=True)
class _Ranks:
    """What both public functions need from the pooled ranking: U (doubled, to stay an integer) and the ties."""

    m: int
    n: int
    twice_u: int
    tie_term: int  # sum of t**3 - t over the tie groups of the pooled sample; 0 means no ties

    @property
    def method(self) -> Method:
        exact = self.m < EXACT_LIMIT and self.n < EXACT_LIMIT and self.tie_term == 0
        return "exact" if exact else "normal"

    @property
    def variance(self) -> float:
        """Tie-corrected variance of U under the null: m*n/12 * ((N+1) - sum(t^3 - t) / (N*(N-1))).

        Computed as one integer fraction so that all-tied samples give exactly 0 rather than a rounding residue.
        """
        total = self.m + self.n  # at least 2: both samples are non-empty
        numerator = self.m * self.n * ((total + 1) * total * (total - 1) - self.tie_term)
        return numerator / (12 * total * (total - 1))


def _clean(values: Sequence[float], name: str) -> list[float]:
    """Float copy of a sample, refusing what the rank statistics cannot order."""
    sample = [float(v) for v in values]
    if not sample:
        raise ValueError(f"{name} is empty: the Mann-Whitney test needs at least one value in each sample")
    if any(math.isnan(v) for v in sample):
        raise ValueError(f"{name} contains NaN, which has no rank; drop or replace it before testing")
    return sample


def _ranks(x: list[float], y: list[float]) -> _Ranks:
    """Count U and the tie groups by walking both sorted samples together, exactly (no float rank sums)."""
    xs, ys = sorted(x), sorted(y)
    m, n = len(xs), len(ys)
    i = j = 0
    twice_u = tie_term = 0
    while i < m or j < n:
        value = xs[i] if j >= n or (i < m and xs[i] <= ys[j]) else ys[j]
        i0, j0 = i, j
        while i < m and xs[i] == value:
            i += 1
        while j < n and ys[j] == value:
            j += 1
        a, b = i - i0, j - j0
        # Each x in this group is above every y already passed (j0 of them) and tied with the b y's here.
        twice_u += a * (2 * j0 + b)
        t = a + b
        tie_term += t * t * t - t
    return _Ranks(m=m, n=n, twice_u=twice_u, tie_term=tie_term)


@functools.lru_cache(maxsize=256)
def _exact_cdf(m: int, n: int) -> tuple[tuple[int, ...], int]:
    """Cumulative counts of U under the null for sizes m <= n, and the number of arrangements comb(m+n, m).

    The count of arrangements with U = k is the coefficient of q^k in the Gaussian binomial coefficient
    [m+n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i). Each factor is applied as an exact integer
    polynomial multiply and divide, so the counts are exact however large; the distribution is symmetric in
    (m, n), so callers pass the smaller size first and the cache holds one entry per pair of sizes.
    """
    coeffs = [1]
    for i in range(1, m + 1):
        k = n + i
        product = coeffs + [0] * k  # times (1 - q^k)
        for j, c in enumerate(coeffs):
            product[j + k] -= c
        degree = i * n
        quotient = product[: degree + 1]  # divided by (1 - q^i): Q[j] = P[j] + Q[j - i]; the division is exact
        for j in range(i, degree + 1):
            quotient[j] += quotient[j - i]
        coeffs = quotient
    cumulative = tuple(itertools.accumulate(coeffs))
    return cumulative, cumulative[-1]


def _null_cdf(r: _Ranks) -> tuple[tuple[int, ...], int]:
    """The exact null distribution for these sample sizes, in whichever order they came."""
    return _exact_cdf(min(r.m, r.n), max(r.m, r.n))


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of ``x`` against ``y``, as R's ``wilcox.test(x, y)``.

    The p-value equals ``scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method=...)`` with the method this
    returns (``"exact"``, or ``"asymptotic"`` with ``use_continuity=True`` for ``"normal"``).
    Raises ``ValueError`` for an empty sample or a NaN value.
    """
    r = _ranks(_clean(x, "x"), _clean(y, "y"))
    u = r.twice_u / 2
    mn = r.m * r.n
    if r.method == "exact":
        cumulative, total = _null_cdf(r)
        k = min(r.twice_u, 2 * mn - r.twice_u) // 2  # no ties, so U is an integer
        return MannWhitney(u=u, p_value=min(1.0, 2 * cumulative[k] / total), method="exact")
    variance = r.variance
    if variance <= 0:
        # Every value is the same: nothing distinguishes the samples.
        return MannWhitney(u=u, p_value=1.0, method="normal")
    z = (abs(r.twice_u - mn) / 2 - 0.5) / math.sqrt(variance)
    # 2 * (1 - Phi(z)) == erfc(z / sqrt 2), computed without cancellation in the tail.
    return MannWhitney(u=u, p_value=min(1.0, math.erfc(z * _SQRT_HALF)), method="normal")


def _critical_count(r: _Ranks, confidence: float) -> int:
    """The largest c such that the two-sided test at alpha = 1 - confidence rejects U <= c; -1 when none does."""
    if r.method == "exact":
        cumulative, total = _null_cdf(r)
        # Read the confidence as the decimal it was written as (0.9 is 9/10, not 0.9000000000000000222), so that a
        # level the exact distribution hits exactly, e.g. 2/20 = 1 - 0.9 for m = n = 3, counts as reached.
        alpha = 1 - Fraction(repr(float(confidence)))
        # P(U <= c) <= alpha / 2  <=>  cumulative[c] <= alpha * total / 2 (cumulative counts are integers).
        limit = alpha.numerator * total // (2 * alpha.denominator)
        return bisect_right(cumulative, limit) - 1
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    # Rejects when (m*n/2 - U - 0.5) / sigma >= z, i.e. U <= m*n/2 - 0.5 - z*sigma.
    return math.floor(r.m * r.n / 2 - 0.5 - z * math.sqrt(r.variance))


def shift(x: Sequence[float], y: Sequence[float], confidence: float) -> Shift:
    """Hodges-Lehmann estimate of the shift ``x - y`` with its confidence interval, as R's
    ``wilcox.test(x, y, conf.int = TRUE, conf.level = confidence)``.

    The interval is the set of shifts d for which the U test of ``x - d`` against ``y`` does not reject at
    alpha = 1 - confidence: with D_1 <= ... <= D_N the N = m*n sorted differences and c the largest count the test
    rejects (``U <= c``), it is [D_(c+1), D_(N-c)]. When even the most extreme U cannot be rejected (c < 0) no finite
    interval has the confidence asked for, and ``(-inf, inf)`` is returned.

    Raises ``ValueError`` for an empty sample, a NaN value, the same infinity in both samples (their difference is
    undefined), or a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:  # also refuses NaN
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    xs, ys = _clean(x, "x"), _clean(y, "y")
    if {v for v in xs if math.isinf(v)} & {v for v in ys if math.isinf(v)}:
        raise ValueError("x and y contain the same infinity; their difference, and so the shift, is undefined")
    r = _ranks(xs, ys)
    diffs = sorted([a - b for a in xs for b in ys])
    count = len(diffs)
    half = count // 2
    estimate = diffs[half] if count % 2 else (diffs[half - 1] + diffs[half]) / 2
    c = _critical_count(r, confidence)
    low, high = (diffs[c], diffs[count - c - 1]) if c >= 0 else (-math.inf, math.inf)
    return Shift(estimate=estimate, low=low, high=high, confidence=confidence, method=r.method)
