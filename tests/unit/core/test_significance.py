"""The p-values of the drift checks (``mlops.core.significance``): against SciPy and exact
arithmetic, and by simulation: under "nothing changed" a test at level alpha rejects in at most
about alpha of the samples, counting the reference's own noise."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mlops.core import significance
from mlops.core.significance import (
    beta_binomial_sf,
    chi_square_sf,
    homogeneity_test,
    hypergeometric_sf,
    outside_range_sf,
    unseen_category_sf,
    upper_gamma,
)


@pytest.mark.parametrize("degrees", [1, 2, 3, 9, 30, 99])
@pytest.mark.parametrize("statistic", [0.05, 1.0, 4.0, 9.0, 20.0, 31.0, 60.0, 150.0, 400.0])
def test_the_chi_square_tail_is_scipys(degrees: int, statistic: float) -> None:
    expected = stats.chi2.sf(statistic, degrees)
    assert chi_square_sf(statistic, degrees) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_the_chi_square_tail_of_nothing_is_one() -> None:
    assert chi_square_sf(0.0, 5) == 1.0 and chi_square_sf(3.0, 0) == 1.0
    assert upper_gamma(2.0, 0.0) == 1.0


@pytest.mark.parametrize(
    ("observed", "population", "successes", "draws"),
    [
        (5, 1344, 8, 1000),
        (100, 1344, 102, 1000),
        (3, 50, 10, 20),
        (11, 100, 40, 30),
        (40, 1000, 300, 200),
        (150, 2000, 300, 600),
    ],
)
def test_fishers_one_sided_tail_is_scipys(
    observed: int, population: int, successes: int, draws: int
) -> None:
    expected = stats.hypergeom.sf(observed - 1, population, successes, draws)
    assert hypergeometric_sf(observed, population, successes, draws) == pytest.approx(
        expected, rel=1e-9
    )


def test_fishers_tail_at_and_beyond_the_support() -> None:
    assert hypergeometric_sf(0, 100, 10, 20) == 1.0
    assert hypergeometric_sf(11, 100, 10, 20) == 0.0  # more than there are
    assert hypergeometric_sf(10, 100, 10, 20) > 0.0


def exact_outside_tail(outside: int, trials: int, reference: int) -> float:
    """P(at least ``outside`` of ``trials`` new draws fall outside the range of ``reference``
    earlier ones), by counting orderings: the reference's ranks among all ``N`` draws are
    uniform, and ``x`` new ones outside means ``i`` below its first and ``x - i`` above its
    last, ``C(N - x - 2, m - 2)`` ways each."""
    total = trials + reference
    ways = sum(
        (x + 1) * math.comb(total - x - 2, reference - 2) for x in range(outside, trials + 1)
    )
    return float(Fraction(ways, math.comb(total, reference)))


@pytest.mark.parametrize(
    ("outside", "trials", "reference"),
    [
        (1, 200, 240),
        (3, 1000, 240),
        (10, 1000, 240),
        (30, 1000, 240),
        (500, 1000, 240),
        (2, 50, 20000),
    ],
)
def test_values_outside_the_reference_range_follow_the_exact_count_of_orderings(
    outside: int, trials: int, reference: int
) -> None:
    assert outside_range_sf(outside, trials, reference) == pytest.approx(
        exact_outside_tail(outside, trials, reference), rel=1e-9
    )


def test_the_beta_binomial_tail_is_scipys_where_scipy_is_accurate() -> None:
    for observed, trials, a, b in [(1, 1000, 2, 239), (10, 1000, 2, 239), (5, 200, 1, 1000)]:
        expected = stats.betabinom.sf(observed - 1, trials, a, b)
        assert beta_binomial_sf(observed, trials, a, b) == pytest.approx(expected, rel=1e-6)
    assert beta_binomial_sf(0, 10, 2, 3) == 1.0 and beta_binomial_sf(11, 10, 2, 3) == 0.0
    assert outside_range_sf(5, 100, 1) == 1.0  # one reference value has no range
    assert outside_range_sf(5, 100, 240, bounded_sides=0) == 1.0


def test_unseen_categories_are_likelier_after_many_categories_seen_once() -> None:
    closed = unseen_category_sf(5, 1000, 5000, singletons=0)
    long_tail = unseen_category_sf(5, 1000, 5000, singletons=400)
    assert closed < 1e-3 < 0.5 < long_tail


def test_long_and_short_tails_agree() -> None:
    """The plain-Python sum of a short tail and NumPy's of a long one are the same function."""
    short = significance.SHORT_TAIL
    for observed in (1, 5, 40):
        trials = observed + short + 10  # long enough for NumPy
        assert beta_binomial_sf(observed, trials, 2, 500) == pytest.approx(
            stats.betabinom.sf(observed - 1, trials, 2, 500), rel=1e-6
        )


