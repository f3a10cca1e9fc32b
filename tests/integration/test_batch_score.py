"""``python -m mlops.serve.batch``: whole files through the packaged model, in chunks."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as parquet
import pytest

from conftest import PROJECT_ROOT
from mlops.core.decision import apply_threshold
from mlops.serve.batch import main
from mlops.stage import run
from package_fixtures import binary_package, regression_package
from serve_fixtures import (
    bundled_records,
    copy_package,
    onnx_outputs,
    onnx_reference,
    signature_of,
    table_records,
)

# Reports its own peak memory after scoring, so the test can compare a small file with a large one.
MEASURED_RUN = """
import resource, sys
from mlops.serve.batch import main
main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def score(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    """The command line, as ``make score`` runs it."""
    command = [sys.executable, "-m", "mlops.serve.batch", *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def score_here(capsys: pytest.CaptureFixture[str], *arguments: str | Path) -> tuple[int, str]:
    """The same ``main`` in this process (no interpreter start-up): exit code and stderr."""
    code = run(main, [str(argument) for argument in arguments])
    return code, capsys.readouterr().err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_csv_is_scored_and_every_invalid_row_is_set_aside_with_its_reason(
    packaged_model: Path, tmp_path: Path
) -> None:
    source = PROJECT_ROOT / "data" / "penguins.csv"
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    broken = lines[5].replace(lines[5].split(",")[2], "long", 1)  # a word where a number belongs
    ragged = ",".join(lines[6].split(",")[:3])
    test_input = tmp_path / "input.csv"
    test_input.write_text("\n".join([*lines[:5], broken, ragged, *lines[7:]]) + "\n")
    output = tmp_path / "out" / "scored.csv"

    result = score(
        "--input",
        test_input,
        "--output",
        output,
        "--model-dir",
        packaged_model,
        "--chunk-rows",
        "50",
    )

    assert result.returncode == 0, result.stderr
    scored = read_csv(output)
    rejected = [
        json.loads(line) for line in Path(f"{output}.rejected.jsonl").read_text().splitlines()
    ]
    assert len(scored) + len(rejected) == len(lines) - 1
    assert [(r["row"], r["reasons"][0]["field"]) for r in rejected] == [(5, header[2]), (6, None)]
    assert "has 3 cell(s); the header has 8" in rejected[1]["reasons"][0]["message"]
    assert "rejected 2 row(s)" in result.stderr
    signature = signature_of(packaged_model)
    expected = [
        r for number, r in enumerate(bundled_records(signature), start=1) if number not in (5, 6)
    ]
    labels, probabilities = onnx_reference(packaged_model, signature, expected)
    assert [row["prediction"] for row in scored] == labels
    served = np.array(
        [[float(row[f"probability_{c}"]) for c in signature["classes"]] for row in scored]
    )
    assert np.allclose(served, probabilities, atol=1e-6)
    assert [row["species"] for row in scored][:3] == ["Adelie"] * 3  # other columns pass through


def test_a_parquet_file_keeps_its_column_types(
    packaged_model: Path,
    reproduced_project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = reproduced_project / "data" / "split" / "test.parquet"
    output = tmp_path / "scored.parquet"
    code, errors = score_here(
        capsys,
        "--input",
        source,
        "--output",
        output,
        "--model-dir",
        packaged_model,
        "--chunk-rows",
        "16",
    )
    assert code == 0, errors
    original, scored = parquet.read_table(source), parquet.read_table(output)
    assert scored.num_rows == original.num_rows
    assert scored.schema.names[: len(original.schema)] == original.schema.names
    assert all(
        scored.schema.field(name).type == original.schema.field(name).type
        for name in original.schema.names
    )
    assert not Path(f"{output}.rejected.jsonl").exists()


@pytest.mark.parametrize(
    ("content", "output_name", "message"),
    [
        ("island,sex\nBiscoe,male\n", "out.csv", "missing feature column(s) ["),
        ("", "out.csv", "empty file; expected a header row"),
        (None, "out.xlsx", "unknown output format '.xlsx'"),
    ],
)
def test_unusable_input_stops_with_one_line(
    packaged_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    output_name: str,
    message: str,
) -> None:
    if content is None:  # a valid header
        content = ",".join(f["name"] for f in signature_of(packaged_model)["features"]) + "\n"
    test_input = tmp_path / "input.csv"
    test_input.write_text(content)
    output = tmp_path / output_name
    code, errors = score_here(
        capsys, "--input", test_input, "--output", output, "--model-dir", packaged_model
    )
    assert code == 1
    assert errors.startswith("error: ") and message in errors and len(errors.splitlines()) == 1
    assert not output.exists()


@pytest.mark.parametrize("direction", ["input", "output"])
def test_parquet_without_pyarrow_says_what_to_install(
    packaged_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    direction: str,
) -> None:
    """The image installs the serve extra only: no pyarrow there, so Parquet must say so."""
    records = bundled_records(signature_of(packaged_model), limit=3)
    csv_input = tmp_path / "input.csv"
    with csv_input.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    parquet_input = tmp_path / "input.parquet"
    parquet.write_table(pyarrow.Table.from_pylist(records), parquet_input)
    source, output = (
        (parquet_input, tmp_path / "out.csv")
        if direction == "input"
        else (csv_input, tmp_path / "out.parquet")
    )
    for module in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    code, errors = score_here(
        capsys, "--input", source, "--output", output, "--model-dir", packaged_model
    )
    assert code == 1
    assert errors.startswith("error: ") and len(errors.splitlines()) == 1, errors
    assert "Parquet needs pyarrow" in errors and "pipeline extra" in errors
    assert not output.exists()


def test_a_tampered_model_scores_nothing(
    packaged_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = copy_package(packaged_model, tmp_path / "package")
    with (package / "model.onnx").open("ab") as model:
        model.write(b"\0")
    source = PROJECT_ROOT / "data" / "penguins.csv"
    code, errors = score_here(
        capsys, "--input", source, "--output", tmp_path / "o.csv", "--model-dir", package
    )
    assert code == 1 and "does not match the manifest" in errors
    assert not (tmp_path / "o.csv").exists()


def write_penguins(path: Path, rows: int, signature: dict[str, Any]) -> None:
    records = bundled_records(signature)
    names = [feature["name"] for feature in signature["features"]]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*names, "id"])
        for number in range(rows):
            record = records[number % len(records)]
            writer.writerow([*("" if record[n] is None else record[n] for n in names), number])


def test_memory_stays_flat_as_the_file_grows(packaged_model: Path, tmp_path: Path) -> None:
    signature = signature_of(packaged_model)
    peaks = {}
    for rows in (10_000, 100_000):
        source = tmp_path / f"{rows}.csv"
        write_penguins(source, rows, signature)
        output = tmp_path / f"{rows}.scored.csv"
        command = [
            sys.executable,
            "-c",
            MEASURED_RUN,
            "--input",
            str(source),
            "--output",
            str(output),
        ]
        command += ["--model-dir", str(packaged_model), "--chunk-rows", "2000"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert sum(1 for _ in output.open()) == rows + 1
        peaks[rows] = int(result.stdout.strip().splitlines()[-1]) * 1024  # ru_maxrss is in KiB
    # Ten times the rows (some 80 MB more if held as Python objects) may cost only a few MB more.
    assert peaks[100_000] - peaks[10_000] < 20 * (1 << 20), peaks


# --- other tasks, under the user's column names -------------------------------------------------


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return regression_package(tmp_path_factory.mktemp("regression"))


def test_a_regressors_csv_gets_one_number_per_row_under_the_users_headers(
    regression: Path, tmp_path: Path
) -> None:
    table = pd.read_parquet(regression.parent / "test.parquet")  # with its id and date columns
    changed = "2nd.line calls/month"
    text = table.astype(object).assign(**{changed: table[changed].astype(object)})
    text.loc[text.index[3], changed] = "three"  # a word where a number belongs
    source = tmp_path / "new orders.csv"
    text.to_csv(source, index=False)
    output = tmp_path / "scored.csv"

    result = score("--input", source, "--output", output, "--model-dir", regression)

    assert result.returncode == 0, result.stderr
    scored = read_csv(output)
    assert list(scored[0]) == [*table.columns, "prediction", "warnings"]  # no probabilities
    rejected = [
        json.loads(line) for line in Path(f"{output}.rejected.jsonl").read_text().splitlines()
    ]
    assert [(r["row"], r["reasons"][0]["field"]) for r in rejected] == [(4, changed)]
    records = [r for number, r in enumerate(table_records(regression)) if number != 3]
    expected = onnx_outputs(regression, signature_of(regression), records)["prediction"][:, 0]
    assert np.allclose([float(row["prediction"]) for row in scored], expected, rtol=1e-6, atol=0)
    assert [row["customer id"] for row in scored][:2] == list(table["customer id"][:2])


def test_a_regressors_parquet_output_holds_the_prediction_as_a_number(
    regression: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = regression.parent / "test.parquet"
    output = tmp_path / "scored.parquet"

    code, errors = score_here(
        capsys, "--input", source, "--output", output, "--model-dir", regression
    )

    assert code == 0, errors
    scored = parquet.read_table(output)
    assert scored.schema.field("prediction").type == pyarrow.float64()
    assert not any(name.startswith("probability_") for name in scored.schema.names)
    assert scored.num_rows == parquet.read_table(source).num_rows


def test_a_binary_models_rows_are_labelled_by_its_decision_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = binary_package(tmp_path / "binary", threshold=0.3)
    output = tmp_path / "scored.jsonl"

    code, errors = score_here(
        capsys,
        "--input",
        package.parent / "test.parquet",
        "--output",
        output,
        "--model-dir",
        package,
    )

    assert code == 0, errors
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    probabilities = np.array([[row["probability_no"], row["probability_yes"]] for row in rows])
    outputs = onnx_outputs(package, signature_of(package), table_records(package))
    expected = apply_threshold(outputs["probabilities"], ["no", "yes"], "yes", 0.3).tolist()
    assert [row["prediction"] for row in rows] == expected
    assert np.allclose(probabilities, outputs["probabilities"], atol=1e-6)
