"""The JSON documents the data stages write and other parts read, as types.

``validation.json`` (validate), ``reports/harvest/summary.json``, ``reports/clean/summary.json``,
``reports/label/summary.json`` and ``reports/split/summary.json`` are read by the PR report
(``mlops.report``) and by people; the stages build them as these ``TypedDict`` s, so a key
renamed on one side is a type error on the other. At run time they are plain dicts: the JSON is
what it was. They live in this shared layer, not in ``mlops.data``, because the report may not
import a stage (``docs/architecture.md``). The profile's shape (``profile.json``) is typed where
it is computed, in ``mlops.profile``.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# --- validate: reports/validate/validation.json ----------------------------------------------


class Failure(TypedDict):
    """One (column, check) that failed, however many rows failed it."""

    column: str
    check: str  # pandera's name of the check, e.g. ``in_range(0, 10)``, ``column_in_schema``
    count: int  # failing rows (1 for a check on the whole column)
    failure_cases: list[Any]  # the first distinct failing values (None for a missing value)
    rows: list[int]  # the first failing rows, 0-based positions in the table
    hint: str  # what the check means, in words


class TaskPreview(TypedDict):
    """The task the label stage will decide (``mlops.task.task_preview``); None: not yet."""

    task: str | None
    reason: str


class Harvested(TypedDict):
    """The rows of the raw table that the harvest added (the last ones), and their share."""

    rows: int
    share: float


class ValidationReport(TypedDict):
    passed: bool
    rows: int
    failures: list[Failure]
    normalised: dict[str, int]  # values accepted because clean normalises them, per column
    task: NotRequired[TaskPreview]  # added by the stage, after the checks
    harvested: NotRequired[Harvested]  # added by the stage when the harvest added rows


# --- harvest: reports/harvest/summary.json ------------------------------------------------------


class HarvestSummary(TypedDict):
    """What the harvest found in the shipped store and what it kept."""

    enabled: bool
    source: str
    files: dict[str, int]  # Parquet files read: predictions, labels
    predictions: int  # prediction records read that have a label (the others are not kept)
    shadow_predictions: int  # of those, a challenger's shadow copies: never rows
    labels: int  # labels read
    duplicate_predictions: int  # the same (request_id, index) shipped twice: the first kept
    duplicate_labels: int  # a prediction labelled twice: the latest label kept
    labels_without_prediction: int  # its prediction is not in the store (yet)
    labelled: int  # predictions joined with their label
    not_carried: list[str]  # source columns the predictions do not carry: null in every row
    refused: int  # labelled rows the schema refuses (failures say why): left out
    failures: list[Failure]
    rows: int  # rows added to the training data
    model_versions: dict[str, int]  # rows per model version that scored them


# --- clean: reports/clean/summary.json --------------------------------------------------------

# What a clean step did to a column's values; ``dropped``: rows dropped because of the column.
Change = Literal["normalised", "coerced", "imputed", "clipped", "dropped"]


class ColumnChanges(TypedDict):
    normalised: int
    coerced: int
    imputed: int
    clipped: int
    dropped: int


class CleanSummary(TypedDict):
    rows_in: int
    rows_out: int
    duplicates_dropped: int
    rows_dropped_outliers: int
    rows_dropped_missing: int
    columns: dict[str, ColumnChanges]


# --- label: reports/label/summary.json --------------------------------------------------------


class RuleCoverage(TypedDict):
    when: str
    then: str
    matched: int
    assigned: int


class LabelSummary(TypedDict):
    """``classes`` for a classification, ``target_statistics`` for a regression; then the
    counts of the method (``column``: mapped; ``annotations``: annotations ... unmatched;
    ``rules``: rules ... conflicts)."""

    method: str
    rows: int
    labelled: int
    unlabelled: int
    task: TaskPreview
    classes: NotRequired[dict[str, int]]
    target_statistics: NotRequired[dict[str, float]]  # mlops.task.target_statistics
    mapped: NotRequired[int]
    annotations: NotRequired[int]
    annotated_ids: NotRequired[int]
    conflicting_ids: NotRequired[int]
    conflicts: NotRequired[int]
    unmatched_annotations: NotRequired[int]
    rules: NotRequired[dict[str, RuleCoverage]]
    unmatched: NotRequired[int]
    default_assigned: NotRequired[int]


# --- split: reports/split/summary.json --------------------------------------------------------


class SplitPart(TypedDict):
    """One of train, validation and test: its rows, and its classes or target statistics."""

    rows: int
    fraction: float
    classes: NotRequired[dict[str, int]]
    target: NotRequired[dict[str, float]]  # a regression: mlops.task.target_statistics
    groups: NotRequired[int]  # a grouped split: the groups in this part


class SplitSummary(TypedDict):
    strategy: str  # ordered, grouped, stratified or random
    seed: int
    rows: int
    train: SplitPart
    validation: SplitPart
    test: SplitPart
    target_bins: NotRequired[int]  # a stratified regression: its quantile bins
    note: NotRequired[str]  # a stratified regression too small to bin: why it was split at random
