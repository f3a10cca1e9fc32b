import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops.core.artifacts import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ArtifactError, sha256_of
from mlops.core.decision import apply_threshold
from mlops.serve.batches import Records
from mlops.serve.checks import check
from mlops.serve.model import load_scorer, round_significant, session_options
from mlops.serve.schema import input_schema
from package_fixtures import binary_package, regression_package
from serve_fixtures import bundled_records, copy_package, signature_of, table_records


def feed_of(package: Path, records: list[dict[str, object]]) -> dict[str, np.ndarray]:
    return check(Records(records), input_schema(signature_of(package))).feed


def test_the_packaged_model_loads_and_scores_in_class_order(packaged_model: Path) -> None:
    scorer = load_scorer(packaged_model, threads=1)
    records = bundled_records(signature_of(packaged_model), limit=20)
    prediction = scorer.predict(feed_of(packaged_model, records))
    assert len(prediction.labels) == 20 and set(prediction.labels) <= set(scorer.classes)
    probabilities = np.array(prediction.probabilities)
    assert probabilities.shape == (20, len(scorer.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    best = [scorer.classes[column] for column in probabilities.argmax(axis=1)]
    assert best == prediction.labels
    assert (
        scorer.model_version
        == json.loads((packaged_model / MANIFEST_FILE).read_text())["model_version"]
    )


def test_probabilities_as_rows_are_made_only_when_asked_and_match_the_array(
    packaged_model: Path,
) -> None:
    """V2 answers and the log take the rounded array; rows of lists (``/predict``) are made on
    first use, the same numbers, once; a slice of the batch (a micro-batch's share) too."""
    scorer = load_scorer(packaged_model, threads=1)
    prediction = scorer.predict(
        feed_of(packaged_model, bundled_records(signature_of(packaged_model), limit=7))
    )
    array = prediction.probability_array
    assert array is not None and array.shape == (7, len(scorer.classes))
    assert prediction.probability_rows is None  # not made by scoring
    assert prediction.flat_probabilities() == array.ravel().tolist()
    assert prediction.probability_shape() == [7, len(scorer.classes)]
    assert prediction.probability_rows is None  # nor by the V2 forms of the answer
    share = prediction.rows(2, 5)
    rows = prediction.probabilities
    assert rows == array.tolist() and all(type(p) is float for row in rows for p in row)
    assert prediction.probabilities is rows  # made once
    assert share.probability_rows is None and share.probabilities == rows[2:5]
    assert share.labels == prediction.labels[2:5]


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return regression_package(tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return binary_package(tmp_path_factory.mktemp("binary"), threshold=0.3)


def rewrite_signature(package: Path, **changes: object) -> None:
    """Change signature.json and re-sign it in the manifest (a package that verifies)."""
    signature = signature_of(package)
    signature.update(changes)
    (package / SIGNATURE_FILE).write_text(json.dumps(signature))
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["files"][SIGNATURE_FILE] = sha256_of(package / SIGNATURE_FILE)
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_regressor_scores_one_number_per_record_as_onnxruntime_computes_it(
    regression: Path,
) -> None:
    scorer = load_scorer(regression, threads=1)
    records = table_records(regression, limit=30)
    feed = feed_of(regression, records)

    prediction = scorer.predict(feed)

    assert scorer.regression and scorer.task == "regression" and scorer.outputs == ("prediction",)
    assert prediction.labels == [] and prediction.probabilities == []
    (raw,) = scorer.session.run(["prediction"], feed)
    assert prediction.values == pytest.approx(raw[:, 0].tolist(), rel=1e-6)
    assert all(type(value) is float for value in prediction.values)
    assert prediction.rows(5, 7).values == prediction.values[5:7]


def test_a_binary_scorer_applies_the_decision_threshold(binary: Path, tmp_path: Path) -> None:
    records = table_records(binary, limit=80)
    scorer = load_scorer(binary, threads=1)
    feed = feed_of(binary, records)

    prediction = scorer.predict(feed)

    labels, probabilities = scorer.session.run(["label", "probabilities"], feed)
    expected = apply_threshold(probabilities, ["no", "yes"], "yes", 0.3).tolist()
    assert prediction.labels == expected
    assert prediction.labels != labels.tolist()  # the threshold changed some answers
    untouched = copy_package(binary, tmp_path / "plain")
    rewrite_signature(untouched, threshold=None)
    assert load_scorer(untouched, threads=1).predict(feed).labels == labels.tolist()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": 1.5}, r"threshold 1.5 is not between 0 and 1"),
        ({"positive_class": "maybe"}, r"a decision threshold needs two classes"),
        ({"task": "regression"}, r"has no output 'prediction' \(signature.json says the task"),
    ],
)
def test_a_signature_the_model_cannot_honour_is_refused(
    binary: Path, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    package = copy_package(binary, tmp_path / "package")
    rewrite_signature(package, **changes)
    with pytest.raises(ArtifactError, match=message):
        load_scorer(package, threads=1)


def test_a_regression_signature_on_a_classifier_is_refused(
    regression: Path, tmp_path: Path
) -> None:
    package = copy_package(regression, tmp_path / "package")
    rewrite_signature(package, task="classification", classes=["a", "b"])
    with pytest.raises(ArtifactError, match=r"has no output 'label'"):
        load_scorer(package, threads=1)


def test_predictions_are_rounded_to_what_float32_holds() -> None:
    values = np.array([[3.2], [0.1], [123456.78], [-7.777777], [0.0], [3.3e-9]], np.float32)
    assert round_significant(values) == [3.2, 0.1, 123456.8, -7.777777, 0.0, 3.3e-9]
    assert round_significant(np.array([np.nan, np.inf], np.float32))[1] == np.inf


def test_a_changed_model_file_is_refused(regression: Path, tmp_path: Path) -> None:
    package = copy_package(regression, tmp_path / "package")
    with (package / MODEL_FILE).open("ab") as model:
        model.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model.onnx: sha256 .* does not match the manifest"):
        load_scorer(package, threads=1)


def test_a_signature_that_does_not_match_the_model_is_refused(
    regression: Path, tmp_path: Path
) -> None:
    package = copy_package(regression, tmp_path / "package")
    features = signature_of(package)["features"]
    features[0]["input_name"] = "renamed"
    rewrite_signature(package, features=features)
    with pytest.raises(ArtifactError, match=r"do not match signature\.json's features"):
        load_scorer(package, threads=1)


def test_a_missing_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="set MODEL_DIR"):
        load_scorer(tmp_path / "nowhere", threads=1)


def test_session_threads_come_from_settings_and_never_spin() -> None:
    options = session_options(threads=2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_the_service_imports_neither_scikit_learn_nor_pandas(
    task: str, regression: Path, binary: Path, tmp_path: Path
) -> None:
    packaged_model = regression if task == "regression" else binary
    program = f"""
import sys
from pathlib import Path
from mlops.serve.app import create_app
from mlops.serve.model import load_scorer
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.settings import ServeSettings
log = PredictionLogWriter(Path({str(tmp_path / "p.jsonl")!r}), 1 << 20, 1)
app = create_app(ServeSettings(), load_scorer(Path({str(packaged_model)!r}), 1), log)
log.close()
loaded = sorted(name for name in ("sklearn", "pandas", "skl2onnx", "scipy") if name in sys.modules)
print(",".join(loaded) or "clean")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
