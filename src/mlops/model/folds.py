"""The rows the search tunes on and its folds, cut as the split stage cut the data.

Tuning never leaks across what the split keeps apart:

- ``split.group_column``: no group on both sides of a fold (``StratifiedGroupKFold`` for classes,
  ``GroupKFold`` for a regression); a tuning sample takes whole groups, in a seeded order;
- ``split.order_column``: time-ordered folds, each training on the rows before its test block;
  a tuning sample takes the most recent rows;
- neither: shuffled folds, stratified by class; a tuning sample keeps the share of every class,
  or of every quantile bin of a regression target.

A split the folds cannot respect (too few groups, order values, rows of a class, or a class
missing from a fold's training rows) stops the stage naming ``train.cv_folds`` or the split key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from mlops.core.artifacts import Task
from mlops.params import SplitParams
from mlops.stage import StageError

# A regression target is sampled for tuning in this many quantile bins, each keeping its share.
TARGET_BINS = 10


@dataclass(frozen=True)
class TuningRows:
    """The rows the search sees: features, target, and the split's group or order values."""

    features: pd.DataFrame
    target: pd.Series
    groups: pd.Series | None = None
    order: pd.Series | None = None

    def __len__(self) -> int:
        return len(self.target)

    def where(self, keep: np.ndarray) -> TuningRows:
        """The rows where ``keep`` is true, in table order."""
        return TuningRows(
            self.features[keep],
            self.target[keep],
            None if self.groups is None else self.groups[keep],
            None if self.order is None else self.order[keep],
        )


@dataclass(frozen=True)
class Folds:
    description: str  # e.g. "5 folds grouped by 'store'"
    splits: list[tuple[np.ndarray, np.ndarray]]  # (train, test) positions in the tuning rows


def tuning_rows(
    frame: pd.DataFrame,
    features: pd.DataFrame,
    labels: pd.Series,
    split: SplitParams,
    where: str,
) -> TuningRows:
    if split.group_column and split.order_column:
        raise StageError("set split.group_column or split.order_column, not both")
    groups = _split_column(frame, split.group_column, "split.group_column", where)
    order = _split_column(frame, split.order_column, "split.order_column", where)
    return TuningRows(features, labels, groups, order)


def _split_column(
    frame: pd.DataFrame, column: str | None, key: str, where: str
) -> pd.Series | None:
    if column is None:
        return None
    if column not in frame.columns:
        raise StageError(
            f"{key}: column '{column}' is not in {where}; it has {list(map(str, frame.columns))}"
        )
    missing = int(frame[column].isna().sum())
    if missing:
        raise StageError(f"{key}: column '{column}' is missing in {missing} row(s) of {where}")
    return frame[column]


def tuning_sample(rows: TuningRows, max_rows: int, seed: int, task: Task) -> TuningRows:
    """At most about ``max_rows`` rows, in table order, chosen as the folds will cut them: the
    most recent rows (time-ordered), whole groups (grouped), or the same share of every class
    or of every quantile bin of a regression target."""
    if max_rows < 1:
        raise StageError(f"train.max_tuning_rows: must be at least 1, got {max_rows}")
    if len(rows) <= max_rows:
        return rows
    if rows.order is not None:
        return rows.where(most_recent(rows.order, max_rows))
    if rows.groups is not None:
        return rows.where(whole_groups(rows.groups, max_rows, seed))
    strata = rows.target if task == "classification" else target_bins(rows.target)
    chosen = strata.groupby(strata).sample(frac=max_rows / len(rows), random_state=seed).index
    return rows.where(rows.target.index.isin(chosen))


def most_recent(order: pd.Series, max_rows: int) -> np.ndarray:
    """The rows at or after the ``max_rows``-th latest order value (rows sharing it all stay)."""
    cut = order.sort_values(kind="stable").iloc[len(order) - max_rows]
    return (order >= cut).to_numpy()


def whole_groups(groups: pd.Series, max_rows: int, seed: int) -> np.ndarray:
    """Whole groups, drawn in a seeded order until they hold about ``max_rows`` rows."""
    sizes = groups.value_counts(sort=False)
    names = sorted(sizes.index, key=str)
    drawn = [names[index] for index in np.random.default_rng(seed).permutation(len(names))]
    rows_before = np.cumsum([0, *sizes.loc[drawn].to_numpy()[:-1]])
    return groups.isin(
        [name for name, before in zip(drawn, rows_before, strict=True) if before < max_rows]
    ).to_numpy()


def target_bins(target: pd.Series) -> pd.Series:
    """Quantile bins of a regression target (ties split by position, so every bin is filled)."""
    bins = min(TARGET_BINS, len(target))
    return pd.Series(pd.qcut(target.rank(method="first"), bins, labels=False), index=target.index)


