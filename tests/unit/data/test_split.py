import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data.split import SPLITS, allocate, main, split_table
from mlops.params import SplitParams
from mlops.stage import StageError, run

TARGET = "species"


@pytest.fixture
def frame() -> pd.DataFrame:
    """40 rows: 30 of class a, 10 of class b, 8 groups, and days with ties."""
    return pd.DataFrame(
        {
            "row": range(40),
            "mass": np.linspace(3000, 6000, 40),
            "group": [f"g{i % 8}" for i in range(40)],
            "day": [i // 4 for i in range(40)][::-1],
            TARGET: ["a"] * 30 + ["b"] * 10,
        }
    )


def rows_of(sets: dict[str, pd.DataFrame]) -> list[int]:
    return sorted(value for rows in sets.values() for value in rows["row"])


def test_stratified_split_keeps_every_row_once_and_the_class_proportions(
    frame: pd.DataFrame,
) -> None:
    sets, summary = split_table(frame, SplitParams(), target=TARGET)
    assert rows_of(sets) == list(range(40))
    assert [len(sets[name]) for name in SPLITS] == [28, 6, 6]
    assert sets["train"][TARGET].value_counts().to_dict() == {"a": 21, "b": 7}
    for name in ("validation", "test"):
        assert set(sets[name][TARGET]) == {"a", "b"}
    assert list(sets["train"].columns) == list(frame.columns)
    assert summary["strategy"] == "stratified"
    assert summary["train"] == {"rows": 28, "fraction": 0.7, "classes": {"a": 21, "b": 7}}


def test_the_seed_decides_the_split(frame: pd.DataFrame) -> None:
    first, _ = split_table(frame, SplitParams(seed=1), target=TARGET)
    again, _ = split_table(frame, SplitParams(seed=1), target=TARGET)
    other, _ = split_table(frame, SplitParams(seed=2), target=TARGET)
    assert first["test"]["row"].tolist() == again["test"]["row"].tolist()
    assert first["test"]["row"].tolist() != other["test"]["row"].tolist()


def test_random_split_without_stratification(frame: pd.DataFrame) -> None:
    sets, summary = split_table(frame, SplitParams(stratify=False), target=TARGET)
    assert summary["strategy"] == "random"
    assert rows_of(sets) == list(range(40))
    assert [len(sets[name]) for name in SPLITS] == [28, 6, 6]


def test_grouped_split_keeps_each_group_in_one_split(frame: pd.DataFrame) -> None:
    sets, summary = split_table(frame, SplitParams(group_column="group"), target=TARGET)
    groups = [set(sets[name]["group"]) for name in SPLITS]
    assert all(groups)
    assert groups[0].isdisjoint(groups[1]) and groups[1].isdisjoint(groups[2])
    assert groups[0].isdisjoint(groups[2])
    assert rows_of(sets) == list(range(40))
    assert summary["strategy"] == "grouped"
    assert sum(summary[name]["groups"] for name in SPLITS) == 8


def test_ordered_split_trains_on_the_oldest_and_never_splits_a_tie(frame: pd.DataFrame) -> None:
    sets, summary = split_table(frame, SplitParams(order_column="day"), target=TARGET)
    train, validation, test = (sets[name]["day"] for name in SPLITS)
    assert train.max() < validation.min() and validation.max() < test.min()
    # each day has 4 rows; the second cut, wanted at row 34, ties between 32 and 36: earlier wins
    assert [len(sets[name]) for name in SPLITS] == [28, 4, 8]
    assert train.is_monotonic_increasing
    assert summary["strategy"] == "ordered"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SplitParams(train=0.8, validation=0.15, test=0.15), "must sum to 1, got 1.1"),
        (SplitParams(train=1.0, validation=0.0, test=0.0), "must all be positive"),
        (SplitParams(group_column="group", order_column="day"), "not both"),
        (SplitParams(group_column="island"), "split.group_column: missing column(s) ['island']"),
    ],
)
def test_bad_split_params_are_named(frame: pd.DataFrame, params: SplitParams, message: str) -> None:
    with pytest.raises(StageError, match=None) as raised:
        split_table(frame, params, target=TARGET)
    assert message in str(raised.value)


def test_a_class_too_small_to_stratify_is_named_with_its_count(frame: pd.DataFrame) -> None:
    frame.loc[38:, TARGET] = "c"
    with pytest.raises(StageError, match=r"class 'c' \(2 rows\) of 'species' is too small"):
        split_table(frame, SplitParams(), target=TARGET)
    sets, _ = split_table(frame, SplitParams(stratify=False), target=TARGET)
    assert rows_of(sets) == list(range(40))


def test_unlabelled_rows_and_a_missing_target_are_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(StageError, match=r"missing column\(s\) \['label'\]"):
        split_table(frame, SplitParams(), target="label")
    with pytest.raises(StageError, match="the table has 2 rows"):
        split_table(frame.head(2), SplitParams(stratify=False), target=TARGET)
    frame.loc[0, TARGET] = None
    with pytest.raises(StageError, match=r"1 row\(s\) have no label in 'species'"):
        split_table(frame, SplitParams(), target=TARGET)


