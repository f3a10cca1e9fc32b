import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from mlops.data.clean import main
from mlops.data.engines.pandas_engine.cleaning import clean_table, outlier_statistics
from mlops.data.rules.cleaning import outlier_bounds
from mlops.data.rules.schema import numeric_schema_columns
from mlops.params import CleanParams, ImputeParams, OutlierParams
from mlops.stage import StageError, run

NO_OUTLIERS = OutlierParams(method="none")
CATEGORIES = {"island": ["Biscoe", "Dream"]}


def clean(frame: pd.DataFrame, **params: object) -> tuple[pd.DataFrame, dict]:
    settings = CleanParams(**{"outliers": NO_OUTLIERS, **params})  # type: ignore[arg-type]
    return clean_table(
        frame,
        settings,
        target="species",
        exclude_columns=["year"],
        categories=CATEGORIES,
        numeric_columns=["mass", "year"],
    )


def test_strings_are_trimmed_collapsed_and_mapped_to_the_schema_spelling() -> None:
    frame = pd.DataFrame(
        {"island": [" biscoe", "DREAM  ", "big   rock", "   ", "Dream"], "species": ["a"] * 5}
    )
    cleaned, summary = clean(frame, drop_duplicates=False, impute=ImputeParams(categorical="none"))
    assert cleaned["island"].tolist()[:3] == ["Biscoe", "Dream", "big rock"]
    assert pd.isna(cleaned["island"][3])  # blank becomes missing
    assert cleaned["island"][4] == "Dream"
    assert summary["columns"]["island"]["normalised"] == 4


def test_numeric_text_is_coerced_and_stray_text_counted() -> None:
    frame = pd.DataFrame({"mass": ["3750", " 3800 ", "n/a", None], "species": ["a", "b", "c", "d"]})
    cleaned, summary = clean(frame, impute=ImputeParams(numeric="none"))
    assert pd.api.types.is_float_dtype(cleaned["mass"])
    assert cleaned["mass"].tolist()[:2] == [3750.0, 3800.0]
    assert cleaned["mass"].isna().tolist() == [False, False, True, True]
    assert summary["columns"]["mass"]["coerced"] == 1


def test_duplicates_are_dropped_after_normalising() -> None:
    frame = pd.DataFrame({"island": ["Biscoe", " biscoe", "Dream"], "species": ["a", "a", "a"]})
    cleaned, summary = clean(frame)
    assert len(cleaned) == 2
    assert summary["duplicates_dropped"] == 1
    assert (summary["rows_in"], summary["rows_out"]) == (3, 2)


def test_imputation_follows_kind_defaults_and_column_overrides() -> None:
    frame = pd.DataFrame(
        {
            "mass": [1.0, 2.0, 10.0, np.nan, 3.0],
            "depth": [1.0, np.nan, 1.0, 1.0, 2.0],
            "island": ["Dream", "Biscoe", "Dream", None, "Biscoe"],
            "sex": ["f", None, "m", "m", "f"],
            "species": list("abcde"),
        }
    )
    impute = ImputeParams(
        numeric="mean", columns={"depth": "constant", "sex": "drop"}, fill_value=0.0
    )
    cleaned, summary = clean(frame, impute=impute)
    assert cleaned["species"].tolist() == ["a", "c", "d", "e"]  # the row with no sex is dropped
    assert cleaned["mass"][2] == pytest.approx((1 + 10 + 3) / 3)  # mean of the rows kept
    assert cleaned["depth"].tolist() == [1.0, 1.0, 1.0, 2.0]  # its missing value was dropped
    assert cleaned["island"][2] == "Dream"  # the most frequent of the rows kept
    columns = summary["columns"]
    assert (columns["sex"]["dropped"], columns["mass"]["imputed"]) == (1, 1)
    assert columns["island"]["imputed"] == 1
    assert summary["rows_dropped_missing"] == 1


