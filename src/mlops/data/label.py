"""Label stage: give every row its target value in ``data.target``; set aside rows left without.

Three methods (``label.method``):

- ``column``: the class comes from a column already present, optionally mapped to class names;
- ``annotations``: the class comes from an annotations file (CSV, or a JSON list of objects as
  labelling tools export it), joined on an id column; an id annotated with different classes is a
  conflict and its rows stay unlabelled;
- ``rules``: ordered ``{when: <pandas expression>, then: <class>}``; the first matching rule wins,
  ``default`` labels the rest (null leaves them unlabelled).

The task is decided here, once, on the labels (``data.task``, ``mlops.task.decide_task``), and
the target is stored typed by it: class names as text, as the packaged model reports them, or a
regression target as float64 (a value that is not a number stops the stage, naming its rows).
Later stages read the task from that type. Rows without a label go to their own table for later
annotation and never into training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from mlops.data.rules.labels import class_counts, class_text
from mlops.params import DataParams, LabelParams, load_section
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json
from mlops.summaries import LabelSummary
from mlops.tables import read_table, require_columns, write_table
from mlops.task import (
    DeclaredTask,
    TaskDecision,
    decide_task,
    numbers_in_text,
    target_statistics,
)

EXAMPLES = 5  # rows named in the error about a regression target that holds text


@dataclass(frozen=True)
class Rule:
    when: str
    then: str


@dataclass(frozen=True)
class Labelling:
    """The label of every row (missing where none), not yet typed by the task, where it came
    from (the column named in errors) and method-specific counts for the summary."""

    labels: pd.Series
    details: dict[str, Any]
    origin: str = ""


def label_table(
    frame: pd.DataFrame,
    params: LabelParams,
    *,
    target: str,
    annotations: pd.DataFrame | None = None,
    task: DeclaredTask = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame, LabelSummary]:
    """(labelled rows, unlabelled rows, summary) of ``frame`` under ``params``; the target is
    typed by the task (``task``, or decided on the labels when ``auto``)."""
    if params.method == "column":
        column = params.column or target
        labelling = labels_from_column(frame, column, params.mapping)
        frame = frame.drop(columns=[column]) if column != target else frame
    elif params.method == "annotations":
        if annotations is None or params.id_column is None:
            raise StageError("label.method annotations needs label.annotations and label.id_column")
        labelling = labels_from_annotations(
            frame, annotations, params.id_column, params.annotation_label
        )
    else:
        labelling = labels_from_rules(frame, parse_rules(params.rules), params.default)
    decision = decide_task(labelling.labels.rename(target), task)
    values = typed_target(labelling.labels, decision, labelling.origin or target)
    labelled_frame = frame.assign(**{target: values})
    has_label = labelled_frame[target].notna()
    labelled = labelled_frame[has_label].reset_index(drop=True)
    unlabelled = labelled_frame[~has_label].reset_index(drop=True)
    summary = {
        "method": params.method,
        "rows": len(frame),
        "labelled": len(labelled),
        "unlabelled": len(unlabelled),
        "task": decision.as_dict(),
        **target_summary(labelled[target], decision),
        **labelling.details,
    }
    return labelled, unlabelled, cast(LabelSummary, summary)


def typed_target(labels: pd.Series, decision: TaskDecision, origin: str) -> pd.Series:
    """Class names as text, or a regression target as float64; a label that is not a finite
    number stops a regression, naming ``origin`` (the column it came from) and its rows."""
    if decision.task == "classification":
        return labels.map(class_text, na_action="ignore").astype("str")
    numbers = numbers_in_text(labels)
    bad = labels.notna() & ~np.isfinite(numbers.to_numpy())
    if bad.any():
        rows = labels.index[bad.to_numpy()][:EXAMPLES]
        examples = ", ".join(f"row {row} {_plain(labels[row])!r}" for row in rows)
        more = ", ..." if bad.sum() > EXAMPLES else ""
        raise StageError(
            f"'{origin}': a regression target must be a finite number in every labelled row, "
            f"but {int(bad.sum())} row(s) hold something else: {examples}{more} (rows are "
            f"0-based positions in the label stage's input; regression because {decision.reason})."
            " Fix them at the source or leave them empty (rows without a target are set aside "
            "as unlabelled), or set data.task: classification if the values are classes"
        )
    return numbers


def _plain(value: object) -> object:
    """numpy scalars as Python ones, so an error shows ``inf``, not ``np.float64(inf)``."""
    return value.item() if isinstance(value, np.generic) else value


def target_summary(target: pd.Series, decision: TaskDecision) -> dict[str, Any]:
    """Class counts, or for a regression the target's statistics (``target_statistics``)."""
    if decision.task == "classification":
        return {"classes": class_counts(target)}
    return {"target_statistics": target_statistics(target)}


