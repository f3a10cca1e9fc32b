"""Train stage: tune the chosen model family by cross-validation, then refit on all training rows.

The task (classification or regression) is read from the training table's target, as the label
stage stored it (``mlops.task.task_of``); it picks the estimator of the family, its search space
(``train.search_spaces.<task>.<family>``) and, with ``train.scoring: auto``, the scorer.

The search (grid, random or successive halving) runs on at most ``max_tuning_rows`` rows and
prints one line per candidate as it completes. Its folds respect the split: with
``split.group_column`` no group is on both sides of a fold, with ``split.order_column`` every
fold trains on earlier rows only and is tested on the rows right after them; otherwise the folds
are shuffled, stratified by class (or by quantile bins of a regression target for the sample).
The winning hyper-parameters are then refitted on every training row and saved as a
``TrainedModel``.

``n_jobs`` threads run the search's fits (the estimators' fitting code releases the GIL; worker
processes would each import the training stack and copy the data, which costs more than a small
search), and the refit of a model that can use several cores (a forest).
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers the halving search)
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    get_scorer,
    jaccard_score,
    make_scorer,
    precision_score,
    recall_score,
)
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    HalvingRandomSearchCV,
    KFold,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from mlops.core.artifacts import Task
from mlops.model.features import (
    MODEL_NAMES,
    FeatureSpec,
    TrainedModel,
    build_pipeline,
    feature_spec,
    model_input,
    model_target,
    save_model,
)
from mlops.params import DataParams, SplitParams, TrainParams, load_section
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json, write_text
from mlops.tables import read_table, require_columns
from mlops.task import primary_metric, task_of

MODEL_STEP = "model__"
TASKS: tuple[Task, ...] = ("classification", "regression")
# Families whose fit spreads over n_jobs cores; the others use one, or (histogram gradient
# boosting) all of them through OpenMP whatever n_jobs says.
PARALLEL_FIT = frozenset({"random_forest"})
# A regression target is sampled for tuning in this many quantile bins, each keeping its share.
TARGET_BINS = 10
# Scorers of one class of two: with text labels scikit-learn cannot guess which class is meant,
# so they are built for the positive class. name -> (metric, what it scores, higher is better)
POSITIVE_CLASS_SCORERS: dict[str, tuple[Callable[..., float], str, bool]] = {
    "f1": (f1_score, "predict", True),
    "precision": (precision_score, "predict", True),
    "recall": (recall_score, "predict", True),
    "jaccard": (jaccard_score, "predict", True),
    "average_precision": (average_precision_score, "predict_proba", True),
    "neg_brier_score": (brier_score_loss, "predict_proba", False),
}


@dataclass(frozen=True)
class TrainResult:
    model: TrainedModel
    summary: dict[str, Any]  # reports/train/best_params.json
    cv_results: pd.DataFrame  # reports/train/cv_results.csv


@dataclass(frozen=True)
class Scoring:
    name: str  # as in params or, for ``auto``, the task's default
    scorer: Any  # what the search calls


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


def train_model(
    frame: pd.DataFrame,
    target: str,
    exclude_columns: list[str],
    params: TrainParams,
    where: str = "training table",
    *,
    split: SplitParams | None = None,
    positive_class: str | None = None,
) -> TrainResult:
    """Tune and refit on ``frame``; ``split`` names the group or order column the split stage
    used (the folds respect it), ``positive_class`` is ``data.positive_class``."""
    require_columns(frame, [target], where)
    task = task_of(frame[target])
    spec = feature_spec(frame, target, exclude_columns, where)
    features = model_input(frame, spec, where)
    labels = model_target(frame, target, where, task)
    classes = class_labels(labels, task, where)
    positive = choose_positive_class(labels, classes, positive_class, where)
    scoring = resolve_scoring(params.scoring, task, classes, positive)
    rows = tuning_rows(frame, features, labels, split or SplitParams(), where)
    if spec.excluded:
        print(f"train: not features: {spec.excluded}", flush=True)
    started = time.perf_counter()
    search, tuning, folds = tune(spec, rows, params, task, scoring)
    pipeline = build_pipeline(params.model, spec, params.seed, task)
    pipeline.set_params(**search.best_params_)
    with step("train: refit on every training row", len(labels)):
        refit(pipeline, features, labels, params.n_jobs if params.model in PARALLEL_FIT else None)
    fit_seconds = time.perf_counter() - started
    summary = {
        "task": task,
        "model": params.model,
        "search": params.search,
        "scoring": scoring.name,
        "best_cv_score": float(search.cv_results_["mean_test_score"][search.best_index_]),
        "best_params": _unprefixed(search.best_params_),
        "n_candidates": len(search.cv_results_["params"]),
        "cv_folds": params.cv_folds,
        "cv": folds.description,
        "tuning_rows": len(tuning),
        "training_rows": len(labels),
        "fit_seconds": round(fit_seconds, 3),
        "classes": len(classes),
        "positive_class": positive,
        "excluded": spec.excluded,
    }
    print(
        f"train: best {scoring.name} {summary['best_cv_score']:.4f} with "
        f"{summary['best_params']}; refitted on {len(labels)} rows; {fit_seconds:.1f}s in all",
        flush=True,
    )
    model = TrainedModel(
        pipeline=pipeline,
        spec=spec,
        target=target,
        task=task,
        classes=tuple(str(label) for label in getattr(pipeline, "classes_", ())),
        positive_class=positive,
    )
    return TrainResult(
        model=model, summary=summary, cv_results=cv_results_table(search.cv_results_)
    )


def class_labels(labels: pd.Series, task: Task, where: str) -> tuple[str, ...]:
    """The classes in the order the classifier keeps them (sorted); () for a regression."""
    if task == "regression":
        return ()
    classes = tuple(sorted(labels.unique()))
    if len(classes) < 2:
        raise StageError(
            f"{where}: target column '{labels.name}' holds one class {list(classes)}; a classifier "
            "needs at least two"
        )
    return classes


def choose_positive_class(
    labels: pd.Series, classes: tuple[str, ...], declared: str | None, where: str
) -> str | None:
    """Two classes: ``declared`` (``data.positive_class``), checked to be one of them, or else the
    class with fewer training rows (on a tie the later one in sorted order: ``1``, ``yes``,
    ``True``). Other tasks have no positive class."""
    if len(classes) != 2:
        if declared is not None:
            kind = f"{len(classes)} classes" if classes else "a regression target"
            raise StageError(
                f"data.positive_class: {declared!r} applies to two classes; target "
                f"'{labels.name}' in {where} is {kind}: set it to null"
            )
        return None
    if declared is not None:
        if declared not in classes:
            raise StageError(
                f"data.positive_class: {declared!r} is not a class of target '{labels.name}'; "
                f"{where} has the classes {list(classes)}"
            )
        return declared
    counts = labels.value_counts()
    return min(reversed(classes), key=lambda label: counts[label])


def check_scoring(scoring: str) -> None:
    try:
        get_scorer(scoring)
    except ValueError:
        raise StageError(
            f"train.scoring: unknown scorer {scoring!r}; e.g. f1_macro, accuracy, "
            "balanced_accuracy, roc_auc, neg_log_loss, neg_root_mean_squared_error, r2 "
            "(see sklearn.metrics.get_scorer_names), or auto"
        ) from None


def resolve_scoring(
    name: str, task: Task, classes: tuple[str, ...], positive_class: str | None
) -> Scoring:
    """``train.scoring``, with ``auto`` the task's primary metric (``mlops.task``); a scorer of
    one class scores the positive class."""
    if name == "auto":
        name = primary_metric(task, len(classes)).scoring
    check_scoring(name)
    if positive_class is not None and name in POSITIVE_CLASS_SCORERS:
        metric, response, higher_is_better = POSITIVE_CLASS_SCORERS[name]
        scorer = make_scorer(
            metric,
            response_method=response,
            greater_is_better=higher_is_better,
            pos_label=positive_class,
        )
        return Scoring(name, scorer)
    return Scoring(name, get_scorer(name))


def check_scoring_suits(scoring: Scoring, rows: TuningRows, task: Task) -> None:
    """Score a model that ignores the features, so that a scorer of the other task (or of two
    classes on three) stops here, named, rather than in the middle of the search."""
    baseline = DummyRegressor() if task == "regression" else DummyClassifier(strategy="prior")
    try:
        with warnings.catch_warnings():  # e.g. an F1 of 0 for a model that never says positive
            warnings.simplefilter("ignore")
            baseline.fit(rows.features, rows.target)
            scoring.scorer(baseline, rows.features, rows.target)
    except (ValueError, TypeError) as error:
        raise StageError(
            f"train.scoring: {scoring.name!r} cannot score this {task} target "
            f"'{rows.target.name}' ({error}); use auto or a scorer for {task}"
        ) from None


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


def tune(
    spec: FeatureSpec, rows: TuningRows, params: TrainParams, task: Task, scoring: Scoring
) -> tuple[Any, TuningRows, Folds]:
    """The fitted (not refitted) search over a sample of at most about ``max_tuning_rows`` rows,
    the rows it used and its folds."""
    space = search_space(params, build_pipeline(params.model, spec, params.seed, task), task)
    if task == "classification" and params.model == "random_forest":
        check_forest_class_weight(space, rows.target)
    tuning = tuning_sample(rows, params.max_tuning_rows, params.seed, task)
    check_scoring_suits(scoring, tuning, task)
    folds = make_folds(tuning, task, params.cv_folds, params.seed)
    pipeline = build_pipeline(params.model, spec, params.seed, task)
    search = make_search(pipeline, space, params, scoring.scorer, folds.splits)
    print(
        f"train: tuning {params.model} ({task}) by {params.search} search, "
        f"{candidate_count(space, params)} candidate(s) x {folds.description} on "
        f"{len(tuning)} of {len(rows)} rows, scoring {scoring.name}, n_jobs {params.n_jobs}",
        flush=True,
    )
    with joblib.parallel_config(backend="threading"):
        search.fit(tuning.features, tuning.target)
    return search, tuning, folds


def refit(
    pipeline: Pipeline, features: pd.DataFrame, labels: pd.Series, n_jobs: int | None
) -> None:
    """Fit ``pipeline``; with ``n_jobs`` its model uses that many cores for this fit only, so the
    saved model predicts in one thread, summing probabilities in the same order every run."""
    estimator = pipeline.named_steps["model"]
    if n_jobs is None:
        pipeline.fit(features, labels)
        return
    saved = estimator.n_jobs
    estimator.set_params(n_jobs=n_jobs)
    try:
        pipeline.fit(features, labels)
    finally:
        estimator.set_params(n_jobs=saved)


def search_space(
    params: TrainParams, pipeline: Pipeline, task: Task = "classification"
) -> dict[str, list[Any]]:
    """The chosen family's search space for the task from params, checked against the estimator
    and prefixed with the pipeline step name (``model__``)."""
    for space_task, families in params.search_spaces.items():
        if space_task not in TASKS:
            raise StageError(
                f"train.search_spaces.{space_task}: unknown task; known are {list(TASKS)}"
            )
        unknown = sorted(set(families or {}) - set(MODEL_NAMES))
        if unknown:
            raise StageError(
                f"train.search_spaces.{space_task}.{unknown[0]}: unknown model family; "
                f"known are {list(MODEL_NAMES)}"
            )
    where = f"train.search_spaces.{task}.{params.model}"
    space = (params.search_spaces.get(task) or {}).get(params.model) or {}
    if not space:
        raise StageError(f"{where}: no search space for the chosen model (train.model) and task")
    estimator = pipeline.named_steps["model"]
    known = estimator.get_params(deep=False)
    for name, values in space.items():
        if name not in known:
            raise StageError(
                f"{where}.{name}: not a hyper-parameter of {type(estimator).__name__}; "
                f"it has {sorted(known)}"
            )
        if not values:
            raise StageError(f"{where}.{name}: empty list of values")
        for value in values:
            _check_value(estimator, name, value, where)
    return {MODEL_STEP + name: list(values) for name, values in space.items()}


def check_forest_class_weight(space: dict[str, list[Any]], labels: pd.Series) -> None:
    """scikit-learn's random forest with ``class_weight: balanced`` fails on class labels that are
    whole numbers written as text ("1", "2", "3": it looks the labels up as numbers in the
    weights it computed). ``balanced_subsample`` weighs the classes the same way, per tree."""
    if "balanced" not in space.get(f"{MODEL_STEP}class_weight", []):
        return
    numeric = sorted(label for label in labels.unique() if str(label).lstrip("-").isdigit())
    if numeric:
        raise StageError(
            "train.search_spaces.classification.random_forest.class_weight: 'balanced' fails in "
            f"scikit-learn's random forest when classes are whole numbers ({numeric[:5]}); use "
            "balanced_subsample, which weighs the classes the same way per tree"
        )


def _check_value(estimator: Any, name: str, value: Any, where: str) -> None:
    """Reject a value the estimator would refuse, before any fit (sklearn validates at fit time)."""
    candidate = estimator.__class__(**{**estimator.get_params(deep=False), name: value})
    try:
        candidate._validate_params()
    except InvalidParameterError as error:
        raise StageError(f"{where}.{name}: {value!r} is not accepted ({error})") from None


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


def candidate_count(space: dict[str, list[Any]], params: TrainParams) -> int:
    """Candidates in the (first round of the) search: the whole grid, or at most ``n_iter``."""
    grid_size = len(ParameterGrid(space))
    return grid_size if params.search == "grid" else min(params.n_iter, grid_size)


def make_search(
    pipeline: Pipeline,
    space: dict[str, list[Any]],
    params: TrainParams,
    scorer: Any,
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> Any:
    if params.n_iter < 1:
        raise StageError(f"train.n_iter: must be at least 1, got {params.n_iter}")
    common: dict[str, Any] = {
        "scoring": scorer,
        "cv": splits,
        "n_jobs": params.n_jobs,
        "refit": False,
        "error_score": "raise",
    }
    count = candidate_count(space, params)
    if params.search == "grid":
        return ReportingGridSearch(pipeline, space, **common)
    if params.search == "random":
        return ReportingRandomSearch(
            pipeline, space, n_iter=count, random_state=params.seed, **common
        )
    return ReportingHalvingSearch(
        pipeline,
        space,
        n_candidates=count,
        min_resources="exhaust",
        random_state=params.seed,
        **common,
    )


class _TrialReporter:
    """Evaluates the candidates one by one (their folds still run in parallel) so that a line per
    finished candidate can be printed: trial n of N, its score and the best score so far."""

    def _run_search(
        self, evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None
    ) -> None:
        one_by_one = functools.partial(_evaluate_one_by_one, evaluate_candidates)
        super()._run_search(one_by_one, callback_ctx=callback_ctx)  # type: ignore[misc]


def _evaluate_one_by_one(
    evaluate_candidates: Callable[..., Any],
    candidate_params: Any,
    cv: Any = None,
    more_results: dict[str, list[Any]] | None = None,
    callback_ctx: Any = None,
) -> Any:
    """Stands in for the search's ``evaluate_candidates`` (same arguments, same return value).

    ``callback_ctx`` (scikit-learn's experimental callbacks, unused here) is dropped: its task ids
    are laid out for one call per batch, not one per candidate."""
    candidates = list(candidate_params)
    results: Any = None
    best = -math.inf
    for number, candidate in enumerate(candidates):
        extra = {key: [values[number]] for key, values in (more_results or {}).items()} or None
        results = evaluate_candidates([candidate], cv, more_results=extra)
        score = float(results["mean_test_score"][-1])
        spread = float(results["std_test_score"][-1])
        best = max(best, score)
        halving_round = f"round {extra['iter'][0] + 1}, " if extra and "iter" in extra else ""
        print(
            f"{halving_round}trial {number + 1} of {len(candidates)}: {score:.4f} (±{spread:.4f}), "
            f"best so far {best:.4f} | {_unprefixed(candidate)}",
            flush=True,
        )
    return results


class ReportingGridSearch(_TrialReporter, GridSearchCV):
    pass


class ReportingRandomSearch(_TrialReporter, RandomizedSearchCV):
    pass


class ReportingHalvingSearch(_TrialReporter, HalvingRandomSearchCV):
    pass


def cv_results_table(cv_results: dict[str, Any]) -> pd.DataFrame:
    """One row per evaluated candidate, best first; ``params`` as JSON without the step prefix."""
    table = pd.DataFrame(
        {
            "rank": cv_results["rank_test_score"],
            "mean_test_score": cv_results["mean_test_score"],
            "std_test_score": cv_results["std_test_score"],
            "mean_fit_seconds": cv_results["mean_fit_time"],
            "params": [
                json.dumps(_unprefixed(candidate), sort_keys=True)
                for candidate in cv_results["params"]
            ],
        }
    )
    if "iter" in cv_results:
        table["round"] = [int(number) + 1 for number in cv_results["iter"]]
        table["rows"] = cv_results["n_resources"]
    return table.sort_values(["rank", "params"], kind="stable").reset_index(drop=True)


def _unprefixed(candidate: dict[str, Any]) -> dict[str, Any]:
    return {name.removeprefix(MODEL_STEP): _plain(value) for name, value in candidate.items()}


def _plain(value: Any) -> Any:
    """numpy scalars (from sampled candidates) as Python values, for JSON."""
    return value.item() if hasattr(value, "item") else value


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Tune and fit the model on the training split.")
    arguments.add_argument("--train", type=Path, required=True, help="training table (Parquet)")
    arguments.add_argument("--out", type=Path, required=True, help="the fitted model (joblib)")
    arguments.add_argument("--reports", type=Path, required=True, help="reports directory")
    args = arguments.parse_args(argv)
    data = load_section(args.params, "data", DataParams)
    split = load_section(args.params, "split", SplitParams)
    params = load_section(args.params, "train", TrainParams)
    frame = read_table(args.train)
    result = train_model(
        frame,
        data.target,
        data.exclude_columns,
        params,
        where=str(args.train),
        split=split,
        positive_class=data.positive_class,
    )
    save_model(args.out, result.model)
    write_json(args.reports / "best_params.json", result.summary)
    write_text(args.reports / "cv_results.csv", result.cv_results.to_csv(index=False))


if __name__ == "__main__":
    raise SystemExit(run(main))
