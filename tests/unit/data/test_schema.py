"""The schema file: loading it strictly, reading its categories, and inferring it from data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT
from mlops.data.engines.pandas_engine.sources import read_source
from mlops.data.rules.schema import allowed_categories, load_schema
from mlops.data.rules.validation import validate_frame
from mlops.data.schema import expression_names, infer_schema, main, widen_range
from mlops.params import DataParams, load_section
from mlops.stage import StageError, run

SCHEMA_YAML = """\
columns:
  colour:
    dtype: str
    nullable: true
    isin: [red, green]
  size:
    dtype: float64
    coerce: true
    in_range: {min_value: 0, max_value: 10}
strict: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    return path


def test_load_schema_reads_columns_checks_and_categories(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, SCHEMA_YAML))
    assert list(schema.columns) == ["colour", "size"]
    assert schema.strict is True
    assert allowed_categories(schema) == {"colour": ["red", "green"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "schema file not found"),
        ("columns: {a: [\n", "not valid YAML"),
        ("- a list\n", "expected a pandera schema with a `columns:` mapping"),
        ("columns: {a: {dtype: float64, in_rnge: {min_value: 1}}}\n", "unknown key(s) ['in_rnge']"),
        ("columns: {a: {dtype: flaot}}\n", "not a valid pandera schema"),
        ("colums: {}\ncolumns: {}\n", "unknown top-level key(s) ['colums']"),
    ],
)
def test_a_bad_schema_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "schema.yaml" if text is None else write(tmp_path, text)
    with pytest.raises(StageError) as raised:
        load_schema(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


# --- inference -------------------------------------------------------------------------------


def tiny() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [f"bird {i}" for i in range(8)],
            "island": ["Biscoe", "Dream"] * 4,
            "mass": [3000.0, 3500.0, 4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 3000.0],
            "year": [2007, 2008, 2009, 2007, 2008, 2009, 2007, 2008],
            "species": ["Adelie", "Gentoo"] * 4,
        }
    )


def test_inference_widens_ranges_lists_categories_and_sets_nullability() -> None:
    schema = infer_schema(tiny(), target="species", exclude_columns=["year"])
    columns = schema.columns
    assert schema.strict is True
    assert allowed_categories(schema) == {
        "island": ["Biscoe", "Dream"],
        "species": ["Adelie", "Gentoo"],
    }  # 'name' has as many values as rows: free text, no isin
    mass_range = {c.name: c.statistics for c in columns["mass"].checks}["in_range"]
    assert mass_range["min_value"] < 3000 and mass_range["max_value"] > 6000
    assert mass_range["min_value"] >= 0  # never negative for a column that never was
    assert columns["mass"].nullable and columns["island"].nullable  # features may have gaps
    assert not columns["species"].nullable and not columns["year"].nullable
    assert str(columns["year"].dtype) == "int64" and str(columns["mass"].dtype) == "float64"
    assert all(column.coerce for column in columns.values())


def test_a_target_with_gaps_is_nullable_and_an_id_column_is_unique() -> None:
    frame = pd.concat([tiny()] * 3, ignore_index=True).assign(bird_id=range(24))
    frame.loc[0, "species"] = None
    schema = infer_schema(frame, target="species")
    assert schema.columns["species"].nullable
    assert schema.columns["bird_id"].unique
    assert schema.columns["bird_id"].description.startswith("identifier: not a feature")
    assert not schema.columns["bird_id"].checks  # no range: new ids lie beyond the old ones
    assert not schema.columns["mass"].unique


@pytest.mark.parametrize(
    ("low", "high", "integral", "expected"),
    [
        (32.1, 59.6, False, (18.0, 74.0)),
        (2700.0, 6300.0, False, (900.0, 8100.0)),
        (2007.0, 2009.0, True, (2006, 2010)),
        (-1.0, 1.0, False, (-2.0, 2.0)),
        (5.0, 5.0, False, (2.5, 7.5)),
    ],
)
def test_widen_range(
    low: float, high: float, integral: bool, expected: tuple[float, float]
) -> None:
    assert widen_range(low, high, integral) == expected


def test_the_written_schema_has_a_review_header_and_loads_back(tmp_path: Path) -> None:
    tiny().to_csv(tmp_path / "birds.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: {tmp_path / 'birds.csv'}\n  target: species\n  drop_columns: [name]\n"
        f"  schema: {tmp_path / 'schema.yaml'}\n"
    )
    main(["--params", str(tmp_path / "params.yaml")])
    text = (tmp_path / "schema.yaml").read_text()
    assert text.startswith("# Validation schema")
    assert "REVIEW IT" in text
    assert "dtype: str" in text and "index" not in text
    assert list(load_schema(tmp_path / "schema.yaml").columns) == [
        "island",
        "mass",
        "year",
        "species",
    ]


