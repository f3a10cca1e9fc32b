"""Feature engineering: which columns the model reads, how they are typed, and the sklearn pipeline.

The features are derived from the table's dtypes (every column but the target and the excluded
ones), never from hard-coded names. ``model_input`` is the one place that types the features, so
training, evaluation, ONNX conversion and serving all feed the model the same way: numbers as
float32 with NaN for missing, categories as Python strings with ``MISSING_CATEGORY`` for missing.

The trained model is stored as a ``TrainedModel`` (joblib): the fitted pipeline together with its
``FeatureSpec``, target column and class labels, so later stages need not re-derive them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.artifacts import MISSING_CATEGORY, Task
from mlops.profile import column_kind
from mlops.stage import StageError, atomic_write_bytes
from mlops.tables import require_columns

MODEL_NAMES = (
    "logistic_regression",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
)
# Only models that are sensitive to the scale of their inputs get a scaler: a scaler in front of
# trees changes nothing for sklearn but moves split thresholds in float32, breaking ONNX parity.
SCALED_MODELS = frozenset({"logistic_regression"})


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, each list in table column order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    features: tuple[str, ...]


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
    """Every column but ``target`` and ``exclude_columns``: numbers and booleans are numeric,
    text and category columns categorical; date-time columns must be excluded explicitly."""
    require_columns(frame, [target], where)
    ignored = {target, *exclude_columns}
    numeric: list[str] = []
    categorical: list[str] = []
    for name in (str(column) for column in frame.columns if column not in ignored):
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
        raise StageError(f"{where}: no feature columns left after removing {sorted(ignored)}")
    return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical), features=features)


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


def model_target(frame: pd.DataFrame, target: str, where: str = "table") -> pd.Series:
    """The class labels as strings (ONNX emits string labels); every row must be labelled."""
    require_columns(frame, [target], where)
    labels = frame[target]
    unlabelled = int(labels.isna().sum())
    if unlabelled:
        raise StageError(f"{where}: {unlabelled} row(s) have no value in target column '{target}'")
    return labels.map(str).astype(object)


def build_pipeline(model_name: str, spec: FeatureSpec, seed: int) -> Pipeline:
    """``preprocess`` (one ColumnTransformer) then ``model``; every step converts with skl2onnx."""
    estimator = _estimator(model_name, seed)
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


def _estimator(model_name: str, seed: int) -> Any:
    if model_name == "logistic_regression":
        return LogisticRegression(max_iter=2000, random_state=seed)
    if model_name == "random_forest":
        return RandomForestClassifier(random_state=seed)
    if model_name == "gradient_boosting":
        return GradientBoostingClassifier(random_state=seed)
    if model_name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    raise StageError(f"train.model: unknown model family '{model_name}'; known are {MODEL_NAMES}")


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
    if not isinstance(loaded, TrainedModel):
        raise StageError(
            f"{path}: not a model written by the train stage ({type(loaded).__name__})"
        )
    return loaded
