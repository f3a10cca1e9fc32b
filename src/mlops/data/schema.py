"""``make schema``: the validation schema inferred from data, written for review.

The schema is pandera's YAML format, kept in the repository (``data.schema``) and reviewed by a
person; the stages load it strictly with ``mlops.data.rules.schema.load_schema``.

``make schema`` is where a fork meets its table: before inferring anything it checks every params
key that names a column against the table and reports all that do not fit in one message (with
headers that would collide as model input names), so no later stage crashes on a stale
``species``; it then previews the task (classification or regression) and names the columns that
are never features (identifiers, date-times: ``mlops.columns``).

The inference and the fork check are one module (about 420 lines) because they are one
command's two halves and nothing else uses them; the part the stages need, loading the schema,
is ``mlops.data.rules.schema``.
"""

from __future__ import annotations

import io
import keyword
import math
import sys
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import yaml
from pandera.io.pandas_io import serialize_schema

from mlops.columns import excluded_columns
from mlops.core.artifacts import ArtifactError, input_names
from mlops.data.engines.pandas_engine.sources import read_source
from mlops.data.label import labels_from_column
from mlops.data.rules.schema import load_schema
from mlops.params import (
    CleanParams,
    DataParams,
    EvaluateParams,
    LabelParams,
    SplitParams,
    from_mapping,
    read_params,
)
from mlops.stage import StageError, parser, run, write_text
from mlops.task import decide_task, numbers_in_text, task_preview

# --- inference ---------------------------------------------------------------------------------

# A string column gets an `isin` check when it has at most this many distinct values and each
# value is seen at least twice on average (so names, ids and free text do not).
MAX_CATEGORIES = 50
# Observed numeric ranges are widened by this share of the observed span on each side.
RANGE_MARGIN = 0.5

HEADER = """\
# Validation schema of the raw data (pandera YAML), checked by the `validate` stage.
# Inferred by `make schema` from {source} ({rows} rows).
# REVIEW IT before committing: it describes the data that was seen, widened a little.
#  - numeric ranges (in_range) are the observed min/max widened by {margin:.0%} of the span on each
#    side (never below 0 for a column that was never negative): set the real physical limits;
#  - isin lists the categories seen: add any valid one that is missing from the sample;
#  - feature columns are nullable (clean imputes gaps); the target is nullable only if it had gaps;
#  - strict: true makes an unexpected extra column an error; declare `unique: true` on a key column;
#  - identifier and date-time columns (described as "not a feature") are never features: ids get
#    `unique: true` and no range (new ids lie outside the old ones), dates no list of values.
"""


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    exclude_columns: Sequence[str] = (),
    task: str | None = None,
) -> pa.DataFrameSchema:
    """pandera's inferred schema of ``frame``, widened to accept new data that is still plausible.

    Feature columns (all but the target, ``exclude_columns`` and the identifier and date-time
    columns) are nullable: live data has gaps and the clean stage imputes them. Other columns are
    nullable only where gaps were seen. A regression target (``task``, decided from the target
    when None) is a float64 range, a classification target a list of classes.
    """
    inferred = pa.infer_schema(frame)
    if task is None and target in frame.columns:
        task = decide_task(frame[target]).task
    never_features = excluded_columns(frame, target)
    columns = {}
    for name, column in inferred.columns.items():
        if name == target:
            role = Role("target", task=task)
        elif name in never_features:
            role = Role("excluded", never_features[name].split(":")[0])
        else:
            role = Role("excluded" if name in exclude_columns else "feature")
        columns[name] = _widen(frame[name], column, role)
    return pa.DataFrameSchema(
        columns,
        strict=True,
        title="raw data",
        description=f"target: {target} ({task or 'made by the label stage'}); excluded from "
        f"features: {list(exclude_columns)}; never features: {list(never_features)}",
    )


@dataclass(frozen=True)
class Role:
    """What a column is to the pipeline: ``target``, ``feature`` or ``excluded``; ``never`` is
    why an excluded column can never be a feature (``identifier``, ``date-time``)."""

    kind: str
    never: str = ""
    task: str | None = None  # of the target: classification, regression, None (not decided)

    def describe(self) -> str:
        if self.never:
            return f"{self.never}: not a feature"
        return f"target ({self.task})" if self.kind == "target" and self.task else self.kind