def labels_from_column(frame: pd.DataFrame, column: str, mapping: Mapping[str, str]) -> Labelling:
    """The label of each row from ``column``; ``mapping`` renames raw values (compared as text,
    so 1 and 1.0 are "1"), the others stay as they are."""
    require_columns(frame, [column], "label.column")
    values = frame[column]
    if not mapping:
        return Labelling(values, {"mapped": 0}, column)
    text = values.map(class_text, na_action="ignore")
    mapped = text.isin(list(mapping))
    labels = values.astype(object).where(~mapped, text.map(mapping))
    return Labelling(labels, {"mapped": int(mapped.sum())}, column)


def labels_from_annotations(
    frame: pd.DataFrame, annotations: pd.DataFrame, id_column: str, label_field: str
) -> Labelling:
    """The class of each row from the annotations of its id; conflicting ids stay unlabelled."""
    require_columns(frame, [id_column], "label.id_column")
    require_columns(annotations, [id_column, label_field], "annotations")
    answered = annotations[[id_column, label_field]].dropna()
    keys = answered[id_column].map(class_text)
    answers = answered[label_field].map(class_text)
    distinct = answers.groupby(keys).unique()
    conflicting = {key for key, values in distinct.items() if len(values) > 1}
    agreed = {key: values[0] for key, values in distinct.items() if len(values) == 1}
    row_keys = frame[id_column].map(class_text, na_action="ignore")
    details = {
        "annotations": len(annotations),
        "annotated_ids": len(distinct),
        "conflicting_ids": len(conflicting),
        "conflicts": int(row_keys.isin(list(conflicting)).sum()),
        "unmatched_annotations": len(set(distinct.index) - set(row_keys.dropna())),
    }
    return Labelling(row_keys.map(agreed), details, f"{label_field} (annotations)")


def labels_from_rules(frame: pd.DataFrame, rules: Sequence[Rule], default: str | None) -> Labelling:
    """First matching rule wins; ``default`` for rows no rule matches (None: unlabelled)."""
    classes = pd.Series(pd.NA, index=frame.index, dtype="object")
    unclaimed = pd.Series(True, index=frame.index)
    matches_by_class: dict[str, pd.Series] = {}
    coverage = {}
    for number, rule in enumerate(rules, start=1):
        matches = rule_matches(frame, rule, number)
        assigned = matches & unclaimed
        classes[assigned] = rule.then
        unclaimed &= ~matches
        previous = matches_by_class.get(rule.then, pd.Series(False, index=frame.index))
        matches_by_class[rule.then] = previous | matches
        coverage[f"rule_{number}"] = {
            "when": rule.when,
            "then": rule.then,
            "matched": int(matches.sum()),
            "assigned": int(assigned.sum()),
        }
    if default is not None:
        classes[unclaimed] = default
    classes_matched = pd.DataFrame(matches_by_class, index=frame.index).sum(axis=1)
    details = {
        "rules": coverage,
        "unmatched": int(unclaimed.sum()),
        "default_assigned": int(unclaimed.sum()) if default is not None else 0,
        "conflicts": int((classes_matched > 1).sum()),
    }
    return Labelling(classes, details, "label.rules")


def rule_matches(frame: pd.DataFrame, rule: Rule, number: int) -> pd.Series:
    """The rows ``rule.when`` holds for, as a boolean Series; a bad expression names the rule."""
    where = f"label.rules #{number} (when: {rule.when!r})"
    try:
        result = frame.eval(rule.when, engine="python", local_dict={}, global_dict={})
    except Exception as error:  # pandas raises many types for a bad expression
        raise StageError(
            f"{where}: cannot be evaluated ({type(error).__name__}: {error}); "
            f"the columns are {list(frame.columns)}"
        ) from None
    if isinstance(result, bool):
        return pd.Series(result, index=frame.index)
    if not isinstance(result, pd.Series) or not pd.api.types.is_bool_dtype(result):
        raise StageError(
            f"{where}: must give true or false per row, e.g. 'body_mass_g > 4500'; "
            f"the columns are {list(frame.columns)}"
        )
    return result.fillna(False).astype(bool)


