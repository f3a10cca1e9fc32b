"""The acceptance test: the candidate on the held-out test set, against thresholds and the champion.

Checks, each with its value, threshold and comparison, for the model's task:

- thresholds from params (``accept``; null leaves a check out, the other task's keys are ignored):
  accuracy, macro F1, ROC AUC and macro F1 of every slice of ``evaluate.slice_column`` for a
  classifier; R², RMSE, MAE and R² of every slice for a regressor;
- always: the candidate beats a baseline that ignores the features (the most frequent class, or
  the mean, of the training split) on the task's primary metric (``mlops.task.primary_metric``);
- when a champion package exists: the candidate is no worse than the champion on the primary
  metric, both scored on the same rows (the champion with onnxruntime, exactly as the scorer
  scores it), within ``max_regression``.

Two classes: the candidate's labels follow the decision threshold evaluate recorded in
metrics.json, as the packaged model's will. The verdict file is written whatever the outcome; a
failed check fails the stage, so DVC never reaches ``package`` and the packaged model of the last
accepted run stays in place.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor

from mlops.core import artifacts
from mlops.core.artifacts import Task
from mlops.model.features import TrainedModel, load_model, model_input, model_target
from mlops.model.metrics import (
    Prediction,
    headline_metrics,
    metric_value,
    predict,
    prediction_metrics,
    slice_metrics,
    slice_values,
)
from mlops.model.onnx_export import (
    open_session,
    score_classifier,
    score_regressor,
    signature_feed,
    spec_of,
)
from mlops.model.summaries import (
    Baseline,
    Champion,
    Check,
    CheckDetails,
    Comparison,
    Metrics,
    Verdict,
)
from mlops.model.threshold import Decision, recorded_decision
from mlops.params import AcceptParams, EvaluateParams, load_section
from mlops.stage import StageError, parser, read_json, run, write_json
from mlops.tables import read_table
from mlops.task import primary_metric

COMPARISONS: dict[Comparison, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
FAILURES: dict[Comparison, str] = {
    ">=": "is below the threshold",
    "<=": "is above the ceiling",
    ">": "does not beat the baseline's",
    "<": "does not beat the baseline's",
}
# Per task: (metric key in the test metrics, the accept param setting its bound, comparison).
THRESHOLDS: dict[Task, tuple[tuple[str, str, Comparison], ...]] = {
    "classification": (
        ("accuracy", "min_accuracy", ">="),
        ("macro_f1", "min_macro_f1", ">="),
        ("roc_auc", "min_roc_auc", ">="),
    ),
    "regression": (("r2", "min_r2", ">="), ("rmse", "max_rmse", "<="), ("mae", "max_mae", "<=")),
}
# Per task: the metric every slice is held to, and its param.
SLICE_THRESHOLDS = {
    "classification": ("macro_f1", "min_slice_macro_f1"),
    "regression": ("r2", "min_slice_r2"),
}
TASK_NOUNS = {"classification": "a classifier", "regression": "a regressor"}


def make_check(
    name: str,
    value: float | None,
    threshold: float | None,
    comparison: Comparison = ">=",
    **details: Unpack[CheckDetails],
) -> Check:
    """A check passes when its value and threshold are known and the value compares as asked;
    a value that could not be computed fails, with the reason."""
    passed = (
        value is not None and threshold is not None and COMPARISONS[comparison](value, threshold)
    )
    if value is None and "reason" not in details:
        details["reason"] = f"{name} cannot be computed on the test split (e.g. it holds one class)"
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "comparison": comparison,
        "passed": passed,
        **details,
    }


def threshold_checks(
    metrics: Mapping[str, object], task: Task, params: AcceptParams, classes: int = 0
) -> list[Check]:
    """One check per threshold set in params for the task; ``min_roc_auc`` checks the positive
    class's ROC AUC with two classes, the one-vs-rest macro average with more."""
    checks = []
    for metric, key, comparison in THRESHOLDS[task]:
        bound = getattr(params, key)
        if bound is None:
            continue
        if metric == "roc_auc" and classes > 2:
            metric = "roc_auc_ovr"
        checks.append(make_check(metric, metric_value(metrics, metric), bound, comparison))
    return checks


def slice_checks(
    truth: pd.Series,
    predicted: pd.Series,
    slices: pd.Series,
    threshold: float,
    task: Task = "classification",
) -> list[Check]:
    """One check per slice (``evaluate.slice_values``), on the metric evaluate reports for it."""
    metric = SLICE_THRESHOLDS[task][0]
    per_slice = slice_metrics(truth, predicted, slices, task)
    return [
        make_check(
            f"slice_{metric}[{per_slice['column']}={value}]",
            metric_value(scores, metric),
            threshold,
            slice=value,
            rows=scores["rows"],
        )
        for value, scores in per_slice["slices"].items()
    ]


