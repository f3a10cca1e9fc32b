from pathlib import Path

import pytest

from mlops.params import (
    AcceptParams,
    CleanParams,
    DataParams,
    EvaluateParams,
    LabelParams,
    PackageParams,
    ParamsError,
    SparkParams,
    SplitParams,
    TrainParams,
    load_section,
    project_model_name,
)

SECTIONS = {
    "data": DataParams,
    "clean": CleanParams,
    "spark": SparkParams,
    "label": LabelParams,
    "split": SplitParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "accept": AcceptParams,
    "package": PackageParams,
}


@pytest.mark.parametrize(("section", "schema"), SECTIONS.items())
def test_every_section_of_the_project_params_loads(section: str, schema: type) -> None:
    from conftest import PROJECT_ROOT

    assert isinstance(load_section(PROJECT_ROOT / "params.yaml", section, schema), schema)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_nested_sections_become_dataclasses_and_ints_become_floats(tmp_path: Path) -> None:
    path = write(tmp_path, "clean:\n  outliers: {method: zscore, threshold: 2}\n")
    clean = load_section(path, "clean", CleanParams)
    assert clean.outliers.method == "zscore"
    assert clean.outliers.threshold == 2.0 and isinstance(clean.outliers.threshold, float)
    assert clean.impute.numeric == "median"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split: {trian: 0.7}\n", "unknown key(s) ['trian']"),
        ("split: {seed: many}\n", "split.seed: expected int, got 'many'"),
        ("split: {stratify: 1}\n", "split.stratify: expected true or false"),
        ("train: {model: xgboost}\n", "train.model: 'xgboost' is not one of"),
        ("data: {target: species}\n", "data.source is required"),
        ("clean:\n  outliers: {action: explode}\n", "clean.outliers.action: 'explode'"),
        ("other: {}\n", "section 'split' is missing"),
        ("- a list\n", "expected a mapping of sections"),
    ],
)
def test_bad_params_name_the_key_and_what_was_expected(
    tmp_path: Path, text: str, message: str
) -> None:
    section = text.split(":")[0] if not text.startswith(("other", "-")) else "split"
    schema = SECTIONS.get(section, SplitParams)
    with pytest.raises(ParamsError, match=None) as raised:
        load_section(write(tmp_path, text), section, schema)
    assert message in str(raised.value)
    assert str(tmp_path / "params.yaml") in str(raised.value)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("data: {source: data/penguins.csv, target: species}\n", "penguins"),
        ("data: {source: 's3://bucket/raw/Wine Quality.parquet', target: q}\n", "wine-quality"),
        ("data: {source: 'sqlite:///shop.db', target: q}\n", "shop"),
        ("data: {source: data/*.csv, target: q}\n", "model"),
        ("package: {model_name: churn-v2}\n", "churn-v2"),  # no data section needed
    ],
)
def test_the_model_is_named_after_the_source_unless_named(
    tmp_path: Path, text: str, name: str
) -> None:
    assert project_model_name(write(tmp_path, text)) == name


@pytest.mark.parametrize("bad", ["Churn", "churn_model", "-churn", "a" * 64])
def test_a_model_name_that_urls_and_tags_cannot_hold_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ParamsError, match=r"package.model_name: .* lower-case letters"):
        project_model_name(write(tmp_path, f"package: {{model_name: '{bad}'}}\n"))
