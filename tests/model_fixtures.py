"""Small models trained on the bundled penguins data, and the package stage's inputs, for tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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

TARGET = "species"
EXCLUDE = ["year"]
# Small models keep every test file within seconds.
SMALL = {
    "logistic_regression": {},
    "random_forest": {"n_estimators": 15},
    "gradient_boosting": {"n_estimators": 15},
    "hist_gradient_boosting": {"max_iter": 15},
}


def penguins() -> pd.DataFrame:
    frame = pd.read_csv(PROJECT_ROOT / "data" / "penguins.csv")
    return frame.dropna(subset=[TARGET]).reset_index(drop=True)


def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(frame, test_size=0.3, stratify=frame[TARGET], random_state=seed)
    return train, test


def trained(
    frame: pd.DataFrame, model_name: str = "random_forest", labels: pd.Series | None = None
) -> TrainedModel:
    """A fitted small model of ``model_name``; ``labels`` replaces the true classes if given."""
    spec = feature_spec(frame, TARGET, EXCLUDE)
    pipeline = build_pipeline(model_name, spec, seed=0)
    pipeline.set_params(**{f"model__{key}": value for key, value in SMALL[model_name].items()})
    target = model_target(frame, TARGET) if labels is None else labels
    with threadpool_limits(limits=1):  # tiny data: threads only contend with the other tests
        pipeline.fit(model_input(frame, spec), target)
    classes = tuple(str(label) for label in pipeline.classes_)
    return TrainedModel(pipeline=pipeline, spec=spec, target=TARGET, classes=classes)


def accepted_verdict() -> dict[str, Any]:
    return {
        "passed": True,
        "metrics": {"rows": 1, "accuracy": 1.0, "macro_f1": 1.0},
        "checks": [{"name": "macro_f1", "value": 1.0, "threshold": 0.9, "passed": True}],
        "champion": None,
    }


def package_inputs(
    directory: Path, model: TrainedModel, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, Path]:
    """The files the package stage reads, written into ``directory``; returns them by option."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "params": directory / "params.yaml",
        "model": directory / "pipeline.joblib",
        "train": directory / "train.parquet",
        "test": directory / "test.parquet",
        "verdict": directory / "verdict.json",
        "metrics": directory / "metrics.json",
        "out": directory / "package",
        "reports": directory / "reports",
    }
    shutil.copy(PROJECT_ROOT / "params.yaml", paths["params"])
    joblib.dump(model, paths["model"])
    train.to_parquet(paths["train"], index=False)
    test.to_parquet(paths["test"], index=False)
    paths["verdict"].write_text(json.dumps(accepted_verdict()))
    paths["metrics"].write_text(json.dumps({"accuracy": 0.99, "macro_f1": 0.98}))
    return paths


def arguments(paths: dict[str, Path]) -> list[str]:
    return [item for option, path in paths.items() for item in (f"--{option}", str(path))]


def packaged(directory: Path, model: TrainedModel, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    """Run the package stage on ``model``; returns the package directory."""
    paths = package_inputs(directory, model, train, test)
    package.main(arguments(paths))
    return paths["out"]