def _widen(values: pd.Series, inferred: pa.Column, role: Role) -> pa.Column:
    missing = int(values.isna().sum())
    present = values.dropna()
    nullable = role.kind == "feature" or missing > 0
    seen = f"{role.describe()}; seen: {len(present)} values, {missing} missing, "
    seen += f"{present.nunique()} distinct"
    if role.never == "identifier":
        return _identifier_column(values, nullable, seen)
    if role.task == "regression":
        return _regression_target(values, nullable, seen)
    if pd.api.types.is_bool_dtype(values):
        return pa.Column(bool, nullable=nullable, coerce=True, description=seen)
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_column(present, inferred, role, nullable, seen)
    if pd.api.types.is_datetime64_any_dtype(values):
        return pa.Column(inferred.dtype, nullable=nullable, coerce=True, description=seen)
    return _string_column(present, role, nullable, seen)


def _identifier_column(values: pd.Series, nullable: bool, seen: str) -> pa.Column:
    """Unique (where no gaps were seen) and unbounded: new ids lie beyond the old ones."""
    numeric = pd.api.types.is_numeric_dtype(values)
    dtype = "int64" if numeric and not nullable else "float64" if numeric else "str"
    return pa.Column(dtype, nullable=nullable, unique=not nullable, coerce=True, description=seen)


def _regression_target(values: pd.Series, nullable: bool, seen: str) -> pa.Column:
    """A float64 range (numbers written as text too: validate then names the rows that are not
    numbers, before the label stage)."""
    numbers = numbers_in_text(values).dropna()
    checks = []
    if len(numbers):
        low, high = float(numbers.min()), float(numbers.max())
        lower, upper = widen_range(low, high)
        checks.append(pa.Check.in_range(lower, upper))
        seen += f"; observed range {low:g} to {high:g}, widened to {lower:g} to {upper:g}"
    return pa.Column("float64", checks, nullable=nullable, coerce=True, description=seen)


def _numeric_column(
    present: pd.Series, inferred: pa.Column, role: Role, nullable: bool, seen: str
) -> pa.Column:
    integral = pd.api.types.is_integer_dtype(present) and role.kind != "feature"
    dtype = "int64" if integral and not nullable else "float64"
    bounds = {check.name: check.statistics for check in inferred.checks}
    low = bounds.get("greater_than_or_equal_to", {}).get("min_value")
    high = bounds.get("less_than_or_equal_to", {}).get("max_value")
    checks = []
    if role.kind == "target" and present.nunique() <= MAX_CATEGORIES:
        checks.append(pa.Check.isin(sorted(present.unique().tolist())))
    elif low is not None and high is not None:
        lower, upper = widen_range(float(low), float(high), integral=dtype == "int64")
        checks.append(pa.Check.in_range(lower, upper))
        seen += f"; observed range {low:g} to {high:g}, widened to {lower:g} to {upper:g}"
    return pa.Column(dtype, checks, nullable=nullable, coerce=True, description=seen)


def widen_range(low: float, high: float, integral: bool = False) -> tuple[float, float]:
    """``[low, high]`` widened by RANGE_MARGIN of its span each side, rounded outward."""
    margin = RANGE_MARGIN * ((high - low) or abs(high) or 1.0)
    step = 10.0 ** (math.floor(math.log10(margin)) - 1)
    if integral:
        step = max(step, 1.0)
    lower = math.floor((low - margin) / step) * step
    upper = math.ceil((high + margin) / step) * step
    if low >= 0:
        lower = max(lower, 0.0)
    if integral:
        return int(lower), int(upper)
    return round(lower, 10), round(upper, 10)


def _string_column(present: pd.Series, role: Role, nullable: bool, seen: str) -> pa.Column:
    text = present.astype(str)
    distinct = text.nunique()
    categorical = distinct <= MAX_CATEGORIES and 2 * distinct <= len(text) and not role.never
    checks = []
    if categorical or role.kind == "target":
        checks.append(pa.Check.isin(sorted(text.unique().tolist())))
    return pa.Column("str", checks, nullable=nullable, coerce=True, description=seen)


def schema_yaml(schema: pa.DataFrameSchema, source: str, rows: int) -> str:
    """The schema as pandera YAML under a header asking for review; no index, portable dtypes."""
    serialized = serialize_schema(schema)
    serialized.pop("index", None)
    serialized["columns"] = {
        name: _tidy_column(spec, str(schema.columns[name].dtype))
        for name, spec in serialized["columns"].items()
    }
    header = HEADER.format(source=source, rows=rows, margin=RANGE_MARGIN)
    return header + yaml.safe_dump(serialized, sort_keys=False, allow_unicode=True, width=120)


