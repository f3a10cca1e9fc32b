"""Warm-up: before it takes traffic, the scorer checks and scores records made from the
signature (typical values, missing values and, when they are scored, unseen categories), so a
model that cannot score what clients may send is refused at start-up, not on a request."""

from __future__ import annotations

from typing import Any

from mlops.core.artifacts import ArtifactError
from mlops.serve.batches import Records
from mlops.serve.checks import check
from mlops.serve.errors import InputError
from mlops.serve.model import Scorer
from mlops.serve.schema import InputSchema

UNSEEN_CATEGORY = "__unseen_in_training__"


def example_record(schema: InputSchema) -> dict[str, Any]:
    """A valid record: mid-range numbers, the first known category."""
    record: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.is_number:
            low, high = spec.minimum, spec.maximum
            record[spec.name] = (low + high) / 2 if low is not None and high is not None else 0.0
        else:
            record[spec.name] = min(spec.categories) if spec.categories else "example"
    return record


def warm_up_records(schema: InputSchema) -> list[dict[str, Any]]:
    """Records exercising every path the model will see: typical, missing, unseen categories."""
    typical = example_record(schema)
    missing = {spec.name: None if spec.nullable else typical[spec.name] for spec in schema.fields}
    records = [typical, missing]
    if schema.unknown_category == "score":
        records.append(
            {
                spec.name: typical[spec.name] if spec.is_number else UNSEEN_CATEGORY
                for spec in schema.fields
            }
        )
    return records


def warm_up(scorer: Scorer, schema: InputSchema) -> None:
    """Score typical, missing and (if they are scored) unseen values once before taking traffic.
    ArtifactError if the signature's own records do not pass the checks or the model fails."""
    records = warm_up_records(schema)
    try:
        scorer.predict(check(Records(records), schema).feed)
    except InputError as error:
        raise ArtifactError(
            f"signature.json: its own example records do not validate ({error.one_line()})"
        ) from None
    except Exception as error:  # ONNX Runtime's error types are not part of its public API
        raise ArtifactError(
            f"warm-up failed: the model cannot score {records} ({error}); "
            "with SCORER_UNKNOWN_CATEGORY=score the model must accept unseen categories"
        ) from None
