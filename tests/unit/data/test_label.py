import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data.label import (
    Rule,
    annotations_path,
    label_table,
    labels_from_rules,
    main,
    read_annotations,
)
from mlops.params import LabelParams
from mlops.stage import StageError, run

TARGET = "species"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "mass": [3000.0, 4000.0, 5000.0, 6000.0],
            "island": ["Dream", "Biscoe", "Biscoe", "Dream"],
            "raw": ["A", "g", None, "c"],
        }
    )


def test_column_labels_are_mapped_and_missing_ones_set_aside(frame: pd.DataFrame) -> None:
    params = LabelParams(method="column", column="raw", mapping={"A": "Adelie", "g": "Gentoo"})
    labelled, unlabelled, summary = label_table(frame, params, target=TARGET)
    assert labelled[TARGET].tolist() == ["Adelie", "Gentoo", "c"]  # unmapped values stay
    assert "raw" not in labelled.columns  # the raw label is replaced by the target
    assert unlabelled["id"].tolist() == [3]
    assert unlabelled[TARGET].isna().all()
    assert summary == {
        "method": "column",
        "rows": 4,
        "labelled": 3,
        "unlabelled": 1,
        "task": {
            "task": "classification",
            "reason": "target 'species' holds text (3 distinct values)",
        },
        "classes": {"Adelie": 1, "Gentoo": 1, "c": 1},
        "mapped": 2,
    }


def test_numeric_labels_become_class_names_without_a_trailing_zero() -> None:
    frame = pd.DataFrame({"species": [1.0, 0.0, np.nan, 1.0]})
    params = LabelParams(method="column", mapping={"0": "healthy"})
    labelled, unlabelled, summary = label_table(frame, params, target=TARGET)
    assert labelled[TARGET].tolist() == ["1", "healthy", "1"]
    assert len(unlabelled) == 1
    assert summary["classes"] == {"1": 2, "healthy": 1}


def test_a_missing_label_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(StageError, match=r"label.column: missing column\(s\) \['kind'\]"):
        label_table(frame, LabelParams(method="column", column="kind"), target=TARGET)


def test_annotations_join_on_the_id_and_conflicts_stay_unlabelled(frame: pd.DataFrame) -> None:
    annotations = pd.DataFrame(
        {
            "id": [1, 1, 2, 2, 3, 99, 4],
            "label": ["Adelie", "Adelie", "Gentoo", "Adelie", "Chinstrap", "Gentoo", None],
        }
    )
    params = LabelParams(method="annotations", annotations="a.csv", id_column="id")
    labelled, unlabelled, summary = label_table(
        frame, params, target=TARGET, annotations=annotations
    )
    assert dict(zip(labelled["id"], labelled[TARGET], strict=True)) == {1: "Adelie", 3: "Chinstrap"}
    assert sorted(unlabelled["id"]) == [2, 4]  # 2 is in conflict, 4 has no usable annotation
    assert summary["conflicting_ids"] == 1
    assert summary["conflicts"] == 1
    assert summary["unmatched_annotations"] == 1  # id 99 is not in the data
    assert summary["annotations"] == 7


def test_rules_first_match_wins_with_coverage_and_conflicts(frame: pd.DataFrame) -> None:
    rules = [
        Rule(when="mass > 4500", then="heavy"),
        Rule(when="island == 'Biscoe'", then="biscoe"),
        Rule(when="mass > 5500", then="heavy"),
    ]
    labelling = labels_from_rules(frame, rules, default=None)
    assert labelling.labels.tolist()[1:] == ["biscoe", "heavy", "heavy"]
    assert pd.isna(labelling.labels[0])
    details = labelling.details
    assert details["rules"]["rule_1"] == {
        "when": "mass > 4500",
        "then": "heavy",
        "matched": 2,
        "assigned": 2,
    }
    assert (details["rules"]["rule_2"]["matched"], details["rules"]["rule_2"]["assigned"]) == (2, 1)
    assert details["rules"]["rule_3"]["assigned"] == 0
    # the third row is heavy and biscoe: a conflict; the fourth is heavy twice: none
    assert details["conflicts"] == 1
    assert details["unmatched"] == 1


