"""The hyper-parameter search of the train stage: the checked search space, the scorer, and a
scikit-learn search that prints one line per candidate as it completes.

The search space (``train.search_spaces.<task>.<family>``) is checked against the estimator before
any fit, so a misspelt hyper-parameter or a value the estimator refuses stops the stage naming the
key. ``train.scoring: auto`` is the task's primary metric (``mlops.task.primary_metric``); a
scorer of one class of two (``f1``, ``precision``...) scores the positive class. The search is
scikit-learn's grid, random or successive-halving search, evaluating the candidates one after the
other (their folds in parallel) to report each; ``cv_results_table`` is its result as a plot.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    HalvingRandomSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
)
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from mlops.core.artifacts import Task
from mlops.model.features import MODEL_NAMES
from mlops.model.folds import TuningRows
from mlops.params import TrainParams
from mlops.stage import StageError
from mlops.task import primary_metric

MODEL_STEP = "model__"
TASKS: tuple[Task, ...] = ("classification", "regression")
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
class Scoring:
    name: str  # as in params or, for ``auto``, the task's default
    scorer: Any  # what the search calls


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
            f"best so far {best:.4f} | {unprefixed(candidate)}",
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
                json.dumps(unprefixed(candidate), sort_keys=True)
                for candidate in cv_results["params"]
            ],
        }
    )
    if "iter" in cv_results:
        table["round"] = [int(number) + 1 for number in cv_results["iter"]]
        table["rows"] = cv_results["n_resources"]
    return table.sort_values(["rank", "params"], kind="stable").reset_index(drop=True)


def unprefixed(candidate: dict[str, Any]) -> dict[str, Any]:
    return {name.removeprefix(MODEL_STEP): _plain(value) for name, value in candidate.items()}


def _plain(value: Any) -> Any:
    """numpy scalars (from sampled candidates) as Python values, for JSON."""
    return value.item() if hasattr(value, "item") else value
