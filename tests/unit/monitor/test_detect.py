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
from mlops.monitor.detect import UNSEEN, Thresholds, assess, category_key, measure_numeric
from mlops.monitor.reference import Reference, build_reference, load_reference
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.window import LoggedPrediction
from mlops.profile import profile_table, raw_statistics
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


def test_a_small_sample_is_judged_by_its_noise_and_never_alerts_below_the_minimum_window(
    reference: Reference,
) -> None:
    default_minimum = MonitorSettings.model_fields["min_window_size"].default
    thresholds = dataclasses.replace(THRESHOLDS, min_window_size=default_minimum)
    calm = records(draw(30, seed=3))
    report = assess(calm, reference, thresholds)
    assert report.window_size == 30 < default_minimum
    assert not report.alert
    # PSI on 30 records is noise: above the former fixed threshold of 0.2, and no alarm, since
    # the test knows how noisy 30 records are.
    unguarded = dataclasses.replace(THRESHOLDS, min_window_size=1)
    x = next(
        feature for feature in assess(calm, reference, unguarded).features if feature.name == "x"
    )
    assert x.psi > 0.2 and not x.drifted and x.p_value > x.level
    # A large shift is clear even in 30 records; the minimum still holds it back.
    shifted = draw(30, seed=3)
    shifted["x"] += 2.0
    assert drifted(assess(records(shifted), reference, unguarded)) == {"x"}
    assert not assess(records(shifted), reference, thresholds).alert


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
    body = report.as_json()["prediction"]
    assert (body["score"], body["drifted"]) == (report.prediction.psi, True)
    assert body["p_value"] < body["level"] == pytest.approx(0.005 / 10)  # 3 features x 3 + 1
    assert [b["bin"] for b in body["bins"]] == list(CLASSES)
    assert body["bins"][0] == {"bin": "a", "reference": 0.5, "live": 1.0}


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
    assert set(body) == {
        "score",
        "drifted",
        "threshold",
        "p_value",
        "level",
        "mean",
        "reference_mean",
        "bins",
    }
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
        measure_numeric(regressor.prediction, shifted).psi
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


# -- the significance tests: the reference's size, raw statistics, floors --------------------------

DEFAULTS = Thresholds(
    psi=0.02, prediction_psi=0.02, missing_rate=0.02, out_of_range=0.01, min_window_size=200
)


def reference_of(train: pd.DataFrame, raw: pd.DataFrame | None = None) -> Reference:
    """A classifier's reference of the training table ``train``, with the raw table's
    statistics if ``raw`` is given (a package since them), else without (an older one)."""
    profile: dict[str, Any] = profile_table(train)
    if raw is not None:
        profile["raw"] = raw_statistics(profile_table(raw), list(train.columns))
    profile["classes"] = CLASSES
    signature: Signature = {
        "model_name": "toy",
        "target": "label",
        "features": [_signature_feature(train[name]) for name in train.columns],
        "classes": list(CLASSES),
    }
    manifest: Any = {"model_name": "toy", "model_version": "1", "metrics": {}, "files": {}}
    return build_reference(signature, json.loads(json.dumps(profile)), manifest)


def _signature_feature(column: pd.Series) -> Any:
    numeric = pd.api.types.is_numeric_dtype(column)
    return {
        "name": column.name,
        "type": "number" if numeric else "string",
        "nullable": True,
        "categories": None if numeric else sorted(column.dropna().astype(str).unique()),
        "min": float(column.min()) if numeric else None,
        "max": float(column.max()) if numeric else None,
    }


def alerts(
    reference: Reference, frames: list[pd.DataFrame], thresholds: Thresholds = DEFAULTS
) -> float:
    return float(np.mean([assess(records(f), reference, thresholds).alert for f in frames]))


def test_windows_larger_than_the_reference_raise_no_false_alarm() -> None:
    """A reference of 240 rows (penguins' training split) knows each bin's share to about two
    points: windows of 2,000 records of the same population are judged against that noise,
    where a test taking the reference as exact would alarm on most windows."""
    small = reference_of(draw(240, seed=10))
    windows = [draw(2000, seed=100 + n) for n in range(60)]
    assert alerts(small, windows) <= 0.05
    exact = dataclasses.replace(
        small,
        features=tuple(
            dataclasses.replace(feature, rows=10**12, present=10**12) for feature in small.features
        ),
    )
    assert alerts(exact, windows) >= 0.3


def test_a_quarter_standard_deviation_is_found_more_often_in_larger_windows(
    reference: Reference,
) -> None:
    def found(size: int) -> float:
        frames = [draw(size, seed=200 + n) for n in range(40)]
        for frame in frames:
            frame["x"] += 0.25
        reports = [assess(records(frame), reference, DEFAULTS) for frame in frames]
        return float(np.mean(["x" in drifted(report) for report in reports]))

    assert found(200) < 0.9 <= found(1000)