def test_schema_of_a_missing_source_names_it(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("data:\n  source: nowhere.csv\n  target: y\n")
    with pytest.raises(StageError, match=r"nowhere\.csv: file not found"):
        main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "s.yaml")])


# --- forking to a differently shaped table ---------------------------------------------------


def fruit(rows: int = 60) -> pd.DataFrame:
    """Another data set: other column names, other classes, a string target, real gaps."""
    random = np.random.default_rng(7)
    kinds = np.array(["apple", "banana", "cherry"])[np.arange(rows) % 3]
    frame = pd.DataFrame(
        {
            "harvest_id": [f"h{i:04d}" for i in range(rows)],
            "weight_g": np.round(random.uniform(5, 250, rows), 1),
            "colour": random.choice(["red", "green", "yellow"], rows),
            "origin": random.choice(["ES", "IT", "PT", "MA"], rows),
            "sweetness": random.integers(1, 11, rows),
            "kind": kinds,
        }
    )
    frame.loc[[3, 17], "weight_g"] = np.nan
    frame.loc[[5], "colour"] = None
    return frame


def test_a_fork_infers_a_schema_its_data_passes_and_a_corrupted_copy_fails(tmp_path: Path) -> None:
    fruit().to_csv(tmp_path / "fruit.csv", index=False)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(
        f"data:\n  source: {tmp_path / 'fruit.csv'}\n  target: kind\n"
        f"  exclude_columns: [harvest_id]\n  schema: {tmp_path / 'schema.yaml'}\n"
    )
    main(["--params", str(params_path)])
    schema = load_schema(tmp_path / "schema.yaml")
    assert allowed_categories(schema)["kind"] == ["apple", "banana", "cherry"]
    assert schema.columns["harvest_id"].unique
    params = load_section(params_path, "data", DataParams)
    assert validate_frame(read_source(params), schema)["passed"]

    corrupted = fruit().astype({"weight_g": object})
    corrupted.loc[4, "weight_g"] = "heavy"  # wrong type in a numeric column
    corrupted.loc[8, "weight_g"] = -40.0  # out of range
    corrupted.loc[9, "colour"] = "purple"  # unknown category
    corrupted.loc[10, "kind"] = "durian"  # unknown class
    corrupted.loc[11, "harvest_id"] = "h0000"  # duplicate key
    corrupted = corrupted.drop(columns=["origin"]).assign(notes="x")  # missing + extra column
    corrupted.to_csv(tmp_path / "fruit.csv", index=False)
    report = validate_frame(read_source(params), schema)

    assert not report["passed"]
    failed = {(f["column"], f["check"].split("(")[0]) for f in report["failures"]}
    assert failed == {
        ("origin", "column_in_dataframe"),
        ("notes", "column_in_schema"),
        ("weight_g", "dtype"),
        ("weight_g", "in_range"),
        ("colour", "isin"),
        ("kind", "isin"),
        ("harvest_id", "field_uniqueness"),
    }
    rows = {(f["column"], f["check"].split("(")[0]): f["rows"] for f in report["failures"]}
    assert rows["weight_g", "dtype"] == [4]
    assert rows["weight_g", "in_range"] == [8]
    assert rows["harvest_id", "field_uniqueness"] == [0, 11]


# --- make schema on a fork: only data.source and data.target set ------------------------------

PROJECT_PARAMS = PROJECT_ROOT / "params.yaml"


def customers(rows: int = 80) -> pd.DataFrame:
    """A table nothing like penguins: real-world headers, an id, a date, gaps."""
    random = np.random.default_rng(11)
    tenure = random.integers(1, 72, rows)
    frame = pd.DataFrame(
        {
            "Customer ID": [f"C-{7000 + i}" for i in range(rows)],
            "Tenure (months)": tenure,
            "plan/type": random.choice(["basic", "plus", "pro"], rows),
            "Größe": random.choice(["S", "M", "L"], rows),
            "1st contact": pd.date_range("2023-01-01", periods=rows, freq="3D").strftime(
                "%Y-%m-%d"
            ),
            "rate.pct": np.round(random.uniform(0, 30, rows), 2),
            "Monthly Charge ($)": np.round(20 + 1.5 * tenure + random.normal(0, 5, rows), 2),
            "churned": random.choice(["yes", "no"], rows),
        }
    )
    frame.loc[[2, 9], "Tenure (months)"] = np.nan
    frame.loc[[4], "plan/type"] = None
    return frame


