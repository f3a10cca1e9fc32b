import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.artifacts import Manifest, Signature
from mlops.monitor.detect import UNSEEN, Thresholds, assess, category_key
from mlops.monitor.reference import Reference, build_reference
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.window import LoggedPrediction
from mlops.profile import profile_table
from mlops.stage import StageError

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
    assert (reference.accuracy, reference.macro_f1) == (0.9, 0.85)  # top level
    signature: Signature = {"model_name": "toy", "target": "label", "features": [], "classes": []}
    nested: Any = {
        "model_name": "toy",
        "model_version": "2",
        "metrics": {"validation": {"accuracy": 0.8, "macro_f1": 0.7}, "test": {"accuracy": 0.1}},
    }
    packaged = build_reference(signature, {"columns": {}, "classes": CLASSES}, nested)
    assert (packaged.accuracy, packaged.macro_f1) == (0.8, 0.7)


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
