"""Train stage: search-space checks, the tuning sample, folds that respect the split, the
reported search, both tasks, the positive class, main."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline

from mlops.model import train as train_module
from mlops.model.features import (
    build_pipeline,
    feature_spec,
    load_model,
    model_input,
    model_target,
)
from mlops.model.folds import TuningRows, check_folds, tuning_sample
from mlops.model.search import check_scoring, resolve_scoring, search_space
from mlops.model.train import choose_positive_class, main, train_model
from mlops.params import SplitParams, TrainParams
from mlops.stage import StageError, run
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    binary_table,
    regression_table,
    trained_on,
)
from model_fixtures import penguins as penguins_table

FAST = TrainParams(
    model="linear",
    search="grid",
    cv_folds=3,
    n_jobs=1,
    search_spaces={"classification": {"linear": {"C": [0.1, 1.0]}}},
)


@pytest.fixture
def penguins(penguins_csv: Path) -> pd.DataFrame:
    return pd.read_csv(penguins_csv).dropna(subset=["species"]).reset_index(drop=True)


def space_of(
    model: str, spaces: dict[str, Any], task: str = "classification"
) -> dict[str, list[Any]]:
    params = TrainParams(model=model, search_spaces=spaces)  # type: ignore[arg-type]
    spec = feature_spec(pd.DataFrame({"x": [1.0], "y": ["a"]}), "y", [])
    pipeline = build_pipeline(model, spec, seed=0, task=task)  # type: ignore[arg-type]
    return search_space(params, pipeline, task)  # type: ignore[arg-type]


def test_search_space_is_the_tasks_and_prefixed_with_the_model_step() -> None:
    spaces = {
        "classification": {"random_forest": {"max_depth": [None, 4]}},
        "regression": {"random_forest": {"min_samples_leaf": [1, 5]}, "linear": {"alpha": [1.0]}},
    }

    assert space_of("random_forest", spaces) == {"model__max_depth": [None, 4]}
    assert space_of("random_forest", spaces, "regression") == {"model__min_samples_leaf": [1, 5]}
    assert space_of("linear", spaces, "regression") == {"model__alpha": [1.0]}


@pytest.mark.parametrize(
    ("spaces", "message"),
    [
        (
            {"clasification": {"random_forest": {"max_depth": [4]}}},
            r"\.clasification: unknown task",
        ),
        ({"regression": {"xgboost": {"eta": [1]}}}, r"\.regression\.xgboost: unknown model family"),
        (
            {"classification": {"linear": {"C": [1.0]}}},
            r"\.classification\.random_forest: no search",
        ),
        (
            {"regression": {"random_forest": {"max_depth": [4]}}},
            r"\.classification\.random_forest: no",
        ),
        ({"classification": {"random_forest": {}}}, r"\.classification\.random_forest: no search"),
        (
            {"classification": {"random_forest": {"max_dept": [4]}}},
            r"\.classification\.random_forest\.max_dept: not a",
        ),
        (
            {"classification": {"random_forest": {"max_depth": []}}},
            r"\.classification\.random_forest\.max_depth: empty list",
        ),
        (
            {"classification": {"random_forest": {"max_depth": ["deep"]}}},
            r"\.classification\.random_forest\.max_depth: 'deep' is not",
        ),
    ],
)
def test_bad_search_space_names_the_key(spaces: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=r"train\.search_spaces" + message):
        space_of("random_forest", spaces)


def test_a_classifier_hyper_parameter_is_not_one_of_the_regressor() -> None:
    spaces = {"regression": {"random_forest": {"class_weight": [None, "balanced"]}}}

    with pytest.raises(
        StageError,
        match=r"regression\.random_forest\.class_weight: not a hyper-parameter of RandomForestRegr",
    ):
        space_of("random_forest", spaces, "regression")


def test_unknown_scorer_names_the_key() -> None:
    check_scoring("neg_log_loss")
    with pytest.raises(StageError, match=r"train\.scoring: unknown scorer 'f2_macro'"):
        check_scoring("f2_macro")


def test_tuning_sample_keeps_class_shares_and_table_order() -> None:
    labels = pd.Series(["a"] * 80 + ["b"] * 20)
    features = pd.DataFrame({"x": np.arange(100.0)})
    rows = TuningRows(features, labels)

    sampled = tuning_sample(rows, max_rows=50, seed=0, task="classification")

    assert sampled.target.value_counts().to_dict() == {"a": 40, "b": 10}
    assert sampled.features.index.is_monotonic_increasing
    assert (sampled.features.index == sampled.target.index).all()
    assert tuning_sample(rows, max_rows=100, seed=0, task="classification") is rows


def test_tuning_sample_of_a_regression_keeps_every_part_of_the_target_range() -> None:
    target = pd.Series(np.r_[np.arange(90.0), np.arange(1000.0, 1010.0)])  # 10 rows far above
    rows = TuningRows(pd.DataFrame({"x": np.arange(100.0)}), target)

    sampled = tuning_sample(rows, max_rows=50, seed=0, task="regression")

    assert len(sampled) == 50
    assert (sampled.target >= 1000).sum() == 5  # the top tenth keeps its share
    assert sampled.target.index.is_monotonic_increasing


def test_tuning_sample_keeps_whole_groups_and_the_most_recent_rows() -> None:
    features = pd.DataFrame({"x": np.arange(100.0)})
    target = pd.Series(np.arange(100.0))
    groups = pd.Series(np.repeat(list("abcdefghij"), 10), name="store")
    order = pd.Series(pd.date_range("2024-01-01", periods=50).repeat(2)[::-1], name="day")

    grouped = tuning_sample(TuningRows(features, target, groups=groups), 35, 0, "regression")
    recent = tuning_sample(TuningRows(features, target, order=order), 35, 0, "regression")

    assert grouped.groups is not None and len(grouped) == 40  # whole groups: 4 of 10 rows each
    assert grouped.groups.value_counts().eq(10).all()
    assert recent.order is not None and len(recent) == 36  # the 18 latest days, both rows each
    assert recent.order.min() > order.drop(recent.order.index).max()


def test_folds_need_enough_rows_of_every_class() -> None:
    with pytest.raises(StageError, match=r"train\.cv_folds: 5 .* class 'b' has 3"):
        check_folds(pd.Series(["a"] * 10 + ["b"] * 3), folds=5)
    with pytest.raises(StageError, match="at least 2 folds"):
        check_folds(pd.Series(["a"] * 10), folds=1)


def test_regression_folds_need_enough_rows() -> None:
    check_folds(pd.Series([1.0, 2.0, 3.0]), folds=3, task="regression")
    with pytest.raises(StageError, match=r"train\.cv_folds: 5 folds need at least 5 rows; .* 3"):
        check_folds(pd.Series([1.0, 2.0, 3.0]), folds=5, task="regression")


def test_search_reports_every_trial_and_refits_on_all_rows(
    penguins: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    params = dataclasses.replace(FAST, max_tuning_rows=150)

    result = train_model(penguins, "species", ["year"], params)

    printed = capsys.readouterr().out
    assert "linear (classification) by grid search" in printed
    assert "trial 1 of 2:" in printed and "trial 2 of 2:" in printed
    assert printed.count("best so far") == 2
    assert result.summary["tuning_rows"] < 160 < result.summary["training_rows"] == len(penguins)
    imputer = result.model.pipeline.named_steps["preprocess"].named_transformers_["numeric"]
    medians = penguins[list(result.model.spec.numeric)].median().to_numpy()
    np.testing.assert_allclose(imputer.named_steps["impute"].statistics_, medians, rtol=1e-6)
    assert result.model.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert result.model.task == "classification" and result.model.positive_class is None
    assert "year" not in result.model.spec.features
    assert result.summary["scoring"] == "f1_macro"  # auto, for three classes


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
    assert summary["model"] == "linear" and summary["n_candidates"] == 2
    assert summary["best_cv_score"] == pytest.approx(table["mean_test_score"].max())
    assert json.loads(table["params"][0]) == summary["best_params"]


def test_random_search_is_seeded_and_capped_at_the_grid_size(penguins: pd.DataFrame) -> None:
    params = TrainParams(
        model="random_forest",
        search="random",
        n_iter=10,
        cv_folds=3,
        n_jobs=1,
        search_spaces={
            "classification": {"random_forest": {"n_estimators": [5, 10], "max_depth": [2, 4]}}
        },
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
        search_spaces={
            "classification": {"random_forest": {"n_estimators": [5, 10, 20], "max_depth": [2, 4]}}
        },
    )

    result = train_model(penguins, "species", ["year"], params)

    assert "round 1, trial 6 of 6" in capsys.readouterr().out
    assert result.cv_results["round"].max() >= 2
    assert result.cv_results["rows"].max() > result.cv_results["rows"].min()


def write_project(
    root: Path,
    frame: pd.DataFrame,
    train: dict[str, Any],
    data: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
) -> list[str]:
    """A params file and a training table in ``root``; returns the stage's arguments."""
    params = {
        "data": data or {"source": "unused.csv", "target": "species", "exclude_columns": ["year"]},
        "split": split or {},
        "train": train,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
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
        "search_spaces": {
            "classification": {"random_forest": {"n_estimators": [10, 20], "max_depth": [None, 4]}}
        },
    }

    assert run(main, write_project(tmp_path, penguins, train)) == 0

    model = load_model(tmp_path / "models" / "pipeline.joblib")
    assert model.target == "species" and len(model.classes) == 3
    summary = json.loads((tmp_path / "reports" / "train" / "best_params.json").read_text())
    assert summary["n_candidates"] == 3 and summary["search"] == "random"
    assert set(summary["best_params"]) == {"n_estimators", "max_depth"}
    assert summary["fit_seconds"] > 0
    assert summary["task"] == "classification" and summary["cv"] == "3 stratified folds"
    assert summary["excluded"] == {"year": "listed in data.exclude_columns"}
    results = pd.read_csv(tmp_path / "reports" / "train" / "cv_results.csv")
    assert len(results) == 3 and results["rank"].min() == 1


