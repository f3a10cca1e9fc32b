"""How surprising a window of live records is if nothing changed: the p-values of the drift checks.

The standard library and NumPy only: the monitoring sidecar imports this without SciPy. Every test
here is two-sample: the reference is itself a sample (the training data, ``m`` rows), so its own
noise counts beside the window's. A test that took the reference as exact would raise more false
alarms the larger the window grows against the reference (at 1,000 records against 240 training
rows, most of the noise is the reference's).

- ``homogeneity_test``: Pearson's chi-square test that live counts over bins (or categories) and
  the reference's shares come from one distribution; cells expected to hold fewer than
  ``MIN_EXPECTED`` values in the smaller sample are pooled, so the chi-square approximation holds
  (and tested exactly if even their pool is that rare).
- ``hypergeometric_sf``: Fisher's exact test, one-sided: the live window has at least this many
  missing values, given the reference's count.
- ``beta_binomial_sf``: the number of live values outside what the reference saw: outside the
  range of ``m`` reference values (``a = 2``, the two tails, exact for any continuous
  distribution), or in a category the reference never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

# Cells expected to hold fewer values than this (in the smaller sample) are pooled. Cochran's rule
# of 5 serves tests at 5 %; at the strict levels of a Bonferroni correction (0.05 % for 20 checks)
# the chi-square tail needs more: with 10, rejections stayed within 1.5 times the level in
# simulations of rare categories (tests/unit/core/test_significance.py).
MIN_EXPECTED = 10.0
_ITERATIONS = 10_000
_PRECISION = 1e-14
_TINY = 1e-300
# Tails of at most this many terms are summed in plain Python (faster than NumPy for so few).
SHORT_TAIL = 64


def chi_square_sf(statistic: float, degrees: int) -> float:
    """P(X >= ``statistic``) for X chi-square distributed with ``degrees`` degrees of freedom."""
    if degrees <= 0 or statistic <= 0:
        return 1.0
    return upper_gamma(degrees / 2.0, statistic / 2.0)


def upper_gamma(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) (a series below a + 1, a continued
    fraction above: each converges fast on its side)."""
    if x <= 0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, x))
    return min(1.0, _gamma_fraction(a, x))


def _gamma_prefactor(a: float, x: float) -> float:
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_series(a: float, x: float) -> float:
    """P(a, x) = 1 - Q(a, x) by its power series."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _PRECISION:
            break
    return total * _gamma_prefactor(a, x)


def _gamma_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (the modified Lentz method)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    fraction = d
    for step in range(1, _ITERATIONS):
        coefficient = -step * (step - a)
        b += 2.0
        d = coefficient * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + coefficient / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        fraction *= d * c
        if abs(d * c - 1.0) < _PRECISION:
            break
    return fraction * _gamma_prefactor(a, x)


def homogeneity_test(
    live_counts: Sequence[float], reference_shares: Sequence[float], reference_size: float
) -> float:
    """The p-value of live counts over cells (bins or categories) and the shares of a reference
    of ``reference_size`` values coming from one distribution.

    Pearson's chi-square test of the 2 x k table: with ``n`` live and ``m`` reference values,
    live shares ``a``, reference shares ``r`` and the pooled shares ``p``, the statistic is
    ``n m / (n + m) * sum((a - r)^2 / p)``; the noise of both sides shrinks it, so it tests the
    difference, not the reference's accident. Cells expected to hold fewer than ``MIN_EXPECTED``
    values (in the smaller sample) are pooled. If even their pool is that rare, the chi-square
    approximation would not hold for it: the common cells are tested among themselves, the rare
    pool by Fisher's exact test (does it hold more live values than the reference makes
    likely?), and the smaller p-value, doubled, is the answer (either part may show the drift).
    """
    size = float(sum(live_counts))
    total = float(sum(max(share, 0.0) for share in reference_shares))
    if size <= 0 or reference_size <= 0 or total <= 0:
        return 1.0
    # (pooled share, reference share, live count) per cell, rarest first. Rare means rare in both
    # samples together: deciding on the reference's share alone would pick the cells where the
    # reference fell short by chance, and the test of such a cell would reject too often.
    cells = sorted(
        (
            (count + share / total * reference_size) / (size + reference_size),
            share / total,
            count,
        )
        for share, count in zip((max(s, 0.0) for s in reference_shares), live_counts, strict=True)
    )
    smaller = min(size, reference_size)
    rare = 0
    while rare < len(cells) and cells[rare][0] * smaller < MIN_EXPECTED:
        rare += 1
    common = [(share, count) for _, share, count in cells[rare:]]
    rare_pooled = sum(pooled for pooled, _, _ in cells[:rare])
    rare_share = sum(share for _, share, _ in cells[:rare])
    rare_live = sum(count for _, _, count in cells[:rare])
    if rare == 0 or rare_pooled * smaller >= MIN_EXPECTED:
        if rare:
            common.append((rare_share, rare_live))
        return chi_square_sf(*_pearson(common, reference_size))
    p_common = chi_square_sf(*_pearson(common, reference_size))
    live_rare, reference_rare = round(rare_live), round(rare_share * reference_size)
    p_rare = hypergeometric_sf(
        live_rare, round(size + reference_size), live_rare + reference_rare, round(size)
    )
    return min(1.0, 2.0 * min(p_common, p_rare))


def _pearson(cells: Sequence[tuple[float, float]], reference_size: float) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom of (reference share, live count) cells, the
    shares taken among these cells only."""
    size = sum(count for _, count in cells)
    total = sum(share for share, _ in cells)
    if size <= 0 or total <= 0:
        return 0.0, 0
    effective = size * reference_size / (size + reference_size)
    statistic, kept = 0.0, 0
    for share, count in cells:
        reference, live = share / total, count / size
        pooled = (count + reference * reference_size) / (size + reference_size)
        if pooled > 0:
            statistic += (live - reference) ** 2 / pooled
            kept += 1
    return effective * statistic, kept - 1