def make_folds(rows: TuningRows, task: Task, folds: int, seed: int) -> Folds:
    """The search's folds: time-ordered, grouped, or shuffled (stratified by class)."""
    check_fold_count(folds)
    if rows.order is not None:
        result = ordered_folds(rows.order, folds)
    elif rows.groups is not None:
        result = grouped_folds(rows, task, folds, seed)
    else:
        check_folds(rows.target, folds, task)
        if task == "classification":
            splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
            description = f"{folds} stratified folds"
        else:
            splitter = KFold(folds, shuffle=True, random_state=seed)
            description = f"{folds} shuffled folds"
        result = Folds(description, list(splitter.split(rows.features, rows.target)))
    if task == "classification":
        check_classes_in_training_folds(rows.target, result)
    return result


def check_fold_count(folds: int) -> None:
    if folds < 2:
        raise StageError(f"train.cv_folds: needs at least 2 folds, got {folds}")


def check_folds(labels: pd.Series, folds: int, task: Task = "classification") -> None:
    """Shuffled folds: at least ``folds`` rows, of every class when stratified."""
    check_fold_count(folds)
    if task == "regression":
        if len(labels) < folds:
            raise StageError(
                f"train.cv_folds: {folds} folds need at least {folds} rows; the tuning rows "
                f"have {len(labels)}"
            )
        return
    counts = labels.value_counts()
    if counts.min() < folds:
        raise StageError(
            f"train.cv_folds: {folds} stratified folds need at least {folds} rows of every class; "
            f"class {counts.idxmin()!r} has {counts.min()} in the tuning rows "
            "(lower cv_folds or raise max_tuning_rows)"
        )


def grouped_folds(rows: TuningRows, task: Task, folds: int, seed: int) -> Folds:
    """No group on both sides of a fold; stratified by class as far as whole groups allow."""
    assert rows.groups is not None
    groups = rows.groups.astype(str).to_numpy()
    count = len(np.unique(groups))
    if count < folds:
        raise StageError(
            f"train.cv_folds: {folds} grouped folds need at least {folds} groups of "
            f"split.group_column '{rows.groups.name}'; the tuning rows have {count} "
            "(lower cv_folds)"
        )
    if task == "classification":
        splitter: Any = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(rows.features, rows.target, groups))
    return Folds(f"{folds} folds grouped by '{rows.groups.name}'", splits)


def ordered_folds(order: pd.Series, folds: int) -> Folds:
    """Time-ordered folds: the rows, sorted by ``order``, are cut into ``folds + 1`` consecutive
    blocks of about equal rows (rows sharing an order value stay in one block); fold k trains
    on blocks 1..k and is tested on block k + 1, so no training row is later than a test row."""
    try:
        positions = np.argsort(order.to_numpy(), kind="stable")
    except TypeError as error:
        raise StageError(
            f"split.order_column: column '{order.name}' holds values that cannot be ordered "
            f"({error})"
        ) from None
    ordered = order.to_numpy()[positions]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first row of each value
    if len(starts) < folds + 1:
        raise StageError(
            f"train.cv_folds: {folds} time-ordered folds need at least {folds + 1} distinct "
            f"values of split.order_column '{order.name}'; the tuning rows have {len(starts)} "
            "(lower cv_folds)"
        )
    cuts = _block_cuts(starts, len(order), folds + 1)
    bounds = [*cuts, len(order)]
    splits = [(positions[: bounds[k]], positions[bounds[k] : bounds[k + 1]]) for k in range(folds)]
    return Folds(f"{folds} time-ordered folds by '{order.name}'", splits)


def _block_cuts(starts: np.ndarray, total: int, blocks: int) -> list[int]:
    """``blocks - 1`` row positions, each the start of an order value, closest to equal-row cuts
    and strictly increasing, leaving at least one value to every block."""
    cuts: list[int] = []
    lowest = 1
    for block in range(1, blocks):
        highest = len(starts) - (blocks - block)
        wanted = total * block / blocks
        index = min(range(lowest, highest + 1), key=lambda i: abs(starts[i] - wanted))
        cuts.append(int(starts[index]))
        lowest = index + 1
    return cuts


def check_classes_in_training_folds(labels: pd.Series, folds: Folds) -> None:
    """Every class in the training part of every fold: a model that never saw a class cannot
    score it (its probabilities lack the column), which time-ordered or grouped folds can cause."""
    classes = set(labels)
    for number, (train, _) in enumerate(folds.splits, start=1):
        lacking = sorted(classes - set(labels.iloc[train]))
        if lacking:
            raise StageError(
                f"train.cv_folds: fold {number} of {folds.description} trains on rows without "
                f"class(es) {lacking}; lower cv_folds (or raise max_tuning_rows) so that every "
                "training fold holds every class"
            )