def test_main_stops_on_an_unknown_hyper_parameter_with_one_line(
    tmp_path: Path, penguins: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {
        "model": "random_forest",
        "search_spaces": {"classification": {"random_forest": {"depth": [2]}}},
    }

    assert run(main, write_project(tmp_path, penguins.iloc[::12], train)) == 1

    error = capsys.readouterr().err
    assert error.startswith(
        "error: train.search_spaces.classification.random_forest.depth: not a hyper-param"
    )
    assert error.count("\n") == 1
    assert not (tmp_path / "models").exists()


# --- regression -------------------------------------------------------------------------------

REGRESSION = TrainParams(
    model="linear",
    search="grid",
    cv_folds=3,
    n_jobs=1,
    search_spaces={"regression": {"linear": {"alpha": [0.1, 10.0]}}},
)


def test_a_float_target_trains_a_regressor_scored_by_rmse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = regression_table()

    result = train_model(frame, REGRESSION_TARGET, [], REGRESSION)

    model = result.model
    assert model.task == "regression" and model.classes == () and model.positive_class is None
    assert type(model.pipeline.named_steps["model"]).__name__ == "Ridge"
    assert result.summary["scoring"] == "neg_root_mean_squared_error"
    assert result.summary["cv"] == "3 shuffled folds"
    assert result.summary["excluded"] == {
        "customer id": "identifier: every value distinct",
        "signup date": "date-time",
    }
    assert "linear (regression) by grid search" in capsys.readouterr().out
    predictions = model.pipeline.predict(model_input(frame, model.spec))
    rmse = float(np.sqrt(np.mean((predictions - frame[REGRESSION_TARGET]) ** 2)))
    assert rmse < 0.3 * frame[REGRESSION_TARGET].std()
    assert -result.summary["best_cv_score"] == pytest.approx(rmse, rel=0.5)


@pytest.mark.parametrize("family", ["random_forest", "hist_gradient_boosting"])
def test_tree_regressors_tune_from_the_regression_search_space(family: str) -> None:
    space = {"random_forest": {"n_estimators": [5]}, "hist_gradient_boosting": {"max_iter": [10]}}
    params = TrainParams(
        model=family,  # type: ignore[arg-type]
        search="grid",
        cv_folds=2,
        n_jobs=1,
        search_spaces={"regression": {family: space[family]}},
    )

    result = train_model(regression_table(rows=80), REGRESSION_TARGET, [], params)

    assert type(result.model.pipeline.named_steps["model"]).__name__.endswith("Regressor")
    assert result.summary["best_params"] == {name: v[0] for name, v in space[family].items()}


def test_a_regression_target_holding_text_is_refused_with_its_rows() -> None:
    frame = regression_table(rows=30)
    frame[REGRESSION_TARGET] = frame[REGRESSION_TARGET].astype(object)
    frame.loc[3, REGRESSION_TARGET] = "unknown"

    # object dtype reads as classes: text in a float target can only come from a hand-made table,
    # which the label stage would have refused; asked for a regression, the rows are named
    with pytest.raises(StageError, match=r"must hold finite numbers .* \{3: 'unknown'\}"):
        model_target(frame, REGRESSION_TARGET, "train.parquet", task="regression")


def test_a_classification_scorer_for_a_regression_is_refused_by_name() -> None:
    params = dataclasses.replace(REGRESSION, scoring="f1_macro")

    with pytest.raises(
        StageError, match=r"train\.scoring: 'f1_macro' cannot score this regression"
    ):
        train_model(regression_table(rows=40), REGRESSION_TARGET, [], params)


# --- two classes ------------------------------------------------------------------------------

BINARY = dataclasses.replace(FAST, search_spaces={"classification": {"linear": {"C": [1.0]}}})


def test_two_classes_tune_on_roc_auc_of_the_minority_class_by_default() -> None:
    frame = binary_table()

    result = train_model(frame, BINARY_TARGET, [], BINARY)

    assert result.model.classes == ("no", "yes")
    assert result.model.positive_class == POSITIVE == result.summary["positive_class"]
    assert result.summary["scoring"] == "roc_auc"
    assert 0.6 < result.summary["best_cv_score"] <= 1.0


def test_a_declared_positive_class_is_kept_and_checked() -> None:
    frame = binary_table(rows=60)

    chosen = train_model(frame, BINARY_TARGET, [], BINARY, positive_class="no")

    assert chosen.model.positive_class == "no"
    with pytest.raises(
        StageError,
        match=r"data\.positive_class: 'Yes' is not a class of target 'Churned\?'; .* \['no', 'y",
    ):
        train_model(frame, BINARY_TARGET, [], BINARY, positive_class="Yes")


@pytest.mark.parametrize(
    ("frame", "target", "message"),
    [
        (penguins_table(), "species", r"applies to two classes; target 'species' .* is 3 classes"),
        (
            regression_table(60),
            REGRESSION_TARGET,
            r"applies .* target 'Monthly Spend \(€\)' .* is a regression target",
        ),
    ],
)
def test_a_positive_class_for_other_tasks_is_refused(
    frame: pd.DataFrame, target: str, message: str
) -> None:
    params = dataclasses.replace(FAST, search_spaces={})

    with pytest.raises(StageError, match=r"data\.positive_class: 'yes' " + message):
        train_model(frame, target, ["year"], params, positive_class="yes")


def test_a_tie_makes_the_later_class_positive() -> None:
    labels = pd.Series(["0", "1"] * 5)

    assert choose_positive_class(labels, ("0", "1"), None, "t") == "1"
    assert choose_positive_class(pd.Series(["b", "a", "a"]), ("a", "b"), None, "t") == "b"


def test_a_scorer_of_one_class_scores_the_positive_class() -> None:
    frame = binary_table(rows=80)
    model = trained_on(frame, BINARY_TARGET, "linear")
    features, truth = model_input(frame, model.spec), frame[BINARY_TARGET]
    predicted = model.pipeline.predict(features)

    for positive in ("yes", "no"):
        scorer = resolve_scoring("f1", "classification", ("no", "yes"), positive).scorer
        expected = f1_score(truth, predicted, pos_label=positive)
        assert scorer(model.pipeline, features, truth) == pytest.approx(expected)


def test_a_scorer_of_two_classes_for_three_is_refused_by_name(penguins: pd.DataFrame) -> None:
    params = dataclasses.replace(FAST, scoring="roc_auc")

    with pytest.raises(
        StageError, match=r"train\.scoring: 'roc_auc' cannot score this classification target"
    ):
        train_model(penguins, "species", ["year"], params)


# --- folds that respect the split ------------------------------------------------------------


class Recorder(BaseEstimator, TransformerMixin):
    """Passes rows through, noting the table index of every row it is fitted on or transforms:
    a search's fit on a fold's training rows, then its scoring of the fold's test rows."""

    calls: list[tuple[str, pd.Index]] = []

    def fit(self, features: pd.DataFrame, target: Any = None) -> Recorder:
        Recorder.calls.append(("fit", features.index))
        return self

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        Recorder.calls.append(("transform", features.index))
        return features


def folds_used(
    monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame, target: str, split: SplitParams
) -> list[tuple[set[Any], set[Any]]]:
    """Train on ``frame`` with a Recorder in front of the model; the (training rows, test rows)
    of every fold the search fitted and scored, as table index labels."""
    original = train_module.build_pipeline

    def recording(*args: Any, **kwargs: Any) -> Pipeline:
        pipeline = original(*args, **kwargs)
        return Pipeline([("record", Recorder()), *pipeline.steps])

    monkeypatch.setattr(train_module, "build_pipeline", recording)
    Recorder.calls = []
    task = "regression" if target == REGRESSION_TARGET else "classification"
    params = TrainParams(
        model="linear",
        search="grid",
        cv_folds=4,
        n_jobs=1,
        max_tuning_rows=150,
        search_spaces={task: {"linear": {"C" if task == "classification" else "alpha": [1.0]}}},
    )
    result = train_model(frame, target, [], params, split=split)
    assert result.summary["tuning_rows"] <= 160
    calls = Recorder.calls[:-2]  # the last fit and transform are the refit on every row
    assert set(calls[-1][1]) != set(frame.index)
    folds = []
    for position in range(0, len(calls), 3):  # fit(train), transform(train), transform(test)
        (fit, train), (_, transformed), (_, test) = calls[position : position + 3]
        assert fit == "fit" and transformed.equals(train)
        folds.append((set(train), set(test)))
    assert len(folds) == 4
    return folds


@pytest.mark.parametrize("target", [BINARY_TARGET, REGRESSION_TARGET])
def test_grouped_folds_never_put_one_group_on_both_sides(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    frame = binary_table(rows=300) if target == BINARY_TARGET else regression_table(rows=300)
    frame["store"] = np.random.default_rng(3).integers(0, 30, len(frame)).astype(str)

    folds = folds_used(monkeypatch, frame, target, SplitParams(group_column="store"))

    stores = frame["store"]
    tuned = set().union(*(train | test for train, test in folds))
    for train, test in folds:
        assert train and test and not train & test
        assert not set(stores[list(train)]) & set(stores[list(test)])
    # the tuning sample (150 of 300 rows) kept whole groups
    assert all(
        stores.eq(store).sum() == stores[list(tuned)].eq(store).sum()
        for store in set(stores[list(tuned)])
    )


@pytest.mark.parametrize("target", [BINARY_TARGET, REGRESSION_TARGET])
def test_time_ordered_folds_never_train_on_a_later_row(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    frame = binary_table(rows=300) if target == BINARY_TARGET else regression_table(rows=300)
    frame = frame.sample(frac=1.0, random_state=1)  # the table is not in time order
    frame["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(300) // 3, "D")

    folds = folds_used(monkeypatch, frame, target, SplitParams(order_column="day"))

    days = frame["day"]
    tuned = set().union(*(train | test for train, test in folds))
    for number, (train, test) in enumerate(folds):
        assert train and test
        assert days[list(train)].max() < days[list(test)].min()
        if number:  # each fold trains on everything before its test block
            assert train == folds[number - 1][0] | folds[number - 1][1]
    # the tuning sample (150 of 300 rows) is the most recent rows
    assert days[list(tuned)].min() > days.drop(index=list(tuned)).max()


def test_folds_that_cannot_respect_the_split_are_refused_by_name() -> None:
    frame = regression_table(rows=60)
    frame["store"] = ["a", "b"] * 30
    frame["week"] = [1, 2, 3] * 20
    params = dataclasses.replace(REGRESSION, cv_folds=3)

    with pytest.raises(StageError, match=r"3 grouped folds need at least 3 groups .* 'store'.* 2"):
        train_model(frame, REGRESSION_TARGET, [], params, split=SplitParams(group_column="store"))
    with pytest.raises(StageError, match=r"3 time-ordered folds need at least 4 distinct .*'week'"):
        train_model(frame, REGRESSION_TARGET, [], params, split=SplitParams(order_column="week"))
    with pytest.raises(StageError, match=r"split\.group_column: column 'shop' is not in t"):
        train_model(
            frame, REGRESSION_TARGET, [], params, "t", split=SplitParams(group_column="shop")
        )
    with pytest.raises(StageError, match="not both"):
        both = SplitParams(group_column="store", order_column="week")
        train_model(frame, REGRESSION_TARGET, [], params, split=both)


def test_a_time_ordered_fold_without_a_class_to_learn_is_refused() -> None:
    frame = binary_table(rows=120)
    frame["day"] = np.arange(120)
    frame[BINARY_TARGET] = np.where(frame["day"] < 60, "no", "yes")  # "yes" only later

    with pytest.raises(
        StageError,
        match=r"fold 1 of 3 time-ordered folds by 'day' trains on rows without class\(es\) \['y",
    ):
        train_model(frame, BINARY_TARGET, [], BINARY, split=SplitParams(order_column="day"))


def test_main_reads_the_split_and_the_positive_class(tmp_path: Path) -> None:
    frame = binary_table(rows=120)
    frame["region/zone"] = np.repeat(["n", "s", "e", "w", "c", "x"], 20)
    data = {"source": "unused.csv", "target": BINARY_TARGET, "positive_class": "no"}
    train = {
        "model": "linear",
        "cv_folds": 3,
        "n_jobs": 1,
        "search_spaces": {"classification": {"linear": {"C": [1.0]}}},
    }
    split = {"group_column": "region/zone"}

    assert run(main, write_project(tmp_path, frame, train, data, split)) == 0

    summary = json.loads((tmp_path / "reports" / "train" / "best_params.json").read_text())
    assert summary["cv"] == "3 folds grouped by 'region/zone'"
    assert summary["positive_class"] == "no" and summary["scoring"] == "roc_auc"
    assert load_model(tmp_path / "models" / "pipeline.joblib").positive_class == "no"


def test_whole_number_classes_train_a_balanced_forest_per_tree_and_refuse_balanced() -> None:
    """scikit-learn's forest fails on class_weight 'balanced' with classes "1", "2", "3"; the
    default space's balanced_subsample works, and 'balanced' is refused by name before a fit."""
    rng = np.random.default_rng(0)
    codes = rng.choice(["1", "2", "3"], 90)
    frame = pd.DataFrame({"x (cm)": codes.astype(float) + rng.normal(0, 0.3, 90), "code": codes})
    spaces = {"classification": {"random_forest": {"n_estimators": [5]}}}

    def forest(class_weight: str) -> TrainParams:
        space = {**spaces["classification"]["random_forest"], "class_weight": [class_weight]}
        return dataclasses.replace(
            FAST, model="random_forest", search_spaces={"classification": {"random_forest": space}}
        )

    result = train_model(frame, "code", [], forest("balanced_subsample"))
    assert result.model.classes == ("1", "2", "3")
    with pytest.raises(StageError, match=r"random_forest\.class_weight: 'balanced'.*'1', '2'"):
        train_model(frame, "code", [], forest("balanced"))
