"""Warm-up (``mlops.serve.warmup``): the records made from the signature pass the checks, and a
package whose model or signature cannot score them is refused before it serves."""

from typing import Any

import pytest

from mlops.core.artifacts import ArtifactError
from mlops.serve.checks import records_to_columns, validate_columns
from mlops.serve.model import Prediction
from mlops.serve.schema import InputSchema, input_schema
from mlops.serve.warmup import example_record, warm_up, warm_up_records
from signatures import MIXED, signature, string


def schema(unknown: Any = "score") -> InputSchema:
    return input_schema(MIXED, unknown, "flag")


def test_example_and_warm_up_records_validate() -> None:
    assert example_record(schema()) == {
        "size": 5.5,
        "count": 0.0,
        "colour": "blue",
        "shape": "round",
    }
    records = warm_up_records(schema())
    batch = validate_columns(records_to_columns(records, schema()), len(records), schema())
    assert batch.size == 3 and batch.unknown_categories == {"colour": 1, "shape": 1}
    assert len(warm_up_records(schema(unknown="reject"))) == 2


class Model:
    """Stands in for the scorer: remembers what it scored, or fails like a model that cannot."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sizes: list[int] = []

    def predict(self, feed: dict[str, Any]) -> Prediction:
        if self.fail:
            raise RuntimeError("unknown category")
        self.sizes.append(len(next(iter(feed.values()))))
        return Prediction([], [])


def test_warm_up_scores_every_warm_up_record_once() -> None:
    model = Model()
    warm_up(model, schema())  # type: ignore[arg-type]
    assert model.sizes == [3]


def test_a_model_that_cannot_score_the_warm_up_records_is_refused() -> None:
    with pytest.raises(ArtifactError, match=r"warm-up failed: the model cannot score .*"):
        warm_up(Model(fail=True), schema())  # type: ignore[arg-type]


def test_a_signature_whose_own_records_do_not_validate_is_refused() -> None:
    no_categories = input_schema(signature(string("kind", [], nullable=False)), "reject", "flag")
    with pytest.raises(ArtifactError, match=r"signature.json: its own example records do not"):
        warm_up(Model(), no_categories)  # type: ignore[arg-type]
