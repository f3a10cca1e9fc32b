"""The parity gate: before packaging, the ONNX model must reproduce scikit-learn on the test set.

The test rows are scored by the scikit-learn pipeline and by onnxruntime, fed as the scorer feeds
it (``onnx_export.onnx_feed``), and compared row by row:

- a classifier: every label identical (with a decision threshold, both sides' labels come from
  ``mlops.core.decision.apply_threshold``, as the scorer's do) and no probability differing by
  more than ``package.parity_tolerance``;
- a regressor: no prediction differing by more than that share of the training target's standard
  deviation (``target_scale``): float32 rounding is relative to the numbers' size, a conversion
  bug shows up on the scale of the target's spread.

The report (``reports/package/parity.json``) lists the worst rows, with their features and both
sides' predictions; ``parity_failure`` says the same in the stage's error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops.core.decision import apply_threshold
from mlops.model import onnx_export
from mlops.model.features import TrainedModel, model_input
from mlops.model.summaries import (
    Cell,
    ClassificationParity,
    ClassPrediction,
    ParityReport,
    RegressionParity,
    cell,
)

WORST_ROWS = 5


def predict(model: TrainedModel, frame: pd.DataFrame, threshold: float | None) -> np.ndarray:
    """scikit-learn's predictions of ``frame`` as the scorer makes them with the ONNX model: the
    numbers of a regressor, the labels of a classifier after its decision threshold."""
    features = model_input(frame, model.spec, "test table")
    if model.task == "regression":
        return np.asarray(model.pipeline.predict(features), dtype=np.float64).reshape(-1)
    if threshold is None:
        return np.asarray(model.pipeline.predict(features)).astype(str)
    assert model.positive_class is not None  # checked by decision_threshold
    probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    return apply_threshold(probabilities, model.classes, model.positive_class, threshold)


def check_parity(
    model: TrainedModel,
    onnx_model: bytes,
    test: pd.DataFrame,
    train: pd.DataFrame,
    tolerance: float,
    threshold: float | None = None,
) -> ParityReport:
    """Score ``test`` with scikit-learn and with onnxruntime and compare (see
    ``parity_report`` and ``regression_parity_report``)."""
    session = onnx_export.open_session(onnx_model)
    feed = onnx_export.onnx_feed(test, model.spec, "test table")
    shown = test[list(model.spec.features)]
    expected = predict(model, test, threshold)
    if model.task == "regression":
        actual = onnx_export.score_regressor(session, feed)
        scale = target_scale(train[model.target])
        return regression_parity_report(shown, expected, actual, scale, tolerance)
    features = model_input(test, model.spec, "test table")
    probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    actual_scores = onnx_export.score_classifier(
        session, feed, model.classes, model.positive_class, threshold
    )
    return parity_report(
        shown, model.classes, (expected, probabilities), actual_scores, tolerance, threshold
    )


def parity_report(
    features: pd.DataFrame,
    classes: Sequence[str],
    expected: tuple[np.ndarray, np.ndarray],
    actual: tuple[np.ndarray, np.ndarray],
    tolerance: float,
    threshold: float | None = None,
) -> ClassificationParity:
    """Compare a classifier's scikit-learn ``(labels, probabilities)`` with ONNX's, row by row
    (labels after the decision ``threshold``, if any, on both sides).

    Passes when every label is identical and no probability differs by more than ``tolerance``;
    ``worst_rows`` lists the rows with the largest difference (label mismatches first).
    """
    expected_labels, expected_probabilities = expected
    actual_labels, actual_probabilities = actual
    differences = _finite(np.abs(expected_probabilities - actual_probabilities).max(axis=1))
    mismatched = expected_labels.astype(str) != actual_labels.astype(str)
    max_abs_diff = float(differences.max()) if len(differences) else 0.0
    order = np.lexsort((-differences, ~mismatched))[:WORST_ROWS]
    return {
        "task": "classification",
        "rows": len(features),
        "max_abs_diff": cell(max_abs_diff),
        "label_mismatches": int(mismatched.sum()),
        "threshold": threshold,
        "tolerance": tolerance,
        "passed": bool(not mismatched.any() and max_abs_diff <= tolerance),
        "worst_rows": [
            {
                "row": cell(features.index[i]),
                "features": _row_features(features, i),
                "max_abs_diff": cell(float(differences[i])),
                "sklearn": _prediction(expected_labels[i], expected_probabilities[i], classes),
                "onnx": _prediction(actual_labels[i], actual_probabilities[i], classes),
            }
            for i in order
        ],
    }


def regression_parity_report(
    features: pd.DataFrame,
    expected: np.ndarray,
    actual: np.ndarray,
    scale: float,
    tolerance: float,
) -> RegressionParity:
    """Compare a regressor's scikit-learn predictions with ONNX's, row by row, relative to
    ``scale`` (the training target's standard deviation, ``target_scale``).

    Passes when no |sklearn - onnx| exceeds ``tolerance`` x ``scale``; ``worst_rows`` lists the
    rows with the largest difference.
    """
    differences = _finite(np.abs(expected - actual))
    max_abs_diff = float(differences.max()) if len(differences) else 0.0
    order = np.argsort(-differences, kind="stable")[:WORST_ROWS]
    return {
        "task": "regression",
        "rows": len(features),
        "max_abs_diff": cell(max_abs_diff),
        "scale": scale,
        "max_relative_diff": cell(max_abs_diff / scale),
        "tolerance": tolerance,
        "passed": bool(max_abs_diff <= tolerance * scale),
        "worst_rows": [
            {
                "row": cell(features.index[i]),
                "features": _row_features(features, i),
                "abs_diff": cell(float(differences[i])),
                "sklearn": {"prediction": cell(float(expected[i]))},
                "onnx": {"prediction": cell(float(actual[i]))},
            }
            for i in order
        ],
    }


def target_scale(target: pd.Series) -> float:
    """The scale a regressor's parity is judged on: the standard deviation of its training target,
    or, for a constant target, its magnitude (at least 1)."""
    values = target.to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    spread = float(values.std()) if len(values) > 1 else 0.0
    if spread > 0:
        return spread
    return max(abs(float(values.mean())) if len(values) else 0.0, 1.0)


def parity_failure(report: ParityReport) -> str:
    """A readable account of a failed parity gate, naming the worst rows."""
    if report["task"] == "regression":
        lines = [
            f"ONNX parity failed on {report['rows']} test rows: max |sklearn - onnx| prediction "
            f"{_shown(report['max_abs_diff'])}, {_shown(report['max_relative_diff'])} of the "
            f"training target's standard deviation {report['scale']:.4g} (tolerance "
            f"{report['tolerance']:.3g}). Worst rows:"
        ]
        lines += [
            f"  row {row['row']}: sklearn {row['sklearn']['prediction']} vs onnx "
            f"{row['onnx']['prediction']}; features {row['features']}"
            for row in report["worst_rows"]
        ]
        return "\n".join(lines)
    lines = [
        f"ONNX parity failed on {report['rows']} test rows: {report['label_mismatches']} label "
        f"mismatch(es), max |sklearn - onnx| probability {_shown(report['max_abs_diff'])} "
        f"(tolerance {report['tolerance']:.3g}). Worst rows:"
    ]
    for row in report["worst_rows"]:
        sklearn, onnx = row["sklearn"], row["onnx"]
        lines.append(
            f"  row {row['row']}: sklearn {sklearn['label']} {sklearn['probabilities']}"
            f" vs onnx {onnx['label']} {onnx['probabilities']}; features {row['features']}"
        )
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "not a number" if value is None else f"{value:.3g}"


def _finite(differences: np.ndarray) -> np.ndarray:
    """Differences with NaN (a model answering NaN) as infinity: the worst, and failing."""
    return np.where(np.isnan(differences), np.inf, differences)


def _row_features(features: pd.DataFrame, position: int) -> dict[str, Cell]:
    return {str(k): cell(v) for k, v in features.iloc[position].items()}


def _prediction(
    label: object, probabilities: np.ndarray, classes: Sequence[str]
) -> ClassPrediction:
    return {
        "label": str(label),
        "probabilities": {c: cell(float(p)) for c, p in zip(classes, probabilities, strict=True)},
    }