def test_target_and_excluded_columns_are_left_alone() -> None:
    frame = pd.DataFrame(
        {
            "species": [" adelie ", None, "Gentoo", "Gentoo", "Gentoo"],
            "year": ["2007", None, "2008", "2009", "2009"],
            "mass": [1.0, 1.0, 1.0, 1.0, 1000.0],
        }
    )
    params = {"outliers": OutlierParams(method="iqr", threshold=1.5, action="clip")}
    cleaned, summary = clean(frame, **params)
    assert cleaned["species"].tolist()[0] == " adelie "  # not normalised
    assert pd.isna(cleaned["species"][1])  # not imputed: unlabelled at the label stage
    assert cleaned["year"].isna().sum() == 1  # coerced to numbers but not imputed
    assert cleaned["year"][0] == 2007
    assert cleaned["mass"][4] == 1.0  # the feature is clipped
    assert summary["columns"]["mass"]["clipped"] == 1
    assert summary["columns"]["species"] == dict.fromkeys(summary["columns"]["species"], 0)


@pytest.mark.parametrize("action", ["clip", "drop"])
def test_a_regression_target_is_never_clipped_dropped_or_imputed(action: str) -> None:
    price = "Monthly Charge ($)"
    charges = [10.0, 11.0, 12.0, 11.5, np.nan, 10.5, 9000.0, 12.5]
    frame = pd.DataFrame(
        {
            "Größe (cm)": [170.0, 171.0, 169.0, 170.5, 999.0, 170.0, 171.5, np.nan],
            price: charges,
            "plan/type": ["a", "b", "a", "b", "a", "b", "a", "b"],
        }
    )
    params = CleanParams(
        outliers=OutlierParams(method="iqr", threshold=1.5, action=action),  # type: ignore[arg-type]
        impute=ImputeParams(numeric="median"),
    )
    cleaned, summary = clean_table(
        frame, params, target=price, numeric_columns=["Größe (cm)", price]
    )
    kept = cleaned[price] if action == "clip" else cleaned[price].reset_index(drop=True)
    if action == "clip":  # the feature's outlier is clipped, the target's 9000 stays
        assert cleaned["Größe (cm)"].max() < 999.0
        assert kept.tolist()[:4] == charges[:4] and kept[6] == 9000.0
    else:  # only the feature's outlier drops a row (row 4, whose target is missing)
        assert summary["columns"]["Größe (cm)"]["dropped"] == 1
        assert 9000.0 in kept.tolist()
    assert kept.isna().sum() == (1 if action == "clip" else 0)  # a gap stays a gap
    assert summary["columns"][price] == dict.fromkeys(summary["columns"][price], 0)
    assert summary["columns"]["Größe (cm)"]["imputed"] == 1  # features are imputed


def test_a_regression_target_written_as_text_reaches_the_label_stage_as_it_came() -> None:
    frame = pd.DataFrame({"Price (€)": [" 12.5", "n/a", "13"], "x": [1.0, 2.0, 3.0]})
    cleaned, summary = clean_table(
        frame, CleanParams(), target="Price (€)", numeric_columns=["Price (€)", "x"]
    )
    assert cleaned["Price (€)"].tolist() == [" 12.5", "n/a", "13"]  # the label stage names 'n/a'
    assert summary["columns"]["Price (€)"]["coerced"] == 0


def test_zscore_outliers_drop_their_rows() -> None:
    frame = pd.DataFrame({"mass": [10.0] * 9 + [11.0] * 9 + [500.0], "species": ["a"] * 19})
    outliers = OutlierParams(method="zscore", threshold=3.0, action="drop")
    cleaned, summary = clean(frame, outliers=outliers, drop_duplicates=False)
    assert cleaned["mass"].max() == 11.0
    assert summary["rows_dropped_outliers"] == 1
    assert summary["columns"]["mass"]["dropped"] == 1


