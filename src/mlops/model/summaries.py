"""The JSON documents the model stages write, as types: their keys are a contract.

Other code reads them: the next stage (accept reads evaluate's decision threshold, package reads
the verdict and the metrics), the model card, the PR report (``mlops.report``), the registry
(``mlops.gitops``) and the monitoring sidecar (the validation metrics in the manifest). The
builders and the readers in this package are checked against these types by mypy, so a key
renamed in one place fails where it is built or read; readers in other parts go by the docs
(``docs/model-train-evaluate.md``, ``docs/model-accept-package.md``), and cannot import this
module (the layers keep report, gitops and the sidecar apart from ``mlops.model``).

The files hold keys in the order each stage builds them, which these types do not fix: a type
says which keys there are and what they hold, the builder says in which order.

| file | type |
|---|---|
| ``reports/train/best_params.json`` | ``TrainSummary`` |
| ``reports/evaluate/metrics.json``, a verdict's ``metrics`` | ``Metrics`` |
| ``reports/evaluate/slices.json`` | ``Slices`` |
| ``reports/accept/verdict.json`` | ``Verdict`` (its ``checks``: ``Check``) |
| ``reports/package/parity.json`` | ``ParityReport`` |
| ``reports/package/resources.json``, ``models/package/resources.json`` | ``ResourceProfile`` |
| ``models/package/manifest.json`` | ``PackageManifest`` (plus ``files``: ``artifacts.Manifest``) |
"""

from __future__ import annotations

import math
from typing import Any, Literal, NotRequired, Required, TypedDict, final

from mlops.core.artifacts import Lineage, Task
from mlops.task import PrimaryMetricName

# A table cell or a number in a report: numpy scalars unwrapped, NaN and infinities as None
# (``cell``).
Cell = str | int | float | bool | None
# A check's comparison: at least / at most a threshold, strictly better than the baseline.
Comparison = Literal[">=", "<=", ">", "<"]


class TrainSummary(TypedDict):
    """``reports/train/best_params.json``: the search and its winner."""

    task: Task
    model: str  # train.model: the family
    search: str  # grid, random or halving
    scoring: str  # the scorer used (``auto`` resolved)
    best_cv_score: float
    best_params: dict[str, Any]  # hyper-parameter -> value, as in train.search_spaces
    n_candidates: int
    cv_folds: int
    cv: str  # the folds used, e.g. "5 folds grouped by 'store'"
    tuning_rows: int
    training_rows: int
    fit_seconds: float  # search plus refit
    classes: int  # how many; 0 for a regression
    positive_class: str | None
    excluded: dict[str, str]  # column -> why it is not a feature


# --- metrics.json and the verdict's test metrics ------------------------------------------------


