"""Feature engineering: which columns the model reads, how they are typed, and the sklearn pipeline.

The features are derived from the table's dtypes (every column but the target, the columns listed
in ``data.exclude_columns`` and the identifier and date-time columns ``mlops.columns`` finds),
never from hard-coded names. ``model_input`` is the one place that types the features, so
training, evaluation, ONNX conversion and serving all feed the model the same way: numbers as
float32 with NaN for missing, categories as Python strings with ``MISSING_CATEGORY`` for missing.

Every model family has a classifier and a regressor; the task (``mlops.task``) picks one. The
trained model is stored as a ``TrainedModel`` (joblib): the fitted pipeline together with its
``FeatureSpec``, target column, task and class labels, so later stages need not re-derive them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.columns import excluded_columns
from mlops.core.artifacts import MISSING_CATEGORY, Task
from mlops.profile import column_kind
from mlops.stage import StageError, atomic_write_bytes
from mlops.tables import require_columns
from mlops.task import task_of

MODEL_NAMES = ("linear", "random_forest", "gradient_boosting", "hist_gradient_boosting")
# Only models that are sensitive to the scale of their inputs get a scaler: a scaler in front of
# trees changes nothing for sklearn but moves split thresholds in float32, breaking ONNX parity.
SCALED_MODELS = frozenset({"linear"})
# (task, family) -> the estimator, seeded; every one converts with skl2onnx.
ESTIMATORS: dict[tuple[str, str], Callable[[int], Any]] = {
    ("classification", "linear"): lambda seed: LogisticRegression(max_iter=2000, random_state=seed),
    ("classification", "random_forest"): lambda seed: RandomForestClassifier(random_state=seed),
    ("classification", "gradient_boosting"): lambda seed: GradientBoostingClassifier(
        random_state=seed
    ),
    ("classification", "hist_gradient_boosting"): lambda seed: HistGradientBoostingClassifier(
        random_state=seed
    ),
    ("regression", "linear"): lambda seed: Ridge(random_state=seed),
    ("regression", "random_forest"): lambda seed: RandomForestRegressor(random_state=seed),
    ("regression", "gradient_boosting"): lambda seed: GradientBoostingRegressor(random_state=seed),
    ("regression", "hist_gradient_boosting"): lambda seed: HistGradientBoostingRegressor(
        random_state=seed
    ),
}
EXCLUDED_BY_PARAMS = "listed in data.exclude_columns"
# Rows and values quoted in an error about a target.
SHOWN_ROWS = 5


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, each list in table column order, and the columns left out."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    features: tuple[str, ...]
    # column -> why it is not a feature (data.exclude_columns, an identifier, a date-time)
    excluded: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TrainedModel:
    pipeline: Pipeline
    spec: FeatureSpec
    target: str
    task: Task
    classes: tuple[str, ...]  # a classifier's labels (its predict_proba columns); () for regression
    positive_class: str | None  # binary classification only: data.positive_class or the minority


def feature_spec(
    frame: pd.DataFrame, target: str, exclude_columns: list[str], where: str = "table"
) -> FeatureSpec:
    """Every column but ``target``, ``exclude_columns`` and the identifier and date-time columns
    (``mlops.columns.excluded_columns``): numbers and booleans are numeric, text and category
    columns categorical."""
    require_columns(frame, [target], where)
    excluded = {str(name): EXCLUDED_BY_PARAMS for name in exclude_columns if name in frame.columns}
    for name, reason in excluded_columns(frame, target).items():
        excluded.setdefault(name, reason)
    numeric: list[str] = []
    categorical: list[str] = []
    for name in (str(column) for column in frame.columns):
        if name == target or name in excluded:
            continue
        kind = column_kind(frame[name])
        if kind in ("numeric", "boolean"):
            numeric.append(name)
        elif kind == "categorical":
            categorical.append(name)
        else:
            raise StageError(
                f"{where}: column '{name}' has dtype {frame[name].dtype}, which the model cannot "
                "use; list it in data.exclude_columns or convert it at ingest"
            )
    features = tuple(name for name in map(str, frame.columns) if name in {*numeric, *categorical})
    if not features:
        raise StageError(
            f"{where}: no feature columns left after leaving out the target '{target}' and "
            f"{excluded or 'nothing else'}"
        )
    return FeatureSpec(
        numeric=tuple(numeric), categorical=tuple(categorical), features=features, excluded=excluded
    )


def model_input(frame: pd.DataFrame, spec: FeatureSpec, where: str = "table") -> pd.DataFrame:
    """The feature columns in spec order, typed as the model (and its ONNX form) expects them."""
    require_columns(frame, list(spec.features), where)
    columns: dict[str, pd.Series] = {}
    for name in spec.features:
        if name in spec.numeric:
            columns[name] = _as_float32(frame[name], where)
        else:
            columns[name] = _as_category_strings(frame[name])
    return pd.DataFrame(columns, index=frame.index)


def _as_float32(column: pd.Series, where: str) -> pd.Series:
    try:
        return column.astype("float32")
    except (TypeError, ValueError) as error:
        raise StageError(f"{where}: column '{column.name}' is not numeric ({error})") from None


def _as_category_strings(column: pd.Series) -> pd.Series:
    filled = column.astype(object).where(column.notna(), MISSING_CATEGORY)
    return filled.map(str).astype(object)


def model_target(
    frame: pd.DataFrame, target: str, where: str = "table", task: Task | None = None
) -> pd.Series:
    """What the model learns to predict: class labels as strings (ONNX emits string labels), or
    a regression target as float64. ``task`` None reads it from the column's type, as the label
    stage stored it (``mlops.task.task_of``). Every row must have a value."""
    require_columns(frame, [target], where)
    values = frame[target]
    unlabelled = int(values.isna().sum())
    if unlabelled:
        raise StageError(f"{where}: {unlabelled} row(s) have no value in target column '{target}'")
    if (task or task_of(values)) == "regression":
        return regression_target(values, where)
    return values.map(str).astype(object)


def regression_target(values: pd.Series, where: str) -> pd.Series:
    """The target as float64; text or infinite values are an error naming the rows."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        shown = {_plain(row): _plain(value) for row, value in values[bad].head(SHOWN_ROWS).items()}
        raise StageError(
            f"{where}: target column '{values.name}' must hold finite numbers for a regression; "
            f"{int(bad.sum())} row(s) do not, e.g. (row: value) {shown}"
        )
    return numbers


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def build_pipeline(
    model_name: str, spec: FeatureSpec, seed: int, task: Task = "classification"
) -> Pipeline:
    """``preprocess`` (one ColumnTransformer) then ``model``; every step converts with skl2onnx."""
    estimator = _estimator(model_name, task, seed)
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if model_name in SCALED_MODELS:
            numeric_steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(numeric_steps), list(spec.numeric)))
    if spec.categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, list(spec.categorical)))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def _estimator(model_name: str, task: Task, seed: int) -> Any:
    make = ESTIMATORS.get((task, model_name))
    if make is None:
        raise StageError(
            f"train.model: unknown model family '{model_name}'; known are {list(MODEL_NAMES)}"
        )
    return make(seed)


def save_model(path: Path, model: TrainedModel) -> None:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path: Path) -> TrainedModel:
    """The ``TrainedModel`` the train stage wrote to ``path``."""
    try:
        loaded = joblib.load(path)
    except FileNotFoundError:
        raise StageError(f"{path}: model file not found (run the train stage first)") from None
    if not isinstance(loaded, TrainedModel) or not hasattr(loaded, "task"):
        raise StageError(
            f"{path}: not a model written by the train stage ({type(loaded).__name__}); "
            "run the train stage again"
        )
    return loaded
