"""Train stage: tune the chosen model family by cross-validation, then refit on all training rows.

The search (grid, random or successive halving) runs on at most ``max_tuning_rows`` rows, a
stratified sample, and prints one line per candidate as it completes. The winning
hyper-parameters are then refitted on every training row and saved as a ``TrainedModel``.

``n_jobs`` threads run the search's fits (the estimators' fitting code releases the GIL; worker
processes would each import the training stack and copy the data, which costs more than a small
search), and the refit of a model that can use several cores (a forest).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers the halving search)
from sklearn.metrics import get_scorer
from sklearn.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

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
from mlops.params import DataParams, TrainParams, load_section
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json, write_text
from mlops.tables import read_table

MODEL_STEP = "model__"
# Families whose fit spreads over n_jobs cores; the others use one, or (histogram gradient
# boosting) all of them through OpenMP whatever n_jobs says.
PARALLEL_FIT = frozenset({"random_forest"})


@dataclass(frozen=True)
class TrainResult:
    model: TrainedModel
    summary: dict[str, Any]  # reports/train/best_params.json
    cv_results: pd.DataFrame  # reports/train/cv_results.csv


def train_model(
    frame: pd.DataFrame,
    target: str,
    exclude_columns: list[str],
    params: TrainParams,
    where: str = "training table",
) -> TrainResult:
    spec = feature_spec(frame, target, exclude_columns, where)
    features = model_input(frame, spec, where)
    labels = model_target(frame, target, where)
    started = time.perf_counter()
    search, tuning_rows = tune(spec, features, labels, params)
    pipeline = build_pipeline(params.model, spec, params.seed).set_params(**search.best_params_)
    with step("train: refit on every training row", len(labels)):
        refit(pipeline, features, labels, params.n_jobs if params.model in PARALLEL_FIT else None)
    fit_seconds = time.perf_counter() - started
    summary = {
        "model": params.model,
        "search": params.search,
        "scoring": params.scoring,
        "best_cv_score": float(search.cv_results_["mean_test_score"][search.best_index_]),
        "best_params": _unprefixed(search.best_params_),
        "n_candidates": len(search.cv_results_["params"]),
        "cv_folds": params.cv_folds,
        "tuning_rows": tuning_rows,
        "training_rows": len(labels),
        "fit_seconds": round(fit_seconds, 3),
    }
    print(
        f"train: best {params.scoring} {summary['best_cv_score']:.4f} with "
        f"{summary['best_params']}; refitted on {len(labels)} rows; {fit_seconds:.1f}s in all",
        flush=True,
    )
    classes = tuple(str(label) for label in pipeline.classes_)
    model = TrainedModel(pipeline=pipeline, spec=spec, target=target, classes=classes)
    return TrainResult(
        model=model, summary=summary, cv_results=cv_results_table(search.cv_results_)
    )


def tune(
    spec: FeatureSpec, features: pd.DataFrame, labels: pd.Series, params: TrainParams
) -> tuple[Any, int]:
    """The fitted (not refitted) search over a stratified sample of at most ``max_tuning_rows``
    rows, and the number of rows it used."""
    space = search_space(params, build_pipeline(params.model, spec, params.seed))
    check_scoring(params.scoring)
    tuning_features, tuning_labels = tuning_sample(
        features, labels, params.max_tuning_rows, params.seed
    )
    check_folds(tuning_labels, params.cv_folds)
    search = make_search(build_pipeline(params.model, spec, params.seed), space, params)
    print(
        f"train: tuning {params.model} by {params.search} search, "
        f"{candidate_count(space, params)} candidate(s) x {params.cv_folds} folds on "
        f"{len(tuning_labels)} of {len(labels)} rows, scoring {params.scoring}, "
        f"n_jobs {params.n_jobs}",
        flush=True,
    )
    with joblib.parallel_config(backend="threading"):
        search.fit(tuning_features, tuning_labels)
    return search, len(tuning_labels)


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


def search_space(params: TrainParams, pipeline: Pipeline) -> dict[str, list[Any]]:
    """The chosen family's search space from params, checked against the estimator and prefixed
    with the pipeline step name (``model__``)."""
    unknown = sorted(set(params.search_spaces) - set(MODEL_NAMES))
    if unknown:
        raise StageError(
            f"train.search_spaces.{unknown[0]}: unknown model family; known are {list(MODEL_NAMES)}"
        )
    where = f"train.search_spaces.{params.model}"
    space = params.search_spaces.get(params.model) or {}
    if not space:
        raise StageError(f"{where}: no search space for the chosen model (train.model)")
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


def _check_value(estimator: Any, name: str, value: Any, where: str) -> None:
    """Reject a value the estimator would refuse, before any fit (sklearn validates at fit time)."""
    candidate = estimator.__class__(**{**estimator.get_params(deep=False), name: value})
    try:
        candidate._validate_params()
    except InvalidParameterError as error:
        raise StageError(f"{where}.{name}: {value!r} is not accepted ({error})") from None


def check_scoring(scoring: str) -> None:
    try:
        get_scorer(scoring)
    except ValueError:
        raise StageError(
            f"train.scoring: unknown scorer {scoring!r}; e.g. f1_macro, accuracy, "
            "balanced_accuracy, roc_auc_ovr, neg_log_loss (see sklearn.metrics.get_scorer_names)"
        ) from None


def tuning_sample(
    features: pd.DataFrame, labels: pd.Series, max_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.Series]:
    """At most about ``max_rows`` rows, the same share of every class, in table order."""
    if max_rows < 1:
        raise StageError(f"train.max_tuning_rows: must be at least 1, got {max_rows}")
    if len(labels) <= max_rows:
        return features, labels
    fraction = max_rows / len(labels)
    chosen = labels.groupby(labels).sample(frac=fraction, random_state=seed).index
    keep = labels.index.isin(chosen)
    return features[keep], labels[keep]


def check_folds(labels: pd.Series, folds: int) -> None:
    if folds < 2:
        raise StageError(f"train.cv_folds: needs at least 2 folds, got {folds}")
    counts = labels.value_counts()
    if counts.min() < folds:
        raise StageError(
            f"train.cv_folds: {folds} stratified folds need at least {folds} rows of every class; "
            f"class {counts.idxmin()!r} has {counts.min()} in the tuning rows "
            "(lower cv_folds or raise max_tuning_rows)"
        )


def candidate_count(space: dict[str, list[Any]], params: TrainParams) -> int:
    """Candidates in the (first round of the) search: the whole grid, or at most ``n_iter``."""
    grid_size = len(ParameterGrid(space))
    return grid_size if params.search == "grid" else min(params.n_iter, grid_size)


def make_search(pipeline: Pipeline, space: dict[str, list[Any]], params: TrainParams) -> Any:
    if params.n_iter < 1:
        raise StageError(f"train.n_iter: must be at least 1, got {params.n_iter}")
    common: dict[str, Any] = {
        "scoring": params.scoring,
        "cv": StratifiedKFold(params.cv_folds, shuffle=True, random_state=params.seed),
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
    params = load_section(args.params, "train", TrainParams)
    frame = read_table(args.train)
    result = train_model(frame, data.target, data.exclude_columns, params, where=str(args.train))
    save_model(args.out, result.model)
    write_json(args.reports / "best_params.json", result.summary)
    write_text(args.reports / "cv_results.csv", result.cv_results.to_csv(index=False))


if __name__ == "__main__":
    raise SystemExit(run(main))
