"""Synthetic data: fitted per class from the bundled penguins, valid under the committed schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from mlops.data.engines.pandas_engine.sources import read_files
from mlops.data.rules.schema import load_schema
from mlops.data.rules.validation import validate_frame
from mlops.data.synth import (
    TableModel,
    draw_rows,
    fit_table_model,
    main,
    parse_drift,
    resolution,
    synthetic_chunks,
)
from mlops.stage import StageError, run
from mlops.task import decide_task

MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
ROWS = 20_000


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return pd.read_csv(PROJECT_ROOT / "data" / "penguins.csv")


@pytest.fixture(scope="module")
def model(source: pd.DataFrame) -> TableModel:
    return fit_table_model(source, "species", ["year"])


@pytest.fixture(scope="module")
def synthetic(model: TableModel) -> pd.DataFrame:
    return draw_rows(model, ROWS, np.random.default_rng(1))


def test_columns_types_and_class_shares_follow_the_source(
    source: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    assert list(synthetic.columns) == list(source.columns)
    assert synthetic.dtypes.map(str).to_dict() == source.dtypes.map(str).to_dict()
    expected = source["species"].value_counts(normalize=True)
    observed = synthetic["species"].value_counts(normalize=True)
    assert (observed - expected).abs().max() < 0.02


def test_measurements_keep_each_class_mean_spread_and_correlation(
    source: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    for species, rows in source.groupby("species"):
        drawn = synthetic[synthetic["species"] == species]
        for column in MEASUREMENTS:
            real = rows[column].dropna()
            assert abs(drawn[column].mean() - real.mean()) < 0.1 * real.std(), (species, column)
            assert drawn[column].std() == pytest.approx(real.std(), rel=0.1), (species, column)
        correlation = rows[MEASUREMENTS].corr().to_numpy()
        assert np.abs(drawn[MEASUREMENTS].corr().to_numpy() - correlation).max() < 0.1


def test_values_are_rounded_like_the_source_and_stay_in_its_widened_range(
    synthetic: pd.DataFrame,
) -> None:
    mass = synthetic["body_mass_g"].dropna()
    assert (mass % 25 == 0).all()  # the source weighs in steps of 25 g
    bill = synthetic["bill_length_mm"].dropna()
    assert ((bill * 10).round(6) % 1 == 0).all()
    assert bill.between(32.1 - 0.25 * 27.5, 59.6 + 0.25 * 27.5).all()
    assert set(synthetic["year"]) <= {2007, 2008, 2009}


def test_missing_values_come_at_the_source_rates_and_together(
    source: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    for column in [*MEASUREMENTS, "sex"]:
        rate = source[column].isna().mean()
        assert synthetic[column].isna().mean() == pytest.approx(rate, abs=0.006), column
    unmeasured = synthetic["bill_length_mm"].isna()
    assert unmeasured.any()
    assert synthetic.loc[unmeasured, MEASUREMENTS].isna().all().all()
    assert synthetic.loc[unmeasured, "sex"].isna().all()  # as in the source's two such rows
    assert synthetic["species"].notna().all()
    assert synthetic.loc[synthetic["species"] == "Chinstrap", "sex"].notna().all()


def test_noisy_categories_pass_validation_only_because_clean_normalises_them(
    synthetic: pd.DataFrame,
) -> None:
    schema = load_schema(PROJECT_ROOT / "data" / "schema.yaml")
    noisy = ~synthetic["island"].isin(["Biscoe", "Dream", "Torgersen"])
    assert 0.005 < noisy.mean() < 0.015
    report = validate_frame(synthetic, schema, normalise=["island", "sex"])
    assert report["passed"], report["failures"]
    assert report["normalised"]["island"] == noisy.sum()
    strict = validate_frame(synthetic, schema)
    assert {(f["column"], f["check"].split("(")[0]) for f in strict["failures"]} == {
        ("island", "isin"),
        ("sex", "isin"),
    }


def test_the_same_seed_gives_the_same_rows_and_chunks_add_up(model: TableModel) -> None:
    first = pd.concat(synthetic_chunks(model, 2500, seed=7, chunk_rows=1000), ignore_index=True)
    again = pd.concat(synthetic_chunks(model, 2500, seed=7, chunk_rows=1000), ignore_index=True)
    other = pd.concat(synthetic_chunks(model, 2500, seed=8, chunk_rows=1000), ignore_index=True)
    assert len(first) == 2500
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_drift_shifts_one_column_by_k_standard_deviations(
    source: pd.DataFrame, model: TableModel, synthetic: pd.DataFrame
) -> None:
    drift = parse_drift("body_mass_g:2", model)
    drifted = draw_rows(model, ROWS, np.random.default_rng(1), drift=drift)
    shift = drifted["body_mass_g"].mean() - synthetic["body_mass_g"].mean()
    assert shift == pytest.approx(2 * source["body_mass_g"].std(), rel=0.05)
    assert drifted["bill_length_mm"].mean() == pytest.approx(
        synthetic["bill_length_mm"].mean(), abs=0.1
    )


def test_drift_must_name_a_continuous_column_and_a_number(model: TableModel) -> None:
    with pytest.raises(StageError, match="'island' is not a continuous numeric column"):
        parse_drift("island:1", model)
    with pytest.raises(StageError, match="expected <column>:<standard deviations>"):
        parse_drift("body_mass_g:much", model)


def test_resolution_finds_the_grid_of_the_values() -> None:
    assert resolution(np.array([3750.0, 3800.0, 3625.0])).step == 25
    assert resolution(np.array([39.1, 40.25])).decimals == 2
    assert resolution(np.array([181.0, 195.0, 186.0])).step == 1


def params_file(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(f"data:\n  source: {source}\n  target: species\n  exclude_columns: [year]\n")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_main_writes_data_source_in_its_format(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"synthetic{suffix}"
    params = params_file(tmp_path, str(out))
    fit = str(PROJECT_ROOT / "data" / "penguins.csv")
    assert run(main, ["--params", str(params), "--fit", fit, "--rows", "1500"]) == 0
    table = read_files(str(out), "auto")
    assert len(table) == 1500
    assert table["species"].notna().all()


def test_main_refuses_to_overwrite_the_table_it_imitates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted = tmp_path / "penguins.csv"
    fitted.write_bytes((PROJECT_ROOT / "data" / "penguins.csv").read_bytes())
    params = params_file(tmp_path, str(fitted))
    arguments = ["--params", str(params), "--fit", str(fitted), "--rows", "10"]
    assert run(main, arguments) == 1
    assert "the table the generator is fitted on" in capsys.readouterr().err
    assert fitted.read_bytes() == (PROJECT_ROOT / "data" / "penguins.csv").read_bytes()
    assert run(main, [*arguments[:-1], "0", "--out", str(tmp_path / "s.csv")]) == 1
    assert "--rows: expected a positive number" in capsys.readouterr().err


# --- a regression target: body mass from the rest --------------------------------------------


@pytest.fixture(scope="module")
def regression_model(source: pd.DataFrame) -> TableModel:
    return fit_table_model(source, "body_mass_g")


def test_a_numeric_target_is_fitted_as_regression_in_quantile_strata(
    regression_model: TableModel,
) -> None:
    assert regression_model.task == "regression"
    assert list(regression_model.classes) == [f"q{i:02d}" for i in range(10)]
    assert "body_mass_g" in regression_model.continuous
    shares = [stratum.share for stratum in regression_model.classes.values()]
    assert max(shares) - min(shares) < 0.01  # bins of equal counts


def test_a_regression_table_keeps_the_targets_relation_to_the_features(
    source: pd.DataFrame, regression_model: TableModel
) -> None:
    drawn = draw_rows(regression_model, ROWS, np.random.default_rng(2))
    assert list(drawn.columns) == list(source.columns)
    assert drawn["body_mass_g"].dtype == np.float64 and drawn["body_mass_g"].notna().all()
    assert (drawn["body_mass_g"] % 25 == 0).all()
    real = source[MEASUREMENTS].corr()["body_mass_g"]
    fake = drawn[MEASUREMENTS].corr()["body_mass_g"]
    assert (real - fake).abs().max() < 0.05
    for species in ("Adelie", "Gentoo"):  # a category's targets, as in the source
        mean = source.loc[source["species"] == species, "body_mass_g"].mean()
        assert drawn.loc[drawn["species"] == species, "body_mass_g"].mean() == pytest.approx(
            mean, rel=0.03
        )
    assert drawn["body_mass_g"].std() == pytest.approx(source["body_mass_g"].std(), rel=0.05)
    # the pipeline decides the same task on it, and its schema still holds
    assert decide_task(drawn["body_mass_g"]).task == "regression"
    schema = load_schema(PROJECT_ROOT / "data" / "schema.yaml")
    report = validate_frame(drawn, schema, normalise=["species", "island", "sex"])
    assert report["passed"], report["failures"]


def test_a_declared_task_decides_how_the_target_is_fitted(source: pd.DataFrame) -> None:
    sexes = fit_table_model(source, "sex", declared="auto")
    assert sexes.task == "classification" and set(sexes.classes) == {"female", "male"}
    years = fit_table_model(source, "year", declared="regression")
    assert years.task == "regression"
    assert draw_rows(years, 50, np.random.default_rng(0))["year"].dtype == np.float64


def test_a_small_regression_table_gets_fewer_strata_and_text_targets_are_left_out() -> None:
    rng = np.random.default_rng(5)
    size = rng.normal(170, 10, 60).round(1)
    frame = pd.DataFrame(
        {"Größe (cm)": size, "Gewicht (kg)": (size * 0.4 + rng.normal(0, 3, 60)).round(1)}
    )
    frame = frame.astype({"Gewicht (kg)": object})
    frame.loc[0, "Gewicht (kg)"] = "n/a"
    model = fit_table_model(frame, "Gewicht (kg)")
    assert model.task == "regression" and len(model.classes) == 2  # 59 numbers: 2 bins of 20+
    drawn = draw_rows(model, 2000, np.random.default_rng(0))
    assert float(drawn["Größe (cm)"].corr(drawn["Gewicht (kg)"])) > 0.6


def test_a_target_with_no_numbers_is_refused() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    with pytest.raises(StageError, match="no rows with a value in 'y'"):
        fit_table_model(frame, "y", declared="regression")


def test_main_writes_a_regression_table_for_another_target(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.parquet"
    params = params_file(tmp_path, str(out))
    fit = str(PROJECT_ROOT / "data" / "penguins.csv")
    arguments = ["--params", str(params), "--fit", fit, "--rows", "3000", "--target", "body_mass_g"]
    assert run(main, arguments) == 0
    table = pd.read_parquet(out)
    assert len(table) == 3000 and table["body_mass_g"].dtype == np.float64
    assert run(main, [*arguments, "--task", "classification", "--rows", "100"]) == 0
    assert pd.read_parquet(out)["body_mass_g"].dtype != np.float64  # classes are text
