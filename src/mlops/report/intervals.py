"""How sure a metric change is: a seeded bootstrap of the evaluated rows.

On 52 validation rows one row more classified right moves accuracy by 0.019: a change that size
is noise unless the rows say otherwise. The report resamples the validation rows (with
replacement, ``RESAMPLES`` times, seeded) and recomputes each metric of this run and of the base
on every resample; the 2.5th and 97.5th percentiles of the change are its 95% interval. A change
whose interval holds zero is shown as no change.

- Paired: when both revisions evaluated the same rows (the same row keys in the same order in
  their ``predictions.csv``), one resample picks the same rows for both, so what the rows have in
  common cancels out and only the models' difference is left.
- Unpaired: different rows (new data, another split): each side is resampled on its own, and the
  interval is that of the difference of two independent estimates, wider.
- A large split: ``predictions.csv`` holds a seeded sample of at most 10,000 rows (the evaluate
  stage), so the work is bounded whatever the data's size. The metric's spread over resamples of
  ``m`` rows is scaled by ``sqrt(m / n)`` to the spread of the ``n``-row metric the table shows
  (an estimate's spread shrinks as one over the square root of its rows).

The metrics are recomputed with per-row weights (how often a resample drew each row), all
resamples at once with NumPy, as the evaluate stage defines them (a test holds the two to the
same values): accuracy, balanced accuracy, macro F1, per class precision, recall and F1, log loss,
ROC AUC (one class against the rest), and of a binary classifier the positive class's ROC AUC,
PR AUC, F1, precision, recall and Brier score; MAE, RMSE, R² and MAPE of a regressor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
CHUNK = 100  # resamples drawn at once: memory stays at CHUNK x rows weights
# A metric undefined on more resamples than this share (e.g. ROC AUC when a resample holds no
# row of a rare class) gets no interval: too few rows to say.
MAX_UNDEFINED = 0.05
# ROC AUC and average precision group the rows by probability into at most this many groups.
SCORE_GROUPS = 2000
PROBABILITY_EPSILON = float(np.finfo(np.float64).eps)  # log loss clips as scikit-learn does

Weights = np.ndarray  # rows x resamples: how many times each resample drew each row
Values = dict[str, np.ndarray]  # metric name -> one value per resample


@dataclass(frozen=True)
class RowPredictions:
    """One revision's ``predictions.csv``: per evaluated row (or a sample of them) its key, the
    actual value and the prediction, and a classifier's class probabilities."""

    keys: np.ndarray
    actual: np.ndarray  # class labels (str) or numbers (float64)
    predicted: np.ndarray
    probabilities: np.ndarray | None  # rows x classes, in ``classes`` order
    classes: tuple[str, ...]
    positive_class: str | None  # a binary classifier's
    total_rows: int  # rows of the evaluated split: more than ``len(keys)`` for a sample

    @property
    def rows(self) -> int:
        return len(self.keys)

    @property
    def regression(self) -> bool:
        return self.probabilities is None

    def same_rows(self, other: RowPredictions) -> bool:
        return (
            self.total_rows == other.total_rows
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.actual, other.actual)
        )


@dataclass(frozen=True)
class Intervals:
    """The 95% interval of each metric's change (this run minus the base), and how it was made."""

    bounds: dict[str, tuple[float, float]]
    paired: bool
    rows: int  # rows resampled (this run's)
    total_rows: int  # rows of this run's evaluated split
    resamples: int = RESAMPLES
    seed: int = SEED
    level: float = LEVEL