def test_too_few_groups_are_refused(frame: pd.DataFrame) -> None:
    frame["group"] = ["x"] * 20 + ["y"] * 20
    with pytest.raises(StageError, match="'group' has 2 distinct value"):
        split_table(frame, SplitParams(group_column="group"), target=TARGET)


@pytest.mark.parametrize(
    ("total", "expected"),
    [(3, [1, 1, 1]), (4, [2, 1, 1]), (10, [7, 2, 1]), (100, [70, 15, 15]), (152, [106, 23, 23])],
)
def test_allocate_gives_every_split_a_row_and_sums_to_the_total(
    total: int, expected: list[int]
) -> None:
    assert allocate(total, (0.7, 0.15, 0.15)) == expected


def test_main_writes_the_three_sets_and_the_summary(tmp_path: Path, frame: pd.DataFrame) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: s.csv, target: species}\nsplit: {seed: 7}\n")
    frame.to_parquet(tmp_path / "labelled.parquet")
    argv = ["--params", str(params), "--input", str(tmp_path / "labelled.parquet")]
    summary_path = tmp_path / "summary.json"
    argv += ["--out", str(tmp_path / "split"), "--summary", str(summary_path)]
    assert run(main, argv) == 0
    sizes = [len(pd.read_parquet(tmp_path / "split" / f"{name}.parquet")) for name in SPLITS]
    assert sizes == [28, 6, 6]
    assert json.loads(summary_path.read_text())["test"]["classes"] == {"a": 4, "b": 2}


def test_main_reports_bad_ratios_in_one_line(
    tmp_path: Path, frame: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: s.csv, target: species}\nsplit: {train: 0.9}\n")
    frame.to_parquet(tmp_path / "labelled.parquet")
    argv = ["--params", str(params), "--input", str(tmp_path / "labelled.parquet")]
    argv += ["--out", str(tmp_path / "split"), "--summary", str(tmp_path / "s.json")]
    assert run(main, argv) == 1
    assert "must sum to 1" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()


# --- a regression target (float64, as the label stage stores it) -------------------------------

PRICE = "Monthly Charge ($)"


def priced(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "row": range(rows),
            "Größe (cm)": rng.normal(170, 10, rows),
            "plan/type": [f"p{i % 6}" for i in range(rows)],
            PRICE: rng.lognormal(4, 1, rows),  # skewed: a random cut could miss the tail
        }
    )


def test_a_regression_target_is_stratified_on_quantile_bins() -> None:
    frame = priced(200)
    sets, summary = split_table(frame, SplitParams(), target=PRICE)
    assert rows_of(sets) == list(range(200))
    assert [len(sets[name]) for name in SPLITS] == [140, 30, 30]
    assert summary["strategy"] == "stratified"
    assert summary["target_bins"] == 10
    deciles = pd.qcut(frame[PRICE], 10, labels=False)
    for name in SPLITS:
        # every split spans the target's whole range, each decile in the split's share
        per_decile = deciles[sets[name]["row"]].value_counts().sort_index()
        assert per_decile.tolist() == [len(sets[name]) // 10] * 10
        statistics = summary[name]["target"]
        assert set(statistics) == {"count", "mean", "std", "min", "max"}
        assert statistics["count"] == len(sets[name])
        assert statistics["mean"] == pytest.approx(sets[name][PRICE].mean())
        assert "classes" not in summary[name]
    assert sets["train"][PRICE].dtype == np.float64


def test_a_small_table_gets_fewer_bins() -> None:
    _, summary = split_table(priced(45), SplitParams(), target=PRICE)
    assert (summary["strategy"], summary["target_bins"]) == ("stratified", 2)


def test_a_table_too_small_for_two_bins_is_split_at_random_and_says_so() -> None:
    sets, summary = split_table(priced(39), SplitParams(), target=PRICE)
    assert summary["strategy"] == "random"
    assert "too few for two quantile bins" in summary["note"]
    assert f"'{PRICE}' has 39 rows" in summary["note"]
    assert rows_of(sets) == list(range(39))


def test_regression_grouped_and_ordered_splits_summarise_the_target() -> None:
    frame = priced(60)
    sets, summary = split_table(frame, SplitParams(group_column="plan/type"), target=PRICE)
    assert summary["strategy"] == "grouped"
    assert "target_bins" not in summary
    assert summary["test"]["target"]["max"] == sets["test"][PRICE].max()
    frame["day"] = np.arange(60) // 3
    sets, summary = split_table(frame, SplitParams(order_column="day"), target=PRICE)
    assert sets["train"]["day"].max() < sets["validation"]["day"].min()
    assert summary["validation"]["target"]["min"] == sets["validation"][PRICE].min()


def test_main_summarises_a_regression_split(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"data: {{source: s.csv, target: '{PRICE}'}}\nsplit: {{}}\n")
    priced(100).to_parquet(tmp_path / "labelled.parquet")
    argv = ["--params", str(params), "--input", str(tmp_path / "labelled.parquet")]
    argv += ["--out", str(tmp_path / "split"), "--summary", str(tmp_path / "s.json")]
    assert run(main, argv) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["target_bins"] == 5
    assert summary["test"]["rows"] == 15
    assert summary["test"]["target"]["std"] > 0