def fork_params(tmp_path: Path, table: pd.DataFrame, target: str, **changes: object) -> Path:
    """The project's own params.yaml with data.source and data.target set (and ``changes``:
    ``"section.key": value``), as a fork edits it."""
    table.to_csv(tmp_path / "customers.csv", index=False)
    params = yaml.safe_load(PROJECT_PARAMS.read_text())
    params["data"]["source"] = str(tmp_path / "customers.csv")
    params["data"]["target"] = target
    for dotted, value in changes.items():
        section, key = dotted.split(".", 1)
        params.setdefault(section, {})[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    return path


def make_schema(params: Path, out: Path) -> int:
    return run(main, ["--params", str(params), "--out", str(out)])


@pytest.mark.parametrize(
    ("target", "task", "reason"),
    [
        ("Monthly Charge ($)", "regression", "holds fractional numbers"),
        ("churned", "classification", "holds text (2 distinct values)"),
    ],
)
def test_a_fork_setting_only_source_and_target_gets_a_schema_its_data_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, task: str, reason: str
) -> None:
    params = fork_params(tmp_path, customers(), target)
    out = tmp_path / "schema.yaml"
    assert make_schema(params, out) == 0
    printed = capsys.readouterr().out
    assert f"task: {task} (target '{target}' {reason})" in printed
    assert (
        "never features: 'Customer ID' (identifier: every value distinct), "
        "'1st contact' (date-time)" in printed
    )
    schema = load_schema(out)
    assert list(schema.columns) == list(customers().columns)
    identifier, date = schema.columns["Customer ID"], schema.columns["1st contact"]
    assert identifier.unique and identifier.description.startswith("identifier: not a feature")
    assert date.description.startswith("date-time: not a feature") and not date.checks
    target_checks = [check.name for check in schema.columns[target].checks]
    assert target_checks == (["in_range"] if task == "regression" else ["isin"])
    if task == "regression":
        assert str(schema.columns[target].dtype) == "float64"
    source = load_section(params, "data", DataParams)
    assert validate_frame(read_source(source), schema)["passed"]


def test_a_regression_target_holding_text_is_declared_numeric_so_validate_names_the_rows(
    tmp_path: Path,
) -> None:
    table = customers().astype({"Monthly Charge ($)": object})
    table.loc[5, "Monthly Charge ($)"] = "n/a?"
    params = fork_params(tmp_path, table, "Monthly Charge ($)")
    assert make_schema(params, tmp_path / "schema.yaml") == 0
    schema = load_schema(tmp_path / "schema.yaml")
    report = validate_frame(read_source(load_section(params, "data", DataParams)), schema)
    assert [(f["column"], f["rows"]) for f in report["failures"]] == [("Monthly Charge ($)", [5])]


def test_every_params_key_naming_an_absent_column_is_reported_in_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = fork_params(
        tmp_path,
        customers(),
        "churned",
        **{
            "evaluate.slice_column": "island",
            "split.group_column": "household",
            "data.exclude_columns": ["Tenure (months)", "year"],
            "data.drop_columns": ["sex"],
        },
    )
    out = tmp_path / "schema.yaml"
    out.write_text("the reviewed schema\n")
    assert make_schema(params, out) == 1
    message = capsys.readouterr().err
    assert message.count("error:") == 1
    lines = message.splitlines()
    assert lines[0] == f"error: {params} names columns that {tmp_path / 'customers.csv'} lacks:"
    assert lines[1:5] == [
        "  data.drop_columns: 'sex'",
        "  data.exclude_columns: 'year'",
        "  split.group_column: 'household'",
        "  evaluate.slice_column: 'island'",
    ]
    assert lines[5].startswith("  the table's columns: ['Customer ID', 'Tenure (months)'")
    assert "nothing was written" in lines[-1]
    assert out.read_text() == "the reviewed schema\n"  # never overwritten on an error


