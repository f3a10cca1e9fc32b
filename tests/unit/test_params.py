from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from mlops.params import (
    SECTIONS,
    CleanParams,
    HarvestParams,
    ParamsError,
    SplitParams,
    load_section,
    main,
    project_model_name,
    set_values,
)


@pytest.mark.parametrize(("section", "schema"), SECTIONS.items())
def test_every_section_of_the_project_params_loads(section: str, schema: type) -> None:
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


def test_set_changes_values_keeping_every_comment_and_refuses_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    original = (PROJECT_ROOT / "params.yaml").read_text()
    path.write_text(original)
    main(
        [
            "set",
            "harvest.enabled=true",
            "harvest.source=s3://bucket/inference",
            "--params",
            str(path),
        ]
    )
    changed = path.read_text()
    assert load_section(path, "harvest", HarvestParams) == HarvestParams(
        True, "s3://bucket/inference"
    )
    before, after = original.splitlines(), changed.splitlines()
    assert len(before) == len(after)
    differing = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert [new.split("#")[0].strip() for _, new in differing] == [
        "enabled: true",
        "source: s3://bucket/inference",
    ]
    assert all(new.split("#")[1:] == old.split("#")[1:] for old, new in differing)  # comments kept
    for bad in ("harvest.enabled=perhaps", "harvest.enable=true", "nowhere.key=1", "harvest"):
        with pytest.raises(ParamsError):
            set_values(path, [bad])
    assert path.read_text() == changed  # a refused change writes nothing
