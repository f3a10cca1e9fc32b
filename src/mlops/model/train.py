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
``TrainedModel``. The search (its space, scorer and reporting: ``search``) and the tuning sample
and folds (``folds``) live apart; this module ties them to the data and refits.

``n_jobs`` threads run the search's fits (the estimators' fitting code releases the GIL; worker
processes would each import the training stack and copy the data, which costs more than a small
search), and the refit of a model that can use several cores (a forest).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.artifacts import Task
from mlops.model.features import (
    FeatureSpec,
    TrainedModel,
    build_pipeline,
    feature_spec,
    model_input,
    model_target,
    save_model,
)
from mlops.model.folds import Folds, TuningRows, make_folds, tuning_rows, tuning_sample
from mlops.model.search import (
    Scoring,
    candidate_count,
    check_forest_class_weight,
    check_scoring_suits,
    cv_results_table,
    make_search,
    resolve_scoring,
    search_space,
    unprefixed,
)
from mlops.model.summaries import TrainSummary
from mlops.params import DataParams, SplitParams, TrainParams, load_section
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json, write_text
from mlops.tables import read_table, require_columns
from mlops.task import task_of

# Families whose fit spreads over n_jobs cores; the others use one, or (histogram gradient
# boosting) all of them through OpenMP whatever n_jobs says.
PARALLEL_FIT = frozenset({"random_forest"})


@dataclass(frozen=True)
class TrainResult:
    model: TrainedModel
    summary: TrainSummary  # reports/train/best_params.json
    cv_results: pd.DataFrame  # reports/train/cv_results.csv


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
    summary: TrainSummary = {
        "task": task,
        "model": params.model,
        "search": params.search,
        "scoring": scoring.name,
        "best_cv_score": float(search.cv_results_["mean_test_score"][search.best_index_]),
        "best_params": unprefixed(search.best_params_),
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
