import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.core import artifacts
from mlops.core.artifacts import Manifest, Signature
from mlops.core.drift import category_psi
from mlops.monitor.detect import UNSEEN, Thresholds, assess, category_key, numeric_statistics
from mlops.monitor.reference import Reference, build_reference, load_reference
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.window import LoggedPrediction
from mlops.profile import profile_table
from mlops.stage import StageError
from monitor_fixtures import write_package

CLASSES = {"a": 0.5, "b": 0.3, "c": 0.2}
COLORS = {"red": 0.6, "green": 0.3, "blue": 0.1}
THRESHOLDS = Thresholds(
    psi=0.2, prediction_psi=0.2, missing_rate=0.1, out_of_range=0.05, min_window_size=200
)


def draw(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": generator.normal(0.0, 1.0, rows),
            "y": generator.uniform(0.0, 10.0, rows),
            "color": generator.choice(list(COLORS), rows, p=list(COLORS.values())),
        }
    )


def make_reference() -> Reference:
    train = draw(5000, seed=0)
    profile: dict[str, Any] = profile_table(train)
    profile["classes"] = CLASSES
    signature: Signature = {
        "model_name": "toy",
        "target": "label",
        "features": [
            {"name": n, "type": "number", "nullable": True, "categories": None}
            | {"min": float(train[n].min()), "max": float(train[n].max())}
            for n in ("x", "y")
        ]
        + [
            {
                "name": "color",
                "type": "string",
                "nullable": True,
                "categories": sorted(COLORS),
                "min": None,
                "max": None,
            }
        ],
        "classes": list(CLASSES),
    }
    manifest: Manifest = {
        "model_name": "toy",
        "model_version": "1",
        "lineage": {"git_commit": "", "data_hash": "", "params_hash": "", "created": ""},
        "metrics": {"accuracy": 0.9, "macro_f1": 0.85},
        "files": {},
    }
    return build_reference(signature, profile, manifest)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return make_reference()


def records(frame: pd.DataFrame, predictions: list[str] | None = None) -> list[LoggedPrediction]:
    generator = np.random.default_rng(1)
    labels = predictions or list(
        generator.choice(list(CLASSES), len(frame), p=list(CLASSES.values()))
    )
    return [
        LoggedPrediction(0.0, f"r{i}", 0, row, labels[i])
        for i, row in enumerate(frame.to_dict("records"))
    ]


def drifted(report: Any) -> set[str]:
    return {feature.name for feature in report.drifted_features}


def test_a_sample_from_the_reference_does_not_drift(reference: Reference) -> None:
    report = assess(records(draw(1000, seed=2)), reference, THRESHOLDS)
    assert not report.alert
    assert max(feature.psi for feature in report.features) < 0.05
    assert report.as_json()["window_size"] == 1000


def test_a_small_reference_sample_never_alerts_below_the_minimum_window(
    reference: Reference,
) -> None:
    default_minimum = MonitorSettings.model_fields["min_window_size"].default
    thresholds = dataclasses.replace(THRESHOLDS, min_window_size=default_minimum)
    report = assess(records(draw(30, seed=3)), reference, thresholds)
    assert report.window_size == 30 < default_minimum
    assert not report.alert
    # The same 30 records would raise a false alarm without the minimum: PSI on 30 is noise.
    unguarded = dataclasses.replace(THRESHOLDS, min_window_size=1)
    assert assess(records(draw(30, seed=3)), reference, unguarded).alert


def test_one_shifted_feature_drifts_alone(reference: Reference) -> None:
    live = draw(500, seed=4)
    live["x"] += 1.5
    report = assess(records(live), reference, THRESHOLDS)
    assert report.alert
    assert drifted(report) == {"x"}
    (x,) = report.drifted_features
    assert x.psi > 0.2 and "psi" in x.reasons and x.out_of_range_rate > 0
    body = report.as_json()
    assert body["features"]["x"]["drifted"] is True
    assert body["features"]["y"]["drifted"] is False
    assert set(body) == {"window_size", "alert", "features", "prediction"}


def test_unseen_categories_are_counted_and_drift(reference: Reference) -> None:
    live = draw(500, seed=5)
    live.loc[:99, "color"] = "purple"
    report = assess(records(live), reference, THRESHOLDS)
    color = next(feature for feature in report.features if feature.name == "color")
    assert color.out_of_range_rate == pytest.approx(0.2)
    assert report.as_json()["features"]["color"]["unseen_rate"] == pytest.approx(0.2)
    assert drifted(report) == {"color"}
    color_reference = next(feature for feature in reference.features if feature.name == "color")
    assert category_key(color_reference, "purple") == UNSEEN


