"""serin.stats against SciPy: the U test's p-values, the Hodges-Lehmann estimate, the interval from inverting the test.

SciPy and NumPy are dev dependencies: they are the reference here and never imported by serin at runtime.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest

# SciPy ships no type information; scipy-stubs is not a dev dependency.
from scipy.stats import mannwhitneyu

from serin.stats import MannWhitney, Shift, mann_whitney, shift

Floats = npt.NDArray[np.float64]
Method = Literal["exact", "normal"]

CONFIDENCES = (0.9, 0.95, 0.98, 0.99)


def scipy_p(x: Floats, y: Floats, method: Method) -> float:
    """SciPy's two-sided p-value with the method named as serin names it."""
    if method == "exact":
        return float(mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
    return float(mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue)


def expected_method(x: Floats, y: Floats) -> Method:
    """R's rule: exact when both samples have fewer than 50 values and the pooled sample has no ties."""
    pooled = np.concatenate([x, y])
    tied = len(np.unique(pooled)) < len(pooled)
    return "exact" if len(x) < 50 and len(y) < 50 and not tied else "normal"


def continuous(seed: int, m: int, n: int) -> tuple[Floats, Floats]:
    """Two samples with no ties, shifted by a random amount so that p-values span (0, 1]."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=m), rng.normal(loc=rng.uniform(-2, 2), scale=rng.uniform(0.5, 2), size=n)


def rounded(seed: int, m: int, n: int) -> tuple[Floats, Floats]:
    """Two samples rounded to one decimal, so that values repeat within and across them."""
    x, y = continuous(seed, m, n)
    return np.round(x, 1), np.round(y, 1)


def _exact_cases() -> list[tuple[Floats, Floats]]:
    rng = np.random.default_rng(20240601)
    sizes = [(1, 1), (1, 49), (49, 1), (2, 3), (3, 3), (49, 49), (10, 5)]
    sizes += [(int(a), int(b)) for a, b in rng.integers(1, 50, size=(60, 2))]
    return [continuous(seed, m, n) for seed, (m, n) in enumerate(sizes)]


def _normal_cases() -> list[tuple[Floats, Floats]]:
    rng = np.random.default_rng(20240602)
    large = [(50, 50), (50, 1), (1, 50), (49, 50), (200, 200), (60, 8)]
    large += [(int(a), int(b)) for a, b in rng.integers(50, 250, size=(20, 2))]
    cases = [continuous(1000 + seed, m, n) for seed, (m, n) in enumerate(large)]
    # Small samples with ties: rounding to one decimal leaves a few dozen distinct values.
    small = [(int(a), int(b)) for a, b in rng.integers(5, 50, size=(30, 2))]
    tied = [rounded(2000 + seed, m, n) for seed, (m, n) in enumerate(small)]
    cases += [(x, y) for x, y in tied if expected_method(x, y) == "normal"]
    cases += [rounded(3000 + seed, m, n) for seed, (m, n) in enumerate(large[:8])]
    # A tie within one sample only is still a tie of the pooled sample.
    cases.append((np.array([1.0, 1.0, 2.0]), np.array([3.0, 4.0])))
    return cases


def _all_equal_cases() -> list[tuple[Floats, Floats]]:
    return [(np.full(m, 5.0), np.full(n, 5.0)) for m, n in [(1, 1), (3, 4), (49, 49), (60, 70)]]


def _separated_cases() -> list[tuple[Floats, Floats]]:
    """One sample entirely above the other: the smallest p-value the sizes allow."""
    cases = []
    for m, n in [(1, 1), (4, 6), (10, 5), (49, 49), (60, 40), (200, 200)]:
        x = np.arange(m, dtype=float) + n + 0.5
        y = np.arange(n, dtype=float)
        cases += [(x, y), (y, x)]
    return cases


PVALUE_CASES = _exact_cases() + _normal_cases() + _all_equal_cases() + _separated_cases()


@pytest.mark.parametrize(("x", "y"), PVALUE_CASES)
def test_p_value_and_method_match_scipy(x: Floats, y: Floats) -> None:
    result = mann_whitney(list(x), list(y))
    method = expected_method(x, y)
    assert result.method == method
    assert result.u == float(mannwhitneyu(x, y).statistic)
    assert result.u == float(np.sum(np.greater.outer(x, y)) + 0.5 * np.sum(np.equal.outer(x, y)))
    assert result.p_value == pytest.approx(scipy_p(x, y, method), rel=1e-12, abs=0)


def test_the_cases_cover_both_methods_and_their_edges() -> None:
    methods = [expected_method(x, y) for x, y in PVALUE_CASES]
    assert methods.count("exact") >= 60
    assert methods.count("normal") >= 40
    sizes = {(len(x), len(y)) for x, y in PVALUE_CASES}
    assert {(1, 1), (49, 49), (50, 1), (1, 50), (200, 200)} <= sizes


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([0.5], [1.5], MannWhitney(u=0.0, p_value=1.0, method="exact")),
        # comb(10, 4) = 210 arrangements, one with U = 24: p = 2/210.
        (
            [10.0, 11.0, 12.0, 13.0],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            MannWhitney(u=24.0, p_value=2 / 210, method="exact"),
        ),
        ([2.0, 2.0], [1.0, 3.0], MannWhitney(u=2.0, p_value=1.0, method="normal")),
        ([7.0] * 3, [7.0] * 4, MannWhitney(u=6.0, p_value=1.0, method="normal")),
    ],
)
def test_small_table(x: list[float], y: list[float], expected: MannWhitney) -> None:
    assert mann_whitney(x, y) == expected


@pytest.mark.parametrize(
    ("m", "n", "tie", "method"),
    [
        (49, 49, False, "exact"),
        (1, 1, False, "exact"),
        (50, 1, False, "normal"),
        (1, 50, False, "normal"),
        (50, 50, False, "normal"),
        (5, 5, True, "normal"),
        (49, 49, True, "normal"),
    ],
)
def test_method_selection(m: int, n: int, tie: bool, method: Method) -> None:
    x = [float(i) for i in range(m)]
    y = [i + 0.5 for i in range(n)]
    if tie:
        y[0] = x[0]
    assert mann_whitney(x, y).method == method
    assert shift(x, y, 0.95).method == method


@pytest.mark.parametrize(("x", "y"), _exact_cases()[:30] + _normal_cases()[:30] + _separated_cases())
def test_estimate_is_the_median_of_the_differences(x: Floats, y: Floats) -> None:
    assert shift(list(x), list(y), 0.95).estimate == float(np.median(np.subtract.outer(x, y)))


# --- the interval inverts the test ---------------------------------------------------------------------------------


# alpha = 1 - confidence is off by an ulp in binary (1 - 0.9 == 0.09999999999999998), and an exact p-value can equal
# alpha exactly (m = n = 3: 2/20 == 0.1). serin reads the confidence as the decimal written, and counts p == alpha as
# a rejection (the rule is P(U <= c) <= alpha/2); the relative slack absorbs the binary rounding on both sides.
# No attainable p-value lies within 1e-9 of alpha without equalling it for the sizes below.
def rejects(p: float, alpha: float) -> bool:
    return p <= alpha * (1 + 1e-9)


INTERVAL_SIZES = [
    (2, 2),  # too few at every confidence here: min p = 2/6
    (1, 30),  # finite only at 0.9: min p = 2/31
    (3, 3),  # min p = 2/20 == alpha at 0.9: finite there, on the boundary
    (4, 5),
    (5, 4),
    (8, 12),
    (20, 15),
    (49, 49),
    (50, 50),
    (60, 8),
    (8, 60),
    (120, 90),
    (200, 200),
]


def interval_seed(m: int, n: int, confidence: float) -> int:
    return 1_000_000 * round(confidence * 100) + 1000 * m + n


def check_inverts(x: Floats, y: Floats, confidence: float) -> Shift:
    """The interval is where the test of x - d against y does not reject, probed between adjacent differences.

    With D the sorted distinct differences, a shift d strictly between two of them leaves no xi - d equal to any yj, and
    U(x - d, y) = #{D_k > d}. Inside the interval the test must not reject; just outside it, it must.
    """
    result = shift(list(x), list(y), confidence)
    method = expected_method(x, y)
    assert result.method == method
    alpha = 1 - confidence
    diffs = np.unique(np.subtract.outer(x, y))

    def p_at(d: float) -> float:
        shifted = x - d
        assert not np.isin(shifted, y).any(), "the probe must not create ties"
        return scipy_p(shifted, y, method)

    if math.isinf(result.low) or math.isinf(result.high):
        assert (result.low, result.high) == (-math.inf, math.inf)
        # Not even the most extreme arrangement (U = 0 or U = m*n) is rejected.
        assert not rejects(p_at(float(diffs[0]) - 1), alpha)
        assert not rejects(p_at(float(diffs[-1]) + 1), alpha)
        return result

    low, high = result.low, result.high
    assert low <= result.estimate <= high
    i, j = int(np.searchsorted(diffs, low)), int(np.searchsorted(diffs, high))
    assert diffs[i] == low and diffs[j] == high, "the ends are differences"
    # Outward: between the end and the next difference beyond it, or past the extreme difference.
    below = (float(diffs[i - 1]) + low) / 2 if i > 0 else low - 1
    above = (high + float(diffs[j + 1])) / 2 if j + 1 < len(diffs) else high + 1
    assert rejects(p_at(below), alpha), f"shift {below} below the interval is not rejected"
    assert rejects(p_at(above), alpha), f"shift {above} above the interval is not rejected"
    # Inward: between the end and the next difference inside (none when the interval is a single difference).
    if i < j:
        inside_low = (low + float(diffs[i + 1])) / 2
        inside_high = (float(diffs[j - 1]) + high) / 2
        assert not rejects(p_at(inside_low), alpha), f"shift {inside_low} inside the interval is rejected"
        assert not rejects(p_at(inside_high), alpha), f"shift {inside_high} inside the interval is rejected"
    return result


@pytest.mark.parametrize("confidence", CONFIDENCES)
@pytest.mark.parametrize(("m", "n"), INTERVAL_SIZES)
def test_interval_inverts_scipys_test(m: int, n: int, confidence: float) -> None:
    x, y = continuous(interval_seed(m, n, confidence), m, n)
    check_inverts(x, y, confidence)


def test_interval_cases_cover_finite_infinite_and_edge_intervals() -> None:
    kinds: set[tuple[str, bool]] = set()
    for m, n in INTERVAL_SIZES:
        for confidence in CONFIDENCES:
            x, y = continuous(interval_seed(m, n, confidence), m, n)
            result = shift(list(x), list(y), confidence)
            diffs = np.sort(np.subtract.outer(x, y).ravel())
            kinds.add((result.method, math.isinf(result.low)))
            if result.low == diffs[0]:
                kinds.add(("extreme", True))
    assert kinds == {("exact", True), ("exact", False), ("normal", False), ("extreme", True)}


@pytest.mark.parametrize("seed", range(20))
def test_interval_inverts_scipys_test_at_random_sizes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    low, high = (1, 50) if seed % 2 else (50, 150)  # odd seeds exact, even seeds normal
    m, n = (int(v) for v in rng.integers(low, high, size=2))
    x, y = continuous(5000 + seed, m, n)
    check_inverts(x, y, float(rng.choice(CONFIDENCES)))


# --- published example ---------------------------------------------------------------------------------------------

# Hollander & Wolfe (1973), 69f (Example 4.1): permeability constants of the human chorioamnion at term (x) and at
# 12-26 weeks of gestation (y); the two-sample data set of R's ?wilcox.test.
HW_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
HW_Y = [1.15, 0.88, 0.90, 0.74, 1.21]


def test_hollander_wolfe_test() -> None:
    # R: W = 35, p-value = 0.2544. No ties and both samples small, so exact.
    result = mann_whitney(HW_X, HW_Y)
    assert result == MannWhitney(u=35.0, p_value=scipy_p(np.array(HW_X), np.array(HW_Y), "exact"), method="exact")
    assert round(result.p_value, 4) == 0.2544
    assert mann_whitney(HW_Y, HW_X) == MannWhitney(u=15.0, p_value=result.p_value, method="exact")


def test_hollander_wolfe_interval() -> None:
    # R's own regression test (tests/reg-tests-1a.R, "Example 4.1 in Hollander & Wolfe (1973), 69f", results from
    # Hollander & Wolfe (1999), 2nd edition, pages 111 and 126) asserts, for the order y then x:
    #     we <- wilcox.test(y, x, conf.int = TRUE)
    #     round(we$p.value, 4) == 0.2544; round(we$conf.int, 3) == c(-0.76, 0.15); round(we$estimate, 3) == -0.305
    # Derived here by the rule: m*n = 50, the largest c with P(U <= c) <= 0.025 is c = 8 (R: qwilcox(0.025, 10, 5) = 9,
    # diffs[9] and diffs[50 - 9 + 1]), so the interval is [D_9, D_42]. For x - y it is the mirror image,
    # [-0.15, 0.76] around 0.305. (A recollection of "95 percent CI -0.76 0.71" for wilcox.test(x, y) mixes the two
    # orders: no interval for x - y can start at -0.76, the smallest difference x - y being 0.73 - 1.21 = -0.48, and
    # 0.71 is D_38, not an end in either order.) The ends are differences of decimal inputs, so they equal the
    # decimals up to binary rounding only; in hundredths they are exact.
    forward = shift(HW_X, HW_Y, 0.95)
    assert forward.method == "exact"
    assert forward.confidence == 0.95
    assert (forward.estimate, forward.low, forward.high) == pytest.approx((0.305, -0.15, 0.76), abs=1e-12)
    reverse = shift(HW_Y, HW_X, 0.95)
    assert (reverse.estimate, reverse.low, reverse.high) == pytest.approx((-0.305, -0.76, 0.15), abs=1e-12)
    x, y = [round(v * 100) for v in HW_X], [round(v * 100) for v in HW_Y]
    assert shift(x, y, 0.95) == Shift(estimate=30.5, low=-15.0, high=76.0, confidence=0.95, method="exact")
    assert shift(y, x, 0.95) == Shift(estimate=-30.5, low=-76.0, high=15.0, confidence=0.95, method="exact")
    # Probing between differences needs them exact: in binary, 1.64 - 0.88 and 1.91 - 1.15 are two neighbours
    # whose midpoint is one of them, so the inversion is checked on the hundredths.
    check_inverts(np.array(x, dtype=float), np.array(y, dtype=float), 0.95)
    check_inverts(np.array(y, dtype=float), np.array(x, dtype=float), 0.95)


# --- too few samples, boundaries, degenerate data -----------------------------------------------------------------


def test_too_few_samples_give_an_unbounded_interval() -> None:
    # comb(4, 2) = 6 arrangements: the smallest two-sided p-value is 2/6, far above 0.02.
    assert shift([1.0, 2.0], [3.0, 4.0], 0.98) == Shift(
        estimate=-2.0, low=-math.inf, high=math.inf, confidence=0.98, method="exact"
    )


def test_an_exactly_attainable_level_counts_as_reached() -> None:
    # m = n = 3: P(U = 0) = 1/20, so the two-sided test at alpha = 0.1 rejects U = 0 exactly at the level (c = 0) and
    # the interval is the full range of differences [D_1, D_9]; asking for a hair more confidence leaves none.
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    assert shift(x, y, 0.9) == Shift(estimate=-3.0, low=-5.0, high=-1.0, confidence=0.9, method="exact")
    assert shift(x, y, 0.9001) == Shift(estimate=-3.0, low=-math.inf, high=math.inf, confidence=0.9001, method="exact")


def test_all_equal_samples() -> None:
    assert shift([5.0] * 3, [5.0] * 4, 0.95) == Shift(estimate=0.0, low=0.0, high=0.0, confidence=0.95, method="normal")


def test_an_infinity_in_one_sample_is_ranked() -> None:
    assert mann_whitney([math.inf, 1.0], [0.0, 2.0]) == mann_whitney([9.0, 1.0], [0.0, 2.0])
    assert shift([math.inf, 1.0, 2.0], [0.0], 0.5).estimate == 2.0


# --- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("x", "y"), [([], [1.0]), ([1.0], []), ([], [])])
def test_empty_sample(x: list[float], y: list[float]) -> None:
    with pytest.raises(ValueError, match="empty"):
        mann_whitney(x, y)
    with pytest.raises(ValueError, match="empty"):
        shift(x, y, 0.95)


@pytest.mark.parametrize(("x", "y"), [([math.nan, 1.0], [2.0]), ([1.0], [2.0, math.nan])])
def test_nan(x: list[float], y: list[float]) -> None:
    with pytest.raises(ValueError, match="NaN"):
        mann_whitney(x, y)
    with pytest.raises(ValueError, match="NaN"):
        shift(x, y, 0.95)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, math.nan, math.inf])
def test_confidence_outside_the_open_unit_interval(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        shift([1.0, 2.0], [3.0], confidence)


def test_the_same_infinity_in_both_samples_has_no_shift() -> None:
    with pytest.raises(ValueError, match="infinity"):
        shift([math.inf, 1.0], [math.inf, 0.0], 0.95)
