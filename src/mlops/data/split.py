"""Split stage: train, validation and test sets from the labelled table.

One strategy applies, chosen by ``split`` params:

- ``ordered`` (``order_column`` set): oldest rows train, newest test; rows sharing an order value
  always land in the same split, so ties never straddle a boundary;
- ``grouped`` (``group_column`` set): whole groups are shuffled with ``seed`` and cut by row count,
  so no group is in two splits;
- ``stratified`` (``stratify: true``, the default): every class is shuffled and cut separately, so
  each split keeps the class proportions and holds at least one row of every class; a regression
  target (float64, as the label stage stores it) is cut into quantile bins of equal row counts
  (at most ``MAX_TARGET_BINS``, at least ``ROWS_PER_BIN`` rows each) that are stratified like
  classes, so every split spans the target's range; a table too small for two bins is split at
  random, and the summary says so;
- ``random``: one seeded shuffle of all rows.

Grouped and ordered splits do not stratify; the summary shows the class counts (or target
statistics) they give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from mlops.data.rules.labels import class_counts
from mlops.params import DataParams, SplitParams, load_section
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json
from mlops.summaries import SplitSummary
from mlops.tables import read_table, require_columns, write_table
from mlops.task import target_statistics, task_of

SPLITS: tuple[Literal["train", "validation", "test"], ...] = ("train", "validation", "test")
RATIO_TOLERANCE = 1e-6
MAX_TARGET_BINS = 10  # deciles of a regression target
ROWS_PER_BIN = 20  # so each bin gives validation and test a few rows at 0.15 each


def split_table(
    frame: pd.DataFrame, params: SplitParams, *, target: str
) -> tuple[dict[str, pd.DataFrame], SplitSummary]:
    """The three sets (all columns kept) and a summary of their rows and class counts (or, for a
    regression target, its statistics)."""
    ratios = split_ratios(params)
    _check_labelled(frame, target)
    frame = frame.reset_index(drop=True)
    strategy, assignment, details = assign_splits(frame, params, target, ratios)
    order = _row_order(frame, params.order_column)
    sets: dict[str, pd.DataFrame] = {
        name: frame.loc[order[assignment[order] == name]].reset_index(drop=True) for name in SPLITS
    }
    return sets, cast(SplitSummary, {**split_summary(sets, target, strategy, params), **details})


def _check_labelled(frame: pd.DataFrame, target: str) -> None:
    require_columns(frame, [target], "split input (data.target)")
    unlabelled = int(frame[target].isna().sum())
    if unlabelled:
        raise StageError(
            f"{unlabelled} row(s) have no label in '{target}'; the label stage writes such rows "
            "to its unlabelled table, not to the table that is split"
        )
    if len(frame) < len(SPLITS):
        raise StageError(f"the table has {len(frame)} rows; a split needs at least {len(SPLITS)}")


def split_ratios(params: SplitParams) -> tuple[float, float, float]:
    ratios = (params.train, params.validation, params.test)
    if any(not ratio > 0 for ratio in ratios):
        raise StageError(
            f"split.train, split.validation, split.test must all be positive, got {list(ratios)}"
        )
    if abs(sum(ratios) - 1) > RATIO_TOLERANCE:
        raise StageError(
            f"split.train + split.validation + split.test must sum to 1, got {sum(ratios):g} "
            f"({list(ratios)})"
        )
    return params.train, params.validation, params.test


def assign_splits(
    frame: pd.DataFrame, params: SplitParams, target: str, ratios: Sequence[float]
) -> tuple[str, np.ndarray, dict[str, Any]]:
    """(strategy, the split name of every row, details for the summary)."""
    if params.group_column and params.order_column:
        raise StageError("set split.group_column or split.order_column, not both")
    rng = np.random.default_rng(params.seed)
    if params.order_column:
        values = _complete_column(frame, params.order_column, "split.order_column")
        return "ordered", _assign_blocks(values, sorted(values.unique()), ratios), {}
    if params.group_column:
        values = _complete_column(frame, params.group_column, "split.group_column")
        groups = sorted(values.unique(), key=str)
        shuffled = [groups[index] for index in rng.permutation(len(groups))]
        return "grouped", _assign_blocks(values, shuffled, ratios), {}
    if params.stratify and task_of(frame[target]) == "classification":
        return "stratified", _assign_stratified(frame[target], ratios, rng), {}
    details: dict[str, Any] = {}
    if params.stratify:
        bins = target_bins(frame[target])
        if bins is not None:
            details["target_bins"] = int(bins.max()) + 1
            return "stratified", _assign_stratified(bins, ratios, rng), details
        details["note"] = (
            f"split.stratify: the regression target '{target}' has {len(frame)} rows, too few "
            f"for two quantile bins of {ROWS_PER_BIN} rows; split at random instead"
        )
    assignment = np.empty(len(frame), dtype=object)
    _assign_shuffled(assignment, np.arange(len(frame)), allocate(len(frame), ratios), rng)
    return "random", assignment, details


def target_bins(target: pd.Series) -> pd.Series | None:
    """The quantile bin (0, 1, ...) of every row of a regression target: bins of equal row counts
    (ties cut in row order), ``ROWS_PER_BIN`` rows or more each, at most ``MAX_TARGET_BINS``;
    None when the table is too small for two."""
    count = min(MAX_TARGET_BINS, len(target) // ROWS_PER_BIN)
    if count < 2:
        return None
    rank = target.rank(method="first").to_numpy(dtype=np.int64) - 1
    return pd.Series(rank * count // len(target), index=target.index, name=f"{target.name} bin")


def allocate(total: int, ratios: Sequence[float]) -> list[int]:
    """Whole counts, at least one per ratio, summing to ``total``, close to the ratios."""
    return round_shares([ratio * total for ratio in ratios], total)


def round_shares(shares: Sequence[float], total: int) -> list[int]:
    """Whole counts of at least one each, summing to ``total``, close to the exact ``shares``.

    Each count starts at its share rounded down (at least one); then items go to, or are taken
    from, the count furthest from its share, the earliest first on ties.
    """
    counts = [max(1, math.floor(share)) for share in shares]
    while sum(counts) < total:
        counts[max(range(len(counts)), key=lambda i: shares[i] - counts[i])] += 1
    while sum(counts) > total:
        reducible = [i for i in range(len(counts)) if counts[i] > 1]
        counts[max(reducible, key=lambda i: counts[i] - shares[i])] -= 1
    return counts


def _assign_stratified(
    labels: pd.Series, ratios: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Cut each class by the ratios; rounding carries over from class to class, so the split
    sizes match the ratios as closely as an unstratified split would."""
    sizes = labels.value_counts()
    small = sizes[sizes < len(SPLITS)]
    if not small.empty:
        classes = ", ".join(f"'{name}' ({count} rows)" for name, count in small.items())
        raise StageError(
            f"class {classes} of '{labels.name}' is too small to stratify: every class needs at "
            f"least {len(SPLITS)} rows, one per split; label more rows, merge the class, or set "
            "split.stratify: false"
        )
    assignment = np.empty(len(labels), dtype=object)
    assigned, seen = np.zeros(len(SPLITS)), 0
    for name in sorted(sizes.index, key=str):
        seen += sizes[name]
        counts = round_shares(np.asarray(ratios) * seen - assigned, int(sizes[name]))
        assigned += counts
        rows = np.flatnonzero((labels == name).to_numpy())
        _assign_shuffled(assignment, rows, counts, rng)
    return assignment


