"""What keeps the pipeline usable on big tables: progress lines, bounded steps, refit cores."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlops.model.features import build_pipeline, feature_spec, model_input, model_target
from mlops.model.importance import importance_rows
from mlops.model.train import refit
from mlops.progress import ANNOUNCE_ROWS, Progress, describe_rate, step
from mlops.stage import StageError


def test_a_step_over_many_rows_reports_its_start_and_its_rate() -> None:
    output = io.StringIO()
    with step("clean", ANNOUNCE_ROWS, stream=output):
        pass
    start, end = output.getvalue().splitlines()
    assert start == f"clean: {ANNOUNCE_ROWS:,} rows ..."
    assert end.startswith(f"clean: {ANNOUNCE_ROWS:,} rows, 0.0 s, ")
    assert end.endswith(" rows/s")


def test_a_short_step_over_few_rows_stays_quiet_unless_announced() -> None:
    output = io.StringIO()
    with step("clean", 344, stream=output):
        pass
    assert output.getvalue() == ""
    with step("package: ONNX conversion", None, announce=True, stream=output):
        pass
    assert output.getvalue().splitlines() == [
        "package: ONNX conversion ...",
        "package: ONNX conversion: 0.0 s",
    ]


def test_progress_prints_at_most_once_per_interval_and_closes() -> None:
    output = io.StringIO()
    progress = Progress("synth", total=3000, interval=0.0, stream=output)
    for _ in range(3):
        progress.advance(1000)
    progress.done()
    lines = output.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("synth: 1,000 of 3,000 rows, ")
    assert lines[-1].startswith("synth: 3,000 of 3,000 rows, ")
    quiet = io.StringIO()
    slow = Progress("synth", interval=60.0, stream=quiet)
    slow.advance(10)
    slow.done()
    assert quiet.getvalue() == ""


def test_describe_rate() -> None:
    assert describe_rate("x", 1_000_000, 2.0, 4_000_000) == (
        "x: 1,000,000 of 4,000,000 rows, 2.0 s, 500,000 rows/s"
    )


def test_importance_uses_every_row_of_a_small_set_and_a_seeded_sample_of_a_large_one() -> None:
    assert importance_rows(52, 20_000, seed=0).tolist() == list(range(52))
    sample = importance_rows(100_000, 1000, seed=3)
    assert len(sample) == len(set(sample)) == 1000
    assert (np.diff(sample) > 0).all()  # in table order
    assert sample.tolist() == importance_rows(100_000, 1000, seed=3).tolist()
    assert sample.tolist() != importance_rows(100_000, 1000, seed=4).tolist()
    with pytest.raises(StageError, match=r"evaluate\.max_importance_rows: must be at least 1"):
        importance_rows(10, 0, seed=0)


def table(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    species = rng.choice(["a", "b"], size=rows)
    return pd.DataFrame(
        {
            "mass": np.where(species == "a", 3.0, 5.0) + rng.normal(0, 0.3, rows),
            "island": rng.choice(["x", "y"], size=rows),
            "species": species,
        }
    )


@pytest.mark.parametrize(("model_name", "n_jobs"), [("random_forest", 2), ("linear", None)])
def test_the_refit_uses_n_jobs_for_the_fit_only(model_name: str, n_jobs: int | None) -> None:
    frame = table()
    spec = feature_spec(frame, "species", [])
    pipeline = build_pipeline(model_name, spec, seed=0)
    refit(pipeline, model_input(frame, spec), model_target(frame, "species"), n_jobs=n_jobs)
    estimator = pipeline.named_steps["model"]
    assert estimator.get_params().get("n_jobs") is None  # saved as built: one thread to predict
    assert pipeline.score(model_input(frame, spec), model_target(frame, "species")) > 0.9