class ClassScores(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class ClassificationScores(TypedDict):
    """Any classifier's metrics (``metrics.classification_metrics``)."""

    rows: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    roc_auc_ovr: float | None  # None with fewer than two classes present
    log_loss: float
    per_class: dict[str, ClassScores]


class BinaryScores(TypedDict, total=False):
    """A binary classifier's positive-class metrics (``metrics.binary_metrics``): all of them
    with two classes, none otherwise."""

    positive_class: str
    roc_auc: float | None  # None without both outcomes among the rows
    pr_auc: float | None
    positive_f1: float
    positive_precision: float
    positive_recall: float
    brier: float
    decision_threshold: float  # the threshold the labels used (0.5: the model's own labels)
    threshold_method: str | None  # "max_f1" (chosen on validation), "fixed" (given), None


class ClassificationMetrics(ClassificationScores, BinaryScores):
    task: Literal["classification"]
    slice_macro_f1: NotRequired[dict[str, float | None]]  # the verdict's only: per slice value


class RegressionScores(TypedDict):
    """A regressor's metrics (``metrics.regression_metrics``); None where they cannot be
    computed (no rows, R² below two rows, MAPE when every target is 0)."""

    rows: int
    mae: float | None
    rmse: float | None
    r2: float | None
    mape: float | None
    mape_rows: int
    target_mean: float | None
    target_std: float | None


class RegressionMetrics(RegressionScores):
    task: Literal["regression"]
    slice_r2: NotRequired[dict[str, float | None]]  # the verdict's only: per slice value


Metrics = ClassificationMetrics | RegressionMetrics


class Headline(TypedDict, total=False):
    """The metrics any model of the task is compared on, one known only by its outputs too (a
    baseline, a champion): accuracy, macro F1 and, with a positive class, its ROC AUC; or MAE,
    RMSE and R²."""

    accuracy: float
    macro_f1: float
    roc_auc: float | None
    mae: float | None
    rmse: float | None
    r2: float | None


# --- slices.json ---------------------------------------------------------------------------------


class ClassificationSliceScores(TypedDict):
    accuracy: float
    macro_f1: float  # over the classes seen in the slice


class ClassificationSlice(ClassificationSliceScores):
    rows: int


class RegressionSliceScores(TypedDict):
    mae: float | None
    rmse: float | None
    r2: float | None  # None for a one-row slice


class RegressionSlice(RegressionSliceScores):
    rows: int


@final
class ClassificationSlices(TypedDict):
    column: str | None  # evaluate.slice_column; None: no slices
    min_macro_f1: float | None  # the weakest slice's
    slices: dict[str, ClassificationSlice]  # slice value (``__missing__``) -> its metrics


@final
class RegressionSlices(TypedDict):
    column: str | None
    min_r2: float | None
    slices: dict[str, RegressionSlice]


Slices = ClassificationSlices | RegressionSlices


# --- verdict.json ----------------------------------------------------------------------------


class CheckDetails(TypedDict, total=False):
    """What a check adds to its value and threshold, by kind."""

    reason: str  # why it failed without a comparison (a value that cannot be computed, ...)
    slice: str  # a slice check: the slice value
    rows: int  # and its rows
    baseline: str  # the baseline check: what the baseline predicts
    champion_value: float  # the champion check: the champion's primary metric
    max_regression: float


class Check(CheckDetails):
    name: str  # e.g. "macro_f1", "slice_r2[plan/type=plus]", "champion_rmse"
    value: float | None
    threshold: float | None
    comparison: Comparison
    passed: bool


class Baseline(Headline):
    model: Required[str]  # what it predicts, e.g. "the most frequent training class 'Adelie'"


class Champion(Headline, total=False):
    """The champion compared with; only its ``path`` when its package did not verify."""

    path: Required[str]
    model_version: str
    task: Task
    git_commit: str  # its lineage
    data_hash: str
    params_hash: str
    created: str


class Verdict(TypedDict):
    passed: bool
    task: Task
    primary_metric: PrimaryMetricName
    metrics: Metrics  # the candidate's on the test split, with its per-slice metric
    checks: list[Check]
    baseline: Baseline
    champion: Champion | None  # None without a champion package (a first run)


# --- parity.json -------------------------------------------------------------------------------


class ClassPrediction(TypedDict):
    label: str
    probabilities: dict[str, float | None]  # class -> probability


class ClassificationParityRow(TypedDict):
    row: Cell  # the test table's index label
    features: dict[str, Cell]
    max_abs_diff: float | None
    sklearn: ClassPrediction
    onnx: ClassPrediction


class NumberPrediction(TypedDict):
    prediction: float | None


class RegressionParityRow(TypedDict):
    row: Cell
    features: dict[str, Cell]
    abs_diff: float | None
    sklearn: NumberPrediction
    onnx: NumberPrediction


class ClassificationParity(TypedDict):
    task: Literal["classification"]
    rows: int
    max_abs_diff: float | None  # of a probability; None: a model answered NaN
    label_mismatches: int
    threshold: float | None  # the decision threshold both sides' labels follow
    tolerance: float
    passed: bool
    worst_rows: list[ClassificationParityRow]  # label mismatches first, then the largest diffs


class RegressionParity(TypedDict):
    task: Literal["regression"]
    rows: int
    max_abs_diff: float | None
    scale: float  # the training target's standard deviation (``parity.target_scale``)
    max_relative_diff: float | None  # max_abs_diff / scale
    tolerance: float  # of the scale
    passed: bool
    worst_rows: list[RegressionParityRow]


ParityReport = ClassificationParity | RegressionParity


# --- resources.json ----------------------------------------------------------------------------


class Latency(TypedDict):
    rows: int  # per run
    runs: int
    median_ms: float
    p99_ms: float


class Memory(TypedDict):
    rows: int  # scored once by the probe process
    runtime_rss_mib: float  # the probe before it loads the model
    peak_rss_mib: float
    model_rss_mib: float  # peak - runtime: what the model costs


class ContainerResources(TypedDict):
    cpu: str  # e.g. "100m"
    memory: str  # e.g. "160Mi"


class KubernetesResources(TypedDict):
    requests: ContainerResources
    limits: ContainerResources


class ResourceProfile(TypedDict):
    onnxruntime: str  # its version
    intra_op_num_threads: int
    model_bytes: int
    latency: dict[str, Latency]  # "rows_1", "rows_1000"
    memory: Memory
    kubernetes: KubernetesResources


# --- manifest.json -----------------------------------------------------------------------------


class ManifestMetrics(TypedDict):
    """The manifest's ``metrics``; every NaN or infinity, however deep, as None (JSON has none)."""

    validation: Metrics  # evaluate's metrics.json
    test: Metrics  # the verdict's
    acceptance_passed: bool
    parity_max_abs_diff: float | None


class PackageManifest(TypedDict):
    """manifest.json as the package stage builds it; ``install_package`` adds ``files`` (the
    sha256 of every other file), which makes it an ``artifacts.Manifest``."""

    model_name: str
    model_version: str
    lineage: Lineage
    metrics: ManifestMetrics


def cell(value: object) -> Any:
    """A table cell or a number as plain JSON: numpy scalars unwrapped, NaN and infinities as
    null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