def parse_rules(raw: Sequence[Mapping[str, str]]) -> list[Rule]:
    if not raw:
        raise StageError("label.rules is empty; method rules needs [{when: ..., then: ...}, ...]")
    rules = []
    for number, rule in enumerate(raw, start=1):
        if set(rule) != {"when", "then"}:
            raise StageError(
                f"label.rules #{number}: expected exactly the keys when and then, "
                f"got {sorted(rule)}"
            )
        rules.append(Rule(when=rule["when"], then=rule["then"]))
    return rules


def read_annotations(path: Path, id_column: str, label_field: str) -> pd.DataFrame:
    """An annotations export: CSV, or JSON holding a list of objects."""
    if not path.is_file():
        raise StageError(f"{path}: annotations file not found (label.annotations)")
    if path.suffix.lower() == ".csv":
        annotations = pd.read_csv(path)
    elif path.suffix.lower() == ".json":
        annotations = _annotations_from_json(path)
    else:
        raise StageError(f"{path}: annotations must be a .csv or .json file")
    missing = [field for field in (id_column, label_field) if field not in annotations.columns]
    if missing:
        raise StageError(
            f"{path}: annotations lack the field(s) {missing} (label.id_column, "
            f"label.annotation_label); they have {list(annotations.columns)}"
        )
    return annotations


def _annotations_from_json(path: Path) -> pd.DataFrame:
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise StageError(f"{path}: expected a JSON list of objects, one per annotation")
    return pd.DataFrame.from_records(records)


def annotations_path(params: LabelParams, tracked_directory: Path) -> Path:
    """label.annotations, which must lie in the directory dvc.yaml tracks for this stage."""
    if params.annotations is None or params.id_column is None:
        raise StageError(
            "label.method annotations needs label.annotations (the file) and label.id_column"
        )
    path = Path(params.annotations)
    if not path.resolve().is_relative_to(tracked_directory.resolve()):
        raise StageError(
            f"label.annotations: {path} is outside {tracked_directory}, the directory dvc.yaml "
            f"tracks for the label stage; move the file into {tracked_directory}/"
        )
    return path


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Label the clean table; rows without a class go to their own table.")
    arguments.add_argument("--input", type=Path, required=True, help="clean Parquet table")
    arguments.add_argument(
        "--annotations-dir", type=Path, required=True, help="where annotation files must live"
    )
    arguments.add_argument("--out", type=Path, required=True, help="labelled Parquet table")
    arguments.add_argument("--unlabelled", type=Path, required=True, help="rows with no class")
    arguments.add_argument("--summary", type=Path, required=True, help="JSON summary")
    args = arguments.parse_args(argv)
    data = load_section(args.params, "data", DataParams)
    params = load_section(args.params, "label", LabelParams)
    annotations = None
    if params.method == "annotations":
        path = annotations_path(params, args.annotations_dir)
        annotations = read_annotations(path, str(params.id_column), params.annotation_label)
    frame = read_table(args.input)
    with step(f"label ({params.method})", len(frame)):
        labelled, unlabelled, summary = label_table(
            frame, params, target=data.target, annotations=annotations, task=data.task
        )
    write_table(args.out, labelled)
    write_table(args.unlabelled, unlabelled)
    write_json(args.summary, summary)
    print(
        f"label ({params.method}): {summary['labelled']} of {summary['rows']} rows labelled "
        f"({describe_target(summary)}), {summary['unlabelled']} to {args.unlabelled}"
    )
    print(f"task: {summary['task']['task']} ({summary['task']['reason']})")


def describe_target(summary: LabelSummary) -> str:
    if "classes" in summary:
        return f"{len(summary['classes'])} classes"
    statistics = summary["target_statistics"]
    if not statistics["count"]:
        return "no target values"
    return (
        f"target mean {statistics['mean']:.4g}, std {statistics['std']:.4g}, "
        f"range {statistics['min']:.4g} to {statistics['max']:.4g}"
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
