"""Train stage: search-space checks, the stratified tuning sample, the reported search, main."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.model.features import build_pipeline, feature_spec, load_model
from mlops.model.train import (
    check_folds,
    check_scoring,
    main,
    search_space,
    train_model,
    tuning_sample,
)
from mlops.params import TrainParams
from mlops.stage import StageError, run

FAST = TrainParams(
    model="logistic_regression",
    search="grid",
    cv_folds=3,
    n_jobs=1,
    search_spaces={"logistic_regression": {"C": [0.1, 1.0]}},
)


@pytest.fixture
def penguins(penguins_csv: Path) -> pd.DataFrame:
    return pd.read_csv(penguins_csv).dropna(subset=["species"]).reset_index(drop=True)


def space_of(model: str, spaces: dict[str, Any]) -> dict[str, list[Any]]:
    params = TrainParams(model=model, search_spaces=spaces)  # type: ignore[arg-type]
    spec = feature_spec(pd.DataFrame({"x": [1.0], "y": ["a"]}), "y", [])
    return search_space(params, build_pipeline(model, spec, seed=0))


def test_search_space_is_prefixed_with_the_model_step() -> None:
    space = space_of("random_forest", {"random_forest": {"max_depth": [None, 4]}})

    assert space == {"model__max_depth": [None, 4]}


@pytest.mark.parametrize(
    ("spaces", "message"),
    [
        ({"random_forest": {"max_depth": [4]}, "xgboost": {"eta": [1]}}, r"\.xgboost: unknown"),
        ({"logistic_regression": {"C": [1.0]}}, r"\.random_forest: no search space"),
        ({"random_forest": {}}, r"\.random_forest: no search space"),
        ({"random_forest": {"max_dept": [4]}}, r"\.random_forest\.max_dept: not a hyper-param"),
        ({"random_forest": {"max_depth": []}}, r"\.random_forest\.max_depth: empty list"),
        ({"random_forest": {"max_depth": ["deep"]}}, r"\.random_forest\.max_depth: 'deep' is not"),
    ],
)
def test_bad_search_space_names_the_key(spaces: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=r"train\.search_spaces" + message):
        space_of("random_forest", spaces)


def test_unknown_scorer_names_the_key() -> None:
    check_scoring("neg_log_loss")
    with pytest.raises(StageError, match=r"train\.scoring: unknown scorer 'f2_macro'"):
        check_scoring("f2_macro")


def test_tuning_sample_keeps_class_shares_and_table_order() -> None:
    labels = pd.Series(["a"] * 80 + ["b"] * 20)
    features = pd.DataFrame({"x": np.arange(100.0)})

    sampled_features, sampled_labels = tuning_sample(features, labels, max_rows=50, seed=0)

    assert sampled_labels.value_counts().to_dict() == {"a": 40, "b": 10}
    assert sampled_features.index.is_monotonic_increasing
    assert (sampled_features.index == sampled_labels.index).all()
    assert tuning_sample(features, labels, max_rows=100, seed=0)[1] is labels


def test_folds_need_enough_rows_of_every_class() -> None:
    with pytest.raises(StageError, match=r"train\.cv_folds: 5 .* class 'b' has 3"):
        check_folds(pd.Series(["a"] * 10 + ["b"] * 3), folds=5)
    with pytest.raises(StageError, match="at least 2 folds"):
        check_folds(pd.Series(["a"] * 10), folds=1)


def test_search_reports_every_trial_and_refits_on_all_rows(
    penguins: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    params = dataclasses.replace(FAST, max_tuning_rows=150)

    result = train_model(penguins, "species", ["year"], params)

    printed = capsys.readouterr().out
    assert "trial 1 of 2:" in printed and "trial 2 of 2:" in printed
    assert printed.count("best so far") == 2
    assert result.summary["tuning_rows"] < 160 < result.summary["training_rows"] == len(penguins)
    imputer = result.model.pipeline.named_steps["preprocess"].named_transformers_["numeric"]
    medians = penguins[list(result.model.spec.numeric)].median().to_numpy()
    np.testing.assert_allclose(imputer.named_steps["impute"].statistics_, medians, rtol=1e-6)
    assert result.model.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert "year" not in result.model.spec.features


def test_summary_and_cv_results_describe_the_search(penguins: pd.DataFrame) -> None:
    result = train_model(penguins, "species", ["year"], FAST)

    table = result.cv_results
    assert list(table.columns) == [
        "rank",
        "mean_test_score",
        "std_test_score",
        "mean_fit_seconds",
        "params",
    ]
    assert table["rank"].is_monotonic_increasing
    assert {json.loads(params)["C"] for params in table["params"]} == {0.1, 1.0}
    summary = result.summary
    assert summary["model"] == "logistic_regression" and summary["n_candidates"] == 2
    assert summary["best_cv_score"] == pytest.approx(table["mean_test_score"].max())
    assert json.loads(table["params"][0]) == summary["best_params"]


def test_random_search_is_seeded_and_capped_at_the_grid_size(penguins: pd.DataFrame) -> None:
    params = TrainParams(
        model="random_forest",
        search="random",
        n_iter=10,
        cv_folds=3,
        n_jobs=1,
        search_spaces={"random_forest": {"n_estimators": [5, 10], "max_depth": [2, 4]}},
    )

    first = train_model(penguins, "species", ["year"], params)
    second = train_model(penguins, "species", ["year"], params)

    assert first.summary["n_candidates"] == 4
    pd.testing.assert_frame_equal(
        first.cv_results.drop(columns="mean_fit_seconds"),
        second.cv_results.drop(columns="mean_fit_seconds"),
    )


def test_halving_search_reports_its_rounds(
    penguins: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    params = TrainParams(
        model="random_forest",
        search="halving",
        n_iter=6,
        cv_folds=3,
        n_jobs=1,
        search_spaces={"random_forest": {"n_estimators": [5, 10, 20], "max_depth": [2, 4]}},
    )

    result = train_model(penguins, "species", ["year"], params)

    assert "round 1, trial 6 of 6" in capsys.readouterr().out
    assert result.cv_results["round"].max() >= 2
    assert result.cv_results["rows"].max() > result.cv_results["rows"].min()


def write_project(root: Path, frame: pd.DataFrame, train: dict[str, Any]) -> list[str]:
    """A params file and a training table in ``root``; returns the stage's arguments."""
    params = {"data": {"source": "unused.csv", "target": "species", "exclude_columns": ["year"]}}
    params["train"] = train
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    frame.to_parquet(root / "train.parquet", index=False)
    return [
        "--params",
        str(root / "params.yaml"),
        "--train",
        str(root / "train.parquet"),
        "--out",
        str(root / "models" / "pipeline.joblib"),
        "--reports",
        str(root / "reports" / "train"),
    ]


