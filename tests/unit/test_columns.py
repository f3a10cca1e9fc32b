"""Identifier and date-time columns are never features: ``mlops.columns.excluded_columns``."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from mlops.columns import MIN_IDENTIFIER_VALUES, excluded_columns, is_date_time, is_identifier

ROWS = 40


def customers(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "Customer ID": [f"C-{1000 + i}" for i in range(rows)],
            "Konto Nr.": rng.permutation(np.arange(500_000, 500_000 + 10 * rows, 10)),
            "row": np.arange(rows) + 1,
            "Monthly Charge ($)": rng.normal(70, 20, rows).round(2),
            "Tenure (months)": rng.integers(1, 72, rows),
            "plan/type": rng.choice(["basic", "pro"], rows),
            "Größe": rng.choice(["S", "M", "L"], rows),
            "1st contact": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "signed at": pd.date_range("2024-01-01 08:00", periods=rows, freq="h"),
            "churned": rng.choice(["yes", "no"], rows),
        }
    )


def test_identifiers_and_date_times_are_excluded_with_a_reason() -> None:
    assert excluded_columns(customers(), target="churned") == {
        "Customer ID": "identifier: every value distinct",
        "Konto Nr.": "identifier: every value distinct",
        "row": "identifier: every value distinct",
        "1st contact": "date-time",
        "signed at": "date-time",
    }


def test_the_target_is_never_excluded() -> None:
    frame = customers().assign(**{"Order ID": lambda f: f["Customer ID"]})
    assert "Order ID" not in excluded_columns(frame, target="Order ID")
    assert "Customer ID" in excluded_columns(frame, target="Order ID")


def test_measurements_and_categories_stay_features() -> None:
    kept = set(customers().columns) - set(excluded_columns(customers(), target="churned"))
    assert kept == {"Monthly Charge ($)", "Tenure (months)", "plan/type", "Größe", "churned"}


def test_a_distinct_whole_number_measurement_is_not_an_identifier() -> None:
    # income in whole dollars, all distinct, neither named nor counting like an id
    income = pd.Series(np.arange(ROWS) * 1_000 + 20_000, name="Income ($)")
    assert not is_identifier(income)
    assert is_identifier(income.rename("customerId"))


def test_an_identifier_needs_enough_rows_to_tell() -> None:
    few = pd.Series([f"name {i}" for i in range(MIN_IDENTIFIER_VALUES - 1)], name="name")
    assert not is_identifier(few)
    assert is_identifier(pd.concat([few, pd.Series(["name x"])], ignore_index=True))


def test_a_repeated_value_or_a_fraction_is_not_an_identifier() -> None:
    ids = pd.Series(np.arange(ROWS, dtype=float), name="id")
    assert is_identifier(ids)
    assert not is_identifier(ids.where(ids != 3, 4))
    assert not is_identifier(ids + 0.5)
    assert not is_identifier(pd.Series([True, False] * ROWS, name="flag_id"))


def test_missing_values_do_not_hide_an_identifier() -> None:
    # whole numbers stored as floats because of a gap
    ids = pd.Series([*range(ROWS), None], name="Patient No", dtype="float64")
    assert excluded_columns(ids.to_frame(), target="y") == {
        "Patient No": "identifier: every value distinct"
    }


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-05", "2024-1-6", None],
        ["05/01/2024 10:30", "06/01/2024 11:45:10"],
        ["2024-01-05T10:30:00Z", "2024-01-05 10:30:00+02:00"],
        [datetime.date(2024, 1, 5), datetime.date(2024, 1, 6)],
    ],
)
def test_dates_as_text_or_objects_are_date_times(values: list[object]) -> None:
    assert is_date_time(pd.Series(values, dtype=object))


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-05", "soon"],  # one value is not a date
        ["2024-13-45", "2024-01-01"],  # looks like a date, is none
        ["12.5", "13.0"],
        [20240105, 20240106],  # a number, not a date
        [None, None],
    ],
)
def test_other_values_are_not_date_times(values: list[object]) -> None:
    assert not is_date_time(pd.Series(values))


def test_an_empty_table_excludes_only_its_typed_date_times() -> None:
    assert excluded_columns(customers().head(0), target="churned") == {"signed at": "date-time"}