def test_floors_leave_out_changes_too_small_to_matter(reference: Reference) -> None:
    """At 50,000 records a shift of a tenth of a standard deviation is certain, and too small
    to report at the default floor; with no floor it is reported."""
    live = draw(50_000, seed=12)
    live["x"] += 0.1
    report = assess(records(live), reference, DEFAULTS)
    (x,) = [feature for feature in report.features if feature.name == "x"]
    assert x.p_values["psi"] < x.level and x.psi < DEFAULTS.psi and not x.drifted
    bare = dataclasses.replace(DEFAULTS, psi=0.0)
    assert drifted(assess(records(live), reference, bare)) == {"x"}


def with_gaps(frame: pd.DataFrame, seed: int, income: float, city: float) -> pd.DataFrame:
    """``frame`` with these shares of ``income`` and ``city`` missing."""
    generator = np.random.default_rng(seed)
    gapped = frame.astype(object)
    gapped.loc[generator.random(len(frame)) < income, "x"] = None
    gapped.loc[generator.random(len(frame)) < city, "color"] = None
    return gapped.infer_objects()


def test_missing_values_and_distributions_are_judged_against_the_raw_data() -> None:
    """The training set's gaps were filled (the median, the most frequent category): its missing
    rates are 0 % and its shares carry the filled values. Live traffic is raw: compared with the
    raw statistics it is calm; compared with the training set's it would alarm."""
    raw = with_gaps(draw(20_000, seed=13), seed=14, income=0.2, city=0.1)
    train = raw.fillna({"x": raw["x"].median(), "color": raw["color"].mode()[0]})
    train["y"] = raw["y"]
    current, former = reference_of(train, raw), reference_of(train)
    calm = [
        with_gaps(draw(1000, seed=300 + n), seed=400 + n, income=0.2, city=0.1) for n in range(20)
    ]

    assert alerts(current, calm) <= 0.05
    x = next(feature for feature in current.features if feature.name == "x")
    assert x.raw and x.missing_rate == pytest.approx(0.2, abs=0.01)
    assert alerts(former, calm) == 1.0  # the filled values' spike, and missing values "new"

    more = with_gaps(draw(1000, seed=15), seed=16, income=0.3, city=0.1)
    report = assess(records(more), current, DEFAULTS)
    assert drifted(report) == {"x"}
    (flagged,) = report.drifted_features
    assert flagged.reasons == ("missing_rate",)
    assert flagged.reference_missing_rate == pytest.approx(0.2, abs=0.01)


def test_a_package_without_raw_statistics_keeps_the_former_missing_rule(
    reference: Reference,
) -> None:
    """Its missing rates are after imputation (0 %): a rise is flagged from 10 points only."""
    assert not any(feature.raw for feature in reference.features)
    some = with_gaps(draw(1000, seed=17), seed=18, income=0.08, city=0.0)
    assert "x" not in drifted(assess(records(some), reference, DEFAULTS))
    many = with_gaps(draw(1000, seed=17), seed=18, income=0.15, city=0.0)
    assert drifted(assess(records(many), reference, DEFAULTS)) == {"x"}


def test_new_categories_of_a_long_tailed_column_are_no_alarm_but_a_new_one_in_a_closed_set_is() -> (
    None
):
    generator = np.random.default_rng(19)
    ranks = np.arange(1, 3001)
    weights = 1.0 / ranks**1.1
    cities = [f"city {rank}" for rank in ranks]

    def towns(rows: int) -> pd.DataFrame:
        picked = generator.choice(len(cities), rows, p=weights / weights.sum())
        return pd.DataFrame(
            {"town": [cities[i] for i in picked], "x": generator.normal(0, 1, rows)}
        )

    long_tail = reference_of(towns(5000))
    town = long_tail.features[0]
    assert town.singletons > 100  # categories seen once: more are yet to be seen
    windows = [towns(1000) for _ in range(20)]
    unseen = [
        assess(records(w), long_tail, DEFAULTS).features[0].out_of_range_rate for w in windows
    ]
    assert min(unseen) > 0.01  # new towns keep coming, as in training
    assert alerts(long_tail, windows) <= 0.05

    closed = reference_of(draw(5000, seed=20))
    live = draw(1000, seed=21)
    live.loc[:49, "color"] = "purple"  # 5 % of a category never seen among three
    report = assess(records(live), closed, DEFAULTS)
    assert drifted(report) == {"color"} and "out_of_range" in report.drifted_features[0].reasons


def test_the_report_carries_both_distributions_for_the_page(reference: Reference) -> None:
    report = assess(records(draw(1000, seed=22)), reference, DEFAULTS)
    x, _, color = report.features
    assert len(x.bins) == len(reference.features[0].edges) + 1 == 10
    assert x.bins[0].label.startswith("≤ ") and x.bins[-1].label.startswith("> ")
    assert sum(b.reference for b in x.bins) == pytest.approx(1.0)
    assert sum(b.live for b in x.bins) == pytest.approx(1.0)
    assert [b.label for b in color.bins] == list(COLORS)
    assert color.as_json()["bins"][0]["reference"] == pytest.approx(COLORS["red"], abs=0.02)
    assert set(x.p_values) == {"psi", "missing_rate", "out_of_range"}
    assert x.level == pytest.approx(0.005 / 10)