def test_main_writes_the_model_and_the_reports(tmp_path: Path, penguins: pd.DataFrame) -> None:
    train = {
        "model": "random_forest",
        "search": "random",
        "n_iter": 3,
        "cv_folds": 3,
        "n_jobs": 1,
        "search_spaces": {"random_forest": {"n_estimators": [10, 20], "max_depth": [None, 4]}},
    }

    assert run(main, write_project(tmp_path, penguins, train)) == 0

    model = load_model(tmp_path / "models" / "pipeline.joblib")
    assert model.target == "species" and len(model.classes) == 3
    summary = json.loads((tmp_path / "reports" / "train" / "best_params.json").read_text())
    assert summary["n_candidates"] == 3 and summary["search"] == "random"
    assert set(summary["best_params"]) == {"n_estimators", "max_depth"}
    assert summary["fit_seconds"] > 0
    results = pd.read_csv(tmp_path / "reports" / "train" / "cv_results.csv")
    assert len(results) == 3 and results["rank"].min() == 1


def test_main_stops_on_an_unknown_hyper_parameter_with_one_line(
    tmp_path: Path, penguins: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"model": "random_forest", "search_spaces": {"random_forest": {"depth": [2]}}}

    assert run(main, write_project(tmp_path, penguins.head(30), train)) == 1

    error = capsys.readouterr().err
    assert error.startswith("error: train.search_spaces.random_forest.depth: not a hyper-param")
    assert error.count("\n") == 1
    assert not (tmp_path / "models").exists()
