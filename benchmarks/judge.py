"""The canary judge's cost: one judgement (Mann-Whitney U p-value, Hodges-Lehmann shift and its
confidence interval) by ``serin.stats``, against SciPy's ``mannwhitneyu`` plus NumPy's median of
the pairwise differences (the baseline: what the judge would cost with SciPy, without its interval).

Each size is a canary and a primary of that many samples (a metric's interval gives 20 of each),
drawn as the traffic simulator draws latencies, with and without ties.

Usage: ``python -m benchmarks.judge [--repeat 200]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy
from scipy.stats import mannwhitneyu

from localcluster.simulator.traffic import draw_latency_ms
from serin.judge import judge
from serin.model import Compare
from serin.stats import mann_whitney

SIZES = (20, 50, 200)


def _median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _row(size: int, tied: bool, rng: random.Random, repeat: int) -> tuple[float, float, float]:
    def draw(mean: float) -> float:
        latency = draw_latency_ms(mean, rng)
        return float(round(latency)) if tied else latency

    canary = [draw(110.0) for _ in range(size)]
    primary = [draw(100.0) for _ in range(size)]
    ours = _median_ms(lambda: judge("latency", Compare(), canary, primary), repeat)
    test_only = _median_ms(lambda: mann_whitney(canary, primary), repeat)
    baseline = _median_ms(
        lambda: (
            mannwhitneyu(canary, primary, alternative="two-sided"),
            numpy.median(numpy.subtract.outer(canary, primary)),
        ),
        repeat,
    )
    return ours, test_only, baseline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="judgements per case (at most 10,000)")
    args = parser.parse_args()
    repeat = max(10, min(args.repeat, 10_000))
    rng = random.Random(7)
    print(f"\none judgement, median of {repeat} (ms)")
    print(f"{'samples each':>12} {'ties':>5} {'serin.judge':>12} {'serin.stats U':>14} {'scipy U + numpy HL':>19}")
    for size in SIZES:
        for tied in (False, True):
            ours, test_only, baseline = _row(size, tied, rng, repeat)
            print(f"{size:>12} {'yes' if tied else 'no':>5} {ours:>12.3f} {test_only:>14.3f} {baseline:>19.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
