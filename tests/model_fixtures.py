"""Small models and tables for tests: penguins, and tables unlike penguins (a regression and a
binary table with headers as people write them: spaces, brackets, slashes, non-ASCII, an id and a
date column, missing values), and the package stage's inputs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from conftest import PROJECT_ROOT
from mlops.model import package
from mlops.model.features import (
    TrainedModel,
    build_pipeline,
    feature_spec,
    model_input,
    model_target,
)
from mlops.model.metrics import predict, prediction_metrics
from mlops.model.threshold import Decision
from mlops.model.train import choose_positive_class
from mlops.profile import profile_table
from mlops.task import task_of

TARGET = "species"
EXCLUDE = ["year"]
REGRESSION_TARGET = "Monthly Spend (€)"
BINARY_TARGET = "Churned?"
POSITIVE = "yes"  # the binary table's rarer class
# Small models keep every test file within seconds.
SMALL = {
    "linear": {},
    "random_forest": {"n_estimators": 15},
    "gradient_boosting": {"n_estimators": 15},
    "hist_gradient_boosting": {"max_iter": 15},
}


def penguins() -> pd.DataFrame:
    frame = pd.read_csv(PROJECT_ROOT / "data" / "penguins.csv")
    return frame.dropna(subset=[TARGET]).reset_index(drop=True)


def split(
    frame: pd.DataFrame, seed: int = 0, target: str = TARGET
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """70/30, stratified by class (a regression target: by its quartiles)."""
    values = frame[target]
    strata = pd.qcut(values, 4, labels=False) if task_of(values) == "regression" else values
    train, test = train_test_split(frame, test_size=0.3, stratify=strata, random_state=seed)
    return train, test


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Feature columns with real-world headers, an identifier, a date, and gaps."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer id": [f"C-{number:05d}" for number in rng.permutation(rows)],
            "Monthly Charge ($)": rng.uniform(10, 120, rows).round(2),
            "Größe": rng.normal(170, 10, rows).round(1),
            "plan/type": rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2]),
            "support calls (#)": rng.poisson(1.5, rows),
            "signup date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows), "h"),
        }
    )
    frame.loc[frame.index[::9], "Größe"] = np.nan
    frame.loc[frame.index[4::11], "plan/type"] = None
    return frame


def regression_table(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """A float target (as the label stage stores a regression target) driven by the charge, the
    plan and the calls, with noise."""
    frame = customers(rows, seed)
    rng = np.random.default_rng(seed + 1)
    plan = frame["plan/type"].map({"basic": 0.0, "plus": 20.0, "premium": 45.0}).fillna(10.0)
    spend = 1.5 * frame["Monthly Charge ($)"] + plan + 4 * frame["support calls (#)"]
    frame[REGRESSION_TARGET] = (spend + rng.normal(0, 5, rows)).astype("float64")
    return frame


def binary_table(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Text classes "yes"/"no" (about a quarter "yes"), driven by the charge and the calls."""
    frame = customers(rows, seed)
    rng = np.random.default_rng(seed + 1)
    risk = 0.04 * (frame["Monthly Charge ($)"] - 90) + 0.9 * (frame["support calls (#)"] - 2)
    churned = rng.uniform(size=rows) < 1 / (1 + np.exp(-risk))
    frame[BINARY_TARGET] = np.where(churned, POSITIVE, "no").astype(object)
    return frame


def trained(
    frame: pd.DataFrame, model_name: str = "random_forest", labels: pd.Series | None = None
) -> TrainedModel:
    """A fitted small model of ``model_name`` on penguins; ``labels`` replaces the true classes."""
    return trained_on(frame, TARGET, model_name, EXCLUDE, labels)


def trained_on(
    frame: pd.DataFrame,
    target: str,
    model_name: str = "random_forest",
    exclude: Sequence[str] = (),
    labels: pd.Series | None = None,
    positive_class: str | None = None,
) -> TrainedModel:
    """A fitted small model of ``model_name`` for ``target``'s task (as the train stage would make
    it, without the search); ``labels`` replaces the true target if given."""
    task = task_of(frame[target])
    spec = feature_spec(frame, target, list(exclude))
    pipeline = build_pipeline(model_name, spec, seed=0, task=task)
    pipeline.set_params(**{f"model__{key}": value for key, value in SMALL[model_name].items()})
    truth = model_target(frame, target, task=task) if labels is None else labels
    with threadpool_limits(limits=1):  # tiny data: threads only contend with the other tests
        pipeline.fit(model_input(frame, spec), truth)
    classes = tuple(str(label) for label in getattr(pipeline, "classes_", ()))
    positive = choose_positive_class(truth, classes, positive_class, "fixture")
    return TrainedModel(pipeline, spec, target, task, classes, positive)


def evaluation_metrics(
    model: TrainedModel, frame: pd.DataFrame, threshold: float | None = None
) -> dict[str, Any]:
    """What the evaluate stage writes to metrics.json for ``model`` on ``frame`` (``threshold``:
    a fixed decision threshold of a binary model)."""
    decision = Decision(threshold, None if threshold is None else "fixed")
    truth = model_target(frame, model.target, task=model.task)
    prediction = predict(model, model_input(frame, model.spec), decision.threshold)
    return prediction_metrics(model, truth, prediction, decision)


def accepted_verdict() -> dict[str, Any]:
    return {
        "passed": True,
        "metrics": {"rows": 1, "accuracy": 1.0, "macro_f1": 1.0},
        "checks": [{"name": "macro_f1", "value": 1.0, "threshold": 0.9, "passed": True}],
        "champion": None,
    }


def package_inputs(
    directory: Path,
    model: TrainedModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    threshold: float | None = None,
) -> dict[str, Path]:
    """The files the package stage reads, written into ``directory``; returns them by option.
    metrics.json is the evaluate stage's, computed on ``test`` (with ``threshold``, if given)."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "params": directory / "params.yaml",
        "model": directory / "pipeline.joblib",
        "train": directory / "train.parquet",
        "test": directory / "test.parquet",
        "verdict": directory / "verdict.json",
        "metrics": directory / "metrics.json",
        "raw-profile": directory / "profile.json",
        "out": directory / "package",
        "reports": directory / "reports",
    }
    shutil.copy(PROJECT_ROOT / "params.yaml", paths["params"])
    joblib.dump(model, paths["model"])
    train.to_parquet(paths["train"], index=False)
    test.to_parquet(paths["test"], index=False)
    paths["verdict"].write_text(json.dumps(accepted_verdict()))
    metrics = evaluation_metrics(model, test, threshold)
    paths["metrics"].write_text(json.dumps(metrics))
    raw = profile_table(pd.concat([train, test], ignore_index=True))  # as validate profiles it
    paths["raw-profile"].write_text(json.dumps(raw, default=str))
    return paths


def arguments(paths: dict[str, Path]) -> list[str]:
    return [item for option, path in paths.items() for item in (f"--{option}", str(path))]


def packaged(
    directory: Path,
    model: TrainedModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    threshold: float | None = None,
) -> Path:
    """Run the package stage on ``model``; returns the package directory."""
    paths = package_inputs(directory, model, train, test, threshold)
    package.main(arguments(paths))
    return paths["out"]