def test_rules_default_labels_the_rest(frame: pd.DataFrame) -> None:
    params = LabelParams(
        method="rules", rules=[{"when": "mass >= 5000", "then": "heavy"}], default="light"
    )
    labelled, unlabelled, summary = label_table(frame, params, target=TARGET)
    assert labelled[TARGET].tolist() == ["light", "light", "heavy", "heavy"]
    assert unlabelled.empty
    assert summary["default_assigned"] == 2


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"when": "weight > 3", "then": "x"}], "label.rules #1 (when: 'weight > 3'): cannot be"),
        ([{"when": "mass >", "then": "x"}], "SyntaxError"),
        ([{"when": "mass + 1", "then": "x"}], "must give true or false per row"),
        ([{"when": "mass > 1"}], "expected exactly the keys when and then"),
        ([], "label.rules is empty"),
    ],
)
def test_a_bad_rule_is_named_with_the_columns_available(
    frame: pd.DataFrame, rules: list[dict[str, str]], message: str
) -> None:
    with pytest.raises(StageError, match=None) as raised:
        label_table(frame, LabelParams(method="rules", rules=rules), target=TARGET)
    assert message in str(raised.value)
    if "cannot be" in message or "true or false" in message:
        assert "the columns are ['id', 'mass', 'island', 'raw']" in str(raised.value)


def test_annotation_exports_are_read_from_csv_and_json(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("id,label\n1,Adelie\n")
    export = tmp_path / "a.json"
    export.write_text(json.dumps([{"id": 1, "label": "Adelie", "annotator": "x"}]))
    assert read_annotations(csv, "id", "label")["label"].tolist() == ["Adelie"]
    assert read_annotations(export, "id", "label")["id"].tolist() == [1]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", '{"id": 1}', "expected a JSON list of objects"),
        ("a.json", "[{", "not valid JSON"),
        ("a.csv", "key,label\n1,x\n", "lack the field(s) ['id']"),
        ("a.txt", "", "must be a .csv or .json file"),
    ],
)
def test_bad_annotation_files_are_named(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StageError, match=None) as raised:
        read_annotations(path, "id", "label")
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_annotations_must_live_in_the_tracked_directory(tmp_path: Path) -> None:
    tracked = tmp_path / "annotations"
    inside = LabelParams(method="annotations", annotations=str(tracked / "x.csv"), id_column="id")
    assert annotations_path(inside, tracked) == tracked / "x.csv"
    outside = LabelParams(method="annotations", annotations=str(tmp_path / "x.csv"), id_column="id")
    with pytest.raises(StageError, match="is outside"):
        annotations_path(outside, tracked)
    with pytest.raises(StageError, match=r"needs label\.annotations"):
        annotations_path(LabelParams(method="annotations"), tracked)


def test_main_writes_labelled_and_unlabelled_tables(tmp_path: Path, frame: pd.DataFrame) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.csv").write_text("id,label\n1,x\n2,y\n3,x\n")
    params = tmp_path / "params.yaml"
    export = tmp_path / "annotations" / "a.csv"
    params.write_text(
        "data: {source: s.csv, target: species}\n"
        f"label: {{method: annotations, annotations: {export}, id_column: id}}\n"
    )
    frame.to_parquet(tmp_path / "clean.parquet")
    outputs = [tmp_path / name for name in ("l.parquet", "u.parquet", "summary.json")]
    argv = ["--params", str(params), "--input", str(tmp_path / "clean.parquet")]
    argv += ["--annotations-dir", str(tmp_path / "annotations"), "--out", str(outputs[0])]
    assert run(main, [*argv, "--unlabelled", str(outputs[1]), "--summary", str(outputs[2])]) == 0
    assert pd.read_parquet(outputs[0])[TARGET].tolist() == ["x", "y", "x"]
    assert pd.read_parquet(outputs[1])["id"].tolist() == [4]
    assert json.loads(outputs[2].read_text())["classes"] == {"x": 2, "y": 1}


# --- the task: decided on the labels, the target stored typed by it -----------------------------

PRICE = "Monthly Charge ($)"


def priced(values: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"Größe": ["S", "M", "L", "XL"][: len(values)], PRICE: values})


