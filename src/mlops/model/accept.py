"""The acceptance test: the candidate on the held-out test set, against thresholds and the champion.

Checks, each with its value and threshold: accuracy, macro F1, macro F1 of every slice of
``evaluate.slice_column``, and, when a champion package exists, the candidate's macro F1 against the
champion's on the same rows (scored with onnxruntime exactly as the scorer scores it). The verdict
file is written whatever the outcome; a failed check fails the stage, so DVC never reaches
``package`` and the packaged model of the last accepted run stays in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops import artifacts
from mlops.model.evaluate import slice_metrics, slice_values
from mlops.model.features import TrainedModel, load_model, model_input, model_target
from mlops.model.onnx_export import onnx_feed, open_session, score, spec_of
from mlops.params import AcceptParams, EvaluateParams, load_section
from mlops.stage import StageError, parser, run, write_json
from mlops.tables import read_table

Check = dict[str, Any]
CHAMPION_CHECK = "champion_macro_f1"


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(np.mean(np.asarray(truth) == np.asarray(predicted))) if len(truth) else 0.0


def make_check(name: str, value: float, threshold: float | None, **details: Any) -> Check:
    """A check passes when its threshold is known and its value is at least the threshold."""
    passed = threshold is not None and value >= threshold
    return {"name": name, "value": value, "threshold": threshold, "passed": passed, **details}


def threshold_checks(
    truth: Sequence[str], predicted: Sequence[str], params: AcceptParams
) -> list[Check]:
    return [
        make_check("accuracy", accuracy(truth, predicted), params.min_accuracy),
        make_check("macro_f1", macro_f1(truth, predicted), params.min_macro_f1),
    ]


def slice_checks(
    truth: pd.Series, predicted: pd.Series, slices: pd.Series, threshold: float
) -> list[Check]:
    """One check per slice (``evaluate.slice_values``), on the macro F1 evaluate reports."""
    per_slice = slice_metrics(truth, predicted, slices)
    return [
        make_check(
            f"slice_macro_f1[{per_slice['column']}={value}]",
            scores["macro_f1"],
            threshold,
            slice=value,
            rows=scores["rows"],
        )
        for value, scores in per_slice["slices"].items()
    ]


def champion_check(
    directory: Path,
    test: pd.DataFrame,
    truth: Sequence[str],
    candidate_f1: float,
    params: AcceptParams,
) -> tuple[Check, dict[str, Any]]:
    """Candidate macro F1 >= champion macro F1 - ``max_regression``, both scored on ``test``.

    A champion that fails verification or cannot score the test rows (a feature missing from the
    data, a type that changed) fails the check with the reason: the candidate cannot be shown
    to be no worse than production.
    """
    summary: dict[str, Any] = {"path": str(directory)}
    try:
        manifest = artifacts.verify(directory)
        signature = artifacts.load_signature(directory)
    except artifacts.ArtifactError as error:
        return _champion_failed(candidate_f1, f"champion package is not valid: {error}"), summary
    summary.update(model_version=manifest["model_version"], **manifest["lineage"])
    spec = spec_of(signature)
    missing = [name for name in spec.features if name not in test.columns]
    if missing:
        reason = (
            f"champion {manifest['model_version']} is incompatible with the test data: it expects "
            f"feature(s) {missing} that the test table lacks; the candidate cannot be compared "
            "(if the feature change is deliberate, replace the champion in accept.champion)"
        )
        return _champion_failed(candidate_f1, reason), summary
    try:
        labels, _ = score(open_session(directory / artifacts.MODEL_FILE), onnx_feed(test, spec))
    except Exception as error:  # onnxruntime and the feed raise several types on bad inputs
        reason = f"champion {manifest['model_version']} cannot score the test data: {error}"
        return _champion_failed(candidate_f1, reason), summary
    champion_f1 = macro_f1(truth, list(labels))
    summary.update(macro_f1=champion_f1, accuracy=accuracy(truth, list(labels)))
    check = make_check(
        CHAMPION_CHECK,
        candidate_f1,
        champion_f1 - params.max_regression,
        champion_value=champion_f1,
        max_regression=params.max_regression,
    )
    return check, summary


def _champion_failed(candidate_f1: float, reason: str) -> Check:
    return make_check(CHAMPION_CHECK, candidate_f1, None, reason=reason)


def has_champion(directory: Path) -> bool:
    """A champion exists when its directory holds a packaged model (not just its README)."""
    return (directory / artifacts.MANIFEST_FILE).is_file()


def acceptance(
    model: TrainedModel,
    test: pd.DataFrame,
    params: AcceptParams,
    slice_column: str | None,
    champion: Path | None,
) -> dict[str, Any]:
    """The verdict: ``passed``, the test ``metrics`` of the candidate, ``checks``, ``champion``."""
    where = "test table"
    truth = model_target(test, model.target, where)
    predicted = pd.Series(
        np.asarray(model.pipeline.predict(model_input(test, model.spec, where))).astype(str),
        index=test.index,
    )
    checks = threshold_checks(list(truth), list(predicted), params)
    slices = slice_values(test, slice_column, where)
    if slices is not None:
        checks += slice_checks(truth, predicted, slices, params.min_slice_macro_f1)
    champion_summary = None
    if champion is not None and has_champion(champion):
        candidate_f1 = macro_f1(list(truth), list(predicted))
        check, champion_summary = champion_check(champion, test, list(truth), candidate_f1, params)
        checks.append(check)
    return {
        "passed": all(check["passed"] for check in checks),
        "metrics": _metrics(checks, len(test)),
        "checks": checks,
        "champion": champion_summary,
    }


def _metrics(checks: list[Check], rows: int) -> dict[str, Any]:
    """The candidate's numbers as a mapping: ``dvc metrics show`` displays these, not lists."""
    values: dict[str, Any] = {"rows": rows}
    for check in checks:
        if "slice" in check:
            values.setdefault("slice_macro_f1", {})[check["slice"]] = check["value"]
        elif check["name"] != CHAMPION_CHECK:
            values[check["name"]] = check["value"]
    return values


def failure_message(verdict: dict[str, Any], path: Path) -> str:
    failed = [check for check in verdict["checks"] if not check["passed"]]
    lines = [f"acceptance failed: {len(failed)} of {len(verdict['checks'])} check(s) (see {path})"]
    for check in failed:
        if "reason" in check:
            lines.append(f"  - {check['name']}: {check['reason']}")
        else:
            lines.append(
                f"  - {check['name']}: {check['value']:.4f} is below the threshold "
                f"{check['threshold']:.4f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--model", type=Path, required=True)
    arguments.add_argument("--data", type=Path, required=True, help="the held-out test table")
    arguments.add_argument("--champion", type=Path, help="packaged model in production, if any")
    arguments.add_argument("--out", type=Path, required=True, help="verdict JSON")
    options = arguments.parse_args(argv)
    params = load_section(options.params, "accept", AcceptParams)
    slice_column = load_section(options.params, "evaluate", EvaluateParams).slice_column
    model = load_model(options.model)
    test = read_table(options.data)
    verdict = acceptance(model, test, params, slice_column, options.champion)
    write_json(options.out, verdict)
    if not verdict["passed"]:
        raise StageError(failure_message(verdict, options.out))
    print(f"acceptance passed: {len(verdict['checks'])} checks (see {options.out})")


if __name__ == "__main__":
    raise SystemExit(run(main))