def _tidy_column(spec: dict[str, Any], dtype: str) -> dict[str, Any]:
    """dtype first, description last, defaults left out, a portable name for strings."""
    if "string" in dtype:
        spec["dtype"] = "str"  # pandas' own alias; pandera writes string[pyarrow] under pandas 3
    in_range = spec.get("in_range")
    if isinstance(in_range, dict) and in_range.get("include_min") and in_range.get("include_max"):
        spec["in_range"] = {"min_value": in_range["min_value"], "max_value": in_range["max_value"]}
    first = {key: spec.pop(key) for key in ("dtype", "nullable", "unique", "coerce") if key in spec}
    description = spec.pop("description", None)
    tidy: dict[str, Any] = {key: value for key, value in first.items() if value is not False}
    tidy.update(spec)
    if description:
        tidy["description"] = description
    return tidy


# --- the fork check (`make schema`) ------------------------------------------------------------


@dataclass(frozen=True)
class ProjectParams:
    """The params sections whose keys name columns; other sections are not read here."""

    data: DataParams
    label: LabelParams = field(default_factory=LabelParams)
    split: SplitParams = field(default_factory=SplitParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    clean: CleanParams = field(default_factory=CleanParams)


def read_project_params(path: Path) -> ProjectParams:
    """The sections of params.yaml that name columns, each checked by its typed loader; a
    section left out has its defaults, unknown sections are someone else's."""
    raw = read_params(path)
    if "data" not in raw:
        raise StageError(f"{path}: section 'data' is missing")
    return ProjectParams(
        data=from_mapping(DataParams, raw["data"], f"{path}: data"),
        label=from_mapping(LabelParams, raw.get("label"), f"{path}: label"),
        split=from_mapping(SplitParams, raw.get("split"), f"{path}: split"),
        evaluate=from_mapping(EvaluateParams, raw.get("evaluate"), f"{path}: evaluate"),
        clean=from_mapping(CleanParams, raw.get("clean"), f"{path}: clean"),
    )


def column_problems(columns: Sequence[str], params: ProjectParams) -> list[str]:
    """One line per params key naming a column the table (``columns``, as read from the source)
    lacks, ``key: value``; keys the configured methods do not use are not checked."""
    problems = [f"data.drop_columns: {c!r}" for c in params.data.drop_columns if c not in columns]
    kept = [c for c in columns if c not in params.data.drop_columns]
    data, label = params.data, params.label

    def check(key: str, value: str | None) -> None:
        if value is not None and value not in kept:
            problems.append(f"{key}: {value!r}")

    if label.method == "column" and label.column is None:
        check("data.target", data.target)
    for column in data.exclude_columns:
        check("data.exclude_columns", column)
    if label.method == "column":
        check("label.column", label.column)
    if label.method == "annotations":
        check("label.id_column", label.id_column)
    if label.method == "rules":
        problems += _rule_problems(label.rules, kept)
    check("split.group_column", params.split.group_column)
    check("split.order_column", params.split.order_column)
    check("evaluate.slice_column", params.evaluate.slice_column)
    for column in params.clean.impute.columns:
        check("clean.impute.columns", column)
        if column in (data.target, *data.exclude_columns):
            problems.append(
                f"clean.impute.columns: {column!r} is the target or an excluded column, "
                "which are never imputed"
            )
    return problems


def _rule_problems(rules: Sequence[dict[str, str]], columns: Sequence[str]) -> list[str]:
    problems = []
    for number, rule in enumerate(rules, start=1):
        when = str(rule.get("when", ""))
        for name in expression_names(when):
            if name not in columns:
                problems.append(f"label.rules #{number} (when: {when!r}): {name!r}")
    return problems


def expression_names(expression: str) -> list[str]:
    """The column names a pandas ``eval`` expression reads: bare names and `back-quoted`
    ones, not functions, methods, ``@locals``, keywords or string literals."""
    names, rest = _backquoted(expression)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(rest).readline))
    except (tokenize.TokenError, SyntaxError):
        return names  # the label stage names a malformed expression itself
    for before, token, after in zip([None, *tokens], tokens, [*tokens[1:], None], strict=False):
        if token.type != tokenize.NAME or keyword.iskeyword(token.string):
            continue
        if (before is not None and before.string in (".", "@")) or (
            after is not None and after.string == "("
        ):
            continue
        names.append(token.string)
    return list(dict.fromkeys(names))