def baseline_check(
    model: TrainedModel, train: pd.DataFrame, truth: pd.Series, candidate: Metrics
) -> tuple[Check, Baseline]:
    """The candidate beats a model that ignores the features, fitted on the training split: the
    most frequent class (a DummyClassifier) or the mean (a DummyRegressor), on the primary
    metric."""
    primary = primary_metric(model.task, len(model.classes))
    known = model_target(train, model.target, "training table", model.task)
    nothing = np.zeros((len(known), 1))
    if model.task == "regression":
        regressor = DummyRegressor(strategy="mean").fit(nothing, known)
        guess = pd.Series(regressor.predict(np.zeros((len(truth), 1))), index=truth.index)
        baseline = Prediction(guess.astype(np.float64), None)
        description = f"the mean of the training target ({float(regressor.constant_[0][0]):.6g})"
    else:
        classifier = DummyClassifier(strategy="most_frequent").fit(nothing, known)
        rows = np.zeros((len(truth), 1))
        probabilities = _in_class_order(
            classifier.predict_proba(rows), classifier.classes_, model.classes
        )
        labels = pd.Series(classifier.predict(rows).astype(str), index=truth.index, dtype=object)
        baseline = Prediction(labels, probabilities)
        majority = classifier.classes_[np.argmax(classifier.class_prior_)]
        description = f"the most frequent training class {str(majority)!r}"
    scores = headline_metrics(model.task, truth, baseline, model.positive_class, model.classes)
    comparison: Comparison = ">" if primary.higher_is_better else "<"
    check = make_check(
        f"baseline_{primary.name}",
        metric_value(candidate, primary.name),
        scores[primary.name],
        comparison,
        baseline=description,
    )
    return check, {"model": description, **scores}


def _in_class_order(
    probabilities: np.ndarray, columns: Sequence[Any], classes: Sequence[str]
) -> np.ndarray:
    """``probabilities`` with one column per class of ``classes`` (0 for a class not in
    ``columns``)."""
    index = {str(label): position for position, label in enumerate(columns)}
    ordered = np.zeros((len(probabilities), len(classes)))
    for position, label in enumerate(classes):
        if label in index:
            ordered[:, position] = probabilities[:, index[label]]
    return ordered


def champion_check(
    directory: Path,
    test: pd.DataFrame,
    truth: pd.Series,
    model: TrainedModel,
    candidate: Metrics,
    params: AcceptParams,
) -> tuple[Check, Champion]:
    """The candidate's primary metric against the champion's on ``test``: classification
    candidate >= champion - ``max_regression``; regression candidate RMSE <= champion RMSE x
    (1 + ``max_regression``).

    A champion that fails verification, is a model of the other task or cannot score the test
    rows (a feature missing from the data, a type that changed) fails the check with the
    reason: the candidate cannot be shown to be no worse than production.
    """
    primary = primary_metric(model.task, len(model.classes))
    name = f"champion_{primary.name}"
    value = metric_value(candidate, primary.name)
    summary: Champion = {"path": str(directory)}

    def failed(reason: str) -> tuple[Check, Champion]:
        return make_check(name, value, None, reason=reason), summary

    try:
        manifest = artifacts.verify(directory)
        signature = artifacts.load_signature(directory)
    except artifacts.ArtifactError as error:
        return failed(f"champion package is not valid: {error}")
    version = manifest["model_version"]
    summary.update({"model_version": version, "task": signature["task"], **manifest["lineage"]})
    if signature["task"] != model.task:
        return failed(
            f"champion {version} is {TASK_NOUNS[signature['task']]} and the candidate "
            f"{TASK_NOUNS[model.task]}: they cannot be compared on one metric (if the change of "
            "task is deliberate, replace the champion in accept.champion)"
        )
    missing = [name for name in spec_of(signature).features if name not in test.columns]
    if missing:
        return failed(
            f"champion {version} is incompatible with the test data: it expects "
            f"feature(s) {missing} that the test table lacks; the candidate cannot be compared "
            "(if the feature change is deliberate, replace the champion in accept.champion)"
        )
    try:
        prediction = champion_prediction(directory, signature, test, truth.index)
    except Exception as error:  # onnxruntime and the feed raise several types on bad inputs
        return failed(f"champion {version} cannot score the test data: {error}")
    if model.positive_class is not None and model.positive_class not in signature["classes"]:
        return failed(
            f"champion {version} predicts the classes {signature['classes']}, without the "
            f"candidate's positive class {model.positive_class!r}"
        )
    scores = headline_metrics(
        model.task, truth, prediction, model.positive_class, tuple(signature["classes"])
    )
    summary.update(scores)
    champion_value = scores[primary.name]
    if champion_value is None:
        return failed(f"the champion's {primary.name} cannot be computed on the test split")
    comparison: Comparison
    if primary.higher_is_better:
        bound, comparison = champion_value - params.max_regression, ">="
    else:
        bound, comparison = champion_value * (1 + params.max_regression), "<="
    check = make_check(
        name,
        value,
        bound,
        comparison,
        champion_value=champion_value,
        max_regression=params.max_regression,
    )
    return check, summary