def change_intervals(
    current: RowPredictions,
    base: RowPredictions,
    changes: dict[str, float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Intervals:
    """The interval of every change in ``changes`` (metric name -> this run minus the base, as
    the metrics files give them) that both sides' predictions can recompute.

    BLAS is held to one thread: the products are small and many, and a BLAS thread per core
    spinning beside other busy processes made them ten times slower on a shared CI runner."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _change_intervals(current, base, changes, resamples, seed)


def _change_intervals(
    current: RowPredictions,
    base: RowPredictions,
    changes: dict[str, float],
    resamples: int,
    seed: int,
) -> Intervals:
    paired = current.same_rows(base)
    rng = np.random.default_rng(seed)
    sides = [Resampled(current), Resampled(base)]
    estimates = [side.values(np.ones((side.rows, 1))) for side in sides]
    names = [name for name in changes if all(name in estimate for estimate in estimates)]
    scales = [np.sqrt(side.rows / side.total_rows) for side in sides]
    deviations: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, resamples, CHUNK):
        count = min(CHUNK, resamples - start)
        weights = draw_weights(rng, count, current.rows)
        now = sides[0].values(weights)
        before = sides[1].values(weights if paired else draw_weights(rng, count, base.rows))
        for name in names:
            deviations[name].append(
                scales[0] * (now[name] - estimates[0][name])
                - scales[1] * (before[name] - estimates[1][name])
            )
    bounds = {}
    for name in names:
        spread = _percentiles(np.concatenate(deviations[name]))
        if spread is not None:
            bounds[name] = (changes[name] + spread[0], changes[name] + spread[1])
    return Intervals(bounds, paired, current.rows, current.total_rows, resamples, seed)


def draw_weights(rng: np.random.Generator, resamples: int, rows: int) -> Weights:
    """Each resample draws ``rows`` rows with replacement; a row's weight is how often it was
    drawn (rows x resamples)."""
    drawn = rng.integers(0, rows, size=(resamples, rows)) + rows * np.arange(resamples)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=resamples * rows)
    return np.ascontiguousarray(counts.reshape(resamples, rows).T, dtype=np.float64)


def _percentiles(deviations: np.ndarray) -> tuple[float, float] | None:
    defined = deviations[~np.isnan(deviations)]
    if len(defined) < (1 - MAX_UNDEFINED) * len(deviations) or not len(defined):
        return None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def metric_values(predictions: RowPredictions, weights: Weights) -> Values:
    """Every metric the bootstrap recomputes, one value per column of ``weights`` (NaN where a
    resample leaves it undefined); unit weights give the evaluate stage's values."""
    return Resampled(predictions).values(weights)


class ScoreCurve:
    """The rows grouped by one class's probability, ascending, grouped once for all resamples:
    ROC AUC and average precision then need only the weight of the class's rows and of the
    others per group. Ties stay in one group, as the curves keep them. Past ``SCORE_GROUPS``
    distinct probabilities, neighbouring ones share a group of about equal rows: a pair of rows
    in one group counts half, which moves a resample's AUC and the estimate alike, by at most
    half the share of such pairs (under 1/SCORE_GROUPS), and not the interval around the exact
    change the metrics files give."""

    def __init__(self, scores: np.ndarray, truth: np.ndarray) -> None:
        from scipy.sparse import csr_matrix

        groups = score_groups(scores)
        shape = (int(groups.max(initial=-1)) + 1, len(scores))

        def indicator(rows: np.ndarray) -> csr_matrix:  # group x row, 1 where the row is in it
            return csr_matrix((np.ones(len(rows)), (groups[rows], rows)), shape=shape)

        self.positive = indicator(np.flatnonzero(truth))
        self.negative = indicator(np.flatnonzero(~truth))

    def sums(self, weights: Weights) -> tuple[np.ndarray, np.ndarray]:
        """Per group (ascending) and resample: the weight of the class's rows and of the others."""
        return np.asarray(self.positive @ weights), np.asarray(self.negative @ weights)

    def roc_auc(self, weights: Weights) -> np.ndarray:
        """The chance that a row of the class outscores another row (ties count half)."""
        positive, negative = self.sums(weights)
        pairs = positive.sum(axis=0) * negative.sum(axis=0)
        below = np.add.accumulate(negative, axis=0) - 0.5 * negative
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, np.einsum("ij,ij->j", positive, below) / pairs, np.nan)

    def average_precision(self, weights: Weights) -> np.ndarray:
        """The precision at each threshold (highest first), weighted by the recall it adds."""
        positive, negative = (sums[::-1] for sums in self.sums(weights))
        hits = np.add.accumulate(positive, axis=0)
        chosen = hits + np.add.accumulate(negative, axis=0)
        total = positive.sum(axis=0)
        both = (total > 0) & (negative.sum(axis=0) > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = hits / np.where(chosen > 0, chosen, 1.0)
            average = np.einsum("ij,ij->j", positive, precision) / total
        return np.where(both, average, np.nan)


def score_groups(scores: np.ndarray) -> np.ndarray:
    """Each row's group, 0.. in ascending score: one per distinct score, or past
    ``SCORE_GROUPS`` of them, runs of neighbouring scores holding about equal rows."""
    distinct, inverse = np.unique(scores, return_inverse=True)
    if len(distinct) <= SCORE_GROUPS:
        return inverse
    rows_below = np.cumsum(np.bincount(inverse)) - np.bincount(inverse)
    group_of_distinct = rows_below * SCORE_GROUPS // len(scores)
    return np.unique(group_of_distinct, return_inverse=True)[1][inverse]


class Resampled:
    """One revision's predictions, prepared once (classes as one-hot rows, the sort order of each
    class's probability) for computing its metrics on many resamples at once."""

    def __init__(self, predictions: RowPredictions) -> None:
        self.predictions = predictions
        self.rows, self.total_rows = predictions.rows, predictions.total_rows
        if predictions.regression:
            return
        assert predictions.probabilities is not None
        classes = predictions.classes
        actual = _class_indices(predictions.actual, classes)
        predicted = _class_indices(predictions.predicted, classes)
        self.actual = _one_hot(actual, len(classes))  # classes x rows
        self.predicted = _one_hot(predicted, len(classes))
        self.hits = self.actual * (actual == predicted)
        true_probability = predictions.probabilities[np.arange(self.rows), actual]
        clipped = np.clip(true_probability, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
        self.row_loss = -np.log(clipped)
        self.curves = [
            ScoreCurve(predictions.probabilities[:, index], actual == index)
            for index in range(len(classes))
        ]

    def values(self, weights: Weights) -> Values:
        if self.predictions.regression:
            return regression_values(self.predictions, weights)
        return self.classification_values(weights)

    def classification_values(self, weights: Weights) -> Values:
        support, chosen, hits = self.actual @ weights, self.predicted @ weights, self.hits @ weights
        total = weights.sum(axis=0)
        precision, recall = _ratio(hits, chosen), _ratio(hits, support)
        f1 = _ratio(2 * hits, chosen + support)
        aucs = np.stack([curve.roc_auc(weights) for curve in self.curves])
        values: Values = {
            "accuracy": hits.sum(axis=0) / total,
            "balanced_accuracy": _mean_where(recall, support > 0),
            "macro_f1": _mean_where(f1, (support + chosen) > 0),
            "log_loss": (self.row_loss @ weights) / total,
            "roc_auc_ovr": np.where(
                (~np.isnan(aucs)).sum(axis=0) >= 2,
                _mean_where(np.nan_to_num(aucs), ~np.isnan(aucs)),
                np.nan,
            ),
        }
        for index, name in enumerate(self.predictions.classes):
            for metric, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
                values[f"per_class.{name}.{metric}"] = per_class[index]
        positive_class = self.predictions.positive_class
        if positive_class is not None:
            index = self.predictions.classes.index(positive_class)
            values |= {
                "roc_auc": aucs[index],
                "pr_auc": self.curves[index].average_precision(weights),
                "positive_f1": f1[index],
                "positive_precision": precision[index],
                "positive_recall": recall[index],
                "brier": self.brier(index, weights) / total,
            }
        return values

    def brier(self, index: int, weights: Weights) -> np.ndarray:
        assert self.predictions.probabilities is not None
        errors = (self.predictions.probabilities[:, index] - self.actual[index]) ** 2
        return errors @ weights


def regression_values(predictions: RowPredictions, weights: Weights) -> Values:
    actual = predictions.actual.astype(np.float64)
    errors = actual - predictions.predicted.astype(np.float64)
    total = weights.sum(axis=0)
    squared = errors**2 @ weights
    mean_actual = (actual @ weights) / total
    spread = actual**2 @ weights - total * mean_actual**2
    nonzero = actual != 0
    relative = np.where(nonzero, np.abs(errors) / np.where(nonzero, np.abs(actual), 1.0), 0.0)
    nonzero_weight = nonzero.astype(np.float64) @ weights
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(spread > 0, 1 - squared / spread, np.where(squared == 0, 1.0, 0.0))
        return {
            "mae": (np.abs(errors) @ weights) / total,
            "rmse": np.sqrt(squared / total),
            "r2": np.where(total >= 2, r2, np.nan),
            "mape": np.where(nonzero_weight > 0, (relative @ weights) / nonzero_weight, np.nan),
        }


def _class_indices(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    position = {name: index for index, name in enumerate(classes)}
    return np.fromiter((position[label] for label in labels), dtype=np.int64, count=len(labels))


def _one_hot(indices: np.ndarray, count: int) -> np.ndarray:
    """classes x rows, 1.0 where the row is of the class: per-class sums as one matrix product."""
    return (np.arange(count)[:, None] == indices[None, :]).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (zero_division=0)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _mean_where(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Per resample (column), the mean over the classes (rows) ``counted`` holds; NaN if none."""
    count = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (values * counted).sum(axis=0) / count, np.nan)