def _log_choose(n: float, k: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _tail_sum(log_first: float, log_ratios: npt.NDArray[np.float64]) -> float:
    """exp(log_first) * (1 + r0 + r0 r1 + ...): a tail summed from its first term and the
    ratios of successive terms, in logarithms (no overflow, no underflow to a wrong zero)."""
    logs = np.concatenate(([0.0], np.cumsum(log_ratios)))
    peak = float(logs.max())
    return min(1.0, math.exp(log_first + peak) * float(np.exp(logs - peak).sum()))


def _short_tail(log_first: float, ratio: Callable[[int], float], first: int, last: int) -> float:
    """The same for a tail of a few terms (``first`` to ``last``), without NumPy's overhead;
    terms below 1e-17 of the sum are left out (they cannot change it)."""
    term, total = 1.0, 1.0
    for j in range(first, last):
        term *= ratio(j)
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, math.exp(log_first) * total)


def hypergeometric_sf(observed: int, population: int, successes: int, draws: int) -> float:
    """P(X >= ``observed``), X the successes among ``draws`` taken without replacement from a
    ``population`` holding ``successes`` (Fisher's exact test, one-sided)."""
    lowest = max(0, draws - (population - successes))
    highest = min(successes, draws)
    if observed <= lowest:
        return 1.0
    if observed > highest:
        return 0.0
    log_first = (
        _log_choose(successes, observed)
        + _log_choose(population - successes, draws - observed)
        - _log_choose(population, draws)
    )
    rest = population - successes - draws
    if highest - observed <= SHORT_TAIL or log_first < math.log(1e-300):
        return _short_tail(
            log_first,
            lambda j: (successes - j) * (draws - j) / ((j + 1) * (rest + j + 1)),
            observed,
            highest,
        )
    j = np.arange(observed, highest, dtype=np.float64)
    log_ratios = np.log(successes - j) + np.log(draws - j) - np.log(j + 1) - np.log(rest + j + 1)
    return _tail_sum(log_first, log_ratios)


def beta_binomial_sf(observed: int, trials: int, a: float, b: float) -> float:
    """P(X >= ``observed``) for X beta-binomial: ``trials`` draws, each a success with a chance
    that is itself Beta(``a``, ``b``) distributed."""
    if observed <= 0:
        return 1.0
    if observed > trials:
        return 0.0
    log_first = (
        _log_choose(trials, observed)
        + _log_beta(observed + a, trials - observed + b)
        - _log_beta(a, b)
    )
    if trials - observed <= SHORT_TAIL:
        return _short_tail(
            log_first,
            lambda j: (trials - j) * (j + a) / ((j + 1) * (trials - j - 1 + b)),
            observed,
            trials,
        )
    j = np.arange(observed, trials, dtype=np.float64)
    log_ratios = np.log(trials - j) + np.log(j + a) - np.log(j + 1) - np.log(trials - j - 1 + b)
    return _tail_sum(log_first, log_ratios)


def outside_range_sf(
    outside: int, trials: int, reference_size: int, bounded_sides: int = 2
) -> float:
    """P(at least ``outside`` of ``trials`` new values fall outside the range of
    ``reference_size`` values from the same continuous distribution): the chance mass beyond
    the reference's extremes is Beta(sides, m + 1 - sides), whatever the distribution (ties only
    make it smaller, so the test stays valid)."""
    if bounded_sides <= 0 or reference_size < bounded_sides:
        return 1.0
    return beta_binomial_sf(outside, trials, bounded_sides, reference_size + 1 - bounded_sides)


def unseen_category_sf(unseen: int, trials: int, reference_size: int, singletons: int) -> float:
    """P(at least ``unseen`` of ``trials`` new values are of a category absent from
    ``reference_size`` reference values, of which ``singletons`` categories were seen once): the
    chance mass of unseen categories is taken as Beta(singletons + 1, m - singletons), whose
    mean is the Good-Turing estimate with one added (categories seen once suggest more)."""
    if reference_size <= 0:
        return 1.0
    singletons = min(max(singletons, 0), reference_size - 1)
    return beta_binomial_sf(unseen, trials, singletons + 1.0, float(reference_size - singletons))