def champion_prediction(
    directory: Path, signature: artifacts.Signature, test: pd.DataFrame, index: pd.Index
) -> Prediction:
    """The champion's predictions on ``test``, scored by onnxruntime as the scorer scores them
    (its inputs keyed by its own input names, its own decision threshold)."""
    session = open_session(directory / artifacts.MODEL_FILE)
    feed = signature_feed(test, signature, "test table")
    if signature["task"] == "regression":
        return Prediction(pd.Series(score_regressor(session, feed), index=index), None)
    labels, probabilities = score_classifier(
        session, feed, signature["classes"], signature["positive_class"], signature["threshold"]
    )
    return Prediction(pd.Series(labels, index=index, dtype=object), probabilities)


def has_champion(directory: Path) -> bool:
    """A champion exists when its directory holds a packaged model (not just its README)."""
    return (directory / artifacts.MANIFEST_FILE).is_file()


def acceptance(
    model: TrainedModel,
    test: pd.DataFrame,
    params: AcceptParams,
    slice_column: str | None,
    champion: Path | None,
    *,
    train: pd.DataFrame,
    decision: Decision | None = None,
) -> Verdict:
    """The verdict: ``passed``, ``task``, ``primary_metric``, the candidate's test ``metrics``,
    ``checks``, the ``baseline`` and the ``champion`` compared with (None on a first run).
    ``decision`` is the binary decision threshold evaluate recorded (None: the model's own
    labels)."""
    where = "test table"
    decision = decision or Decision(None, None)
    truth = model_target(test, model.target, where, model.task)
    prediction = predict(model, model_input(test, model.spec, where), decision.threshold)
    metrics = prediction_metrics(model, truth, prediction, decision)
    checks = threshold_checks(metrics, model.task, params, len(model.classes))
    slices = slice_values(test, slice_column, where)
    if slices is not None:
        key = SLICE_THRESHOLDS[model.task][1]
        per_slice = slice_checks(truth, prediction.values, slices, getattr(params, key), model.task)
        add_slice_scores(metrics, {check["slice"]: check["value"] for check in per_slice})
        checks += [check for check in per_slice if check["threshold"] is not None]
    check, baseline = baseline_check(model, train, truth, metrics)
    checks.append(check)
    champion_summary = None
    if champion is not None and has_champion(champion):
        check, champion_summary = champion_check(champion, test, truth, model, metrics, params)
        checks.append(check)
    return {
        "passed": all(check["passed"] for check in checks),
        "task": model.task,
        "primary_metric": primary_metric(model.task, len(model.classes)).name,
        "metrics": metrics,
        "checks": checks,
        "baseline": baseline,
        "champion": champion_summary,
    }


def add_slice_scores(metrics: Metrics, scores: dict[str, float | None]) -> None:
    """The test metrics carry each slice's metric (``SLICE_THRESHOLDS``): ``slice_macro_f1`` or
    ``slice_r2``, slice value -> score."""
    if metrics["task"] == "regression":
        metrics["slice_r2"] = scores
    else:
        metrics["slice_macro_f1"] = scores


def failure_message(verdict: Verdict, path: Path) -> str:
    failed = [check for check in verdict["checks"] if not check["passed"]]
    lines = [f"acceptance failed: {len(failed)} of {len(verdict['checks'])} check(s) (see {path})"]
    for check in failed:
        if "reason" in check:
            lines.append(f"  - {check['name']}: {check['reason']}")
        else:
            failure = FAILURES[check.get("comparison", ">=")]
            lines.append(
                f"  - {check['name']}: {check['value']:.4f} {failure} {check['threshold']:.4f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--model", type=Path, required=True)
    arguments.add_argument("--data", type=Path, required=True, help="the held-out test table")
    arguments.add_argument("--train", type=Path, required=True, help="the training table")
    arguments.add_argument(
        "--metrics", type=Path, required=True, help="evaluate's metrics.json (decision threshold)"
    )
    arguments.add_argument("--champion", type=Path, help="packaged model in production, if any")
    arguments.add_argument("--out", type=Path, required=True, help="verdict JSON")
    options = arguments.parse_args(argv)
    params = load_section(options.params, "accept", AcceptParams)
    slice_column = load_section(options.params, "evaluate", EvaluateParams).slice_column
    model = load_model(options.model)
    decision = recorded_decision(read_json(options.metrics), model, options.metrics)
    test = read_table(options.data)
    train = read_table(options.train)
    verdict = acceptance(
        model, test, params, slice_column, options.champion, train=train, decision=decision
    )
    write_json(options.out, verdict)
    if not verdict["passed"]:
        raise StageError(failure_message(verdict, options.out))
    print(f"acceptance passed: {len(verdict['checks'])} check(s) (see {options.out})")


if __name__ == "__main__":
    raise SystemExit(run(main))
