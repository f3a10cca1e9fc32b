import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops.artifacts import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ArtifactError, sha256_of
from mlops.serve.model import load_scorer, session_options
from mlops.serve.validation import input_schema, records_to_columns, validate_columns
from serve_fixtures import bundled_records, copy_package, signature_of


def feed_of(package: Path, records: list[dict[str, object]]) -> dict[str, np.ndarray]:
    schema = input_schema(signature_of(package))
    columns, _ = records_to_columns({"records": records}, schema, len(records))
    return validate_columns(columns, len(records), schema).feed


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


def test_a_changed_model_file_is_refused(packaged_model: Path, tmp_path: Path) -> None:
    package = copy_package(packaged_model, tmp_path / "package")
    with (package / MODEL_FILE).open("ab") as model:
        model.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model.onnx: sha256 .* does not match the manifest"):
        load_scorer(package, threads=1)


def test_a_signature_that_does_not_match_the_model_is_refused(
    packaged_model: Path, tmp_path: Path
) -> None:
    package = copy_package(packaged_model, tmp_path / "package")
    signature = signature_of(package)
    signature["features"][0]["name"] = "renamed"
    (package / SIGNATURE_FILE).write_text(json.dumps(signature))
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["files"][SIGNATURE_FILE] = sha256_of(package / SIGNATURE_FILE)
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"do not match signature\.json's features"):
        load_scorer(package, threads=1)


def test_a_missing_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="set MODEL_DIR"):
        load_scorer(tmp_path / "nowhere", threads=1)


def test_session_threads_come_from_settings_and_never_spin() -> None:
    options = session_options(threads=2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_service_imports_neither_scikit_learn_nor_pandas(
    packaged_model: Path, tmp_path: Path
) -> None:
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
