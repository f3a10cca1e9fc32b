"""The task follows the target: ``mlops.task``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from mlops.task import (
    MAX_INTEGER_CLASSES,
    decide_task,
    numbers_in_text,
    primary_metric,
    target_statistics,
    task_of,
    task_preview,
)


def series(values: Sequence[object], dtype: str | None = None) -> pd.Series:
    return pd.Series(values, name="Monthly Charge ($)", dtype=dtype)


@pytest.mark.parametrize(
    ("values", "dtype", "reason"),
    [
        (["yes", "no", None, "yes"], None, "holds text (2 distinct values)"),
        (["Größe S", "Größe M"], "str", "holds text (2 distinct values)"),
        ([True, False, True], None, "holds true/false values"),
        ([True, None, False], "boolean", "holds true/false values"),
        ([True, None, False], "object", "holds true/false values"),
        ([1, 2, 3, 2, 1], None, "holds 3 distinct whole numbers (at most 10: class codes)"),
        # whole numbers stored as floats because of a gap are still codes
        ([0.0, 1.0, np.nan, 1.0], None, "holds 2 distinct whole numbers"),
        ([0, 1, None], "Int64", "holds 2 distinct whole numbers"),
        (list(range(MAX_INTEGER_CLASSES)), None, "holds 10 distinct whole numbers"),
        # a few codes among words stay classes
        (["1", "2", "unknown", "2"] * 5, None, "holds text (3 distinct values)"),
    ],
)
def test_classes(values: list[object], dtype: str | None, reason: str) -> None:
    decision = decide_task(series(values, dtype))
    assert decision.task == "classification"
    assert reason in decision.reason
    assert "'Monthly Charge ($)'" in decision.reason


@pytest.mark.parametrize(
    ("values", "dtype", "reason"),
    [
        ([12.5, 80.0, 23.25], None, "holds fractional numbers"),
        ([12.5, np.nan, 80.0], "float32", "holds fractional numbers"),
        (list(range(MAX_INTEGER_CLASSES + 1)), None, "holds 11 distinct whole numbers"),
        ([*range(100, 3000, 100), None], "float64", "holds 29 distinct whole numbers"),
        ([*range(0, 20), None], "Int64", "(more than 10: a quantity)"),
        ([" 12.5", "80", "23.25 "], None, "holds fractional numbers written as text"),
    ],
)
def test_regression(values: list[object], dtype: str | None, reason: str) -> None:
    decision = decide_task(series(values, dtype))
    assert decision.task == "regression"
    assert reason in decision.reason


def test_numbers_with_stray_text_are_a_regression_target_naming_the_text() -> None:
    values = [f"{v}.5" for v in range(30)] + ["n/a", "?", "n/a"]
    decision = decide_task(series(values))
    assert decision.task == "regression"
    assert "3 value(s) are not numbers (e.g. 'n/a', '?')" in decision.reason


def test_mostly_text_stays_classes() -> None:
    values = [f"{v}.5" for v in range(10)] + ["red", "green"] * 5
    assert decide_task(series(values)).task == "classification"


@pytest.mark.parametrize("declared", ["classification", "regression"])
def test_a_declared_task_wins(declared: str) -> None:
    for values in ([1.5, 2.5, 3.5], ["a", "b"]):
        decision = decide_task(series(values), declared)  # type: ignore[arg-type]
        assert decision.task == declared
        assert decision.reason == f"data.task says {declared}"


def test_no_values_left_is_said() -> None:
    decision = decide_task(series([None, None], "float64"))
    assert decision.task == "classification"
    assert "has no values to decide from" in decision.reason


def test_numbers_in_text() -> None:
    parsed = numbers_in_text(pd.Series([" 1.5", "x", None, "2e3"]))
    assert parsed.tolist()[0] == 1.5
    assert np.isnan(parsed.tolist()[1]) and np.isnan(parsed.tolist()[2])
    assert parsed.tolist()[3] == 2000.0
    dates = pd.Series(pd.to_datetime(["2024-01-01"]))
    assert numbers_in_text(dates).isna().all()  # a date is not a number


def test_task_of_reads_the_stored_type() -> None:
    assert task_of(pd.Series([1.0, 2.5])) == "regression"
    assert task_of(pd.Series(["1", "2"], dtype="str")) == "classification"
    assert task_of(pd.Series(["a"], dtype=object)) == "classification"
    assert task_of(pd.Series([1, 2])) == "classification"  # never stored so by label


def test_primary_metric_per_task() -> None:
    rmse = primary_metric("regression", 0)
    assert (rmse.name, rmse.higher_is_better, rmse.scoring) == (
        "rmse",
        False,
        "neg_root_mean_squared_error",
    )
    assert primary_metric("classification", 2).name == "roc_auc"
    assert primary_metric("classification", 3).scoring == "f1_macro"


def test_task_preview_on_the_raw_table() -> None:
    frame = pd.DataFrame({"Price (€)": [1.5, 2.25, 3.0]})
    assert task_preview(frame, "Price (€)", "auto") == {
        "task": "regression",
        "reason": "target 'Price (€)' holds fractional numbers",
    }
    made_by_label = task_preview(frame, "class", "auto")
    assert made_by_label["task"] is None
    assert "'class' is not a column of the raw table" in str(made_by_label["reason"])
    assert task_preview(frame, "class", "regression")["task"] == "regression"


def test_target_statistics_of_the_present_values() -> None:
    statistics = target_statistics(pd.Series([1.0, None, 3.0], name="Price (€)"))
    assert statistics == {
        "count": 2,
        "mean": 2.0,
        "std": pytest.approx(2**0.5),
        "min": 1.0,
        "max": 3.0,
    }
    assert target_statistics(pd.Series([5.0])) == {
        "count": 1,
        "mean": 5.0,
        "std": 0.0,
        "min": 5.0,
        "max": 5.0,
    }
    assert target_statistics(pd.Series([], dtype="float64")) == {"count": 0}