def test_label_keys_are_checked_for_the_method_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = customers()
    # the target named by the template is checked when label.column defaults to it
    assert make_schema(fork_params(tmp_path, table, "species"), tmp_path / "s.yaml") == 1
    assert "  data.target: 'species'" in capsys.readouterr().err
    # a label made by rules: the names the rules read are checked, not data.target
    rules = [
        {"when": "`Monthly Charge ($)` > 80 and `Größe` == 'L'", "then": "big"},
        {"when": "mass > 4500 or tenure.isna()", "then": "heavy"},
    ]
    changes = {"label.method": "rules", "label.rules": rules, "label.default": "small"}
    params = fork_params(tmp_path, table, "segment", **changes)
    assert make_schema(params, tmp_path / "s.yaml") == 1
    err = capsys.readouterr().err
    assert "  label.rules #2 (when: 'mass > 4500 or tenure.isna()'): 'mass'" in err
    assert "'tenure'" in err and "#1" not in err and "data.target" not in err
    rules[1]["when"] = "`Tenure (months)` > 24"
    params = fork_params(tmp_path, table, "segment", **changes)
    assert make_schema(params, tmp_path / "s.yaml") == 0
    assert "task: decided by the label stage (label.method rules" in capsys.readouterr().out
    # annotations: the id column joining them
    changes = {"label.method": "annotations", "label.id_column": "customer"}
    assert make_schema(fork_params(tmp_path, table, "y", **changes), tmp_path / "s.yaml") == 1
    assert "  label.id_column: 'customer'" in capsys.readouterr().err


def test_a_label_column_other_than_the_target_previews_the_task_on_its_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = {"label.column": "churned", "label.mapping": {"yes": "left", "no": "stayed"}}
    params = fork_params(tmp_path, customers(), "outcome", **changes)
    assert make_schema(params, tmp_path / "s.yaml") == 0
    assert "task: classification (target 'outcome' holds text" in capsys.readouterr().out
    assert allowed_categories(load_schema(tmp_path / "s.yaml"))["churned"] == ["no", "yes"]


def test_clean_overrides_must_name_imputable_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impute = {"numeric": "median", "columns": {"Tenure (months)": "drop", "age": "drop"}}
    params = fork_params(tmp_path, customers(), "Tenure (months)", **{"clean.impute": impute})
    assert make_schema(params, tmp_path / "s.yaml") == 1
    err = capsys.readouterr().err
    assert "  clean.impute.columns: 'age'" in err
    assert "  clean.impute.columns: 'Tenure (months)' is the target" in err


def test_headers_colliding_as_model_inputs_are_named_together_with_key_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = customers()
    table["rate_pct"], table["plan type"] = 1.0, "x"
    params = fork_params(tmp_path, table, "churned", **{"evaluate.slice_column": "region"})
    assert make_schema(params, tmp_path / "s.yaml") == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "  evaluate.slice_column: 'region'" in err
    assert "columns 'rate.pct' and 'rate_pct' both become the model input name 'rate_pct'" in err
    assert "columns 'plan/type' and 'plan type' both become" in err
    assert not (tmp_path / "s.yaml").exists()
    # an excluded column is no model input: its name may collide
    changes = {"data.exclude_columns": ["rate_pct", "plan type"]}
    assert make_schema(fork_params(tmp_path, table, "churned", **changes), tmp_path / "s.yaml") == 0


def test_unknown_params_sections_are_left_to_their_owners(tmp_path: Path) -> None:
    params = fork_params(tmp_path, customers(), "churned", **{"mytool.anything": 1})
    assert make_schema(params, tmp_path / "s.yaml") == 0


def test_a_typo_in_a_section_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = fork_params(tmp_path, customers(), "churned", **{"split.group_colum": "x"})
    assert make_schema(params, tmp_path / "s.yaml") == 1
    assert "split: unknown key(s) ['group_colum']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("body_mass_g > 4500", ["body_mass_g"]),
        ("`Monthly Charge ($)` > 3 and island == 'Dream'", ["Monthly Charge ($)", "island"]),
        ("x.str.contains('a') | (y in [1, 2]) & ~z.isna()", ["x", "y", "z"]),
        ("abs(delta) > @limit and not flag", ["delta", "flag"]),
        ("mass > ", ["mass"]),
        ("'text only' == 'text'", []),
    ],
)
def test_expression_names(expression: str, names: list[str]) -> None:
    assert expression_names(expression) == names


def test_a_params_file_with_only_source_and_target_is_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customers().to_csv(tmp_path / "customers.csv", index=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  source: {tmp_path / 'customers.csv'}\n  target: 'Monthly Charge ($)'\n",
        encoding="utf-8",
    )
    assert make_schema(params, tmp_path / "s.yaml") == 0
    assert "task: regression" in capsys.readouterr().out
    assert "Customer ID" in load_schema(tmp_path / "s.yaml").columns