def test_a_rise_in_missing_values_flags_the_feature(reference: Reference) -> None:
    live = draw(500, seed=6).astype(object)
    live.loc[:149, "y"] = None
    report = assess(records(live), reference, THRESHOLDS)
    y = next(feature for feature in report.features if feature.name == "y")
    assert y.missing_rate == pytest.approx(0.3)
    assert y.reasons == ("missing_rate",)


def test_prediction_drift_is_the_class_mix_against_training(reference: Reference) -> None:
    live = draw(500, seed=7)
    report = assess(records(live, ["a"] * 500), reference, THRESHOLDS)
    assert report.prediction.drifted and report.alert
    assert drifted(report) == set()
    assert report.as_json()["prediction"] == {"score": report.prediction.psi, "drifted": True}


def test_a_per_feature_threshold_overrides_the_default(reference: Reference) -> None:
    live = draw(500, seed=4)
    live["x"] += 0.5
    strict = assess(records(live), reference, THRESHOLDS)
    lenient = dataclasses.replace(THRESHOLDS, feature_psi={"x": 5.0}, out_of_range=1.0)
    assert "x" in drifted(strict)
    assert drifted(assess(records(live), reference, lenient)) == set()


def test_validation_metrics_are_read_from_the_manifest(reference: Reference) -> None:
    assert reference.validation == {"accuracy": 0.9, "macro_f1": 0.85}  # top level
    signature: Signature = {"model_name": "toy", "target": "label", "features": [], "classes": []}
    nested: Any = {
        "model_name": "toy",
        "model_version": "2",
        "metrics": {"validation": {"accuracy": 0.8, "macro_f1": 0.7}, "test": {"accuracy": 0.1}},
    }
    packaged = build_reference(signature, {"columns": {}, "classes": CLASSES}, nested)
    assert packaged.validation == {"accuracy": 0.8, "macro_f1": 0.7}
    assert packaged.task == "classification"  # a signature from before the task switch


def test_a_profile_without_the_class_mix_is_refused() -> None:
    train = draw(100, seed=0)
    signature: Signature = {
        "model_name": "toy",
        "target": "label",
        "features": [
            {"name": "x", "type": "number", "nullable": True, "categories": None}
            | {"min": None, "max": None}
        ],
        "classes": ["a"],
    }
    manifest: Any = {"model_name": "toy", "model_version": "1", "metrics": {}, "files": {}}
    with pytest.raises(StageError, match="'classes'"):
        build_reference(signature, profile_table(train), manifest)
    with pytest.raises(StageError, match=r"feature\(s\) \['x'\]"):
        build_reference(signature, {"columns": {}, "classes": CLASSES}, manifest)


# A regressor whose features have the names people give columns.
DOSE, SITE, WEIGHT = "Dose (mg/kg)", "Site / région", "weight [kg]"


def regression_train(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            DOSE: generator.gamma(2.0, 3.0, rows),
            SITE: generator.choice(["Köln", "Zürich", "Lyon"], rows, p=[0.5, 0.3, 0.2]),
            WEIGHT: generator.normal(70.0, 12.0, rows),
        }
    )


def regression_predictions(frame: pd.DataFrame) -> list[float]:
    """The toy regressor: a linear function of two features."""
    return list(2.0 * frame[DOSE] + 0.1 * frame[WEIGHT])


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    train = regression_train(5000, seed=0)
    directory = tmp_path_factory.mktemp("regressor")
    validation = {"rows": 750, "mae": 1.0, "rmse": 1.5, "r2": 0.9, "mape": 0.1}
    write_package(directory, train, validation, predictions=regression_predictions(train))
    return load_reference(directory)


def regression_records(frame: pd.DataFrame, predictions: list[float]) -> list[LoggedPrediction]:
    rows = frame.to_dict("records")
    return [LoggedPrediction(0.0, f"r{i}", 0, row, predictions[i]) for i, row in enumerate(rows)]


