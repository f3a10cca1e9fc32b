"""Binning and the population stability index, shared by the reference profile and the sidecar.

numpy only: the monitoring sidecar imports this without the training stack. The reference profile
stores, per numeric column, interior bin edges at the reference quantiles and the reference share
of each bin; the sidecar bins live values with the same edges and compares the shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

BIN_COUNT = 10
# The reference profile pools the categories past its most frequent ones under this name.
OTHER_CATEGORY = "__other__"
# A share of zero would make PSI infinite; an empty bin counts as this small share instead.
EPSILON = 1e-4


def quantile_edges(values: npt.NDArray[np.float64], bins: int = BIN_COUNT) -> list[float]:
    """Interior edges at the reference quantiles; duplicates removed, so tied data has fewer."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    return distinct_edges(np.quantile(finite, edge_levels(bins)))


def edge_levels(bins: int = BIN_COUNT) -> list[float]:
    """The quantile levels of the interior edges: 0.1, 0.2, ..., 0.9 for ten bins."""
    return [float(level) for level in np.linspace(0, 1, bins + 1)[1:-1]]


def distinct_edges(cut_points: npt.ArrayLike) -> list[float]:
    """The edges at ``cut_points`` (quantiles at ``edge_levels``), sorted, without duplicates."""
    return [float(edge) for edge in np.unique(np.asarray(cut_points, dtype=np.float64))]


def bin_shares(values: npt.NDArray[np.float64], edges: Sequence[float]) -> list[float]:
    """Share of the finite ``values`` in each of the ``len(edges) + 1`` bins (right-closed)."""
    finite = values[np.isfinite(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left"),
        minlength=len(edges) + 1,
    )
    total = counts.sum()
    return [float(c) for c in (counts / total if total else counts.astype(np.float64))]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two share vectors of the same bins."""
    expected_shares = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    actual_shares = np.clip(np.asarray(actual, dtype=np.float64), EPSILON, None)
    return float(
        np.sum((actual_shares - expected_shares) * np.log(actual_shares / expected_shares))
    )


def category_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI over the union of categories; a category unseen in the reference counts as drift."""
    categories = sorted(set(expected) | set(actual))
    return psi([expected.get(c, 0.0) for c in categories], [actual.get(c, 0.0) for c in categories])
