"""Feature engineering: the spec from dtypes, the typed model input, every family's pipeline for
both tasks, the target per task."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from mlops.core.artifacts import MISSING_CATEGORY
from mlops.model import features as features_module
from mlops.model.features import (
    MODEL_NAMES,
    FeatureSpec,
    TrainedModel,
    build_pipeline,
    feature_spec,
    load_model,
    model_input,
    model_target,
    save_model,
)
from mlops.stage import StageError
from model_fixtures import REGRESSION_TARGET, regression_table

# Few trees or boosting rounds: the tests check the wiring, not the fit.
SMALL = {
    "random_forest": {"model__n_estimators": 10},
    "gradient_boosting": {"model__n_estimators": 10},
    "hist_gradient_boosting": {"model__max_iter": 10},
}


def table(rows: int = 24) -> pd.DataFrame:
    """Two classes told apart by ``size`` and ``colour``, with gaps in both kinds of column."""
    rng = np.random.default_rng(0)
    label = np.array(["big", "small"] * (rows // 2), dtype=object)
    size = np.where(label == "big", 10.0, 1.0) + rng.normal(0, 0.5, rows)
    frame = pd.DataFrame(
        {
            "id": range(rows),
            "colour": np.where(label == "big", "red", "blue"),
            "size": size,
            "count": rng.integers(0, 5, rows),
            "label": label,
            "flag": rng.integers(0, 2, rows).astype(bool),
        }
    )
    frame.loc[[0, 5], "size"] = np.nan
    frame.loc[[1, 6], "colour"] = None
    return frame


def test_spec_comes_from_dtypes_in_table_order_without_target_and_excluded() -> None:
    spec = feature_spec(table(), "label", ["id"])

    assert spec.features == ("colour", "size", "count", "flag")
    assert spec.numeric == ("size", "count", "flag")
    assert spec.categorical == ("colour",)


def test_spec_needs_the_target_column() -> None:
    with pytest.raises(StageError, match=r"train\.parquet: missing column\(s\) \['species'\]"):
        feature_spec(table(), "species", [], where="train.parquet")


def test_spec_leaves_out_identifier_and_date_time_columns_and_says_why() -> None:
    frame = regression_table(rows=40)

    spec = feature_spec(frame, REGRESSION_TARGET, ["support calls (#)"])

    assert spec.features == ("Monthly Charge ($)", "Größe", "plan/type")
    assert spec.excluded == {
        "support calls (#)": "listed in data.exclude_columns",
        "customer id": "identifier: every value distinct",
        "signup date": "date-time",
    }


def test_spec_refuses_a_date_time_column_that_slipped_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A date-time is never turned into categories, even if the exclusion rule missed it."""
    monkeypatch.setattr(features_module, "excluded_columns", lambda frame, target: {})
    frame = table().assign(seen=pd.Timestamp("2024-01-01"))

    with pytest.raises(StageError, match=r"column 'seen' has dtype .*data\.exclude_columns"):
        feature_spec(frame, "label", [])
    assert "seen" not in feature_spec(frame, "label", ["seen"]).features


def test_spec_needs_at_least_one_feature() -> None:
    with pytest.raises(StageError, match="no feature columns left"):
        feature_spec(table()[["id", "label"]], "label", ["id"])


def test_model_input_types_features_as_the_onnx_model_takes_them() -> None:
    frame = table()
    spec = feature_spec(frame, "label", ["id"])

    features = model_input(frame[["label", "flag", "size", "colour", "count"]], spec)

    assert list(features.columns) == list(spec.features)
    assert all(features[name].dtype == np.float32 for name in spec.numeric)
    assert features["colour"].dtype == object
    assert features["size"].isna().sum() == 2
    assert features.loc[1, "colour"] == MISSING_CATEGORY
    assert {type(value) for value in features["colour"]} == {str}
    assert features["flag"].isin([0.0, 1.0]).all()


def test_model_input_names_a_missing_feature_column() -> None:
    spec = feature_spec(table(), "label", ["id"])

    with pytest.raises(StageError, match=r"validation: missing column\(s\) \['size'\]"):
        model_input(table().drop(columns="size"), spec, where="validation")


def test_model_target_is_strings_and_refuses_unlabelled_rows() -> None:
    frame = pd.DataFrame({"label": [1, 2, None]})

    assert model_target(frame.iloc[:2], "label", task="classification").tolist() == ["1.0", "2.0"]
    assert model_target(pd.DataFrame({"label": ["a", "b"]}), "label").tolist() == ["a", "b"]
    with pytest.raises(StageError, match="1 row"):
        model_target(frame, "label")


def test_a_regression_target_is_float64_as_the_label_stage_stored_it() -> None:
    frame = pd.DataFrame({"Price (€)": [1.5, 2.0, 10.25]})

    target = model_target(frame, "Price (€)")

    assert target.dtype == np.float64 and target.tolist() == [1.5, 2.0, 10.25]
    as_declared = model_target(pd.DataFrame({"Price (€)": [3, 4]}), "Price (€)", task="regression")
    assert as_declared.dtype == np.float64