def test_outlier_bounds() -> None:
    values = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    assert outlier_bounds(outlier_statistics(values, "iqr"), "iqr", 1.0) == (0.0, 6.0)
    no_spread = outlier_statistics(pd.Series([1.0, 1.0]), "zscore")
    assert outlier_bounds(no_spread, "zscore", 3.0) is None


@pytest.mark.parametrize(
    ("impute", "message"),
    [
        (ImputeParams(columns={"nope": "drop"}), "clean.impute.columns.nope: no such column"),
        (ImputeParams(columns={"species": "drop"}), "is the target or an excluded column"),
        (ImputeParams(columns={"island": "median"}), "'median' does not apply to the categorical"),
        (ImputeParams(numeric="constant", fill_value="unknown"), "'unknown' is not a number"),
    ],
)
def test_bad_imputation_params_name_the_key(impute: ImputeParams, message: str) -> None:
    frame = pd.DataFrame({"mass": [1.0, np.nan], "island": ["Dream", None], "species": ["a", "b"]})
    with pytest.raises(StageError, match=None) as raised:
        clean(frame, impute=impute)
    assert message in str(raised.value)


def test_an_entirely_missing_column_cannot_be_imputed_by_a_statistic() -> None:
    frame = pd.DataFrame({"mass": [np.nan, np.nan], "species": ["a", "b"]})
    with pytest.raises(StageError, match="'mass' has no values to compute its median"):
        clean(frame)


def test_numeric_schema_columns_excludes_strings_and_booleans() -> None:
    schema = pa.DataFrameSchema(
        {"a": pa.Column(float), "b": pa.Column(int), "c": pa.Column(str), "d": pa.Column(bool)}
    )
    assert numeric_schema_columns(schema) == ["a", "b"]


def write_project(tmp_path: Path, clean_section: str) -> tuple[Path, Path, Path]:
    params = tmp_path / "params.yaml"
    params.write_text(
        "data: {source: x.csv, target: species, exclude_columns: [year]}\n" + clean_section
    )
    schema = tmp_path / "schema.yaml"
    pa.DataFrameSchema(
        {
            "island": pa.Column(str, pa.Check.isin(["Biscoe", "Dream"]), nullable=True),
            "mass": pa.Column(float, nullable=True),
        }
    ).to_yaml(schema)
    raw = tmp_path / "raw.parquet"
    frame = pd.DataFrame(
        {"island": ["dream", "Biscoe", None], "mass": ["1", "x", "3"], "species": ["a", "b", None]}
    )
    frame.to_parquet(raw)
    return params, schema, raw


def test_main_writes_the_table_and_a_numeric_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params, schema, raw = write_project(tmp_path, "clean: {outliers: {method: none}}\n")
    out, summary_path = tmp_path / "clean.parquet", tmp_path / "summary.json"
    argv = ["--params", str(params), "--input", str(raw), "--schema", str(schema)]
    assert run(main, [*argv, "--out", str(out), "--summary", str(summary_path)]) == 0
    cleaned = pd.read_parquet(out)
    assert cleaned["island"].tolist() == ["Dream", "Biscoe", "Biscoe"]
    assert cleaned["mass"].tolist() == [1.0, 2.0, 3.0]
    assert cleaned["species"].isna().sum() == 1
    summary = json.loads(summary_path.read_text())
    assert summary["columns"]["mass"] == {
        "normalised": 0,
        "coerced": 1,
        "imputed": 1,
        "clipped": 0,
        "dropped": 0,
    }
    assert capsys.readouterr().out.startswith("clean: 3 -> 3 rows (0 duplicate, 0 outlier")


def test_main_reports_a_bad_param_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params, schema, raw = write_project(tmp_path, "clean: {impute: {numeric: average}}\n")
    argv = ["--params", str(params), "--input", str(raw), "--schema", str(schema)]
    code = run(main, [*argv, "--out", str(tmp_path / "o"), "--summary", str(tmp_path / "s")])
    assert code == 1
    error = capsys.readouterr().err
    assert "clean.impute.numeric: 'average' is not one of" in error
    assert not (tmp_path / "o").exists()