def test_a_regressor_reads_its_task_prediction_profile_and_validation_rmse(
    regressor: Reference,
) -> None:
    assert regressor.task == "regression" and regressor.class_shares == {}
    assert regressor.validation == {"mae": 1.0, "rmse": 1.5}
    assert regressor.prediction is not None and regressor.prediction.kind == "numeric"
    assert len(regressor.prediction.bin_shares) == len(regressor.prediction.edges) + 1
    assert regressor.feature_names == [DOSE, SITE, WEIGHT]


def test_a_regressors_predictions_from_its_own_population_do_not_drift(
    regressor: Reference,
) -> None:
    live = regression_train(1000, seed=2)
    report = assess(regression_records(live, regression_predictions(live)), regressor, THRESHOLDS)
    assert not report.alert, report.as_json()
    assert report.prediction.psi < 0.05
    body = report.as_json()["prediction"]
    assert set(body) == {"score", "drifted", "mean", "reference_mean"}
    assert body["mean"] == pytest.approx(body["reference_mean"], rel=0.05)
    assert set(report.as_json()["features"]) == {DOSE, SITE, WEIGHT}  # the user's names as keys


def test_shifted_predictions_drift_on_the_numeric_rule_with_the_features_stable(
    regressor: Reference,
) -> None:
    live = regression_train(500, seed=3)
    shifted = [value + 4.0 for value in regression_predictions(live)]  # the model, not the data
    report = assess(regression_records(live, shifted), regressor, THRESHOLDS)
    assert report.prediction.drifted and report.alert and drifted(report) == set()
    assert report.prediction.class_shares == {}
    # one rule: the score is the numeric feature PSI of the predictions on the reference bins
    assert regressor.prediction is not None
    assert report.prediction.psi == pytest.approx(
        numeric_statistics(regressor.prediction, shifted)[0]
    )
    below = assess(regression_records(live[:30], shifted[:30]), regressor, THRESHOLDS)
    assert not below.prediction.drifted  # 30 records: no verdict yet


def test_a_shifted_feature_of_a_regressor_drifts_under_its_own_name(regressor: Reference) -> None:
    live = regression_train(500, seed=4)
    live[DOSE] *= 3
    report = assess(regression_records(live, regression_predictions(live)), regressor, THRESHOLDS)
    assert drifted(report) >= {DOSE} and SITE not in drifted(report)
    assert report.as_json()["features"][DOSE]["drifted"] is True


def test_a_regressor_without_the_prediction_profile_is_refused(tmp_path: Path) -> None:
    train = regression_train(200, seed=5)
    write_package(tmp_path, train, {"rmse": 1.0}, predictions=regression_predictions(train))
    profile = json.loads((tmp_path / artifacts.PROFILE_FILE).read_text())
    signature = artifacts.load_signature(tmp_path)
    manifest = artifacts.load_manifest(tmp_path)
    del profile["prediction"]
    profile["classes"] = CLASSES  # a classifier's reference profile does not fit a regressor
    with pytest.raises(StageError, match="'prediction' numeric profile"):
        build_reference(signature, profile, manifest)
    with pytest.raises(StageError, match="'classification' nor 'regression'"):
        build_reference({**signature, "task": "ranking"}, profile, manifest)


def test_a_binary_classifiers_thresholded_labels_are_its_predicted_class_mix() -> None:
    """The scorer logs the label after the decision threshold: the sidecar compares exactly those
    labels with the training class mix, nothing else."""
    signature: Signature = {
        "model_name": "toy",
        "target": "churn",
        "task": "classification",
        "features": [],
        "classes": ["no", "yes"],
        "positive_class": "yes",
        "threshold": 0.3,
    }
    manifest: Any = {"model_name": "toy", "model_version": "1", "metrics": {}, "files": {}}
    binary = build_reference(
        signature, {"columns": {}, "classes": {"no": 0.8, "yes": 0.2}}, manifest
    )
    probabilities = np.random.default_rng(8).beta(1.0, 4.0, 400)  # P(yes)
    labels = ["yes" if p >= 0.3 else "no" for p in probabilities]
    report = assess(
        [LoggedPrediction(0.0, f"r{i}", 0, {}, y) for i, y in enumerate(labels)], binary, THRESHOLDS
    )
    assert report.prediction.class_shares["yes"] == pytest.approx(labels.count("yes") / 400)
    assert report.prediction.psi == pytest.approx(
        category_psi({"no": 0.8, "yes": 0.2}, report.prediction.class_shares)
    )