def _backquoted(expression: str) -> tuple[list[str], str]:
    """(the `back-quoted` names, the expression with each replaced by 0)."""
    parts = expression.split("`")
    names = parts[1::2] if len(parts) % 2 else parts[1:-1:2]
    rest = "".join(part if index % 2 == 0 else " 0 " for index, part in enumerate(parts))
    return names, rest


def input_name_collisions(columns: Sequence[str]) -> list[str]:
    """One line per group of columns that would share a model input name
    (``mlops.core.artifacts.input_names``'s own message)."""
    groups: dict[str, list[str]] = {}
    for column in columns:
        groups.setdefault(input_names([column])[column], []).append(column)
    problems = []
    for group in groups.values():
        try:
            input_names(group)
        except ArtifactError as error:
            problems.append(str(error))
    return problems


def feature_candidates(frame: pd.DataFrame, params: ProjectParams) -> list[str]:
    """The columns that may become model inputs: not the target, the label's source column,
    an excluded column, an identifier or a date-time."""
    label_source = params.label.column if params.label.method == "column" else None
    never = {params.data.target, label_source, *params.data.exclude_columns}
    never |= set(excluded_columns(frame, params.data.target))
    return [str(column) for column in frame.columns if column not in never]


def fork_check(frame: pd.DataFrame, params: ProjectParams, params_path: Path) -> pd.DataFrame:
    """``frame`` without ``data.drop_columns``, after checking every params key that names a
    column and every header against it; all problems are raised in one message."""
    source = params.data.source
    problems = column_problems([str(c) for c in frame.columns], params)
    kept = frame.drop(columns=[c for c in params.data.drop_columns if c in frame.columns])
    collisions = input_name_collisions(feature_candidates(kept, params))
    if not problems and not collisions:
        return kept
    lines = []
    if problems:
        lines.append(f"{params_path} names columns that {source} lacks:")
        lines += [f"  {problem}" for problem in problems]
        lines.append(f"  the table's columns: {[str(c) for c in kept.columns]}")
    if collisions:
        lines.append(f"headers of {source} that the model could not tell apart:")
        lines += [f"  {collision}" for collision in collisions]
    lines.append(
        "Fix these (or set a key to null / [] where the params allow it), then run `make schema`"
        " again; nothing was written."
    )
    raise StageError("\n".join(lines))


def preview_task(frame: pd.DataFrame, params: ProjectParams) -> dict[str, str | None]:
    """The task as the label stage will decide it, seen on the raw table."""
    data, label = params.data, params.label
    if label.method != "column":
        return {
            "task": None if data.task == "auto" else data.task,
            "reason": f"label.method {label.method}: the label stage makes '{data.target}' and "
            "decides the task on its labels",
        }
    if label.column is not None and label.column != data.target:
        labels = labels_from_column(frame, label.column, label.mapping).labels
        return task_preview(labels.rename(data.target).to_frame(), data.target, data.task)
    return task_preview(frame, data.target, data.task)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Infer the validation schema from data.source and write it for review.")
    arguments.add_argument("--out", type=Path, help="where to write it (default: data.schema)")
    args = arguments.parse_args(argv)
    params = read_project_params(args.params)
    data = params.data
    frame = fork_check(read_source(data), params, args.params)
    task = preview_task(frame, params)
    label_source = params.label.column if params.label.method == "column" else None
    never = excluded_columns(frame, label_source or data.target)
    schema = infer_schema(frame, label_source or data.target, data.exclude_columns, task["task"])
    out = args.out or Path(data.schema)
    write_text(out, schema_yaml(schema, data.source, len(frame)))
    load_schema(out)  # what was written must load back
    print(f"schema: {len(schema.columns)} columns inferred from {data.source} -> {out}")
    print(f"task: {task['task'] or 'decided by the label stage'} ({task['reason']})")
    if never:
        listed = ", ".join(f"{column!r} ({reason})" for column, reason in never.items())
        print(f"never features: {listed}")
    print("review it (ranges, categories, nullable, unique) before committing")


if __name__ == "__main__":
    sys.exit(run(main))