def test_a_regression_target_holding_text_names_the_column_rows_and_values() -> None:
    frame = pd.DataFrame(
        {"Price (€)": ["1.5", "n/a", "3", "free", "inf"]}, index=[10, 11, 12, 13, 14]
    )

    with pytest.raises(StageError) as error:
        model_target(frame, "Price (€)", where="validation.parquet", task="regression")

    message = str(error.value)
    assert message.startswith("validation.parquet: target column 'Price (€)' must hold finite")
    assert "3 row(s) do not" in message
    assert "{11: 'n/a', 13: 'free', 14: 'inf'}" in message


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_every_family_fits_and_predicts_with_gaps_and_unseen_categories(model_name: str) -> None:
    frame = table()
    spec = feature_spec(frame, "label", ["id"])
    pipeline = build_pipeline(model_name, spec, seed=0).set_params(**SMALL.get(model_name, {}))

    pipeline.fit(model_input(frame, spec), model_target(frame, "label"))
    unseen = frame.head(4).assign(colour=["green", None, "red", "blue"], size=np.nan)
    probabilities = pipeline.predict_proba(model_input(unseen, spec))

    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    assert list(pipeline.classes_) == ["big", "small"]
    assert probabilities.shape == (4, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert set(pipeline.predict(model_input(frame, spec))) <= {"big", "small"}


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_every_family_has_a_regressor_that_fits_with_gaps_and_unseen_categories(
    model_name: str,
) -> None:
    frame = regression_table(rows=60)
    spec = feature_spec(frame, REGRESSION_TARGET, [])
    pipeline = build_pipeline(model_name, spec, seed=0, task="regression")
    pipeline.set_params(**SMALL.get(model_name, {}))

    pipeline.fit(model_input(frame, spec), model_target(frame, REGRESSION_TARGET))
    unseen = frame.head(4).assign(**{"plan/type": ["gold", None, "basic", "plus"], "Größe": np.nan})
    predictions = pipeline.predict(model_input(unseen, spec))

    estimator = pipeline.named_steps["model"]
    assert type(estimator).__name__.endswith("Regressor") or model_name == "linear"
    assert not hasattr(estimator, "predict_proba")
    assert predictions.shape == (4,) and np.isfinite(predictions).all()
    assert pipeline.score(model_input(frame, spec), frame[REGRESSION_TARGET]) > 0.5


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_only_the_linear_family_gets_a_scaler(model_name: str, task: str) -> None:
    spec = FeatureSpec(numeric=("size",), categorical=("colour",), features=("colour", "size"))
    pipeline = build_pipeline(model_name, spec, seed=0, task=task)  # type: ignore[arg-type]
    preprocess = pipeline.named_steps["preprocess"]
    numeric = dict((name, steps) for name, steps, _ in preprocess.transformers)["numeric"]

    scaled = any(isinstance(step, StandardScaler) for _, step in numeric.steps)

    assert scaled == (model_name == "linear")
    expected = {"classification": "LogisticRegression", "regression": "Ridge"}[task]
    assert (type(pipeline.named_steps["model"]).__name__ == expected) == (model_name == "linear")


def test_pipeline_without_categorical_features_has_no_encoder() -> None:
    spec = FeatureSpec(numeric=("size",), categorical=(), features=("size",))
    preprocess = build_pipeline("random_forest", spec, seed=0).named_steps["preprocess"]

    assert [name for name, _, _ in preprocess.transformers] == ["numeric"]


def test_unknown_model_family_names_the_key() -> None:
    spec = FeatureSpec(numeric=("size",), categorical=(), features=("size",))

    with pytest.raises(StageError, match=r"train\.model: unknown model family 'xgboost'"):
        build_pipeline("xgboost", spec, seed=0)
    with pytest.raises(StageError, match=r"unknown model family 'logistic_regression'.*'linear'"):
        build_pipeline("logistic_regression", spec, seed=0, task="regression")


def test_saved_model_loads_back_with_its_spec_and_classes(tmp_path: Path) -> None:
    frame = table()
    spec = feature_spec(frame, "label", ["id"])
    pipeline = build_pipeline("linear", spec, seed=0)
    pipeline.fit(model_input(frame, spec), model_target(frame, "label"))
    path = tmp_path / "models" / "pipeline.joblib"

    save_model(
        path, TrainedModel(pipeline, spec, "label", "classification", ("big", "small"), "small")
    )
    loaded = load_model(path)

    assert loaded.spec == spec and loaded.target == "label" and loaded.classes == ("big", "small")
    assert loaded.task == "classification" and loaded.positive_class == "small"
    features = model_input(frame, spec)
    assert (loaded.pipeline.predict(features) == pipeline.predict(features)).all()


def test_load_model_refuses_a_missing_file_and_a_foreign_object(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="model file not found"):
        load_model(tmp_path / "absent.joblib")
    joblib.dump({"not": "a model"}, tmp_path / "other.joblib")
    with pytest.raises(StageError, match="not a model written by the train stage"):
        load_model(tmp_path / "other.joblib")