def rejections(p_values: list[float], level: float) -> float:
    return float(np.mean(np.asarray(p_values) < level))


def test_the_homogeneity_test_holds_its_level_with_a_noisy_reference() -> None:
    """Live and reference from one distribution: a window five times the reference's size is
    rejected at about the level, not (as a test taking the reference as exact would) often."""
    rng = np.random.default_rng(0)
    shares = np.full(10, 0.1)
    two_sample, one_sample = [], []
    for _ in range(2000):
        reference = rng.multinomial(240, shares) / 240
        live = rng.multinomial(1200, shares)
        two_sample.append(homogeneity_test(live.tolist(), reference.tolist(), 240))
        one_sample.append(homogeneity_test(live.tolist(), reference.tolist(), 10**12))
    assert 0.002 <= rejections(two_sample, 0.01) <= 0.02
    assert rejections(one_sample, 0.01) > 0.2


def test_the_homogeneity_test_holds_its_level_with_rare_categories() -> None:
    """Categories too rare for the chi-square approximation are pooled, and tested exactly when
    even their pool is rare: at a strict level no more rejections than that."""
    rng = np.random.default_rng(1)
    shares = np.array([0.55, 0.4, 0.02, 0.01, 0.01, 0.005, 0.005])
    p_values = []
    for _ in range(20000):
        reference = rng.multinomial(20000, shares) / 20000
        p_values.append(
            homogeneity_test(rng.multinomial(200, shares).tolist(), reference.tolist(), 20000)
        )
    assert rejections(p_values, 0.01) <= 0.0125
    assert rejections(p_values, 0.001) <= 0.0018


def test_a_move_into_a_rare_category_is_seen() -> None:
    """A rare category growing from under 1 % to 20 %: its pool is too rare for the chi-square
    test, and the exact test on the pool sees it."""
    reference = [0.497, 0.497, 0.002, 0.002, 0.002]
    live = [80.0, 80.0, 40.0, 0.0, 0.0]
    assert homogeneity_test(live, reference, 20000) < 1e-6
    assert homogeneity_test([100.0, 98.0, 1.0, 1.0, 0.0], reference, 20000) > 0.01


def test_the_homogeneity_test_sees_a_shift_better_with_more_records() -> None:
    shifted = np.array([0.07, 0.08, 0.09, 0.1, 0.1, 0.1, 0.11, 0.11, 0.12, 0.12])
    reference = [0.1] * 10
    small = homogeneity_test((shifted * 200).tolist(), reference, 20000)
    large = homogeneity_test((shifted * 5000).tolist(), reference, 20000)
    assert large < small < 1.0
    assert homogeneity_test([], [], 100) == 1.0
    assert homogeneity_test([0.0, 0.0], [0.5, 0.5], 100) == 1.0


def test_values_outside_the_range_hold_the_level_for_any_continuous_distribution() -> None:
    rng = np.random.default_rng(2)
    p_values = []
    for _ in range(3000):
        reference = rng.lognormal(0.0, 1.0, 240)
        live = rng.lognormal(0.0, 1.0, 1000)
        outside = int(((live < reference.min()) | (live > reference.max())).sum())
        p_values.append(outside_range_sf(outside, 1000, 240))
    assert rejections(p_values, 0.01) <= 0.015
    assert rejections(p_values, 0.05) <= 0.06
