"""Stage validate: all bad data is reported at once, per column and check, never per row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from mlops.data.rules.validation import failure_message, validate_frame
from mlops.data.validate import main
from mlops.stage import StageError
from mlops.tables import read_columns

SCHEMA = pa.DataFrameSchema(
    {
        "id": pa.Column("int64", unique=True, coerce=True),
        "island": pa.Column("str", pa.Check.isin(["Biscoe", "Dream"]), nullable=True, coerce=True),
        "mass": pa.Column("float64", pa.Check.in_range(1000, 8000), nullable=True, coerce=True),
        "species": pa.Column("str", pa.Check.isin(["Adelie", "Gentoo"]), coerce=True),
    },
    strict=True,
)


def good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "island": ["Biscoe", "Dream", None, "Dream"],
            "mass": [3500.0, np.nan, 4200.0, 5000.0],
            "species": ["Adelie", "Gentoo", "Adelie", "Gentoo"],
        }
    )


def failures_by_column_and_check(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["column"], f["check"]): f for f in report["failures"]}


def test_good_data_passes() -> None:
    report = validate_frame(good(), SCHEMA)
    assert report == {"passed": True, "rows": 4, "failures": [], "normalised": {}}


def test_case_and_space_variants_pass_where_clean_normalises_them_and_nowhere_else() -> None:
    frame = good()
    frame.loc[[0, 1], "island"] = [" biscoe", "DREAM "]
    frame.loc[2, "species"] = "adelie"
    report = validate_frame(frame, SCHEMA, normalise=["island"])
    assert report["normalised"] == {"island": 2}
    assert set(failures_by_column_and_check(report)) == {("species", "isin(['Adelie', 'Gentoo'])")}
    strict = failures_by_column_and_check(validate_frame(frame, SCHEMA))
    assert strict["island", "isin(['Biscoe', 'Dream'])"]["rows"] == [0, 1]


def test_text_in_a_numeric_column_is_a_type_failure_and_the_rest_is_still_range_checked() -> None:
    frame = good().astype({"mass": object})
    frame.loc[0, "mass"] = "abc"
    frame.loc[2, "mass"] = "99999"
    frame["mass"] = frame["mass"].astype(str).replace("nan", None)
    failures = failures_by_column_and_check(validate_frame(frame, SCHEMA))
    assert failures.keys() == {("mass", "dtype('float64')"), ("mass", "in_range(1000, 8000)")}
    assert failures["mass", "dtype('float64')"]["failure_cases"] == ["abc"]
    assert failures["mass", "dtype('float64')"]["rows"] == [0]
    assert failures["mass", "in_range(1000, 8000)"]["failure_cases"] == [99999.0]


def test_every_kind_of_failure_is_reported_at_once_grouped_per_column_and_check() -> None:
    frame = pd.concat([good()] * 3, ignore_index=True)
    frame["id"] = range(len(frame))
    frame.loc[[1, 5, 9], "mass"] = [-5.0, 90000.0, -5.0]  # out of range, 3 rows
    frame.loc[[0, 4], "island"] = "Atlantis"  # unknown category
    frame.loc[7, "id"] = 3  # duplicate key where unique is declared
    frame = frame.rename(columns={"species": "kind"})  # missing required column + extra column
    report = validate_frame(frame, SCHEMA)
    failures = failures_by_column_and_check(report)

    assert report["passed"] is False
    assert set(failures) == {
        ("kind", "column_in_schema"),
        ("species", "column_in_dataframe"),
        ("id", "field_uniqueness"),
        ("island", "isin(['Biscoe', 'Dream'])"),
        ("mass", "in_range(1000, 8000)"),
    }
    out_of_range = failures["mass", "in_range(1000, 8000)"]
    assert out_of_range["count"] == 3
    assert out_of_range["rows"] == [1, 5, 9]
    assert out_of_range["failure_cases"] == [-5.0, 90000.0]  # distinct examples
    assert failures["island", "isin(['Biscoe', 'Dream'])"]["rows"] == [0, 4]
    assert failures["id", "field_uniqueness"]["rows"] == [3, 7]
    assert json.loads(json.dumps(report)) == report  # plain JSON, no NaN


def test_a_missing_target_value_fails_not_nullable() -> None:
    frame = good()
    frame.loc[1, "species"] = None
    failures = failures_by_column_and_check(validate_frame(frame, SCHEMA))
    assert failures["species", "not_nullable"]["rows"] == [1]


def test_examples_and_rows_are_capped_but_the_count_is_not() -> None:
    frame = pd.concat([good()] * 50, ignore_index=True)
    frame["id"] = range(len(frame))
    frame["mass"] = np.arange(len(frame)) * 1e5
    failure = validate_frame(frame, SCHEMA)["failures"][0]
    assert failure["count"] == 200
    assert len(failure["failure_cases"]) == 5
    assert len(failure["rows"]) == 5


def test_the_failure_message_has_one_line_per_column_and_check_and_says_what_to_do() -> None:
    frame = good()
    frame.loc[[0, 1, 2], "island"] = "Atlantis"
    frame = frame.drop(columns=["species"])
    report = validate_frame(frame, SCHEMA)
    message = failure_message(report, Path("raw.parquet"), Path("schema.yaml"), Path("v.json"))
    lines = message.splitlines()
    assert "raw.parquet does not match schema.yaml: 2 check(s) failed" in lines[0]
    assert "v.json" in lines[0]
    assert lines[1] == "  species: column_in_dataframe: required column is missing"
    assert lines[2] == (
        "  island: isin(['Biscoe', 'Dream']): unknown categories: 3 rows, e.g. 'Atlantis'"
        " (rows 0, 1, 2)"
    )
    assert "make schema" in lines[-1]


def write_params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("data: {source: x.csv, target: y}\nclean: {normalize_strings: true}\n")
    return path


def main_arguments(tmp_path: Path, params: Path) -> list[str]:
    """validate's command line on raw.parquet and schema.yaml in ``tmp_path``, reports below it."""
    arguments = [
        "--input",
        str(tmp_path / "raw.parquet"),
        "--schema",
        str(tmp_path / "schema.yaml"),
    ]
    return [*arguments, "--reports", str(tmp_path / "reports"), "--params", str(params)]


