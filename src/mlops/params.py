"""The typed view of params.yaml: one dataclass per section, checked when loaded.

A stage asks for its own section only (``load_section(path, "clean", CleanParams)``), so a typo or
a wrong type in params.yaml stops the stage with a message naming the key, before any work is done.

``python -m mlops.params set harvest.enabled=true ...`` changes values in params.yaml, keeping its
comments and layout, and only once the sections it touches still load (the retrain workflow
switches the harvest on this way, and its pull request shows the change).
"""

from __future__ import annotations

import dataclasses
import io
import re
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mlops.core.atomic import write_text
from mlops.core.errors import ParamsError, run

T = TypeVar("T")


@dataclass(frozen=True)
class DataParams:
    source: str
    target: str
    # ``auto`` decides from the target (``mlops.task.decide_task``); the label stage records it.
    task: Literal["auto", "classification", "regression"] = "auto"
    # Binary classification: the class of interest (ROC/PR AUC, F1, the decision threshold);
    # None means the minority class of the training split.
    positive_class: str | None = None
    schema: str = "data/schema.yaml"
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    query: str | None = None
    exclude_columns: list[str] = field(default_factory=list)
    drop_columns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImputeParams:
    numeric: Literal["mean", "median", "constant", "drop", "none"] = "median"
    categorical: Literal["most_frequent", "constant", "drop", "none"] = "most_frequent"
    fill_value: str | float = "unknown"
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutlierParams:
    method: Literal["none", "iqr", "zscore"] = "iqr"
    threshold: float = 3.0
    action: Literal["clip", "drop"] = "clip"


@dataclass(frozen=True)
class CleanParams:
    drop_duplicates: bool = True
    normalize_strings: bool = True
    impute: ImputeParams = field(default_factory=ImputeParams)
    outliers: OutlierParams = field(default_factory=OutlierParams)


@dataclass(frozen=True)
class SparkParams:
    enabled: bool = False
    master: str = "local[2]"
    relative_error: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HarvestParams:
    """Labelled inference data: the predictions the sidecar shipped joined with their labels
    (``mlops.data.harvest``), added to the training data when enabled."""

    enabled: bool = False
    source: str = "data/harvest"  # the sidecar's MONITOR_SHIP_URL: s3://bucket/prefix or a path


@dataclass(frozen=True)
class LabelParams:
    method: Literal["column", "annotations", "rules"] = "column"
    column: str | None = None  # (column) None: data.target itself
    mapping: dict[str, str] = field(default_factory=dict)
    annotations: str | None = None
    id_column: str | None = None
    annotation_label: str = "label"
    rules: list[dict[str, str]] = field(default_factory=list)
    default: str | None = None


@dataclass(frozen=True)
class SplitParams:
    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15
    seed: int = 42
    stratify: bool = True
    group_column: str | None = None
    order_column: str | None = None


# Each family has a classifier and a regressor: linear is logistic regression or ridge regression.
ModelName = Literal["linear", "random_forest", "gradient_boosting", "hist_gradient_boosting"]