def _assign_shuffled(
    assignment: np.ndarray, rows: np.ndarray, counts: Sequence[int], rng: np.random.Generator
) -> None:
    """Give a seeded shuffle of ``rows`` to the splits, ``counts`` rows each."""
    shuffled = rng.permutation(rows)
    for name, part in zip(SPLITS, np.split(shuffled, np.cumsum(counts)[:-1]), strict=True):
        assignment[part] = name


def _assign_blocks(values: pd.Series, blocks: list[Any], ratios: Sequence[float]) -> np.ndarray:
    """Give whole blocks (groups, or rows sharing an order value) to splits, in ``blocks`` order.

    The two cuts fall at the block boundaries closest to the ratios' row counts, keeping at least
    one block in every split.
    """
    if len(blocks) < len(SPLITS):
        raise StageError(
            f"'{values.name}' has {len(blocks)} distinct value(s); it needs at least "
            f"{len(SPLITS)} to fill train, validation and test"
        )
    position = values.map({block: index for index, block in enumerate(blocks)}).to_numpy(int)
    rows_before = np.concatenate([[0], np.cumsum(np.bincount(position, minlength=len(blocks)))])
    total = rows_before[-1]
    first = _closest_cut(rows_before, ratios[0] * total, 1, len(blocks) - 2)
    second = _closest_cut(rows_before, (ratios[0] + ratios[1]) * total, first + 1, len(blocks) - 1)
    return np.array(SPLITS, dtype=object)[(position >= first).astype(int) + (position >= second)]


def _closest_cut(rows_before: np.ndarray, wanted: float, lowest: int, highest: int) -> int:
    candidates = range(lowest, highest + 1)
    return min(candidates, key=lambda cut: abs(rows_before[cut] - wanted))


def _complete_column(frame: pd.DataFrame, column: str, key: str) -> pd.Series:
    require_columns(frame, [column], key)
    missing = int(frame[column].isna().sum())
    if missing:
        raise StageError(f"{key}: column '{column}' is missing in {missing} row(s)")
    return frame[column]


def _row_order(frame: pd.DataFrame, order_column: str | None) -> np.ndarray:
    """Row positions in output order: by the order column (stable), else as read."""
    if order_column:
        return frame[order_column].argsort(kind="stable").to_numpy()
    return np.arange(len(frame))


def split_summary(
    sets: dict[str, pd.DataFrame], target: str, strategy: str, params: SplitParams
) -> dict[str, Any]:
    total = sum(len(rows) for rows in sets.values())
    task = task_of(sets["train"][target])
    summary: dict[str, Any] = {"strategy": strategy, "seed": params.seed, "rows": total}
    for name, rows in sets.items():
        summary[name] = {"rows": len(rows), "fraction": round(len(rows) / total, 4)}
        if task == "regression":
            summary[name]["target"] = target_statistics(rows[target])
        else:
            summary[name]["classes"] = class_counts(rows[target])
        if strategy == "grouped" and params.group_column:
            summary[name]["groups"] = int(rows[params.group_column].nunique())
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Split the labelled table into train, validation and test sets.")
    arguments.add_argument("--input", type=Path, required=True, help="labelled Parquet table")
    arguments.add_argument("--out", type=Path, required=True, help="directory for the three sets")
    arguments.add_argument("--summary", type=Path, required=True, help="JSON summary")
    args = arguments.parse_args(argv)
    target = load_section(args.params, "data", DataParams).target
    params = load_section(args.params, "split", SplitParams)
    frame = read_table(args.input)
    with step("split", len(frame)):
        sets, summary = split_table(frame, params, target=target)
    for name, rows in sets.items():
        write_table(args.out / f"{name}.parquet", rows)
    write_json(args.summary, summary)
    sizes = ", ".join(f"{name} {summary[name]['rows']}" for name in SPLITS)
    print(f"split ({summary['strategy']}, seed {params.seed}): {sizes} rows")
    if "note" in summary:
        print(f"note: {summary['note']}")


if __name__ == "__main__":
    raise SystemExit(run(main))