def test_main_writes_profile_and_report_and_fails_with_the_report_path(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(
        "columns:\n"
        "  mass: {dtype: float64, coerce: true, nullable: true,\n"
        "         in_range: {min_value: 0, max_value: 10}}\n"
        "strict: true\n"
    )
    reports = tmp_path / "reports"
    arguments = main_arguments(tmp_path, write_params(tmp_path))

    pd.DataFrame({"mass": [1.0, 2.0, np.nan]}).to_parquet(tmp_path / "raw.parquet")
    main(arguments)
    profile = json.loads((reports / "profile.json").read_text())
    assert profile["columns"]["mass"]["missing"] == 1
    assert "| mass |" in (reports / "profile.md").read_text()
    assert json.loads((reports / "validation.json").read_text())["passed"] is True

    pd.DataFrame({"mass": [1.0, 20.0, 30.0]}).to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(StageError, match="mass: in_range") as raised:
        main(arguments)
    assert str(reports / "validation.json") in str(raised.value)
    report = json.loads((reports / "validation.json").read_text())
    assert report["passed"] is False
    assert report["failures"][0]["rows"] == [1, 2]


def test_main_names_a_missing_schema(tmp_path: Path) -> None:
    pd.DataFrame({"mass": [1.0]}).to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(StageError, match="schema file not found"):
        main([
            "--params", str(write_params(tmp_path)),
            "--input", str(tmp_path / "raw.parquet"),
            "--schema", str(tmp_path / "nope.yaml"),
            "--reports", str(tmp_path),
        ])  # fmt: skip


def test_the_command_exits_1_with_the_message_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops.stage import run

    (tmp_path / "schema.yaml").write_text("columns:\n  mass: {dtype: float64, coerce: true}\n")
    pd.DataFrame({"mass": ["1.5", "heavy"]}).to_parquet(tmp_path / "raw.parquet")
    code = run(
        main,
        ["--params", str(write_params(tmp_path)), "--input", str(tmp_path / "raw.parquet"),
         "--schema", str(tmp_path / "schema.yaml"), "--reports", str(tmp_path / "reports")],
    )  # fmt: skip
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert (
        "mass: dtype('float64'): values that are not of the declared type: 1 row, e.g. 'heavy'"
        in error
    )


def test_main_reports_the_task_decision_and_its_reason(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(
        "columns:\n"
        "  Größe (cm): {dtype: float64, coerce: true, nullable: true}\n"
        "  Monthly Charge ($): {dtype: float64, coerce: true}\n"
        "strict: true\n"
    )
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: x.csv, target: 'Monthly Charge ($)'}\nclean: {}\n")
    reports = tmp_path / "reports"
    arguments = main_arguments(tmp_path, params)
    frame = pd.DataFrame(
        {"Größe (cm)": [170.0, 180.5, np.nan], "Monthly Charge ($)": [9.5, 20.25, 7.0]}
    )
    frame.to_parquet(tmp_path / "raw.parquet")
    main(arguments)
    task = json.loads((reports / "validation.json").read_text())["task"]
    assert task == {
        "task": "regression",
        "reason": "target 'Monthly Charge ($)' holds fractional numbers",
    }
    assert (
        "task: regression (target 'Monthly Charge ($)' holds fractional numbers)"
        in (reports / "profile.md").read_text()
    )

    # a target the label stage makes (rules, annotations, another column) is not decided here
    params.write_text("data: {source: x.csv, target: churned}\nclean: {}\n")
    frame.drop(columns="Monthly Charge ($)").to_parquet(tmp_path / "raw.parquet")
    (tmp_path / "schema.yaml").write_text(
        "columns:\n  Größe (cm): {dtype: float64, coerce: true, nullable: true}\n"
    )
    main(arguments)
    task = json.loads((reports / "validation.json").read_text())["task"]
    assert task["task"] is None
    assert "'churned' is not a column of the raw table: the label stage makes it" in task["reason"]
    assert "task: not decided yet (data.target 'churned'" in (reports / "profile.md").read_text()


def test_the_task_preview_reads_only_the_target_when_spark_did_the_rest(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a (x)": [1, 2], "Größe": [1.5, 2.5]})
    frame.to_parquet(tmp_path / "raw.parquet")
    assert list(read_columns(tmp_path / "raw.parquet", ["Größe"]).columns) == ["Größe"]
    assert read_columns(tmp_path / "raw.parquet", ["absent"]).columns.empty
    parts = tmp_path / "spark.parquet"  # Spark writes a directory of part files
    parts.mkdir()
    frame.head(1).to_parquet(parts / "part-00000.parquet")
    frame.tail(1).to_parquet(parts / "part-00001.parquet")
    assert read_columns(parts, ["Größe"])["Größe"].tolist() == [1.5, 2.5]