@dataclass(frozen=True)
class TrainParams:
    model: ModelName = "random_forest"
    search: Literal["grid", "random", "halving"] = "random"
    n_iter: int = 8
    cv_folds: int = 5
    # ``auto``: f1_macro (multiclass), roc_auc (binary), neg_root_mean_squared_error (regression)
    scoring: str = "auto"
    seed: int = 42
    n_jobs: int = 2
    max_tuning_rows: int = 20000
    # task -> family -> the estimator's own hyper-parameter names -> values to try
    search_spaces: dict[str, dict[str, dict[str, list[Any]]]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluateParams:
    slice_column: str | None = None
    # Binary classification: None (the positive class wins at p >= 0.5), "max_f1" (the threshold
    # maximising the positive class's F1 on the validation split) or a probability in (0, 1).
    decision_threshold: float | Literal["max_f1"] | None = None
    permutation_repeats: int = 5
    max_importance_rows: int = 20000
    seed: int = 42


@dataclass(frozen=True)
class AcceptParams:
    """Floors and ceilings on the test split; None (null) leaves a check out. The keys of the other
    task are ignored. The candidate must always beat a baseline that ignores the features (the
    most frequent class, or the mean of the training target) on the task's primary metric."""

    # classification
    min_accuracy: float | None = None
    min_macro_f1: float | None = None
    min_roc_auc: float | None = None  # binary: ROC AUC of the positive class
    min_slice_macro_f1: float | None = None  # every slice of evaluate.slice_column
    # regression
    min_r2: float | None = None
    max_rmse: float | None = None  # in the target's units
    max_mae: float | None = None
    min_slice_r2: float | None = None
    # the model in production; absent on a first run
    champion: str | None = None
    # How much worse than the champion the candidate may be on the primary metric: points of
    # macro F1 (multiclass) or ROC AUC (binary); a share of the champion's RMSE (regression).
    max_regression: float = 0.0


@dataclass(frozen=True)
class PackageParams:
    model_name: str | None = None  # None: named after data.source (``model_name``)
    parity_tolerance: float = 1e-4
    target_opset: int = 17


MODEL_NAME_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def project_model_name(path: Path) -> str:
    """The model's name as params.yaml at ``path`` gives it (``model_name``); the data section is
    read only when ``package.model_name`` is left out."""
    package = load_optional_section(path, "package", PackageParams)
    if package.model_name is not None:
        return model_name(package, None)
    return model_name(package, load_section(path, "data", DataParams))


def model_name(package: PackageParams, data: DataParams | None) -> str:
    """``package.model_name``, or a name made from ``data.source``'s last path part (``penguins``
    for ``data/penguins.csv``): lower-case letters, digits and dashes, as GTO and URLs want it."""
    if package.model_name is not None or data is None:
        if package.model_name is None:
            raise ParamsError("package.model_name: not set, and no data.source to name it after")
        if not MODEL_NAME_PATTERN.fullmatch(package.model_name):
            raise ParamsError(
                f"package.model_name: {package.model_name!r} must be lower-case letters, digits "
                "and inner dashes (at most 63), e.g. 'churn-model'"
            )
        return package.model_name
    last_part = data.source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    stem = last_part.split(".", 1)[0] if "://" not in last_part else ""
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return slug or "model"


def read_params(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def load_section(path: Path, section: str, schema: type[T]) -> T:
    """Read one section of params.yaml into its dataclass, naming any offending key."""
    params = read_params(path)
    if section not in params:
        raise ParamsError(f"{path}: section '{section}' is missing")
    return from_mapping(schema, params[section], f"{path}: {section}")


def load_optional_section(path: Path, section: str, schema: type[T]) -> T:
    """``load_section`` for a section a project may leave out: then every key has its default."""
    return from_mapping(schema, read_params(path).get(section), f"{path}: {section}")


def from_mapping(schema: type[T], raw: object, where: str) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where}.{name} is required")
    return schema(**values)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, converting ints to floats where a float is due."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ParamsError as error:
                errors.append(str(error))
        raise ParamsError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}"
        )
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(key, args[0], where): _coerce(item, args[1], f"{where}.{key}")
            for key, item in value.items()
        }
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)  # type: ignore[arg-type]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ParamsError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float) and isinstance(value, bool):
        raise ParamsError(f"{where}: expected a number, got {value!r}")
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ParamsError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "harvest": HarvestParams,
    "clean": CleanParams,
    "spark": SparkParams,
    "label": LabelParams,
    "split": SplitParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "accept": AcceptParams,
    "package": PackageParams,
}


def set_values(path: Path, assignments: Sequence[str]) -> None:
    """Apply ``section.key=value`` assignments (the value read as YAML: ``true``, ``3``, text) to
    the params file, keeping its comments; ParamsError, and the file untouched, when a key is
    unknown or a value has the wrong type."""
    from ruamel.yaml import YAML  # the pipeline's environment has it (DVC edits YAML with it)

    editor = YAML()
    editor.preserve_quotes = True
    editor.representer.add_representer(  # `null` stays `null` (ruamel would leave it empty)
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    try:
        document = editor.load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        parts = key.split(".")
        if not separator or len(parts) < 2 or parts[0] not in SECTIONS:
            raise ParamsError(
                f"{assignment!r}: expected <section>.<key>=<value> with a section of "
                f"{sorted(SECTIONS)}"
            )
        node = document.setdefault(parts[0], {})
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(text) if text else ""
    buffer = io.StringIO()
    editor.dump(document, buffer)
    changed = yaml.safe_load(buffer.getvalue())
    for section in {assignment.split(".")[0] for assignment in assignments}:
        from_mapping(SECTIONS[section], changed.get(section), f"{path}: {section}")
    write_text(path, buffer.getvalue())


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    arguments = argparse.ArgumentParser(prog="python -m mlops.params", description=__doc__)
    commands = arguments.add_subparsers(dest="command", required=True)
    setter = commands.add_parser("set", help="set values, e.g. harvest.enabled=true")
    setter.add_argument("assignments", nargs="+", metavar="SECTION.KEY=VALUE")
    setter.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = arguments.parse_args(argv)
    set_values(args.params, args.assignments)
    print(f"{args.params}: set {', '.join(args.assignments)}")


if __name__ == "__main__":
    sys.exit(run(main))