def test_a_numeric_target_is_stored_as_float64_with_its_statistics() -> None:
    frame = pd.DataFrame({"Größe": list("SMLSMLSMLSMLS"), PRICE: [*range(10, 130, 10), None]})
    labelled, unlabelled, summary = label_table(frame, LabelParams(), target=PRICE)
    assert labelled[PRICE].dtype == np.float64
    assert labelled[PRICE].tolist() == [float(v) for v in range(10, 130, 10)]
    assert len(unlabelled) == 1
    assert summary["task"]["task"] == "regression"
    assert "12 distinct whole numbers" in summary["task"]["reason"]
    assert "classes" not in summary
    statistics = summary["target_statistics"]
    assert statistics["count"] == 12
    assert (statistics["mean"], statistics["min"], statistics["max"]) == (65.0, 10.0, 120.0)
    assert statistics["std"] == pytest.approx(np.std(np.arange(10, 130, 10), ddof=1))


def test_label_column_defaults_to_the_target_and_keeps_it() -> None:
    labelled, _, summary = label_table(priced([1.5, 2.5, 3.25]), LabelParams(), target=PRICE)
    assert list(labelled.columns) == ["Größe", PRICE]
    assert summary["mapped"] == 0


def test_numbers_written_as_text_become_numbers() -> None:
    labelled, _, _ = label_table(priced([" 1.5", "2.5", "3.25"]), LabelParams(), target=PRICE)
    assert labelled[PRICE].tolist() == [1.5, 2.5, 3.25]


def test_a_declared_classification_stores_numbers_as_class_names() -> None:
    labelled, _, summary = label_table(
        priced([1.5, 2.0, 1.5]), LabelParams(), target=PRICE, task="classification"
    )
    assert labelled[PRICE].tolist() == ["1.5", "2", "1.5"]
    assert summary["classes"] == {"1.5": 2, "2": 1}
    assert summary["task"] == {"task": "classification", "reason": "data.task says classification"}


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([1.5, "n/a", 2.5, "?"], "row 1 'n/a', row 3 '?'"),
        ([1.5, float("inf"), 2.5], "row 1 inf"),
    ],
)
def test_a_regression_target_holding_text_names_the_column_rows_and_values(
    values: list[object], shown: str
) -> None:
    with pytest.raises(StageError) as raised:
        label_table(priced(values), LabelParams(), target=PRICE, task="regression")
    message = str(raised.value)
    assert f"'{PRICE}': a regression target must be a finite number" in message
    assert shown in message
    assert "data.task: classification" in message


def test_auto_on_numbers_with_stray_text_stops_naming_the_rows() -> None:
    values: list[object] = [f"{v}.5" for v in range(30)]
    values[7] = "unknown"
    frame = pd.DataFrame({"raw price": values, "x": range(30)})
    params = LabelParams(column="raw price")
    with pytest.raises(StageError, match=r"'raw price': .* 1 row\(s\) .*: row 7 'unknown'"):
        label_table(frame, params, target=PRICE)


def test_annotated_numbers_are_a_regression_target(frame: pd.DataFrame) -> None:
    annotations = pd.DataFrame({"id": range(1, 15), "score": [v + 0.5 for v in range(14)]})
    params = LabelParams(
        method="annotations", annotations="a.csv", id_column="id", annotation_label="score"
    )
    labelled, _, summary = label_table(frame, params, target=TARGET, annotations=annotations)
    assert labelled[TARGET].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert summary["task"]["task"] == "regression"


def test_main_records_the_task_and_reads_data_task(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data: {{source: s.csv, target: '{PRICE}', task: regression}}\nlabel: {{}}\n"
    )
    priced([1, 2, None]).to_parquet(tmp_path / "clean.parquet")
    outputs = [tmp_path / name for name in ("l.parquet", "u.parquet", "summary.json")]
    argv = ["--params", str(params), "--input", str(tmp_path / "clean.parquet")]
    argv += ["--annotations-dir", str(tmp_path), "--out", str(outputs[0])]
    assert run(main, [*argv, "--unlabelled", str(outputs[1]), "--summary", str(outputs[2])]) == 0
    labelled = pd.read_parquet(outputs[0])
    assert labelled[PRICE].dtype == np.float64
    summary = json.loads(outputs[2].read_text())
    assert summary["task"] == {"task": "regression", "reason": "data.task says regression"}
    assert summary["target_statistics"]["count"] == 2
